/**
 * Gradient goldens: every case of tests/golden/manifest.json with gradient files (the small
 * ones, `GRADIENT_ELEMENTS`) runs forward and backward on the adapter with the stored dO, and
 * its dQ, dK, dV (and dgates) must match the float64 reference's stored gradients within 1e-4
 * of the largest (times the scores' growth for large-input cases). hashBucket cases whose GPU
 * codes differ from the stored ones, where a projection is within rounding of a plane, are
 * checked against the reference on the GPU's codes instead, as the output goldens are, and
 * select cases whose kept blocks differ by a float tie on the GPU's blocks. A software adapter
 * runs a few of them (SOFTWARE_CASES), the serving, linear, select and MLA cases among them
 * (MLA's only on lavapipe: _software_gl.ts).
 *
 * Serving cases (DESIGN §1: keys past the queries at the default or a given offset, a value
 * head dim of its own, packed sequences) run at their offset or lengths; in float16, where the
 * adapter has shader-f16, they and the select cases match the same goldens within 1e-2 of the
 * largest gradient.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { AttentionShape } from "../../compiler/mod.ts";
import { readNpyFile } from "../../cli/npy.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import {
  hashCodeMismatches,
  referenceGradients,
  selectionDisagreements,
} from "../../runtime/reference/mod.ts";
import { parsePattern } from "../../dsl/schema.ts";
import { isSoftwareAdapter } from "../../bench/measure.ts";
import { skippedOnSoftwareGl } from "./_software_gl.ts";
import { gradientError, type GradientSet } from "../../cli/_common.ts";

interface GoldenCase {
  name: string;
  pattern: unknown;
  shape: AttentionShape;
  files: Record<string, string>;
  magnitude?: number;
  hashKeys?: string[];
  /** select cases: the branch of each file `sel{i}` (the reference's kept blocks). */
  selectBranches?: number[];
  queryOffset?: number;
  seqLens?: number[];
  kvSeqLens?: number[];
}

const dir = fileURLToPath(new URL("../golden/", import.meta.url));
const manifest: { cases: GoldenCase[] } = JSON.parse(
  await Deno.readTextFile(`${dir}manifest.json`),
);

const rt = await createRuntime();
addEventListener("unload", () => rt.destroy());

/**
 * On a software adapter (CI), a few cases of different kinds and the serving ones: llvmpipe
 * compiles every case's forward and backward kernels afresh, 5 to 15 s each with a cold shader
 * cache. A GPU runs all.
 */
const SOFTWARE_CASES = new Set([
  "gqa_union_lowrank_n61",
  "mqa_batch2_causal_hash_n64",
  "linear_favor_causal_gqa_n80",
  "gated_window_linear_elu1_causal_n48",
  "serving_chunk_window_lowrank_gqa_n70",
  "serving_offset_window_stride_n61",
  "serving_decode_causal_mqa_n45",
  "serving_gated_gqa_dv24_n48",
  "serving_packed_window_global_n45",
  "mla_causal_mqa_d192_dv128_n10",
  "mla_decode_window_stride_mqa_d192_dv128_n40",
  "gated_nsa_three_branches_n32",
]);
const all = manifest.cases.filter((c) => c.files.dq);
const cases = isSoftwareAdapter(rt.info)
  ? all.filter((c) => SOFTWARE_CASES.has(c.name) && !skippedOnSoftwareGl(c.shape, rt.info))
  : all;
/** WEFT_GOLDEN=part runs only the cases whose names contain it (as golden_test.ts does). */
const only = Deno.env.get("WEFT_GOLDEN");
const chosen = (c: GoldenCase) => !only || c.name.includes(only);

/** Keys past the queries, a value head dim of its own, or packed sequences (DESIGN §1). */
function isServing(c: GoldenCase): boolean {
  return c.shape.kvSeqLen !== undefined || c.shape.valueDim !== undefined ||
    c.queryOffset !== undefined || c.seqLens !== undefined;
}

/**
 * Runs a case forward and backward in `dtype` with the stored inputs and dO.
 * @returns the worst error against the goldens (or the reference on the GPU's hash codes)
 *   and the largest golden gradient
 */
async function gradientErrorOf(c: GoldenCase, dtype: "f32" | "f16") {
  const load = async (key: string) =>
    c.files[key] ? await readNpyFile(dir + c.files[key]) : undefined;
  const [q, k, v, gates, dO, dq, dk, dv, dgates] = await Promise.all(
    ["q", "k", "v", "gates", "do", "dq", "dk", "dv", "dgates"].map(load),
  );
  const f32 = (t?: { data: ArrayLike<number> }) => t?.data as Float32Array;
  // Serving cases: where the queries sit among the keys, or the packed sequences' lengths.
  const serving = { queryOffset: c.queryOffset, seqLens: c.seqLens, kvSeqLens: c.kvSeqLens };
  const compiled = rt.compile(c.pattern, {
    shape: c.shape,
    dtype,
    backward: true,
    gatesPerPosition: gates?.shape.length === 4,
    queryOffset: c.queryOffset,
    packed: c.seqLens !== undefined,
  });
  const out = await rt.run(compiled, {
    q: f32(q),
    k: f32(k),
    v: f32(v),
    dO: f32(dO),
    gates: f32(gates),
    seqLens: c.seqLens,
    kvSeqLens: c.kvSeqLens,
  });
  let want: GradientSet = { dq: f32(dq), dk: f32(dk), dv: f32(dv), dgates: f32(dgates) };
  if (c.hashKeys && out.hashCodes) {
    const pattern = parsePattern(c.pattern);
    const stored = await Promise.all(
      c.hashKeys.map((_, i) => Promise.all([load(`hashq${i}`), load(`hashk${i}`)])),
    );
    const same = c.hashKeys.every((key, i) => {
      const gpu = out.hashCodes!.get(key)!;
      const [sq, sk] = stored[i];
      return gpu.q.every((x, j) => x === sq!.data[j]) &&
        gpu.k.every((x, j) => x === sk!.data[j]);
    });
    if (!same) {
      const bad = hashCodeMismatches(pattern, c.shape, f32(q), f32(k), out.hashCodes)
        .reduce((n, m) => n + m.queries + m.keys, 0);
      assert.equal(bad, 0, "GPU codes contradict clearly signed projections");
      want = referenceGradients({
        pattern,
        shape: c.shape,
        ...serving,
        q: f32(q),
        k: f32(k),
        v: f32(v),
        dO: f32(dO),
        gates: gates && { data: f32(gates), shape: gates.shape },
        hashCodes: out.hashCodes,
      });
    }
  }
  // select: where the GPU kept other blocks than the reference (a float tie, which
  // selectionDisagreements allows), the gradients are the reference's on the GPU's blocks.
  if (c.selectBranches && out.selectedBlocks) {
    const pattern = parsePattern(c.pattern);
    const stored = await Promise.all(c.selectBranches.map((_, i) => load(`sel${i}`)));
    const same = out.selectedBlocks.every((s, i) =>
      s.chosen.every((x, j) => x === stored[i]!.data[j])
    );
    if (!same) {
      const seen = (x: Float32Array) => dtype === "f16" ? Float16Array.from(x) : x;
      const bad = selectionDisagreements(
        pattern,
        c.shape,
        seen(f32(q)),
        seen(f32(k)),
        out.selectedBlocks,
      ).reduce((n, d) => n + d.positions, 0);
      assert.equal(bad, 0, "GPU kept blocks contradict the float64 importances");
      want = referenceGradients({
        pattern,
        shape: c.shape,
        q: f32(q),
        k: f32(k),
        v: f32(v),
        dO: f32(dO),
        gates: gates && { data: f32(gates), shape: gates.shape },
        selectedBlocks: out.selectedBlocks,
      });
    }
  }
  // A missing gradient, a length mismatch or a NaN is an infinite error.
  return gradientError(out.gradients!, want);
}

Deno.test("gradient goldens: the backward pass matches the stored reference gradients", async (t) => {
  assert.ok(all.length >= 20, `${all.length} cases with gradient files`);
  // Every named software case exists in the manifest; the GL path leaves MLA's to lavapipe.
  const named = all.filter((c) => SOFTWARE_CASES.has(c.name));
  assert.equal(named.length, SOFTWARE_CASES.size);
  const expected = isSoftwareAdapter(rt.info)
    ? named.filter((c) => !skippedOnSoftwareGl(c.shape, rt.info)).length
    : all.length;
  assert.equal(cases.length, expected);
  for (const c of cases.filter(chosen)) {
    await t.step(c.name, async () => {
      const { worst, largest } = await gradientErrorOf(c, "f32");
      const tolerance = 1e-4 * Math.max(1, (c.magnitude ?? 1) ** 2);
      assert.ok(
        worst <= tolerance * Math.max(largest, 1e-6),
        `max |GPU - golden| ${worst}, largest ${largest}`,
      );
    });
  }
});

// Float16 needs the adapter's shader-f16 (llvmpipe's GL path has none): inputs and dO rounded
// to float16 on upload, sums in float32, within 1e-2 of the largest golden gradient.
Deno.test({
  name: "gradient goldens in float16: serving and select cases within 1e-2 of the largest",
  ignore: !rt.info.shaderF16,
  fn: async (t) => {
    const serving = all.filter(isServing);
    assert.ok(serving.length >= 5, `${serving.length} serving cases with gradient files`);
    // And the select cases: their backward kernels are select's own.
    for (const c of [...serving, ...all.filter((c) => c.selectBranches)].filter(chosen)) {
      await t.step(c.name, async () => {
        const { worst, largest } = await gradientErrorOf(c, "f16");
        assert.ok(worst <= 1e-2 * largest, `max |GPU - golden| ${worst}, largest ${largest}`);
      });
    }
  },
});
