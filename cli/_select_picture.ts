/**
 * explain's drawing of a `select` branch: its allowed set depends on Q and K, so explain draws
 * the choice the float64 reference makes for seeded unit-normal Q and K at a few sample
 * positions, one row per position and one cell per key block, with the forced and competing
 * blocks the rule gives (dsl/select.ts).
 * @module
 */
import { selectBlockCount, type SelectBranch, selectRule } from "../dsl/select.ts";
import { keptBlocksAt } from "../runtime/reference/mod.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** At most this many cells per row: wider selections group blocks into cells. */
const MAX_CELLS = 64;

/**
 * The lines that draw a select branch's kept blocks at sample positions.
 * @param branch the select branch
 * @param o N, the head dim, how many positions to draw and the inputs' seed
 * @returns the lines, without indentation
 * @example
 * ```ts
 * import { selectionLines } from "./_select_picture.ts";
 * const select = { kind: "select" as const, blockSize: 16, blocks: 3, initial: 1, local: 1 };
 * selectionLines({ select, causal: true, path: "pattern" }, { seqLen: 128, headDim: 8 });
 * ```
 */
export function selectionLines(
  branch: SelectBranch,
  o: { seqLen: number; headDim: number; samples?: number; seed?: number },
): string[] {
  const n = o.seqLen, d = o.headDim, seed = o.seed ?? 1;
  const s = branch.select, count = selectBlockCount(n, s.blockSize);
  const samples = Math.min(o.samples ?? 8, n);
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: n, headDim: d };
  const q = normalTensor(n * d, seed), k = normalTensor(n * d, seed + 1);
  const positions = [
    ...new Set(Array.from(
      { length: samples },
      (_, i) => Math.max(0, Math.floor((i + 1) * n / samples) - 1),
    )),
  ];
  const chosen = keptBlocksAt(
    branch,
    shape,
    q,
    k,
    positions.map((pos) => ({ b: 0, kvHead: 0, pos })),
  );
  const per = Math.ceil(count / MAX_CELLS);
  const width = String(n - 1).length;
  const lines = [
    `kept blocks for seeded unit-normal Q and K (seed ${seed}, B = H = 1) at ${positions.length} ` +
    `of ${n} positions; ${count} blocks of ${s.blockSize} keys, ${s.blocks} kept per query ` +
    `(the query heads of a group share one choice)`,
    `forced: the first ${s.initial ?? 0} and the ${s.local ?? 0} ending at the query's own; ` +
    `${
      branch.causal
        ? "competing: blocks whose last key is at or before the query"
        : "competing: every block"
    }`,
    `one cell per ${per === 1 ? "block" : `${per} blocks`}: ▓ forced, █ chosen by importance, ` +
    `· competing but not kept, blank: not competing`,
  ];
  positions.forEach((pos, i) => {
    const rule = selectRule(branch, n, pos);
    const forced = new Set(rule.forced);
    const kept = new Set(chosen[i].kept);
    let row = "";
    for (let c = 0; c * per < count; c++) {
      let mark = 0; // 0 blank, 1 competing, 2 chosen, 3 forced
      for (let j = c * per; j < Math.min(count, (c + 1) * per); j++) {
        const m = forced.has(j) ? 3 : kept.has(j) ? 2 : rule.candidate(j) ? 1 : 0;
        mark = Math.max(mark, m);
      }
      row += " ·█▓"[mark];
    }
    lines.push(
      `q=${String(pos).padStart(width)} |${row}| kept ${chosen[i].kept.join(" ")}`,
    );
  });
  return lines;
}
