/**
 * What `select` (NSA's selected blocks, DESIGN §2) means apart from the data: its blocks, where
 * it may stand, which blocks are forced in and which compete, and the top-n rule. The scores
 * themselves come from Q and K (the reference's selection.ts, the GPU's selection kernel).
 *
 * A select's allowed set is chosen per query by a softmax over block means, so it is a whole
 * softmax's business: it may be the pattern, a gated branch, or either of those intersected with
 * `causal` (only whole blocks at or before the query compete) and `dense`. Inside a union or
 * next to a rule over positions its meaning would depend on which keys the other members
 * bring, so that is refused rather than guessed.
 * @module
 */
import { PlanError } from "../core/errors.ts";
import type { Pattern, SelectPattern } from "./schema.ts";

/** A branch whose softmax is a select's: the select and what restricts it. */
export interface SelectBranch {
  /** The select leaf. */
  select: SelectPattern;
  /** Intersected with `causal`: keys `k <= q`, and only blocks whose last row is `<= q` compete. */
  causal: boolean;
  /** Where the select sits, for messages. */
  path: string;
}

/**
 * The key blocks of a select at N: `ceil(N / blockSize)`, the last one possibly shorter.
 * @param n the key count N
 * @param blockSize the select's block size
 * @returns the block count
 * @example
 * ```ts
 * import { selectBlockCount } from "./select.ts";
 * selectBlockCount(130, 64); // 3: rows 0-63, 64-127, 128-129
 * ```
 */
export function selectBlockCount(n: number, blockSize: number): number {
  return Math.ceil(n / blockSize);
}

/**
 * The blocks a query's choice is made among and the ones it always keeps.
 * @param b the branch
 * @param n the key count N
 * @param q the query position
 * @returns `candidate(j)`: block `j` competes (under causal, its last row is `<= q`), and
 *   `forced`: the first `initial` blocks and the `local` blocks ending at `q`'s, ascending
 * @example
 * ```ts
 * import { selectRule } from "./select.ts";
 * const select = { kind: "select" as const, blockSize: 4, blocks: 3, initial: 1, local: 1 };
 * const r = selectRule({ select, causal: true, path: "pattern" }, 16, 9);
 * [r.candidate(1), r.candidate(2), r.forced]; // [true, false, [0, 2]]
 * ```
 */
export function selectRule(
  b: SelectBranch,
  n: number,
  q: number,
): { candidate: (j: number) => boolean; forced: number[] } {
  const s = b.select.blockSize;
  const count = selectBlockCount(n, s);
  const own = Math.floor(q / s);
  const forced = new Set<number>();
  for (let j = 0; j < Math.min(b.select.initial ?? 0, count); j++) forced.add(j);
  for (let j = Math.max(0, own - (b.select.local ?? 0) + 1); j <= own; j++) forced.add(j);
  return {
    candidate: (j) => !b.causal || Math.min(n, (j + 1) * s) - 1 <= q,
    forced: [...forced].sort((x, y) => x - y),
  };
}

/**
 * The top-n rule: the forced blocks, then the most important of the other candidates until
 * `blocks` are kept (ties: the lower block first; fewer candidates: all of them).
 * @param b the branch
 * @param n the key count N
 * @param q the query position
 * @param importance block `j`'s importance for `q` (read for candidates only)
 * @returns the kept blocks, ascending
 * @example
 * ```ts
 * import { chooseBlocks } from "./select.ts";
 * const select = { kind: "select" as const, blockSize: 4, blocks: 2 };
 * chooseBlocks({ select, causal: false, path: "pattern" }, 16, 0, (j) => [1, 3, 3, 0][j]); // [1, 2]
 * ```
 */
export function chooseBlocks(
  b: SelectBranch,
  n: number,
  q: number,
  importance: (j: number) => number,
): number[] {
  const { candidate, forced } = selectRule(b, n, q);
  const kept = new Set(forced);
  const others: { j: number; score: number }[] = [];
  for (let j = 0; j < selectBlockCount(n, b.select.blockSize); j++) {
    if (!kept.has(j) && candidate(j)) others.push({ j, score: importance(j) });
  }
  others.sort((x, y) => y.score - x.score || x.j - y.j);
  for (const o of others.slice(0, Math.max(0, b.select.blocks - kept.size))) kept.add(o.j);
  return [...kept].sort((x, y) => x - y);
}

/**
 * Each branch's select, where it has one, checking that every select stands where it has a
 * meaning (the module comment says where).
 * @param pattern a parsed pattern
 * @returns per branch (one when not gated) its select, or undefined
 * @throws {PlanError} naming the path of a misplaced select
 * @example
 * ```ts
 * import { selectBranches } from "./select.ts";
 * const select = { kind: "select" as const, blockSize: 64, blocks: 4 };
 * selectBranches({ kind: "intersect", of: [{ kind: "causal" }, select] })[0]?.causal; // true
 * ```
 */
export function selectBranches(pattern: Pattern): (SelectBranch | undefined)[] {
  const gated = pattern.kind === "gated";
  const branches = gated ? pattern.branches : [pattern];
  return branches.map((b, i) => selectBranchOf(b, gated ? `pattern.branches[${i}]` : "pattern"));
}

function selectBranchOf(p: Pattern, where: string): SelectBranch | undefined {
  const found = selectsIn(p, where);
  if (found.length === 0) return undefined;
  if (p.kind === "select") return { select: p, causal: false, path: where };
  if (p.kind === "intersect") {
    const members = flatIntersect(p, where);
    const selects = members.filter((m) => m.p.kind === "select");
    const other = members.find((m) => !["select", "causal", "dense"].includes(m.p.kind));
    if (selects.length === 1 && !other) {
      return {
        select: selects[0].p as SelectPattern,
        causal: members.some((m) => m.p.kind === "causal"),
        path: selects[0].path,
      };
    }
    const bad = other ?? selects[1];
    throw new PlanError(
      `Cannot plan pattern: ${bad.path}: ${bad.p.kind} is intersected with ${
        selects[0].path
      } (select); a select can only be intersected with causal or dense (DESIGN §2)`,
    );
  }
  const inside = p.kind === "scored" ? "a score modifier" : p.kind;
  throw new PlanError(
    `Cannot plan pattern: ${found[0]}: select inside ${inside} is not supported; a select is a ` +
      `whole softmax (the pattern or a gated branch, intersected only with causal or dense)`,
  );
}

function flatIntersect(p: Pattern, where: string): { p: Pattern; path: string }[] {
  if (p.kind !== "intersect") return [{ p, path: where }];
  return p.of.flatMap((m, i) => flatIntersect(m, `${where}.of[${i}]`));
}

/** The paths of every select in a pattern (gated branches are searched by the caller). */
function selectsIn(p: Pattern, where: string): string[] {
  switch (p.kind) {
    case "select":
      return [where];
    case "union":
    case "intersect":
      return p.of.flatMap((m, i) => selectsIn(m, `${where}.of[${i}]`));
    case "scored":
      return selectsIn(p.pattern, `${where}.pattern`);
    case "gated":
      return p.branches.flatMap((m, i) => selectsIn(m, `${where}.branches[${i}]`));
    default:
      return [];
  }
}
