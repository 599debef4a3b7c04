/**
 * Serving shapes through the compiled kernels (DESIGN §1): queries that are some of the key
 * positions (a prefill chunk, a decoding step) and a value head dim of its own, against the
 * float64 reference, one test per case of serving_shape_cases.json: O within 1e-4, LSE within
 * 1e-4 of max(1, |LSE|), empty rows' -Infinity exactly, hashBucket codes judged first. A
 * decoding step dispatches one query tile per head; a call past one binding runs in parts of
 * whole heads and reassembles O, LSE and the hashBucket codes at Nq, Nk and Dv; the runtime
 * refuses tensors whose size disagrees with Nk or Dv, naming them; float16 runs where the adapter
 * has shader-f16 (the compiler tests check that every case compiles in float16).
 */
import assert from "node:assert/strict";
import type { AttentionShape } from "../../compiler/mod.ts";
import { ShapeError } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { hashCodeMismatches, reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { maxAbsError, maxLseError } from "../../cli/_common.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

/** One row of serving_shape_cases.json; every case has D = 16. */
interface ServingCase {
  name: string;
  pattern: Pattern;
  shape: Omit<AttentionShape, "headDim">;
  queryOffset?: number;
  keySplits?: number;
  gates?: "position";
}

const HEAD_DIM = 16;
const { cases }: { cases: ServingCase[] } = JSON.parse(
  await Deno.readTextFile(new URL("serving_shape_cases.json", import.meta.url)),
);

/** Seeded Q, K, V (and per-position gates) at a case's shape, rounded as the dtype rounds. */
function inputsOf(c: ServingCase, shape: AttentionShape, dtype: "f32" | "f16") {
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const round = (x: Float32Array) => dtype === "f16" ? Float16Array.from(x) : x;
  const branches = c.pattern.kind === "gated" ? c.pattern.branches.length : 0;
  const gateShape = [B, Hq, nq, branches];
  return {
    q: round(normalTensor(B * Hq * nq * d, 1)),
    k: round(normalTensor(B * Hkv * nk * d, 2)),
    v: round(normalTensor(B * Hkv * nk * dv, 3)),
    gates: c.gates
      ? {
        data: Float32Array.from(normalTensor(B * Hq * nq * branches, 4), (x) => 0.5 + 0.2 * x),
        shape: gateShape,
      }
      : undefined,
  };
}

/** Runs a case on the kernels and against the reference; returns the errors and the passes. */
async function servingError(c: ServingCase, dtype: "f32" | "f16") {
  const shape = { ...c.shape, headDim: HEAD_DIM };
  const compiled = rt.compile(c.pattern, {
    shape,
    dtype,
    queryOffset: c.queryOffset,
    keySplits: c.keySplits,
    gatesPerPosition: c.gates === "position",
  });
  const x = inputsOf(c, shape, dtype);
  const got = await rt.run(compiled, { q: x.q, k: x.k, v: x.v, gates: x.gates?.data });
  // hashBucket codes first: they must agree with float64 wherever a projection is clearly signed.
  if (got.hashCodes) {
    for (const m of hashCodeMismatches(c.pattern, shape, x.q, x.k, got.hashCodes)) {
      assert.deepEqual([m.queries, m.keys], [0, 0], `hashBucket codes of ${m.key}`);
    }
  }
  const want = reference({
    pattern: c.pattern,
    shape,
    queryOffset: c.queryOffset,
    ...x,
    hashCodes: got.hashCodes,
  });
  const { nq, dv } = sequenceSizes(shape);
  assert.equal(got.o.length, shape.batch * shape.headsQ * nq * dv, "O is [B, Hq, Nq, Dv]");
  return {
    o: maxAbsError(got.o, want.o),
    lse: maxLseError(got.lse, want.lse),
    attention: compiled.kernelPlan.kernels.filter((k) => k.kind === "attention"),
  };
}

for (const c of cases) {
  Deno.test(`serving shapes on the kernels: ${c.name}`, async () => {
    const err = await servingError(c, "f32");
    assert.ok(err.o <= 1e-4, `max |O - reference| ${err.o}`);
    assert.ok(err.lse <= 1e-4, `max LSE error relative to max(1, |LSE|) ${err.lse}`);
    const heads = c.shape.batch * c.shape.headsQ;
    for (const k of err.attention) {
      assert.equal(k.workgroups[1], heads, `${k.label}: one row of workgroups per head`);
      if (c.shape.seqLen === 1) {
        // A decoding step runs one query tile (times its key chunks), whatever Nk is.
        assert.deepEqual(k.queryTiles?.length, 1, `${k.label}: one query tile`);
        assert.equal(k.workgroups[0], k.split?.chunks ?? 1, `${k.label}: its dispatch`);
      }
    }
  });
}

Deno.test({
  name: "serving shapes on the kernels in float16 (within 5e-3 of the float16 inputs' reference)",
  ignore: !rt.info.shaderF16,
  fn: async () => {
    for (const c of cases.filter((c) => !/hashBucket/.test(c.name))) {
      const err = await servingError(c, "f16");
      assert.ok(err.o <= 5e-3, `${c.name}: max |O - reference| ${err.o}`);
      assert.ok(err.lse <= 5e-3, `${c.name}: max LSE error ${err.lse}`);
    }
  },
});

Deno.test("serving shapes: the runtime refuses tensors that disagree with Nk or Dv", async () => {
  const shape = {
    batch: 1,
    headsQ: 2,
    headsKV: 1,
    seqLen: 3,
    headDim: HEAD_DIM,
    kvSeqLen: 37,
    valueDim: 8,
  };
  const compiled = rt.compile({ kind: "causal" }, { shape });
  const q = normalTensor(2 * 3 * 16, 1), k = normalTensor(37 * 16, 2);
  await assert.rejects(
    () => rt.run(compiled, { q, k, v: normalTensor(37 * 16, 3) }),
    (e) =>
      e instanceof ShapeError &&
      /v has 592 elements, expected B\*Hkv\*Nk\*Dv = 296/.test(e.message),
  );
  await assert.rejects(
    () => rt.run(compiled, { q, k: normalTensor(3 * 16, 2), v: normalTensor(37 * 8, 3) }),
    (e) =>
      e instanceof ShapeError && /k has 48 elements, expected B\*Hkv\*Nk\*D = 592/.test(e.message),
  );
  await assert.rejects(
    () => rt.run(compiled, { q: normalTensor(2 * 37 * 16, 1), k, v: normalTensor(37 * 8, 3) }),
    (e) =>
      e instanceof ShapeError && /q has 1184 elements, expected B\*Hq\*Nq\*D = 96/.test(e.message),
  );
});

Deno.test("serving shapes run in parts of whole heads past one binding", async () => {
  // 4000 bytes hold one key/value head of one batch: four parts, reassembled at Nq, Nk and Dv.
  const parts = await createRuntime({ autotune: false, maxBindingBytes: 4000 });
  try {
    const shape = {
      batch: 2,
      headsQ: 4,
      headsKV: 2,
      seqLen: 5,
      headDim: HEAD_DIM,
      kvSeqLen: 37,
      valueDim: 8,
    };
    const pattern: Pattern = { kind: "hashBucket", buckets: 4, rounds: 1, seed: 2 };
    const compiled = parts.compile(pattern, { shape, queryOffset: 20 });
    assert.deepEqual(compiled.split?.part, { ...shape, batch: 1, headsQ: 2, headsKV: 1 });
    const q = normalTensor(2 * 4 * 5 * 16, 1), k = normalTensor(2 * 2 * 37 * 16, 2);
    const v = normalTensor(2 * 2 * 37 * 8, 3);
    const got = await parts.run(compiled, { q, k, v });
    const want = reference({ pattern, shape, q, k, v, queryOffset: 20, hashCodes: got.hashCodes });
    for (const m of hashCodeMismatches(pattern, shape, q, k, got.hashCodes!)) {
      assert.deepEqual([m.queries, m.keys], [0, 0], `hashBucket codes of ${m.key}`);
    }
    assert.ok(
      maxAbsError(got.o, want.o) <= 1e-4,
      `max |O - reference| ${maxAbsError(got.o, want.o)}`,
    );
    assert.ok(maxLseError(got.lse, want.lse) <= 1e-4, "LSE");
  } finally {
    parts.destroy();
  }
});
