/**
 * `select`'s choice in float64 (DESIGN §2), and the check of a GPU's choice against it.
 *
 * Block `j`'s importance for query position `q` of a key/value head is the sum, over the query
 * heads that read that head, of `p_h(q, j)`: the softmax of `scale * Q_h[q]·K̄_j` over the
 * blocks that compete for `q`, `K̄_j` the mean of block `j`'s K rows. Two blocks whose
 * importances differ by a rounding error can swap places between float32 and float64, which
 * moves whole blocks in or out of `A(q)`; so, as with hash codes, the GPU's choice is checked
 * on its own (`selectionDisagreements`: nothing beats a kept block by more than a tolerance),
 * and O is compared with the reference computed from the GPU's choice.
 * @module
 */
import { ShapeError } from "../../core/errors.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { parsePattern, type Pattern, type SelectPattern } from "../../dsl/schema.ts";
import {
  chooseBlocks,
  selectBlockCount,
  type SelectBranch,
  selectBranches,
  selectRule,
} from "../../dsl/select.ts";
import type { SelectLookup } from "./allowed.ts";

/**
 * The blocks one select branch kept: `chosen [B, Hkv, N, blocks]`, each position's kept blocks
 * ascending, then -1 where fewer than `blocks` could be kept.
 */
export interface SelectedBlocks {
  /** The branch of the pattern (0 when not gated). */
  branch: number;
  /** Slots per position: the select's `blocks`. */
  blocks: number;
  /** `[B, Hkv, N, blocks]` block indices, ascending per position, -1 past the kept ones. */
  chosen: Int32Array;
}

/** A select branch's block importances, computed per (batch, key/value head) on demand. */
function importances(
  branch: SelectBranch,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  scale: number,
): (b: number, kvHead: number, pos: number) => Float64Array {
  const { headsQ: Hq, headsKV: Hkv, headDim: D } = shape;
  const { nk: N } = sequenceSizes(shape);
  const s = branch.select.blockSize, count = selectBlockCount(N, s), group = Hq / Hkv;
  const means = new Map<number, Float64Array>();
  const meansOf = (row: number) => {
    let m = means.get(row);
    if (!m) {
      m = new Float64Array(count * D);
      for (let j = 0; j < count; j++) {
        const end = Math.min(N, (j + 1) * s);
        for (let key = j * s; key < end; key++) {
          for (let d = 0; d < D; d++) m[j * D + d] += k[(row * N + key) * D + d];
        }
        for (let d = 0; d < D; d++) m[j * D + d] /= end - j * s;
      }
      means.set(row, m);
    }
    return m;
  };
  return (b, kvHead, pos) => {
    const m = meansOf(b * Hkv + kvHead);
    const { candidate } = selectRule(branch, N, pos);
    const total = new Float64Array(count);
    const logits = new Float64Array(count);
    for (let g = 0; g < group; g++) {
      const qRow = ((b * Hq + kvHead * group + g) * N + pos) * D;
      let max = -Infinity;
      for (let j = 0; j < count; j++) {
        if (!candidate(j)) continue;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qRow + d] * m[j * D + d];
        logits[j] = scale * dot;
        max = Math.max(max, logits[j]);
      }
      if (max === -Infinity) continue;
      let sum = 0;
      for (let j = 0; j < count; j++) if (candidate(j)) sum += Math.exp(logits[j] - max);
      for (let j = 0; j < count; j++) {
        if (candidate(j)) total[j] += Math.exp(logits[j] - max) / sum;
      }
    }
    return total;
  };
}

/**
 * One select branch's kept blocks at a few positions, in float64: what `referenceSelections`
 * keeps there, without choosing for every position (explain draws samples at any N).
 * @param branch the select branch
 * @param shape the call's shape (square)
 * @param q queries `[B, Hq, N, D]`
 * @param k keys `[B, Hkv, N, D]`
 * @param at the (batch, key/value head, position) triples
 * @param scale the score scale (default `1 / sqrt(D)`)
 * @returns per triple, the kept blocks (ascending) and every block's importance
 * @example
 * ```ts
 * import { keptBlocksAt } from "./selection.ts";
 * const select = { kind: "select" as const, blockSize: 2, blocks: 1 };
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 1 };
 * keptBlocksAt({ select, causal: false, path: "pattern" }, shape, [1, 1, 1, 1], [0, 0, 1, 1], [
 *   { b: 0, kvHead: 0, pos: 3 },
 * ])[0].kept; // [1]
 * ```
 */
export function keptBlocksAt(
  branch: SelectBranch,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  at: { b: number; kvHead: number; pos: number }[],
  scale = 1 / Math.sqrt(shape.headDim),
): { kept: number[]; importance: Float64Array }[] {
  const { nk: N } = sequenceSizes(shape);
  const score = importances(branch, shape, q, k, scale);
  return at.map(({ b, kvHead, pos }) => {
    const importance = score(b, kvHead, pos);
    return { kept: chooseBlocks(branch, N, pos, (j) => importance[j]), importance };
  });
}

/**
 * Checks that a pattern's selects can run at this shape: queries are every key position (no
 * chunks, decoding or packed sequences).
 * @param pattern a parsed pattern
 * @param shape the call's shape
 * @param options the call's packing and offset, where given
 * @returns each branch's select, or undefined
 * @throws {ShapeError} naming the field that a select does not take
 */
export function selectBranchesAt(
  pattern: Pattern,
  shape: AttentionShape,
  options: { seqLens?: unknown; queryOffset?: number } = {},
): (SelectBranch | undefined)[] {
  const branches = selectBranches(pattern);
  const at = branches.find((b) => b)?.path;
  if (at === undefined) return branches;
  const { nq, nk } = sequenceSizes(shape);
  const bad = options.seqLens !== undefined
    ? "seqLens (packed sequences)"
    : nq !== nk
    ? `shape.kvSeqLen (${nk} keys for ${nq} queries)`
    : options.queryOffset !== undefined && options.queryOffset !== 0
    ? `queryOffset (${options.queryOffset})`
    : undefined;
  if (bad) {
    throw new ShapeError(
      `Bad input: ${at} (select) runs on square calls only (every key position a query, ` +
        `offset 0); drop ${bad}`,
    );
  }
  return branches;
}

/**
 * Every select's kept blocks in float64 (DESIGN §2).
 * @param pattern a parsed pattern
 * @param shape the call's shape (square: Nq = Nk)
 * @param q queries `[B, Hq, N, D]`
 * @param k keys `[B, Hkv, N, D]`
 * @param scale the score scale (default `1 / sqrt(D)`)
 * @returns one entry per select branch
 * @example
 * ```ts
 * import { referenceSelections } from "./selection.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 1 };
 * const [s] = referenceSelections({ kind: "select", blockSize: 2, blocks: 1 }, shape, [1, 1, 1, 1], [0, 0, 1, 1]);
 * s.chosen; // Int32Array [1, 1, 1, 1]
 * ```
 */
export function referenceSelections(
  pattern: Pattern,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  scale = 1 / Math.sqrt(shape.headDim),
): SelectedBlocks[] {
  const { batch: B, headsKV: Hkv } = shape;
  const { nk: N } = sequenceSizes(shape);
  const out: SelectedBlocks[] = [];
  selectBranchesAt(parsePattern(pattern), shape).forEach((branch, i) => {
    if (!branch) return;
    const n = branch.select.blocks;
    const chosen = new Int32Array(B * Hkv * N * n).fill(-1);
    const score = importances(branch, shape, q, k, scale);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hkv; h++) {
        for (let pos = 0; pos < N; pos++) {
          const total = score(b, h, pos);
          const kept = chooseBlocks(branch, N, pos, (j) => total[j]);
          chosen.set(kept, ((b * Hkv + h) * N + pos) * n);
        }
      }
    }
    out.push({ branch: i, blocks: n, chosen });
  });
  return out;
}

/**
 * How many positions of each select branch have a kept set that the float64 importances
 * contradict: a forced block missing, a block kept that does not compete, too few or too many
 * kept, or a competing block left out that beats a kept one by more than `tolerance`. All zero
 * when the choice is sound up to float ties.
 * @param pattern the pattern
 * @param shape the call's shape
 * @param q the queries the choice was made from (float16-rounded for a float16 call)
 * @param k the keys likewise
 * @param selections the choice to check (from `Runtime.run`)
 * @param options `scale` (default `1 / sqrt(D)`); `tolerance` on importances (default 1e-4)
 * @returns per select branch, the positions that disagree and the first of them
 * @example
 * ```ts
 * import { referenceSelections, selectionDisagreements } from "./selection.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 1 };
 * const p = { kind: "select" as const, blockSize: 2, blocks: 1 };
 * const q = [1, 1, 1, 1], k = [0, 0, 1, 1];
 * selectionDisagreements(p, shape, q, k, referenceSelections(p, shape, q, k))[0].positions; // 0
 * ```
 */
export function selectionDisagreements(
  pattern: Pattern,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  selections: SelectedBlocks[],
  options: { scale?: number; tolerance?: number } = {},
): { branch: number; positions: number; first?: string }[] {
  const { batch: B, headsKV: Hkv } = shape;
  const { nk: N } = sequenceSizes(shape);
  const scale = options.scale ?? 1 / Math.sqrt(shape.headDim);
  const tolerance = options.tolerance ?? 1e-4;
  const result: { branch: number; positions: number; first?: string }[] = [];
  selectBranchesAt(parsePattern(pattern), shape).forEach((branch, i) => {
    if (!branch) return;
    const got = selections.find((s) => s.branch === i);
    if (!got || got.chosen.length !== B * Hkv * N * branch.select.blocks) {
      result.push({ branch: i, positions: B * Hkv * N, first: "no selection of this shape" });
      return;
    }
    const n = branch.select.blocks;
    const score = importances(branch, shape, q, k, scale);
    let positions = 0, first: string | undefined;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hkv; h++) {
        for (let pos = 0; pos < N; pos++) {
          const at = ((b * Hkv + h) * N + pos) * n;
          const kept = [...got.chosen.subarray(at, at + n)].filter((j) => j >= 0);
          const why = wrongChoice(branch, N, pos, kept, score(b, h, pos), tolerance);
          if (why) {
            positions++;
            first ??= `batch ${b}, kv head ${h}, position ${pos}: ${why}`;
          }
        }
      }
    }
    result.push({ branch: i, positions, ...(first ? { first } : {}) });
  });
  return result;
}

/** Why one position's kept blocks cannot be the top-n of these importances, or undefined. */
function wrongChoice(
  branch: SelectBranch,
  n: number,
  pos: number,
  kept: number[],
  importance: Float64Array,
  tolerance: number,
): string | undefined {
  const { candidate, forced } = selectRule(branch, n, pos);
  const set = new Set(kept);
  if (set.size !== kept.length) return `block repeated in [${kept}]`;
  const missing = forced.find((j) => !set.has(j));
  if (missing !== undefined) return `forced block ${missing} not kept`;
  const count = selectBlockCount(n, branch.select.blockSize);
  const others = [];
  for (let j = 0; j < count; j++) if (candidate(j) && !forced.includes(j)) others.push(j);
  const want = Math.min(branch.select.blocks, forced.length + others.length);
  if (kept.length !== want) return `${kept.length} blocks kept, expected ${want}`;
  const chosen = kept.filter((j) => !forced.includes(j));
  const stray = chosen.find((j) => !candidate(j) || j >= count);
  if (stray !== undefined) return `block ${stray} kept but does not compete`;
  let weakest = Infinity;
  for (const j of chosen) weakest = Math.min(weakest, importance[j]);
  const beaten = others.find((j) => !set.has(j) && importance[j] > weakest + tolerance);
  if (beaten !== undefined) {
    return `block ${beaten} (importance ${importance[beaten]}) left out for one of ` +
      `importance ${weakest}`;
  }
  return undefined;
}

/**
 * The lookup `allowedMask` takes for one (batch, query head) of branch `branch`, from the kept
 * blocks of its key/value head.
 * @param selections the kept blocks
 * @param branch the branch asking
 * @param shape the call's shape
 * @param b batch
 * @param h query head
 * @returns the lookup
 * @throws {ShapeError} when the selections lack the branch or its shape
 */
export function selectLookup(
  selections: SelectedBlocks[],
  branch: number,
  shape: AttentionShape,
  b: number,
  h: number,
): SelectLookup {
  const { headsQ: Hq, headsKV: Hkv } = shape;
  const { nk: N } = sequenceSizes(shape);
  const kvHead = Math.floor(h / (Hq / Hkv));
  return (p: SelectPattern) => {
    const got = selections.find((s) => s.branch === branch);
    if (!got || got.blocks !== p.blocks || got.chosen.length !== shape.batch * Hkv * N * p.blocks) {
      throw new ShapeError(
        `Bad input: selectedBlocks has no [B, Hkv, N, ${p.blocks}] blocks for branch ${branch}; ` +
          `pass the selectedBlocks Runtime.run returned for this pattern and shape`,
      );
    }
    return (q) => {
      const at = ((b * Hkv + kvHead) * N + q) * p.blocks;
      return [...got.chosen.subarray(at, at + p.blocks)].filter((j) => j >= 0);
    };
  };
}
