/**
 * `explain --png`: the mask as a raster, one row of panels per branch (softmax), each component
 * in its own colour, shaded by the fraction of its cell that it allows (so a sparse stride still
 * shows at tile level). At element level (N <= 512) one panel per branch holds everything; past
 * that the overview is tile level and two element-level zooms follow: the top-left corner (a
 * band's edges, stride lines) and the top-right one (a ring's wrap-around).
 * @module
 */
import type { Plan } from "../compiler/mod.ts";
import { cellCounts, windowAllowed } from "./_cell_counts.ts";
import type { Raster } from "./_png.ts";

/** Component colours, in plan order (branch by branch); they repeat past eight. */
export const COMPONENT_COLOURS: [number, number, number][] = [
  [31, 78, 140], // blue
  [192, 57, 43], // red
  [39, 174, 96], // green
  [142, 68, 173], // purple
  [211, 84, 0], // orange
  [22, 160, 133], // teal
  [127, 140, 141], // grey
  [241, 196, 15], // yellow
];

/** Overview side in cells: element level up to this N. */
export const OVERVIEW_CELLS = 512;
/** Zoom side in positions. */
export const ZOOM = 256;
const PANEL_PX = 512, GAP = 16, BACKGROUND = [245, 245, 245], PAGE = [255, 255, 255];

/** What the picture shows, for the caption `explain` prints. */
export interface MaskImage extends Raster {
  /** One line per panel column. */
  panels: string[];
  /** Component label and colour (hex), plan order. */
  legend: { label: string; colour: string }[];
}

/**
 * Draws a plan's mask.
 *
 * @param plan the plan
 * @param labels a label per component, plan order
 * @returns the raster, with what each panel column and colour means
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { maskImage } from "./_mask_image.ts";
 * const image = maskImage(planPattern({ kind: "ring", radius: 2 }, 16, { tileQ: 4, tileK: 4 }), ["ring"]);
 * [image.width, image.height]; // [512, 512]
 * ```
 */
export function maskImage(plan: Plan, labels: string[]): MaskImage {
  const n = plan.n;
  const overview = cellCounts(plan, OVERVIEW_CELLS);
  const zoomed = overview.cellSize > 1;
  const zoom = Math.min(ZOOM, n);
  const windows = zoomed
    ? [windowAllowed(plan, 0, 0, zoom), windowAllowed(plan, 0, n - zoom, zoom)]
    : [];
  const columns = 1 + windows.length;
  const branches = plan.branches.length;
  const width = columns * PANEL_PX + (columns + 1) * GAP;
  const height = branches * PANEL_PX + (branches + 1) * GAP;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set(PAGE, i * 3);
  const put = (x: number, y: number, c: number[]) => rgb.set(c, (y * width + x) * 3);

  // Components of branch b, with their global index (their colour).
  const byBranch = plan.branches.map(() => [] as number[]);
  overview.components.forEach((c, i) => byBranch[c.branch].push(i));

  const panel = (
    column: number,
    b: number,
    cells: number,
    shade: (i: number, r: number, c: number) => number,
  ) => {
    const px = Math.max(1, Math.floor(PANEL_PX / cells));
    const x0 = GAP + column * (PANEL_PX + GAP), y0 = GAP + b * (PANEL_PX + GAP);
    for (let r = 0; r < cells; r++) {
      for (let c = 0; c < cells; c++) {
        let colour = BACKGROUND;
        for (const i of byBranch[b]) {
          const f = shade(i, r, c);
          if (f > 0) colour = mix(colour, COMPONENT_COLOURS[i % 8], 0.35 + 0.65 * f);
        }
        for (let y = 0; y < px; y++) {
          for (let x = 0; x < px; x++) put(x0 + c * px + x, y0 + r * px + y, colour);
        }
      }
    }
    frame(put, x0 - 1, y0 - 1, cells * px + 2, cells * px + 2);
  };

  const { cells, cellSize } = overview;
  const side = (cell: number) => Math.min(cellSize, n - cell * cellSize);
  for (let b = 0; b < branches; b++) {
    panel(
      0,
      b,
      cells,
      (i, r, c) => overview.components[i].counts[r * cells + c] / (side(r) * side(c)),
    );
    windows.forEach((w, column) => panel(column + 1, b, zoom, (i, r, c) => w[i][r * zoom + c]));
  }
  const scale = cellSize === 1
    ? "element level"
    : `tile level, a cell is ${cellSize}x${cellSize} positions`;
  const panels = [`left: all ${n}x${n} pairs (${scale}; shade = fraction of the cell allowed)`];
  if (zoomed) {
    panels.push(`middle: queries 0..${zoom - 1} x keys 0..${zoom - 1}, element level`);
    panels.push(`right: queries 0..${zoom - 1} x keys ${n - zoom}..${n - 1}, element level`);
  }
  const legend = overview.components.map((_, i) => ({
    label: labels[i],
    colour: `#${COMPONENT_COLOURS[i % 8].map((v) => v.toString(16).padStart(2, "0")).join("")}`,
  }));
  return { width, height, rgb, panels, legend };
}

function mix(a: number[], b: number[], t: number): number[] {
  const u = Math.min(1, t);
  return a.map((x, i) => Math.round(x + (b[i] - x) * u));
}

function frame(
  put: (x: number, y: number, c: number[]) => void,
  x0: number,
  y0: number,
  w: number,
  h: number,
) {
  const edge = [90, 90, 90];
  for (let x = x0; x < x0 + w; x++) {
    put(x, y0, edge);
    put(x, y0 + h - 1, edge);
  }
  for (let y = y0; y < y0 + h; y++) {
    put(x0, y, edge);
    put(x0 + w - 1, y, edge);
  }
}
