/**
 * `select` in the reference (DESIGN §2): the kept blocks against an importance computed here
 * by hand, the top-n rule's ties, forced and missing candidates, the check of a GPU's choice,
 * the allowed set built from a given choice, and the placements and shapes it refuses.
 */
import assert from "node:assert/strict";
import { PlanError, ShapeError } from "../../core/errors.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { chooseBlocks } from "../../dsl/select.ts";
import {
  reference,
  referenceSelections,
  selectionDisagreements,
} from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const causalSelect = (blocks: number, initial = 0, local = 0): Pattern => ({
  kind: "intersect",
  of: [{ kind: "causal" }, { kind: "select", blockSize: 3, blocks, initial, local }],
});

Deno.test("select: kept blocks are the top-n of the group's summed block softmaxes", () => {
  // GQA: two query heads per key/value head; N = 10 gives blocks of 3, 3, 3 and 1 rows.
  const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 10, headDim: 4 };
  const q = normalTensor(4 * 10 * 4, 11), k = normalTensor(2 * 10 * 4, 12);
  const [got] = referenceSelections({ kind: "select", blockSize: 3, blocks: 2 }, shape, q, k);
  for (let h = 0; h < 2; h++) {
    const rows = [0, 3, 6, 9, 10];
    const means = [0, 1, 2, 3].map((j) =>
      [0, 1, 2, 3].map((d) => {
        let sum = 0;
        for (let r = rows[j]; r < rows[j + 1]; r++) sum += k[(h * 10 + r) * 4 + d];
        return sum / (rows[j + 1] - rows[j]);
      })
    );
    for (let pos = 0; pos < 10; pos++) {
      const importance = [0, 0, 0, 0];
      for (const g of [2 * h, 2 * h + 1]) {
        const logits = means.map((m) =>
          m.reduce((a, x, d) => a + x * q[(g * 10 + pos) * 4 + d], 0) / 2
        );
        const z = logits.reduce((a, x) => a + Math.exp(x), 0);
        logits.forEach((x, j) => importance[j] += Math.exp(x) / z);
      }
      const order = [0, 1, 2, 3].sort((a, b) => importance[b] - importance[a] || a - b);
      const want = order.slice(0, 2).sort((a, b) => a - b);
      const at = (h * 10 + pos) * 2;
      assert.deepEqual([...got.chosen.subarray(at, at + 2)], want, `head ${h}, position ${pos}`);
    }
  }
});

Deno.test("select: ties go to the lower block; forced blocks first; fewer candidates keep all", () => {
  const branch = (causal: boolean, initial = 0, local = 0) => ({
    select: { kind: "select" as const, blockSize: 4, blocks: 3, initial, local },
    causal,
    path: "pattern",
  });
  assert.deepEqual(chooseBlocks(branch(false), 16, 0, () => 1), [0, 1, 2]);
  assert.deepEqual(chooseBlocks(branch(false), 16, 0, (j) => [1, 2, 2, 2][j]), [1, 2, 3]);
  // Causal at q = 9: only blocks 0 and 1 are whole at or before it, and both are kept.
  assert.deepEqual(chooseBlocks(branch(true), 16, 9, (j) => j), [0, 1]);
  // Forced: block 0 (initial) and block 2, q's own (local), then the best of the rest.
  assert.deepEqual(chooseBlocks(branch(false, 1, 1), 16, 9, (j) => [9, 1, 9, 5][j]), [0, 2, 3]);
  assert.deepEqual(chooseBlocks(branch(true, 1, 1), 16, 9, (j) => [9, 1, 9, 5][j]), [0, 1, 2]);
});

Deno.test("select ∩ causal: a row with no whole block before it is empty, forced blocks fill it", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 7, headDim: 2 };
  const q = normalTensor(14, 1), k = normalTensor(14, 2), v = normalTensor(14, 3);
  const bare = reference({ pattern: causalSelect(1), shape, q, k, v });
  // Rows 0 and 1 see no whole block (block 0 ends at row 2).
  assert.deepEqual([...bare.lse.subarray(0, 2)], [-Infinity, -Infinity]);
  assert.deepEqual([...bare.o.subarray(0, 4)], [0, 0, 0, 0]);
  assert.ok(Number.isFinite(bare.lse[2]));
  // With the local block forced, every row sees its own block's keys up to itself: causal.
  const local = reference({ pattern: causalSelect(1, 0, 1), shape, q, k, v });
  const window = reference({
    pattern: { kind: "predicate", expr: "k <= q && Math.floor(k / 3) == Math.floor(q / 3)" },
    shape,
    q,
    k,
    v,
  });
  for (let i = 0; i < local.o.length; i++) assert.ok(Math.abs(local.o[i] - window.o[i]) < 1e-12);
});

Deno.test("select: O follows the blocks given, and a wrong choice is found beyond ties", () => {
  const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 12, headDim: 4 };
  const q = normalTensor(2 * 2 * 12 * 4, 5), k = normalTensor(2 * 12 * 4, 6);
  const v = normalTensor(2 * 12 * 4, 7);
  const pattern = causalSelect(2, 1, 0);
  const own = reference({ pattern, shape, q, k, v });
  const [sel] = own.selectedBlocks;
  assert.deepEqual(
    selectionDisagreements(pattern, shape, q, k, own.selectedBlocks),
    [{ branch: 0, positions: 0 }],
  );
  // Keep block 2 in place of the second kept block where it competes and was left out.
  const wrong = sel.chosen.slice();
  let moved = 0;
  for (let at = 0; at < wrong.length; at += 2) {
    const pos = (at / 2) % 12;
    if (pos >= 8 && wrong[at + 1] !== 2) [wrong[at + 1], moved] = [2, moved + 1];
  }
  assert.ok(moved > 0);
  const given = [{ branch: 0, blocks: 2, chosen: wrong }];
  const [found] = selectionDisagreements(pattern, shape, q, k, given);
  assert.equal(found.positions, moved);
  // With a tolerance above any importance gap the same choice passes as a tie.
  assert.equal(
    selectionDisagreements(pattern, shape, q, k, given, { tolerance: 3 })[0].positions,
    0,
  );
  // The reference computed from the given blocks differs from its own exactly there.
  const forced = reference({ pattern, shape, q, k, v, selectedBlocks: given });
  assert.notDeepEqual(forced.o, own.o);
});

Deno.test("select: misplaced selects and shapes it does not take are refused, naming the field", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 8, headDim: 4 };
  const x = normalTensor(32, 1);
  const select = { kind: "select" as const, blockSize: 2, blocks: 1 };
  const run = (pattern: Pattern, extra = {}) =>
    reference({ pattern, shape, q: x, k: x, v: x, ...extra });
  assert.throws(
    () => run({ kind: "union", of: [{ kind: "window", left: 1, right: 0 }, select] }),
    (e) => e instanceof PlanError && /pattern\.of\[1\]: select inside union/.test(e.message),
  );
  assert.throws(
    () => run({ kind: "intersect", of: [{ kind: "window", left: 1, right: 0 }, select] }),
    (e) => e instanceof PlanError && /pattern\.of\[0\]: window is intersected/.test(e.message),
  );
  assert.throws(
    () => run({ kind: "scored", pattern: select, score: { expr: "s" } }),
    (e) => e instanceof PlanError && /pattern\.pattern: select inside a score/.test(e.message),
  );
  assert.throws(
    () =>
      reference({
        pattern: select,
        shape: { ...shape, seqLen: 4, kvSeqLen: 8 },
        q: x.subarray(0, 16),
        k: x,
        v: x,
      }),
    (e) => e instanceof ShapeError && /shape\.kvSeqLen/.test(e.message),
  );
  assert.throws(
    () => run(select, { seqLens: [3, 5] }),
    (e) => e instanceof ShapeError && /seqLens/.test(e.message),
  );
  // Inside a gated branch it is a softmax of its own: fine.
  const gated = run({ kind: "gated", branches: [select, { kind: "causal" }] });
  assert.equal(gated.selectedBlocks[0].branch, 0);
});
