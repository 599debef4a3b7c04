import assert from "node:assert/strict";
import { lowbias32, randomKeyBlocks } from "../../core/hash.ts";

// Expected values computed independently with python3, masking every step to 32 bits:
//   M = 0xffffffff
//   def h(x): x ^= x >> 16; x = (x * 0x7feb352d) & M; x ^= x >> 15
//             x = (x * 0x846ca68b) & M; x ^= x >> 16; return x
const LOWBIAS32: [number, number][] = [
  [0, 0],
  [1, 1753845952],
  [2, 3507691905],
  [3, 1408362973],
  [42, 388445122],
  [0x7fffffff, 2368339896],
  [0x80000000, 3427483940],
  [0xdeadbeef, 3861431939],
  [0xffffffff, 1734902346],
  [123456789, 2834422664],
];

// [h((seed + h((qb + h(j)) & M)) & M) % nkb for j in range(r)] in the same python3 session.
const KEY_BLOCKS: { qb: number; r: number; seed: number; nkb: number; blocks: number[] }[] = [
  { qb: 0, r: 3, seed: 7, nkb: 9, blocks: [6, 6, 3] },
  { qb: 5, r: 3, seed: 7, nkb: 9, blocks: [3, 6, 8] },
  { qb: 3, r: 4, seed: 0xffffffff, nkb: 6, blocks: [1, 4, 3, 3] },
  // Both additions wrap past 2^32 here.
  { qb: 0xfffffffe, r: 2, seed: 0xfffffff0, nkb: 1000, blocks: [696, 813] },
];

Deno.test("lowbias32 matches u32 arithmetic done independently", () => {
  for (const [x, expected] of LOWBIAS32) assert.equal(lowbias32(x), expected, `h(${x})`);
});

Deno.test("lowbias32 returns a u32 and reads only the low 32 bits", () => {
  assert.equal(lowbias32(-1), lowbias32(0xffffffff));
  assert.equal(lowbias32(2 ** 32 + 5), lowbias32(5));
  for (let x = 0; x < 1000; x++) {
    const y = lowbias32(x * 2654435761);
    assert.ok(Number.isInteger(y) && y >= 0 && y <= 0xffffffff);
  }
});

Deno.test("randomKeyBlocks draws kb_j = h(seed + h(qb + h(j))) mod nkb, duplicates kept", () => {
  for (const { qb, r, seed, nkb, blocks } of KEY_BLOCKS) {
    assert.deepEqual(randomKeyBlocks(qb, r, seed, nkb), blocks, JSON.stringify({ qb, r, seed }));
  }
});

Deno.test("randomKeyBlocks is deterministic and in range", () => {
  const a = randomKeyBlocks(17, 50, 12345, 11);
  assert.deepEqual(randomKeyBlocks(17, 50, 12345, 11), a);
  assert.equal(a.length, 50);
  assert.ok(a.every((kb) => Number.isInteger(kb) && kb >= 0 && kb < 11));
});
