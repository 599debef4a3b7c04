/**
 * Golden-output kernel tests: every case of tests/golden/manifest.json runs through the
 * compiled kernels on the WebGPU adapter (llvmpipe in CI) and must match the float64
 * reference's stored output within DESIGN §4's float32 tolerance. Each case runs with the tile
 * shape the runtime picks for the device (8x8 on llvmpipe, so small N still crosses many tiles,
 * partial tiles and residue-class seams); a few also run with 16x16 tiles. Both shapes split
 * each row over several invocations, as the GPU shapes do. The CPU schedule tests cover tile
 * shapes exhaustively; each extra kernel costs seconds of llvmpipe compile time in CI.
 *
 * Serving cases (DESIGN §1) run at their query offset or with their packed sequences' lengths.
 * A decoding call (a step or a short chunk) also runs on the kernel the runtime does not pick
 * by default, where that one compiles quickly (DECODE_OTHER). A case marked `paged` also runs
 * with its K and V cut into pages under a seeded shuffled block table, NaN in every row the
 * table does not name, and must give the contiguous call's O and LSE bit for bit.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { AttentionShape } from "../../compiler/mod.ts";
import { readNpyFile } from "../../cli/npy.ts";
import { createRuntime, type RuntimeCompileOptions } from "../../runtime/runtime.ts";
import type { AttentionInputs, AttentionOutputs } from "../../runtime/attention_call.ts";
import { sequenceSizes } from "../../core/shape.ts";
import { isSoftwareAdapter } from "../../bench/measure.ts";
import { skippedOnSoftwareGl } from "./_software_gl.ts";
import { shuffledLayout, toPages } from "./_paged_inputs.ts";
import {
  hashCodeMismatches,
  reference,
  selectionDisagreements,
} from "../../runtime/reference/mod.ts";
import type { HashCodes } from "../../dsl/hash_bucket.ts";
import { parsePattern } from "../../dsl/schema.ts";

/** A second tile shape: two keys and more rows per invocation than the device shape. */
const SECOND_TILES = { tileQ: 16, tileK: 16 };
const SMALL_TILE_CASES = new Set([
  "hash_b16_r2_n200",
  "gated_hash_uniform_window_n130",
  "stride_7_n130",
  "union_ring8_stride16_n500",
  "bigbird_n257",
  "intersect_random_causal_n130",
  "gated_runtime_position_n64",
  "mqa_union_n130",
  "pred_blocks_union_stride7_n300",
  "score_alibi_causal_n200",
]);
const dir = fileURLToPath(new URL("../golden/", import.meta.url));

interface GoldenCase {
  name: string;
  pattern: unknown;
  shape: AttentionShape;
  files: Record<string, string>;
  /** Fuzz regressions with large inputs: the tolerance grows with the scores (magnitude²). */
  magnitude?: number;
  /** hashBucket cases: the code keys of files `hashq{i}` / `hashk{i}` (the reference's codes). */
  hashKeys?: string[];
  /** select cases: the branch of each file `sel{i}` (the reference's kept blocks). */
  selectBranches?: number[];
  /** Query row 0's key position; default `Nk - Nq`. */
  queryOffset?: number;
  /** Packed sequences' query rows (compiled with `packed: true`) and key rows. */
  seqLens?: number[];
  kvSeqLens?: number[];
  /** Also run with K and V in pages of this size. */
  paged?: { pageSize: number };
  seed: number;
}

const manifest: { cases: GoldenCase[] } = JSON.parse(
  await Deno.readTextFile(`${dir}manifest.json`),
);

/** Largest |a - b| over finite entries; infinities must agree exactly. */
export function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, "length");
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(a)) return Infinity;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(a - e));
  }
  return worst;
}

const rt = await createRuntime();
addEventListener("unload", () => rt.destroy());

/** One run of a case: a tile shape, the kernel a decoding step takes, or K and V in pages. */
interface Variant {
  label: string;
  tiles?: typeof SECOND_TILES;
  /** Set: the decode kernel on (true) or off, the other of the runtime's default. */
  decode?: boolean;
  paged?: { pageSize: number };
}

/**
 * A decoding call's forward (at most 64 queries among longer keys) runs on the decode kernel
 * by default where loops unroll (GPUs) and on the attention kernel elsewhere (DESIGN §7); the
 * other one runs too, except a decode kernel on a software adapter: llvmpipe takes 40-55 s
 * over each one.
 */
const DECODE_OTHER = rt.info.isFallback && isSoftwareAdapter(rt.info)
  ? undefined
  : rt.info.isFallback;

function variantsOf(c: GoldenCase): Variant[] {
  const variants: Variant[] = [{ label: "device tiles" }];
  if (SMALL_TILE_CASES.has(c.name)) variants.push({ label: "tiles 16x16", tiles: SECOND_TILES });
  if (DECODE_OTHER !== undefined && decodes(c)) {
    const label = DECODE_OTHER ? "decode kernel" : "attention kernel";
    variants.push({ label, decode: DECODE_OTHER });
  }
  if (c.paged) variants.push({ label: `pages of ${c.paged.pageSize}`, paged: c.paged });
  return variants;
}

/** Whether some component of a case's forward takes the decode kernel when it is on. */
function decodes(c: GoldenCase): boolean {
  const { nq, nk } = sequenceSizes(c.shape);
  if (nq === nk || c.seqLens) return false;
  const options = { shape: c.shape, queryOffset: c.queryOffset, decode: true };
  return rt.compile(c.pattern, options).kernelPlan.kernels.some((k) => k.kind === "decode");
}

/** Runs every golden case in `dtype` and checks O and LSE within `tolerance`. */
async function checkGolden(t: Deno.TestContext, dtype: "f32" | "f16", tolerance: number) {
  // WEFT_GOLDEN=text runs only the cases whose name holds it (a quicker loop while debugging).
  const only = Deno.env.get("WEFT_GOLDEN");
  const chosen = (c: GoldenCase) =>
    (!only || c.name.includes(only)) && !skippedOnSoftwareGl(c.shape, rt.info);
  for (const c of manifest.cases.filter(chosen)) {
    const load = async (key: string) =>
      c.files[key] ? (await readNpyFile(dir + c.files[key])) : undefined;
    const [q, k, v, o, lse, gates] = await Promise.all(
      ["q", "k", "v", "o", "lse", "gates"].map(load),
    );
    // Serving cases: where the queries sit among the keys, or the packed sequences' lengths.
    const serving = { queryOffset: c.queryOffset, seqLens: c.seqLens, kvSeqLens: c.kvSeqLens };
    for (const variant of variantsOf(c)) {
      const label = `${c.name} ${dtype} (${variant.label})`;
      await t.step(label, async () => {
        const options = {
          shape: c.shape,
          dtype,
          tiles: variant.tiles,
          gatesPerPosition: gates?.shape.length === 4,
          queryOffset: c.queryOffset,
          packed: c.seqLens !== undefined,
          decode: variant.decode,
        };
        const compiled = rt.compile(c.pattern, options);
        if (variant.decode !== undefined) {
          const decodes = compiled.kernelPlan.kernels.some((k) => k.kind === "decode");
          assert.equal(decodes, variant.decode, "a decode kernel in the plan");
        }
        const inputs = {
          q: q!.data as Float32Array,
          k: k!.data as Float32Array,
          v: v!.data as Float32Array,
          gates: gates?.data as Float32Array | undefined,
          seqLens: c.seqLens,
          kvSeqLens: c.kvSeqLens,
        };
        let out: AttentionOutputs = await rt.run(compiled, inputs);
        if (variant.paged) out = await checkPaged(c, options, inputs, variant.paged, out);
        // hashBucket: the GPU's codes must agree with the reference's wherever the sign is
        // clear; where a near-zero projection went the other way, the reference is rerun on
        // the GPU's codes, so O is always checked on the allowed set the kernel used.
        let expected = { o: o!.data, lse: lse!.data };
        if (c.hashKeys) {
          const same = await checkHashCodes(c, dtype, out.hashCodes!, q!.data, k!.data);
          if (!same) {
            expected = reference({
              pattern: parsePattern(c.pattern),
              shape: c.shape,
              ...serving,
              q: q!.data,
              k: k!.data,
              v: v!.data,
              hashCodes: out.hashCodes,
            });
          }
        }
        // select: the GPU's kept blocks must be the reference's up to float ties; where a
        // near tie went the other way, O is checked on the blocks the kernel kept.
        if (c.selectBranches && !(await checkSelection(c, dtype, out, q!.data, k!.data))) {
          expected = reference({
            pattern: parsePattern(c.pattern),
            shape: c.shape,
            q: q!.data,
            k: k!.data,
            v: v!.data,
            gates: gates && { data: gates.data, shape: gates.shape },
            selectedBlocks: out.selectedBlocks,
          });
        }
        const errO = maxAbsError(out.o, expected.o);
        const errLse = maxAbsError(out.lse, expected.lse);
        const allowed = tolerance * Math.max(1, (c.magnitude ?? 1) ** 2);
        assert.ok(errO <= allowed, `${label}: max |O - O_ref| = ${errO}`);
        assert.ok(errLse <= allowed, `${label}: max |LSE - LSE_ref| = ${errLse}`);
      });
    }
  }
}

/**
 * Runs a case with its K and V laid into a pool of pages by a shuffled block table (spare
 * pages, table padding and rows past Nk hold NaN) and checks the same bits as the contiguous
 * run, O and LSE (DESIGN §1).
 * @returns the paged run's output
 */
async function checkPaged(
  c: GoldenCase,
  options: RuntimeCompileOptions,
  inputs: AttentionInputs & { k: Float32Array; v: Float32Array },
  paged: { pageSize: number },
  contiguous: AttentionOutputs,
): Promise<AttentionOutputs> {
  const layout = shuffledLayout(c.shape, { ...paged, spare: 3, padding: 2, seed: c.seed });
  const { d, dv } = sequenceSizes(c.shape);
  const compiled = rt.compile(c.pattern, {
    ...options,
    paged: { pageSize: layout.pageSize, pages: layout.pages },
  });
  const out = await rt.run(compiled, {
    ...inputs,
    k: toPages(inputs.k, c.shape, layout, d),
    v: toPages(inputs.v, c.shape, layout, dv),
    blockTable: layout.blockTable,
  });
  for (const part of ["o", "lse"] as const) {
    const [a, b] = [contiguous[part], out[part]];
    assert.equal(b.length, a.length, `paged ${part}: length`);
    const i = Array.from(a).findIndex((x, j) => !Object.is(x, b[j]));
    assert.equal(i, -1, `paged ${part}[${i}] = ${b[i]}, contiguous ${a[i]}`);
  }
  return out;
}

/**
 * Checks a run's hashBucket codes against the golden (reference) codes: every disagreement
 * must be a projection within 1e-4·|v| of zero on the inputs the GPU saw (DESIGN §2).
 * @returns whether they are identical (then the golden O applies as it is)
 */
async function checkHashCodes(
  c: GoldenCase,
  dtype: "f32" | "f16",
  gpu: HashCodes,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
): Promise<boolean> {
  const seen = (x: ArrayLike<number>) => dtype === "f16" ? Float16Array.from(x) : x;
  const pattern = parsePattern(c.pattern);
  assert.deepEqual(
    hashCodeMismatches(pattern, c.shape, seen(q), seen(k), gpu),
    c.hashKeys!.map((key) => ({ key, queries: 0, keys: 0 })),
    `${c.name}: codes that disagree with clearly signed projections, per code key`,
  );
  let same = true;
  for (const [i, key] of c.hashKeys!.entries()) {
    const codes = gpu.get(key)!;
    const [goldenQ, goldenK] = await Promise.all(
      [`hashq${i}`, `hashk${i}`].map((f) => readNpyFile(dir + c.files[f])),
    );
    assert.equal(goldenQ.shape[0], codes.rounds, `${c.name}: rounds of ${key}`);
    const equal = (a: ArrayLike<number>, b: ArrayLike<number>) =>
      a.length === b.length && Array.from(a).every((x, j) => x === b[j]);
    same &&= equal(codes.q, goldenQ.data) && equal(codes.k, goldenK.data);
  }
  return same;
}

/**
 * Checks a run's kept blocks against the golden (reference) ones: any difference must be a
 * float tie of the importances on the inputs the GPU saw (`selectionDisagreements`).
 * @returns whether they are identical (then the golden O applies as it is)
 */
async function checkSelection(
  c: GoldenCase,
  dtype: "f32" | "f16",
  out: AttentionOutputs,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
): Promise<boolean> {
  const seen = (x: ArrayLike<number>) => dtype === "f16" ? Float16Array.from(x) : x;
  const gpu = out.selectedBlocks ?? [];
  assert.deepEqual(gpu.map((s) => s.branch), c.selectBranches, `${c.name}: select branches`);
  for (const d of selectionDisagreements(parsePattern(c.pattern), c.shape, seen(q), seen(k), gpu)) {
    assert.equal(d.positions, 0, `${c.name}: select branch ${d.branch}: ${d.first}`);
  }
  const stored = await Promise.all(
    c.selectBranches!.map((_, i) => readNpyFile(dir + c.files[`sel${i}`])),
  );
  return gpu.every((s, i) =>
    s.chosen.length === stored[i].data.length &&
    s.chosen.every((x, j) => x === stored[i].data[j])
  );
}

Deno.test("golden kernels match the float64 reference (float32)", async (t) => {
  await checkGolden(t, "f32", 1e-4);
});

// Float16 needs the adapter's shader-f16 (the H100 has it; llvmpipe's GL path does not).
Deno.test({
  name: "golden kernels match the float64 reference (float16 inputs and O)",
  ignore: !rt.info.shaderF16,
  fn: async (t) => {
    await checkGolden(t, "f16", 5e-3);
  },
});
