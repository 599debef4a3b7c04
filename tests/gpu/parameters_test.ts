/**
 * Changing a pattern's numbers at the same shape reuses the compiled pipelines: pattern A runs,
 * then pattern B of the same structure with another period, radius or gate, through one
 * runtime. Both must match the float64 reference, and B must compile nothing (the pipeline
 * cache's misses stay put, its hits grow by B's passes).
 */
import assert from "node:assert/strict";
import type { CompiledAttention } from "../../compiler/mod.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 128, headDim: 16 };
const count = shape.seqLen * shape.headDim;
const inputs = {
  q: normalTensor(count, 11),
  k: normalTensor(count, 12),
  v: normalTensor(count, 13),
};

const rt = await createRuntime();
addEventListener("unload", () => rt.destroy());

/** Largest |a - b|; an infinity must be matched exactly. */
function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) return Infinity;
    } else worst = Math.max(worst, Math.abs(a - e));
  }
  return worst;
}

/** Layout kinds per component: the structure the pipelines depend on. */
function layouts(c: CompiledAttention): string {
  return c.plan.branches.flatMap((b) => b.components.map((x) => x.qLayout.kind)).join(",");
}

/** Runs the pattern, checks it against the reference, returns the cache's counts' growth. */
async function runChecked(pattern: unknown, constantParams = false) {
  const compiled = rt.compile(pattern, { shape, constantParams });
  const before = { hits: rt.pipelines.hits, misses: rt.pipelines.misses };
  const out = await rt.run(compiled, inputs);
  const expected = reference({ pattern: pattern as never, shape, ...inputs });
  const what = JSON.stringify(pattern);
  assert.ok(maxAbsError(out.o, expected.o) <= 1e-4, `${what}: O differs from the reference`);
  assert.ok(maxAbsError(out.lse, expected.lse) <= 1e-4, `${what}: LSE differs`);
  return {
    compiled,
    expected,
    passes: compiled.passes.length,
    hits: rt.pipelines.hits - before.hits,
    misses: rt.pipelines.misses - before.misses,
  };
}

const CASES: [string, unknown, unknown][] = [
  ["stride period 16 -> 8", { kind: "stride", period: 16 }, { kind: "stride", period: 8 }],
  ["ring radius 12 -> 5", { kind: "ring", radius: 12 }, { kind: "ring", radius: 5 }],
  [
    "πAttention gates [0.3, 0.7] -> [0.8, 0.2]",
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 12 }, { kind: "stride", period: 16 }],
      gates: [0.3, 0.7],
    },
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 12 }, { kind: "stride", period: 16 }],
      gates: [0.8, 0.2],
    },
  ],
  [
    "πAttention radius 12 -> 6, period 16 -> 8, gates [0.3, 0.7] -> [0.6, 0.4]",
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 12 }, { kind: "stride", period: 16 }],
      gates: [0.3, 0.7],
    },
    {
      kind: "gated",
      branches: [{ kind: "ring", radius: 6 }, { kind: "stride", period: 8 }],
      gates: [0.6, 0.4],
    },
  ],
  [
    "union(ring, stride) radius 12 -> 6, period 16 -> 8",
    { kind: "union", of: [{ kind: "ring", radius: 12 }, { kind: "stride", period: 16 }] },
    { kind: "union", of: [{ kind: "ring", radius: 6 }, { kind: "stride", period: 8 }] },
  ],
];

for (const [name, a, b] of CASES) {
  Deno.test(`same shape, new numbers, no new pipelines: ${name}`, async () => {
    const first = await runChecked(a);
    const second = await runChecked(b);
    assert.equal(layouts(first.compiled), layouts(second.compiled), "same structure");
    // The two patterns really compute different things: a stale parameter would be caught.
    assert.ok(maxAbsError(first.expected.o, second.expected.o) > 1e-2);
    assert.equal(second.misses, 0, `${name}: B compiled ${second.misses} pipeline(s)`);
    assert.equal(second.hits, second.passes, `${name}: every pass of B is a cache hit`);
  });
}

Deno.test("constantParams: numbers baked into the WGSL still match the reference, as new code", async () => {
  await runChecked({ kind: "stride", period: 8 });
  const baked = await runChecked({ kind: "stride", period: 8 }, true);
  assert.equal(baked.misses, baked.passes, "baked constants are a different kernel");
});
