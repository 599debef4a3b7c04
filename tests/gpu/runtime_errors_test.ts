/**
 * Runtime refusals that happen before any kernel runs: each is a one-line error of the right
 * class, never a silently wrong answer.
 */
import assert from "node:assert/strict";
import { ShapeError } from "../../core/errors.ts";
import { createRuntime } from "../../runtime/runtime.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 16, headDim: 8 };
const pattern = { kind: "gated", branches: [{ kind: "ring", radius: 2 }, { kind: "causal" }] };
const x = new Float32Array(2 * 16 * 8);

Deno.test("per-position gates given to a kernel compiled for per-head gates are refused", async () => {
  const rt = await createRuntime();
  try {
    const compiled = rt.compile(pattern, { shape });
    const gates = new Float32Array(1 * 2 * 16 * 2); // [B, Hq, N, branches]
    await assert.rejects(
      () => rt.prepare(compiled, { q: x, k: x, v: x, gates }),
      (e: Error) => e instanceof ShapeError && /gatesPerPosition: true/.test(e.message),
    );
  } finally {
    rt.destroy();
  }
});

Deno.test("q with the wrong element count is refused naming q", async () => {
  const rt = await createRuntime();
  try {
    const compiled = rt.compile({ kind: "causal" }, { shape });
    await assert.rejects(
      () => rt.prepare(compiled, { q: x.subarray(1), k: x, v: x }),
      (e: Error) => e instanceof ShapeError && /^Bad shape: q has 255 elements/.test(e.message),
    );
  } finally {
    rt.destroy();
  }
});
