/**
 * explain's drawing of a select branch (cli/_select_picture.ts): one row per sample position,
 * the forced blocks marked as such, exactly `blocks` kept where that many compete, and the kept
 * list the float64 reference's choice.
 */
import assert from "node:assert/strict";
import { selectionLines } from "../../cli/_select_picture.ts";
import type { SelectBranch } from "../../dsl/select.ts";
import { referenceSelections } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const select = { kind: "select" as const, blockSize: 8, blocks: 3, initial: 1, local: 1 };
const branch: SelectBranch = { select, causal: true, path: "pattern" };

Deno.test("explain draws a select's kept blocks at sample positions", () => {
  const n = 128, d = 8;
  const lines = selectionLines(branch, { seqLen: n, headDim: d, samples: 4 });
  const rows = lines.filter((l) => l.startsWith("q="));
  assert.equal(rows.length, 4);
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: n, headDim: d };
  const pattern = { kind: "intersect" as const, of: [{ kind: "causal" as const }, select] };
  const [want] = referenceSelections(
    pattern,
    shape,
    normalTensor(n * d, 1),
    normalTensor(n * d, 2),
  );
  for (const row of rows) {
    const [, pos, cells, kept] = /^q= *(\d+) \|(.*)\| kept (.*)$/.exec(row)!;
    const at = Number(pos) * select.blocks;
    assert.deepEqual(kept.split(" ").map(Number), [...want.chosen.subarray(at, at + 3)]);
    assert.equal(cells.length, n / select.blockSize);
    assert.equal(cells[0], "▓", "the initial block is forced");
    assert.equal(cells[Math.floor(Number(pos) / 8)], "▓", "the query's own block is forced");
    assert.equal([...cells].filter((c) => c === "█").length, 1, "one block chosen");
    // Causal: blocks ending after the query do not compete (blank), the own block aside.
    assert.ok(cells.slice(Math.floor(Number(pos) / 8) + 1).trim() === "");
  }
});
