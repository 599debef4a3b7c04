/**
 * The allowed set `A(q)` of DESIGN §2, evaluated one `(q, k)` pair at a time. This is the
 * oracle's definition of a pattern, so it is written to be read against the table in §2, not
 * to be fast: no intervals, no tiles, only the per-pattern sets that make each call O(1).
 * @module
 */
import { PlanError } from "../../core/errors.ts";
import { randomKeyBlocks } from "../../core/hash.ts";
import { predicateProgram } from "../../dsl/expression_check.ts";
import type { HashBucketPattern, Pattern, SelectPattern } from "../../dsl/schema.ts";
import { predicateFunction } from "./expression_eval.ts";

/** `true` when key `k` is allowed for query `q`; both in `[0, n)`. */
export type AllowedFn = (q: number, k: number) => boolean;

/**
 * The bucket codes of one (batch, query head) and its key/value head, for a hashBucket:
 * `q(t, pos)` and `k(t, pos)` give the code of round `t` at a position.
 */
export type HashLookup = (p: HashBucketPattern) => {
  q: (t: number, pos: number) => number;
  k: (t: number, pos: number) => number;
};

/**
 * The blocks a select kept for one query position of one (batch, query head): the GPU's, or
 * the reference's own (selection.ts). `p` is the select leaf asking.
 */
export type SelectLookup = (p: SelectPattern) => (q: number) => readonly number[];

/**
 * Builds the element predicate of a (non-gated) pattern for sequence length `n`.
 *
 * @param pattern a parsed pattern; `gated` is refused because each branch is its own softmax
 *   and has its own mask (call this once per branch)
 * @param n the sequence length N
 * @param options `path`: where this pattern sits in the caller's pattern, for error messages
 *   (default `"pattern"`; the reference passes `"pattern.branches[i]"` for a gated branch);
 *   `head` and `batch`: the `h` and `b` a predicate sees (default 0); `hash`: the bucket
 *   codes of that head (a hashBucket's allowed set depends on the data); `select`: the blocks
 *   a select kept for each query of that head (likewise)
 * @returns `(q, k) => boolean`, O(1) per call
 * @throws {PlanError} for `gated`, or a global token `>= n`
 * @example
 * ```ts
 * import { allowedMask } from "./allowed.ts";
 * const a = allowedMask({ kind: "ring", radius: 2 }, 16);
 * console.log(a(0, 15), a(0, 3)); // true false
 * ```
 */
export function allowedMask(
  pattern: Pattern,
  n: number,
  options: {
    path?: string;
    head?: number;
    batch?: number;
    hash?: HashLookup;
    select?: SelectLookup;
  } = {},
): AllowedFn {
  const at = {
    head: options.head ?? 0,
    batch: options.batch ?? 0,
    hash: options.hash,
    select: options.select,
  };
  return build(pattern, n, options.path ?? "pattern", at);
}

/** The query head and batch a predicate sees, and the bucket codes of that head. */
interface HeadBatch {
  head: number;
  batch: number;
  hash?: HashLookup;
  select?: SelectLookup;
}

/** Mathematical modulo: the result is in `[0, m)` even when `a` is negative. */
function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

function build(p: Pattern, n: number, where: string, at: HeadBatch): AllowedFn {
  switch (p.kind) {
    case "dense":
      return () => true;
    case "causal":
      return (q, k) => k <= q;
    case "window":
      return (q, k) => q - p.left <= k && k <= q + p.right;
    case "ring":
      return (q, k) => {
        const d = Math.abs(q - k);
        return Math.min(d, n - d) <= p.radius;
      };
    case "stride":
      return (q, k) => mod(q - k, p.period) === 0;
    case "global": {
      p.tokens.forEach((t, i) => {
        if (t >= n) {
          throw new PlanError(
            `Cannot plan pattern: ${where}.tokens[${i}]: global token must be < N (${n}), got ${t}`,
          );
        }
      });
      const g = new Set(p.tokens);
      return (q, k) => g.has(q) || g.has(k);
    }
    case "random": {
      const s = p.blockSize;
      const keyBlockCount = Math.ceil(n / s);
      // drawn[qb] holds the key blocks query block qb drew (duplicates collapse in the Set).
      const drawn: Set<number>[] = [];
      for (let qb = 0; qb < keyBlockCount; qb++) {
        drawn.push(new Set(randomKeyBlocks(qb, p.blocks, p.seed, keyBlockCount)));
      }
      return (q, k) => drawn[Math.floor(q / s)].has(Math.floor(k / s));
    }
    case "hashBucket": {
      if (!at.hash) {
        throw new PlanError(
          `Cannot evaluate ${where}: a hashBucket's allowed set depends on Q and K; pass their ` +
            `bucket codes (options.hash)`,
        );
      }
      const codes = at.hash(p);
      // Some round puts Q[q] and K[k] in the same bucket.
      return (q, k) => {
        for (let t = 0; t < p.rounds; t++) if (codes.q(t, q) === codes.k(t, k)) return true;
        return false;
      };
    }
    case "select": {
      if (!at.select) {
        throw new PlanError(
          `Cannot evaluate ${where}: a select's allowed set depends on Q and K; pass the blocks ` +
            `it kept (options.select)`,
        );
      }
      const kept = at.select(p), s = p.blockSize;
      // Pairs come row by row: look a row's blocks up once.
      let row = -1, blocks: readonly number[] = [];
      return (q, k) => {
        if (q !== row) [row, blocks] = [q, kept(q)];
        return blocks.includes(Math.floor(k / s));
      };
    }
    case "lowRank":
      // Landmarks are keys of their own (landmarks.ts), never token positions.
      return () => false;
    case "union": {
      const members = p.of.map((m, i) => build(m, n, `${where}.of[${i}]`, at));
      return (q, k) => members.some((a) => a(q, k));
    }
    case "intersect": {
      const members = p.of.map((m, i) => build(m, n, `${where}.of[${i}]`, at));
      return (q, k) => members.every((a) => a(q, k));
    }
    case "predicate":
      // The expression from the pattern itself, run by the interpreter (same program as the kernel's).
      return predicateFunction(predicateProgram(p, `${where}.expr`), n, at.head, at.batch);
    case "linear": // the keys its sums run over (DESIGN §2); its weights are no softmax's
      return p.causal ? (q, k) => k <= q : () => true;
    case "scored": // a score modifier changes weights, not the allowed set
      return build(p.pattern, n, `${where}.pattern`, at);
    case "gated":
      throw new PlanError(
        `Cannot plan pattern: ${where}: "gated" has no single allowed set; ` +
          `evaluate each of its branches separately`,
      );
  }
}
