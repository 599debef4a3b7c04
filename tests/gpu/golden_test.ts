/**
 * Golden-output kernel tests: every case of tests/golden/manifest.json runs through the
 * compiled kernels on the WebGPU adapter (llvmpipe in CI) and must match the float64
 * reference's stored output within DESIGN §4's float32 tolerance. Each case runs with the tile
 * shape the runtime picks for the device (8x8 on llvmpipe, so small N still crosses many tiles,
 * partial tiles and residue-class seams); a few also run with 16x16 tiles. Both shapes split
 * each row over several invocations, as the GPU shapes do. The CPU schedule tests cover tile
 * shapes exhaustively; each extra kernel costs seconds of llvmpipe compile time in CI.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { AttentionShape } from "../../compiler/mod.ts";
import { readNpyFile } from "../../cli/npy.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { hashCodeMismatches, reference } from "../../runtime/reference/mod.ts";
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

/** Runs every golden case in `dtype` and checks O and LSE within `tolerance`. */
async function checkGolden(t: Deno.TestContext, dtype: "f32" | "f16", tolerance: number) {
  // WEFT_GOLDEN=text runs only the cases whose name holds it (a quicker loop while debugging).
  const only = Deno.env.get("WEFT_GOLDEN");
  for (const c of manifest.cases.filter((c) => !only || c.name.includes(only))) {
    const load = async (key: string) =>
      c.files[key] ? (await readNpyFile(dir + c.files[key])) : undefined;
    const [q, k, v, o, lse, gates] = await Promise.all(
      ["q", "k", "v", "o", "lse", "gates"].map(load),
    );
    const shapes = SMALL_TILE_CASES.has(c.name) ? [undefined, SECOND_TILES] : [undefined];
    for (const tiles of shapes) {
      const label = `${c.name} ${dtype} (${tiles ? "tiles 16x16" : "device tiles"})`;
      await t.step(label, async () => {
        const compiled = rt.compile(c.pattern, {
          shape: c.shape,
          dtype,
          tiles,
          gatesPerPosition: gates?.shape.length === 4,
        });
        const out = await rt.run(compiled, {
          q: q!.data as Float32Array,
          k: k!.data as Float32Array,
          v: v!.data as Float32Array,
          gates: gates?.data as Float32Array | undefined,
        });
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
              q: q!.data,
              k: k!.data,
              v: v!.data,
              hashCodes: out.hashCodes,
            });
          }
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
