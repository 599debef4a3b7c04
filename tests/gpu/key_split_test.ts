/**
 * Split-K (compiler/key_split.ts) computes the same attention as one workgroup per query tile:
 * global rows split into chunks (even, uneven, some empty) match the float64 reference, alone,
 * in BigBird-like unions (merged after earlier components), under a causal intersection, in a
 * gated branch and with grouped heads.
 */
import assert from "node:assert/strict";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const rt = await createRuntime({ autotune: false });

const cases: { name: string; pattern: Pattern; n: number; headsQ: number; headsKV: number }[] = [
  {
    name: "global alone",
    pattern: { kind: "global", tokens: [0, 5, 130] },
    n: 150,
    headsQ: 2,
    headsKV: 2,
  },
  {
    name: "BigBird-like union",
    pattern: {
      kind: "union",
      of: [
        { kind: "window", left: 9, right: 9 },
        { kind: "global", tokens: [0, 1, 2, 64, 199] },
        { kind: "random", blocks: 2, blockSize: 16, seed: 4 },
      ],
    },
    n: 200,
    headsQ: 4,
    headsKV: 2,
  },
  {
    name: "causal global rows",
    pattern: {
      kind: "intersect",
      of: [{ kind: "causal" }, { kind: "global", tokens: [3, 90, 141] }],
    },
    n: 142,
    headsQ: 2,
    headsKV: 1,
  },
  {
    name: "gated: global branch and ring branch",
    pattern: {
      kind: "gated",
      branches: [
        { kind: "union", of: [{ kind: "ring", radius: 6 }, { kind: "global", tokens: [7, 8] }] },
        { kind: "ring", radius: 3 },
      ],
      gates: [0.3, 0.7],
    },
    n: 120,
    headsQ: 2,
    headsKV: 2,
  },
];

for (const c of cases) {
  Deno.test(`split-K matches the reference: ${c.name}`, async () => {
    const d = 32;
    const shape = { batch: 1, headsQ: c.headsQ, headsKV: c.headsKV, seqLen: c.n, headDim: d };
    const q = normalTensor(c.headsQ * c.n * d, 21);
    const k = normalTensor(c.headsKV * c.n * d, 22);
    const v = normalTensor(c.headsKV * c.n * d, 23);
    const want = reference({ pattern: c.pattern, shape, q, k, v });
    // 3 chunks of an 8-wide key tile grid leave chunks uneven; 40 leaves some empty.
    for (const keySplits of [3, 40]) {
      const compiled = rt.compile(c.pattern, { shape, tiles: { tileQ: 8, tileK: 8 }, keySplits });
      assert.ok(
        compiled.passes.some((p) => p.label.endsWith(`combine ${keySplits} chunks`)),
        `${keySplits} chunks: the call has a combine pass`,
      );
      const got = await rt.run(compiled, { q, k, v });
      let err = 0, lseErr = 0;
      for (let i = 0; i < got.o.length; i++) err = Math.max(err, Math.abs(got.o[i] - want.o[i]));
      for (let i = 0; i < got.lse.length; i++) {
        const same = got.lse[i] === want.lse[i]; // both -inf where nothing is allowed
        lseErr = Math.max(lseErr, same ? 0 : Math.abs(got.lse[i] - want.lse[i]));
      }
      assert.ok(err < 2e-5, `${keySplits} chunks: max |O - reference| = ${err}`);
      assert.ok(lseErr < 2e-5, `${keySplits} chunks: max |LSE - reference| = ${lseErr}`);
    }
  });
}

addEventListener("unload", () => rt.destroy());
