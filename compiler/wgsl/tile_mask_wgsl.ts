/**
 * Padding and positions in an attention kernel's tiles. Where every layout is a permutation of
 * [0, N) (natural or residue order), only tiles past N's end can hold padding (position -1): a
 * complete grid has none, a padded one only in its last query and key tiles. The tile mask then
 * tests padding only there, FULL tiles evaluate no mask at all, and loads need no select.
 * @module
 */
import type { Component } from "../plan.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { type Call, kernelGeometry, type MemberRefs, range } from "./kernel_refs.ts";
import { allowedReadsHeadOrBatch, stagedCodes } from "../component_reads.ts";
import { pairInSequence } from "./sequence_wgsl.ts";

/** What a kernel knows of the positions of its tiles (`gridOf`). */
export interface Grid {
  /** No tile holds padding (position -1): the masks test none, the loads clamp none. */
  complete: boolean;
  /**
   * Every layout is a permutation of [0, N) but N is not a multiple of a tile size: only the
   * last query tile or key tile holds padding, and this WGSL condition says a tile is one of them.
   */
  padded?: string;
  /** Queries (keys) in natural order in a complete or padded grid: positions are computed. */
  naturalQ: boolean;
  naturalK: boolean;
}

/**
 * The grid of a kernel's members. It is complete where every member's layouts are permutations
 * of [0, N) (identity or residue order, whatever the period), N is a multiple of both tile sizes,
 * no member has a score modifier or hash codes, and every position is a query (where the queries
 * are some of the positions, any query tile may hold padding, and every tile is masked). Then a
 * FULL tile needs no mask at all (every pair counts) and a PARTIAL one only its `allowed`.
 * Measured on the H200 (interleaved A/B):
 * the band's FULL tiles stopped paying for its mask (f16 ring 4.5%, window(256) 4.4%, dense
 * 1.6%), and positions by arithmetic in natural order gave another 5-7% (f16 c4 ring, window
 * and dense). Where N is not a multiple of a tile size, the grid is `padded`: the kernel masks
 * the last query and key tiles as if PARTIAL, and clamps its loads instead of selecting them.
 * @param members the kernel's components with their options (several for a shared module)
 * @returns whether the grid is complete or padded (and which tiles hold the padding), and
 *   whether each side is in natural order
 */
export function gridOf(members: readonly ComponentKernelOptions[]): Grid {
  const isPermutation = (l: Component["qLayout"]) => l.kind === "identity" || l.kind === "residue";
  const permutation = members[0].queries === undefined &&
    members.every(({ component: c, score }) =>
      !score && stagedCodes(c).length === 0 && isPermutation(c.qLayout) && isPermutation(c.kLayout)
    );
  const n = members[0].n, { tileQ, tileK } = members[0].component.mask;
  const last = (tile: number) => (Math.ceil(n / tile) - 1) * tile;
  const edges = [
    ...(n % tileQ ? [`qTileIndex == ${last(tileQ) / tileQ}u`] : []),
    ...(n % tileK ? [`kTileStart == ${last(tileK)}u`] : []),
  ];
  const natural = (side: "qLayout" | "kLayout") =>
    permutation && members.every((x) => x.component[side].kind === "identity");
  return {
    complete: permutation && edges.length === 0,
    padded: permutation && edges.length ? edges.join(" || ") : undefined,
    naturalQ: natural("qLayout"),
    naturalK: natural("kLayout"),
  };
}

/**
 * The tile's mask `m{r}_{j}`, before the dot products: an invocation none of whose pairs is
 * allowed skips them, and a warp whose rows all miss this tile (a band's corner) skips the work.
 * Padding positions (-1) are masked too: on every tile in general, on the last tiles of a padded
 * grid, and nowhere in a complete grid, which has none.
 */
export function tileMask(
  o: ComponentKernelOptions,
  refs: MemberRefs,
  g: ReturnType<typeof kernelGeometry>,
  grid: Grid,
): string {
  const R = range(g.rows), J = range(g.keys);
  const eachRJ = (f: (r: number, j: number) => string) =>
    R.flatMap((r) => J.map((j) => f(r, j))).join("\n");
  const hb = allowedReadsHeadOrBatch(o.component) ? ", head, batch" : "";
  // Packed sequences: the key lies in the row's sequence, and the pattern allows the pair there.
  const allowedPair = (r: number, j: number, codes = "") =>
    o.packed
      ? pairInSequence(
        `q${r}`,
        `k${j}`,
        `seq${r}`,
        (q, k, n) => refs.allowed(`${q}, ${k}, ${n}${hb}`),
      )
      : refs.allowed(`q${r}, k${j}${hb}${codes}`);
  const positions = (indent: string) =>
    J.map((j) => `${indent}let k${j} = kPosition[col + ${j * g.cols}u];`).join("\n");
  const masked = maskedTiles(grid);
  if (masked) {
    const index = (j: number) => `kTileStart + col + ${j * g.cols}u`;
    const keys = grid.naturalK
      ? J.map((j) =>
        `      let k${j} = ${grid.complete ? `i32(${index(j)})` : refs.kPos(index(j))};`
      ).join("\n")
      : positions("      ");
    const pair = (r: number, j: number) => {
      const allowed = allowedPair(r, j);
      return grid.complete ? allowed : `q${r} >= 0 && k${j} >= 0 && (!isPartial || ${allowed})`;
    };
    return `    // ${
      grid.complete
        ? "A complete grid (no padding): FULL tiles allow every pair, PARTIAL ones ask `allowed`."
        : "Padding only in the last tiles: FULL tiles elsewhere allow every pair."
    }
${eachRJ((r, j) => `    var m${r}_${j} = true;`)}
    if (${masked}) {
${keys}
${eachRJ((r, j) => `      m${r}_${j} = ${pair(r, j)};`)}
    }`;
  }
  const staged = stagedCodes(o.component).length > 0;
  const codes = staged
    ? "\n" + J.map((j) => `    let kc${j} = kCodeTile[col + ${j * g.cols}u];`).join("\n")
    : "";
  return `    // Mask first (PARTIAL tiles only): an invocation none of whose pairs is allowed skips its
    // dot products, and a warp whose rows all miss this tile (a band's corner) skips the work.
${positions("    ")}${codes}
${
    eachRJ((r, j) =>
      `    let m${r}_${j} = q${r} >= 0 && k${j} >= 0 && (!isPartial || ${
        allowedPair(r, j, staged ? `, qCodes${r}, kc${j}` : "")
      });`
    )
  }`;
}

/**
 * The WGSL condition under which a tile is masked at all (its mask and score selects): PARTIAL
 * tiles in a complete grid, those and the last tiles in a padded one; undefined in general,
 * where every tile is.
 */
export function maskedTiles(grid: Grid): string | undefined {
  if (grid.padded) return `isPartial || ${grid.padded}`;
  return grid.complete ? "isPartial" : undefined;
}

/**
 * The row of Q (or K and V) that layout index `index` loads in a complete or padded grid: the
 * index itself in natural order, else its position; a padded grid clamps padding to a real row,
 * whose scores its mask discards. No select: nothing loaded is ever replaced by zeros.
 */
export function sourceRow(grid: Grid, side: "q" | "k", pos: Call, index: string): string {
  const natural = side === "q" ? grid.naturalQ : grid.naturalK;
  if (natural) return grid.complete ? index : `min(${index}, N - 1u)`;
  return grid.complete ? `u32(${pos(index)})` : `u32(max(${pos(index)}, 0))`;
}
