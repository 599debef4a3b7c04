/**
 * Shared by the examples' `import.meta.main` blocks: build seeded random inputs, run the
 * pattern on the WebGPU adapter, compare with the float64 reference, print the result.
 * @module
 */
import type { AttentionShape } from "../compiler/mod.ts";
import { planSummary } from "../compiler/mod.ts";
import type { Pattern } from "../dsl/schema.ts";
import { hashCodeMismatches, reference, referenceHashCodes } from "../runtime/reference/mod.ts";
import type { HashCodes } from "../dsl/hash_bucket.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import {
  adapterLine,
  EXIT_FAILURE,
  formatMs,
  maxAbsError,
  maxLseError,
  runMain,
} from "../cli/_common.ts";

/** DESIGN §4: float32 kernels match the float64 reference within this, for unit-normal inputs. */
export const TOLERANCE = 1e-4;

/** One example run. */
export interface VerifyOptions {
  /** The example's name, for the printout. */
  name: string;
  pattern: Pattern;
  shape: AttentionShape;
  /** Runtime gates `[B, Hq, branches]` (gated patterns); the pattern's gates otherwise. */
  gates?: Float32Array;
  /** Seed of q, k and v (k and v use the next two seeds). */
  seed?: number;
  /** Keys are the queries (Reformer's shared-QK attention); needs Hq == Hkv. */
  sharedQK?: boolean;
}

/** What one run measured. */
export interface VerifyResult {
  errorO: number;
  errorLse: number;
  gpuMs?: number;
}

/**
 * Runs a pattern on the GPU at one shape and checks it against the float64 reference.
 *
 * @param o the pattern, shape, optional gates and seed
 * @returns the max abs errors of O and LSE, and the GPU time when timestamps are available
 * @example
 * ```ts ignore
 * import { verifyExample } from "./_verify.ts";
 * const r = await verifyExample({
 *   name: "ring",
 *   pattern: { kind: "ring", radius: 8 },
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 32 },
 * });
 * console.log(r.errorO <= 1e-4);
 * ```
 */
export async function verifyExample(o: VerifyOptions): Promise<VerifyResult> {
  const { shape, pattern } = o;
  const seed = o.seed ?? 1;
  const q = normalTensor(shape.batch * shape.headsQ * shape.seqLen * shape.headDim, seed);
  const kvLength = shape.batch * shape.headsKV * shape.seqLen * shape.headDim;
  const k = o.sharedQK ? q : normalTensor(kvLength, seed + 1);
  const v = normalTensor(kvLength, seed + 2);

  const rt = await createRuntime();
  try {
    const compiled = rt.compile(pattern, { shape });
    const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
    console.log(`${o.name}: B=${B} Hq=${Hq} Hkv=${Hkv} N=${N} D=${D}`);
    console.log(planSummary(compiled.plan).split("\n")[0]);
    console.log(adapterLine(rt.info));
    const out = await rt.run(compiled, { q, k, v, gates: o.gates });
    const gates = o.gates && { data: o.gates, shape: [B, Hq, compiled.branches] };
    // hashBucket: the codes must agree with the reference's own wherever a projection is
    // clearly signed; O is then checked on the allowed set the GPU's codes give.
    if (out.hashCodes) reportCodes(pattern, shape, q, k, out.hashCodes);
    const expected = reference({
      pattern,
      shape,
      q,
      k,
      v,
      gates,
      scale: compiled.scale,
      hashCodes: out.hashCodes,
    });
    const result = {
      errorO: maxAbsError(out.o, expected.o),
      // LSE relative to its size (DESIGN §4): a float32 LSE near 1e4 is off by 1e-3 at best.
      errorLse: maxLseError(out.lse, expected.lse),
      gpuMs: out.gpuMs,
    };
    if (out.gpuMs !== undefined) {
      console.log(`gpu: ${formatMs(out.gpuMs)} (first submission: includes shader compilation)`);
    }
    console.log(`max abs error vs float64 reference: ${result.errorO.toExponential(2)}`);
    console.log(`max error of LSE, relative to max(1, |LSE|): ${result.errorLse.toExponential(2)}`);
    return result;
  } finally {
    rt.destroy();
  }
}

/** Prints how the GPU's bucket codes compare with the float64 reference's; throws on a real disagreement. */
function reportCodes(
  pattern: Pattern,
  shape: AttentionShape,
  q: Float32Array,
  k: Float32Array,
  gpu: HashCodes,
): void {
  const own = referenceHashCodes(pattern, shape, q, k);
  for (const m of hashCodeMismatches(pattern, shape, q, k, gpu)) {
    const bad = m.queries + m.keys;
    if (bad > 0) throw new Error(`${bad} bucket codes disagree with clearly signed projections`);
    const codes = gpu.get(m.key)!, mine = own.get(m.key)!;
    let differ = 0;
    for (let i = 0; i < codes.q.length; i++) differ += codes.q[i] === mine.q[i] ? 0 : 1;
    for (let i = 0; i < codes.k.length; i++) differ += codes.k[i] === mine.k[i] ? 0 : 1;
    console.log(
      `hashBucket ${m.key}: ${codes.rounds} round(s); codes differing from the float64 ` +
        `reference: ${differ} of ${
          codes.q.length + codes.k.length
        } (each within 1e-4·|v| of a plane)`,
    );
  }
}

/**
 * The body of an example's `import.meta.main`: verify, then exit 0 within tolerance, 1 above
 * it, 2 on a user error (one line on stderr).
 *
 * @param o as for `verifyExample`
 * @returns never: the process exits
 * @example
 * ```ts ignore
 * import { mainExample } from "./_verify.ts";
 * if (import.meta.main) await mainExample({ name: "ring", pattern, shape });
 * ```
 */
export function mainExample(o: VerifyOptions): Promise<never> {
  return runMain(async () => {
    const { errorO, errorLse } = await verifyExample(o);
    const ok = errorO <= TOLERANCE && errorLse <= TOLERANCE;
    console.log(ok ? `ok (tolerance ${TOLERANCE})` : `FAILED: above tolerance ${TOLERANCE}`);
    return ok ? 0 : EXIT_FAILURE;
  });
}
