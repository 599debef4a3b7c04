/**
 * What `explain` measures from a plan without ever touching N² pairs: each branch's density
 * (allowed pairs over N²), how much of the visited tile area is allowed, and a picture of the
 * mask in natural order at most 64x64 cells.
 *
 * Every branch's components are disjoint and together allow exactly the branch's set, so a
 * FULL tile adds its whole area and a PARTIAL tile adds the pairs its component's predicate
 * (its atoms, minus what earlier components allow) accepts, evaluated element by element.
 * Partial tiles are few (band edges, class seams), so the work is proportional to the tiles
 * visited, not to N².
 * @module
 */
import { blockMaskCounts, forEachKeyTile, layoutPositions, type Plan } from "../compiler/mod.ts";
import type { Component } from "../compiler/plan.ts";
import { componentAllows } from "./_component_allows.ts";

/** The picture is at most this many cells a side. */
export const MAX_CELLS = 64;

/**
 * How much walking the density, the pictures and the reach do for a plan, each of them once:
 * every visited tile of every drawn component, and every pair of its partial tiles tested
 * element by element. Memory stays bounded (at most 1024 cells a side), so at any N the plan
 * compiles to they finish; this says when they will take a while.
 *
 * @param plan the plan
 * @returns visited tiles, and pairs tested in partial tiles
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { pictureWork } from "./_mask_picture.ts";
 * pictureWork(planPattern({ kind: "causal" }, 64, { tileQ: 16, tileK: 16 })); // { tiles: 10, pairs: 1024 }
 * ```
 */
export function pictureWork(plan: Plan): { tiles: number; pairs: number } {
  let tiles = 0, pairs = 0;
  for (const branch of plan.branches) {
    for (const c of branch.components) {
      if (c.kLayout.kind === "landmarks") continue;
      const counts = blockMaskCounts(c.mask);
      tiles += counts.visited;
      pairs += counts.partial * c.mask.tileQ * c.mask.tileK;
    }
  }
  return { tiles, pairs };
}

/** What one branch's mask looks like. */
export interface BranchMask {
  /** Allowed `(q, k)` pairs. */
  allowed: number;
  /** Pairs inside the tiles the branch visits (the work the kernels do). */
  visitedArea: number;
  /** Positions per cell side (1 when N <= 64: the picture is element-level). */
  cellSize: number;
  /** Cells per side: `ceil(N / cellSize)`. */
  cells: number;
  /** Row-major `cells x cells`, query cells down, key cells across: 1 where a pair is allowed. */
  grid: Uint8Array;
}

/**
 * Measures every branch of a plan.
 *
 * @param plan the plan (from `compile(...).plan`)
 * @returns one `BranchMask` per branch
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { branchMasks } from "./_mask_picture.ts";
 * const plan = planPattern({ kind: "causal" }, 8, { tileQ: 4, tileK: 4 });
 * branchMasks(plan)[0].allowed; // 36
 * ```
 */
export function branchMasks(plan: Plan): BranchMask[] {
  const n = plan.n;
  const cellSize = n <= MAX_CELLS ? 1 : Math.ceil(n / MAX_CELLS);
  const cells = Math.ceil(n / cellSize);
  return plan.branches.map((branch) => {
    // Each grid row is a 64-bit set of key cells, as two u32 words.
    const bits = new Uint32Array(cells * 2);
    let allowed = 0, visitedArea = 0;
    // Landmark components (lowRank) add pooled keys, not pairs of positions: not drawn.
    for (const component of branch.components.filter((c) => c.kLayout.kind !== "landmarks")) {
      const counts = measureComponent(component, n, cellSize, bits);
      allowed += counts.allowed;
      visitedArea += counts.visitedArea;
    }
    const grid = new Uint8Array(cells * cells);
    for (let r = 0; r < cells; r++) {
      for (let c = 0; c < cells; c++) {
        grid[r * cells + c] = (bits[r * 2 + (c >> 5)] >>> (c & 31)) & 1;
      }
    }
    return { allowed, visitedArea, cellSize, cells, grid };
  });
}

function measureComponent(c: Component, n: number, cellSize: number, bits: Uint32Array) {
  const { tileQ, tileK } = c.mask;
  const qPositions = layoutPositions(c.qLayout, n);
  const kPositions = layoutPositions(c.kLayout, n);
  const qCells = tileCellSets(qPositions, tileQ, cellSize);
  const kCells = tileCellSets(kPositions, tileK, cellSize);
  const allows = componentAllows(c, n);
  let allowed = 0, visitedArea = 0;
  for (let qt = 0; qt < c.mask.qTiles; qt++) {
    const q0 = qt * tileQ, q1 = Math.min(qPositions.length, q0 + tileQ);
    forEachKeyTile(c.mask, qt, (kt, partial) => {
      const k0 = kt * tileK, k1 = Math.min(kPositions.length, k0 + tileK);
      const area = (q1 - q0) * (k1 - k0);
      visitedArea += area;
      if (!partial) {
        allowed += area;
        // Every pair is allowed: each query cell of the tile gains all its key cells.
        const lo = kCells[kt * 2], hi = kCells[kt * 2 + 1];
        forEachBit(qCells[qt * 2], qCells[qt * 2 + 1], (r) => {
          bits[r * 2] |= lo;
          bits[r * 2 + 1] |= hi;
        });
        return;
      }
      for (let i = q0; i < q1; i++) {
        const q = qPositions[i], row = Math.floor(q / cellSize) * 2;
        for (let j = k0; j < k1; j++) {
          const k = kPositions[j];
          if (!allows(q, k)) continue;
          allowed++;
          const col = Math.floor(k / cellSize);
          bits[row + (col >> 5)] |= 1 << (col & 31);
        }
      }
    });
  }
  return { allowed, visitedArea };
}

/** Per tile of a layout, the set of cells its positions fall in (64 bits as two words). */
function tileCellSets(positions: Int32Array, tileSize: number, cellSize: number): Uint32Array {
  const tiles = Math.ceil(positions.length / tileSize);
  const out = new Uint32Array(tiles * 2);
  for (let i = 0; i < positions.length; i++) {
    const t = Math.floor(i / tileSize), cell = Math.floor(positions[i] / cellSize);
    out[t * 2 + (cell >> 5)] |= 1 << (cell & 31);
  }
  return out;
}

function forEachBit(lo: number, hi: number, f: (bit: number) => void): void {
  for (let w = 0; w < 2; w++) {
    let word = w === 0 ? lo : hi;
    while (word !== 0) {
      const bit = 31 - Math.clz32(word & -word);
      f(w * 32 + bit);
      word &= word - 1;
    }
  }
}

/**
 * The picture as text: one line per query cell, `█` where some pair is allowed, `░` where none.
 *
 * @param mask a branch's mask
 * @returns `cells` lines of `cells` characters
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { branchMasks, renderMask } from "./_mask_picture.ts";
 * const [m] = branchMasks(planPattern({ kind: "causal" }, 3, { tileQ: 4, tileK: 4 }));
 * renderMask(m); // "█░░\n██░\n███"
 * ```
 */
export function renderMask(mask: BranchMask): string {
  const lines: string[] = [];
  for (let r = 0; r < mask.cells; r++) {
    let line = "";
    for (let c = 0; c < mask.cells; c++) line += mask.grid[r * mask.cells + c] ? "█" : "░";
    lines.push(line);
  }
  return lines.join("\n");
}

/**
 * The pictures of several branches as one SVG, side by side, one square per cell.
 *
 * @param masks the branches' masks
 * @param labels a caption per branch
 * @returns the SVG document
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { branchMasks, maskSvg } from "./_mask_picture.ts";
 * const masks = branchMasks(planPattern({ kind: "causal" }, 8, { tileQ: 4, tileK: 4 }));
 * maskSvg(masks, ["causal"]).startsWith("<svg"); // true
 * ```
 */
export function maskSvg(masks: BranchMask[], labels: string[]): string {
  const px = 6, gap = 24, caption = 18;
  const side = Math.max(...masks.map((m) => m.cells)) * px;
  const width = masks.length * (side + gap) - gap, height = side + caption;
  const parts = masks.map((m, b) => {
    const x0 = b * (side + gap);
    const cells: string[] = [];
    for (let r = 0; r < m.cells; r++) {
      for (let c = 0; c < m.cells; c++) {
        if (m.grid[r * m.cells + c]) {
          cells.push(
            `<rect x="${x0 + c * px}" y="${caption + r * px}" width="${px}" height="${px}"/>`,
          );
        }
      }
    }
    return `  <text x="${x0}" y="13" font-family="monospace" font-size="12">${
      escapeXml(labels[b])
    }` +
      `</text>\n  <rect x="${x0}" y="${caption}" width="${m.cells * px}" height="${
        m.cells * px
      }" ` +
      `fill="#eee"/>\n  <g fill="#1f4e8c">${cells.join("")}</g>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}">\n${parts.join("\n")}\n</svg>\n`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
