/**
 * hashBucket's meaning (DESIGN §2), checked from the text: the plane signs, the codes, and the
 * reference's softmax over the union of rounds (each colliding pair once) and its uniform
 * weights (the ANNA estimator).
 * @module
 */
import assert from "node:assert/strict";
import { bucketCodes, checkHashPlacement, hashPlanes, planeSign } from "../../dsl/hash_bucket.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

/** lowbias32 written out again from DESIGN §2, so the test does not trust dsl/hash.ts. */
function h(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

Deno.test("plane signs follow R[t][p][i] = (h(x + h(t·nbits + p + h(i))) & 1) ? +1 : -1", () => {
  for (
    const [seed, nbits, t, p, i] of [[0, 6, 0, 0, 0], [7, 3, 2, 1, 5], [4294967295, 10, 7, 9, 255]]
  ) {
    const expected = h((seed + h((t * nbits + p + h(i)) >>> 0)) >>> 0) & 1 ? 1 : -1;
    assert.equal(
      planeSign(seed, nbits, t, p, i),
      expected,
      `(${seed}, ${nbits}, ${t}, ${p}, ${i})`,
    );
  }
  const planes = hashPlanes({ seed: 3, buckets: 8, rounds: 2 }, 4);
  assert.equal(planes.length, 2 * 3 * 4);
  assert.equal(planes[(1 * 3 + 2) * 4 + 3], planeSign(3, 3, 1, 2, 3));
});

Deno.test("a vector's code sets bit p where its projection on plane p is positive", () => {
  const p = { seed: 9, buckets: 4, rounds: 1 };
  const planes = hashPlanes(p, 8);
  // The first plane itself: bit 0 set; its negation: bit 0 clear.
  const v = Array.from(planes.slice(0, 8));
  const codes = bucketCodes([...v, ...v.map((x) => -x)], 2, 8, p);
  assert.equal(codes[0] & 1, 1);
  assert.equal(codes[1] & 1, 0);
  // Bit 1 from the second plane's dot product, computed here.
  const dot = v.reduce((s, x, i) => s + x * planes[8 + i], 0);
  assert.equal((codes[0] >> 1) & 1, dot > 0 ? 1 : 0);
});

Deno.test("reference: rounds merge into one softmax, a pair colliding twice counted once", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 40, headDim: 8 };
  const q = normalTensor(320, 1), k = normalTensor(320, 2), v = normalTensor(320, 3);
  for (const weights of ["softmax", "uniform"] as const) {
    const pattern = { kind: "hashBucket" as const, buckets: 4, rounds: 3, seed: 2, weights };
    const out = reference({ pattern, shape, q, k, v });
    const codes = [...out.hashCodes.values()][0];
    let twice = 0;
    for (let qi = 0; qi < 40; qi++) {
      const keys: number[] = [];
      for (let ki = 0; ki < 40; ki++) {
        const hits = [0, 1, 2].filter((t) => codes.q[t * 40 + qi] === codes.k[t * 40 + ki]).length;
        if (hits > 0) keys.push(ki);
        if (hits > 1) twice++;
      }
      const s = keys.map((ki) =>
        weights === "uniform"
          ? 0
          : q.slice(qi * 8, qi * 8 + 8).reduce((a, x, d) => a + x * k[ki * 8 + d], 0) / Math.sqrt(8)
      );
      const max = Math.max(...s), sum = s.reduce((a, x) => a + Math.exp(x - max), 0);
      const lse = keys.length ? max + Math.log(sum) : -Infinity;
      assert.ok(
        Math.abs(out.lse[qi] - lse) < 1e-12 || out.lse[qi] === lse,
        `${weights} lse of ${qi}`,
      );
      if (weights === "uniform" && keys.length) {
        assert.ok(Math.abs(lse - Math.log(keys.length)) < 1e-12);
      }
      for (let d = 0; d < 8; d++) {
        const o = keys.reduce((a, ki, j) => a + Math.exp(s[j] - max) / sum * v[ki * 8 + d], 0);
        assert.ok(Math.abs(out.o[qi * 8 + d] - o) < 1e-12, `${weights} O[${qi}][${d}]`);
      }
    }
    assert.ok(twice > 0, "some pair collides in two rounds, so deduplication is exercised");
  }
});

Deno.test("uniform weights are accepted only where every pair is a uniform collision", () => {
  const uniform = {
    kind: "hashBucket" as const,
    buckets: 8,
    rounds: 1,
    seed: 0,
    weights: "uniform" as const,
  };
  assert.deepEqual(checkHashPlacement({ kind: "intersect", of: [{ kind: "causal" }, uniform] }), [
    true,
  ]);
  assert.deepEqual(checkHashPlacement({ kind: "union", of: [uniform, { ...uniform, seed: 1 }] }), [
    true,
  ]);
  assert.deepEqual(
    checkHashPlacement({ kind: "gated", branches: [uniform, { kind: "causal" }] }),
    [true, false],
  );
  assert.throws(
    () => checkHashPlacement({ kind: "union", of: [uniform, { kind: "causal" }] }),
    /uniform/,
  );
});
