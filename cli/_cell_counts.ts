/**
 * Allowed pairs per cell of the N x N mask, per component, from the tile schedule: a FULL tile
 * adds its whole area (split over the cells its positions fall in), a PARTIAL tile adds the pairs
 * its component's predicate accepts, element by element. Work grows with the tiles visited, never
 * with N², so `explain` can draw and analyse N = 65536. The picture (`_mask_image.ts`) and the
 * reach (`_reach.ts`) both start here.
 * @module
 */
import { forEachKeyTile, layoutPositions, type Plan } from "../compiler/mod.ts";
import type { Component } from "../compiler/plan.ts";
import { componentAllows } from "./_component_allows.ts";

/** One component's allowed pairs per cell. */
export interface ComponentCells {
  /** Index of the component's branch (softmax) and of the component within it. */
  branch: number;
  component: number;
  /** Row-major `cells x cells`: query cells down, key cells across. */
  counts: Float64Array;
}

/** Cell counts of every component of a plan at one resolution. */
export interface CellCounts {
  /** Positions per cell side; 1 means element level. */
  cellSize: number;
  /** Cells per side: `ceil(N / cellSize)`. */
  cells: number;
  components: ComponentCells[];
}

/**
 * Counts every component's allowed pairs per cell.
 *
 * @param plan the plan
 * @param maxCells at most this many cells a side (element level when N <= maxCells)
 * @returns the counts, components in plan order (branch by branch)
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { cellCounts } from "./_cell_counts.ts";
 * const c = cellCounts(planPattern({ kind: "causal" }, 4, { tileQ: 2, tileK: 2 }), 2);
 * Array.from(c.components[0].counts); // [3, 0, 4, 3]
 * ```
 */
export function cellCounts(plan: Plan, maxCells: number): CellCounts {
  const n = plan.n;
  const cellSize = Math.max(1, Math.ceil(n / maxCells));
  const cells = Math.ceil(n / cellSize);
  const components: ComponentCells[] = [];
  plan.branches.forEach((b, branch) =>
    b.components.forEach((c, component) => {
      // Landmark components (lowRank) add pooled keys, not pairs of positions: no cells.
      const counts = c.kLayout.kind === "landmarks"
        ? new Float64Array(cells * cells)
        : countComponent(c, n, cellSize, cells);
      components.push({ branch, component, counts });
    })
  );
  return { cellSize, cells, components };
}

function countComponent(c: Component, n: number, cellSize: number, cells: number): Float64Array {
  const counts = new Float64Array(cells * cells);
  const { tileQ, tileK } = c.mask;
  const qPositions = layoutPositions(c.qLayout, n);
  const kPositions = layoutPositions(c.kLayout, n);
  const qHist = tileHistograms(qPositions, tileQ, cellSize);
  const kHist = tileHistograms(kPositions, tileK, cellSize);
  const allows = componentAllows(c, n);
  for (let qt = 0; qt < c.mask.qTiles; qt++) {
    const q0 = qt * tileQ, q1 = Math.min(qPositions.length, q0 + tileQ);
    forEachKeyTile(c.mask, qt, (kt, partial) => {
      if (!partial) {
        for (const [qc, qn] of qHist[qt]) {
          for (const [kc, kn] of kHist[kt]) counts[qc * cells + kc] += qn * kn;
        }
        return;
      }
      const k0 = kt * tileK, k1 = Math.min(kPositions.length, k0 + tileK);
      for (let i = q0; i < q1; i++) {
        const q = qPositions[i], row = Math.floor(q / cellSize) * cells;
        for (let j = k0; j < k1; j++) {
          const k = kPositions[j];
          if (allows(q, k)) counts[row + Math.floor(k / cellSize)]++;
        }
      }
    });
  }
  return counts;
}

/** Per tile of a layout: which cells its positions fall in, and how many in each. */
function tileHistograms(positions: Int32Array, tileSize: number, cellSize: number) {
  const tiles: [number, number][][] = [];
  for (let t = 0; t * tileSize < positions.length; t++) {
    const byCell = new Map<number, number>();
    const end = Math.min(positions.length, (t + 1) * tileSize);
    for (let i = t * tileSize; i < end; i++) {
      const cell = Math.floor(positions[i] / cellSize);
      byCell.set(cell, (byCell.get(cell) ?? 0) + 1);
    }
    tiles.push([...byCell]);
  }
  return tiles;
}

/**
 * Element-level truth of every component over a square window of the mask (for zoomed views).
 *
 * @param plan the plan
 * @param q0 first query position of the window
 * @param k0 first key position of the window
 * @param size window side (clipped at N)
 * @returns per component (plan order) a row-major `size x size` 0/1 grid
 */
export function windowAllowed(plan: Plan, q0: number, k0: number, size: number): Uint8Array[] {
  const n = plan.n;
  return plan.branches.flatMap((b) =>
    b.components.map((c) => {
      const allows = c.kLayout.kind === "landmarks" ? () => false : componentAllows(c, n);
      const grid = new Uint8Array(size * size);
      for (let i = 0; i < size && q0 + i < n; i++) {
        for (let j = 0; j < size && k0 + j < n; j++) {
          grid[i * size + j] = allows(q0 + i, k0 + j) ? 1 : 0;
        }
      }
      return grid;
    })
  );
}
