/**
 * `select` (NSA's selected blocks, DESIGN §2) on the device: the kept blocks the GPU returns
 * must agree with the float64 importances up to float ties (`selectionDisagreements`), and O
 * and LSE must match the reference computed from those blocks: float32 within 1e-4, float16
 * (where the adapter has shader-f16) within 5e-3 of the reference on the float16-rounded
 * inputs. Sizes stay small: each case compiles three kernels on llvmpipe.
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { PlanError, ShapeError } from "../../core/errors.ts";
import type { CompiledAttention, SelectKernel } from "../../compiler/mod.ts";
import { selectChoiceTile, type SelectLogits } from "../../compiler/select_attention.ts";
import { withSelectChoice } from "../../compiler/select_forms.ts";
import { reference, selectionDisagreements } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

const causalSelect = (s: number, n: number, initial = 0, local = 0): Pattern => ({
  kind: "intersect",
  of: [{ kind: "causal" }, { kind: "select", blockSize: s, blocks: n, initial, local }],
});

const CASES: [string, Pattern, AttentionShape][] = [
  [
    "causal, forced blocks, GQA, a short last block",
    causalSelect(8, 3, 1, 1),
    { batch: 1, headsQ: 4, headsKV: 2, seqLen: 45, headDim: 16 },
  ],
  [
    "dense, MHA, two batches, blocks past the candidates",
    { kind: "select", blockSize: 5, blocks: 9 },
    { batch: 2, headsQ: 2, headsKV: 2, seqLen: 33, headDim: 8 },
  ],
  [
    "gated with a window (NSA's form), MQA",
    {
      kind: "gated",
      branches: [causalSelect(4, 2, 1, 1), { kind: "window", left: 6, right: 0 }],
      gates: [0.6, 0.4],
    },
    { batch: 1, headsQ: 3, headsKV: 1, seqLen: 29, headDim: 8 },
  ],
];

/** Largest error of O and LSE (LSE relative to its size; -inf must match exactly). */
function errors(
  got: { o: ArrayLike<number>; lse: ArrayLike<number> },
  want: { o: Float64Array; lse: Float64Array },
) {
  let o = 0, lse = 0;
  for (let i = 0; i < want.o.length; i++) o = Math.max(o, Math.abs(Number(got.o[i]) - want.o[i]));
  for (let i = 0; i < want.lse.length; i++) {
    const w = want.lse[i], g = got.lse[i];
    const e = w === -Infinity ? (g === -Infinity ? 0 : Infinity) : Math.abs(g - w);
    lse = Math.max(lse, e / Math.max(1, Math.abs(w)));
  }
  return { o, lse };
}

/**
 * The call with its choice kernels in another form than the planner's: the logits
 * `recomputed`, which it takes only where the held form's logits do not fit, as for larger N
 * than tests run; or held with the importances kept in the `workgroup`, which it takes where
 * the device has no subgroups or the importance buffer would not bind.
 */
function otherForm(
  compiled: CompiledAttention,
  unroll: boolean,
  logits: SelectLogits["kind"],
): CompiledAttention {
  const k = compiled.kernelPlan.kernels.find((k) => k.kind === "selectBlocks") as SelectKernel;
  const choice = selectChoiceTile(k.geometry, {
    workgroupBytes: rt.device.limits.maxComputeWorkgroupStorageSize,
    unroll,
    subgroups: rt.info.subgroups,
    logits,
  })!;
  assert.equal(choice.importance, "workgroup");
  return withSelectChoice(compiled, choice);
}

async function check(
  pattern: Pattern,
  shape: AttentionShape,
  dtype: "f32" | "f16",
  options: {
    unroll?: boolean;
    form?: RegExp;
    twice?: boolean;
    other?: SelectLogits["kind"];
  } = {},
) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const round = (x: Float32Array) => dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
  const q = round(normalTensor(B * Hq * N * D, 1)), k = round(normalTensor(B * Hkv * N * D, 2));
  const v = round(normalTensor(B * Hkv * N * D, 3));
  const planned = rt.compile(pattern, { shape, dtype, unroll: options.unroll });
  const compiled = options.other
    ? otherForm(planned, options.unroll ?? !rt.info.isFallback, options.other)
    : planned;
  if (options.form) {
    const labels = compiled.kernelPlan.kernels.map((k) => k.label);
    assert.ok(labels.some((l) => options.form!.test(l)), labels.join("; "));
  }
  const out = await rt.run(compiled, { q, k, v });
  if (options.twice) {
    const again = await rt.run(compiled, { q, k, v });
    assert.deepEqual(again.selectedBlocks, out.selectedBlocks, "kept blocks differ between runs");
    assert.deepEqual(again.o, out.o, "O differs between runs");
    assert.deepEqual(again.lse, out.lse, "LSE differs between runs");
  }
  assert.ok(out.selectedBlocks?.length, "the kept blocks come back");
  for (const d of selectionDisagreements(pattern, shape, q, k, out.selectedBlocks!)) {
    assert.equal(d.positions, 0, `branch ${d.branch}: ${d.first}`);
  }
  const want = reference({ pattern, shape, q, k, v, selectedBlocks: out.selectedBlocks });
  return errors(out, want);
}

for (const [name, pattern, shape] of CASES) {
  Deno.test(`select on the GPU, float32: ${name}`, async () => {
    const { o, lse } = await check(pattern, shape, "f32", { form: /logits held/ });
    assert.ok(o <= 1e-4 && lse <= 1e-4, `max |O - ref| ${o}, LSE ${lse}`);
  });
}

Deno.test("select in the choice's other forms (workgroup importances): every case", async () => {
  for (const [name, pattern, shape] of CASES) {
    for (const other of ["recomputed", "held"] as const) {
      const { o, lse } = await check(pattern, shape, "f32", { other });
      assert.ok(o <= 1e-4 && lse <= 1e-4, `${name}, ${other}: max |O - ref| ${o}, LSE ${lse}`);
    }
  }
});

Deno.test({
  name: "select on the GPU, float16: every case within 5e-3",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const [name, pattern, shape] of CASES) {
      const { o, lse } = await check(pattern, shape, "f16");
      assert.ok(o <= 5e-3 && lse <= 5e-3, `${name}: max |O - ref| ${o}, LSE ${lse}`);
    }
  },
});

Deno.test({
  // The kernels as a GPU compiles them (unrolled): the choice's tiles of 256 invocations, its
  // logits held and, in a second run, recomputed in chunks of 8 blocks each (several chunks per
  // tile, a part tile at the end), the attention's
  // subgroup form with two keys per group and float16 rows read wide; the bench's eight query
  // heads of D = 64 on one key/value head; two runs give the same bits. llvmpipe compiles these
  // slowly, and has no subgroups.
  name: "select unrolled, the GPU's kernels: float32 within 1e-4, float16 within 5e-3, same bits",
  ignore: !rt.info.subgroups,
  fn: async () => {
    const shape = { batch: 1, headsQ: 8, headsKV: 1, seqLen: 150, headDim: 64 };
    const form = /subgroup lanes/, twice = true;
    const f32 = await check(causalSelect(4, 6, 1, 2), shape, "f32", { unroll: true, form, twice });
    assert.ok(f32.o <= 1e-4 && f32.lse <= 1e-4, `max |O - ref| ${f32.o}, LSE ${f32.lse}`);
    const other = await check(causalSelect(4, 6, 1, 2), shape, "f32", {
      unroll: true,
      twice,
      other: "recomputed",
    });
    assert.ok(other.o <= 1e-4 && other.lse <= 1e-4, `recomputed: ${other.o}, LSE ${other.lse}`);
    if (!rt.info.shaderF16) return;
    const f16 = await check(causalSelect(4, 6, 1, 2), shape, "f16", { unroll: true, form, twice });
    assert.ok(f16.o <= 5e-3 && f16.lse <= 5e-3, `max |O - ref| ${f16.o}, LSE ${f16.lse}`);
  },
});

Deno.test("select: the kept blocks agree with the reference's own on untied data", async () => {
  // Unit-normal data has no near-ties at this size: the GPU's choice is the float64 one.
  const [, pattern, shape] = CASES[0];
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const q = normalTensor(B * Hq * N * D, 1), k = normalTensor(B * Hkv * N * D, 2);
  const v = normalTensor(B * Hkv * N * D, 3);
  const out = await rt.run(rt.compile(pattern, { shape }), { q, k, v });
  const own = reference({ pattern, shape, q, k, v });
  assert.deepEqual(out.selectedBlocks![0].chosen, own.selectedBlocks[0].chosen);
  assert.ok(errors(out, own).o <= 1e-4);
});

/**
 * Asserts the GPU keeps exactly the float64 reference's blocks, with the kernels as a software
 * adapter compiles them and, where the adapter has subgroups, unrolled as a GPU does.
 */
async function keepsTheReferenceBlocks(
  pattern: Pattern,
  shape: AttentionShape,
  inputs: { q: Float32Array; k: Float32Array; v: Float32Array },
) {
  const own = reference({ pattern, shape, ...inputs });
  for (const unroll of rt.info.subgroups ? [false, true] : [false]) {
    const out = await rt.run(rt.compile(pattern, { shape, unroll }), inputs);
    assert.deepEqual(
      out.selectedBlocks![0].chosen,
      own.selectedBlocks[0].chosen,
      `unroll ${unroll}`,
    );
  }
}

Deno.test("select: exact ties go to the lower block, as in the reference", async () => {
  // K = 0 makes every block mean 0: all competing blocks tie at every position, so the kept
  // blocks past the forced ones are the lowest. The picking's tie-break (a subgroup butterfly
  // where the adapter has subgroups; unrolled too there, since llvmpipe compiles that slowly)
  // against the float64 choice.
  const pattern = causalSelect(4, 6, 1, 2);
  const shape = { batch: 1, headsQ: 8, headsKV: 1, seqLen: 150, headDim: 64 };
  const q = normalTensor(8 * 150 * 64, 1), k = new Float32Array(150 * 64);
  const v = normalTensor(150 * 64, 3);
  await keepsTheReferenceBlocks(pattern, shape, { q, k, v });
});

Deno.test("select: one picking lane holding more winners than it caches", async () => {
  // Blocks 0, 32, 64, 96, 128 (one slice of the subgroup pick, whose lanes take blocks
  // l + 32 i or, with smaller subgroups, l + 8 i) have the largest means along Q; every other
  // block's mean is 0, an exact tie. The late positions keep all five, so their slice's lane
  // takes more than the four it caches and rescans; the rest go to the lowest tied blocks.
  const pattern = causalSelect(4, 8, 0, 1);
  const N = 640, D = 8;
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: N, headDim: D };
  const q = new Float32Array(N * D).fill(0.5), k = new Float32Array(N * D);
  for (let row = 0; row < N; row++) {
    const block = Math.floor(row / 4);
    if (block % 32 === 0) k.fill(1 + block / 1000, row * D, (row + 1) * D);
  }
  const v = normalTensor(N * D, 3);
  await keepsTheReferenceBlocks(pattern, shape, { q, k, v });
});

Deno.test("select: calls its kernels do not run are refused, naming the field", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 32, headDim: 8 };
  const p = causalSelect(8, 2);
  const refused = (options: Record<string, unknown>, says: RegExp) =>
    assert.throws(
      () => rt.compile(p, { shape, ...options }),
      (e) => e instanceof ShapeError && says.test(e.message),
    );
  refused({ shape: { ...shape, kvSeqLen: 64 } }, /pattern\.of\[1\] \(select\).*shape\.kvSeqLen/);
  refused({ queryOffset: 0, shape: { ...shape, seqLen: 1, kvSeqLen: 32 } }, /shape\.kvSeqLen/);
  refused({ shape: { ...shape, batch: 1 }, packed: true }, /drop packed/);
  refused({ paged: { pageSize: 8, pages: 4 } }, /drop paged/);
  refused({ shape: { ...shape, valueDim: 4 } }, /drop shape\.valueDim/);
  assert.throws(
    () => rt.compile({ kind: "union", of: [{ kind: "causal" }, p] }, { shape }),
    (e) =>
      e instanceof PlanError && /pattern\.of\[1\]\.of\[1\]: select inside union/.test(e.message),
  );
});
