/**
 * The end of a lanes-form kernel (decode_lanes_wgsl.ts, select_lanes_wgsl.ts): its groups of
 * lanes each hold a running maximum `max{r}`, sum `sum{r}` and O row `acc{r}_{v}` per row, and
 * merge by log-sum-exp: within a subgroup by `subgroupShuffleXor` (partners end with the same
 * bits), then the subgroup-sized units in order through workgroup memory (`unitMax`, `unitSum`,
 * `outRows`), so the sums have a fixed order and the bits are the same every run. It leaves per
 * row `most{r}` and `total{r}` (the row's maximum and sum) and the unnormalised O rows in
 * `outRows`, `[row, width]` vec4s.
 * @module
 */

/** What a kernel's merge is specialised on. */
export interface LaneMerge {
  /** The rows' count. */
  rows: number;
  /** Vec4s of an O row each lane holds. */
  slots: number;
  /** The WGSL constant of the rows per workgroup (`ROWS`, `GROUP`). */
  rowsName: string;
  /** The WGSL constant of an O row's vec4s (`DV4`, `D4`). */
  width: string;
  /** The O row vec4 a lane's slot v holds, as WGSL. */
  slot: (v: number) => string;
  /** Xor masks of the butterfly across a subgroup's groups. */
  masks: number[];
  /** Indentation of the statements. */
  indent: string;
}

/**
 * The workgroup arrays of the merge.
 * @param units subgroup-sized units of the workgroup
 * @param rows rows
 * @param width vec4s of an O row
 * @returns their declarations
 * @example
 * ```ts
 * import { laneMergeMemory } from "./lane_merge_wgsl.ts";
 * laneMergeMemory(8, 4, 32).split("\n").length; // 3
 * ```
 */
export function laneMergeMemory(units: number, rows: number, width: number): string {
  return `var<workgroup> unitMax: array<f32, ${
    units * rows
  }>;  // each unit's running maxima, by row
var<workgroup> unitSum: array<f32, ${units * rows}>;  // and sums
var<workgroup> outRows: array<vec4<f32>, ${rows * width}>; // the units' O rows, added in order`;
}

/**
 * The merge's statements (module comment). The kernel declares `LANES`, `SUBGROUP` and `UNITS`
 * and calls it in uniform control flow (it has barriers).
 * @param o the rows, slots and names
 * @returns the statements
 * @example
 * ```ts
 * import { laneMerge } from "./lane_merge_wgsl.ts";
 * laneMerge({ rows: 1, slots: 1, rowsName: "ROWS", width: "DV4", slot: () => "lane",
 *   masks: [8, 16], indent: "  " }).includes("subgroupShuffleXor(max0, 16u)"); // true
 * ```
 */
export function laneMerge(o: LaneMerge): string {
  const R = range(o.rows), V = range(o.slots);
  const each = <T>(xs: T[], f: (x: T) => string) => xs.map(f).join("\n");
  const n = o.rowsName;
  const text =
    `// The groups of a subgroup merge by log-sum-exp through shuffles (partners end equal).
${
      each(o.masks, (mask) =>
        each(R, (r) =>
          `{
  let otherMax = subgroupShuffleXor(max${r}, ${mask}u);
  let otherSum = subgroupShuffleXor(sum${r}, ${mask}u);
  let most = max(max${r}, otherMax);
  let mine = exp2(max${r} - most);
  let theirs = exp2(otherMax - most);
  sum${r} = sum${r} * mine + otherSum * theirs;
${
            each(
              V,
              (v) =>
                `  acc${r}_${v} = acc${r}_${v} * mine + subgroupShuffleXor(acc${r}_${v}, ${mask}u) * theirs;`,
            )
          }
  max${r} = most;
}`))
    }
// Then the units, in order: their statistics, the common maximum and sum, and the O rows added
// one unit after another.
let unit = lid / SUBGROUP;
let leads = lid % SUBGROUP < LANES;  // the first group of a unit speaks for it
if (lid % SUBGROUP == 0u) {
${
      each(R, (r) =>
        `  unitMax[unit * ${n} + ${r}u] = max${r};\n  unitSum[unit * ${n} + ${r}u] = sum${r};`)
    }
}
workgroupBarrier();
${
      each(R, (r) =>
        `var most${r} = NO_SCORE;
for (var u = 0u; u < UNITS; u++) { most${r} = max(most${r}, unitMax[u * ${n} + ${r}u]); }
var total${r} = 0.0;
for (var u = 0u; u < UNITS; u++) {
  total${r} += unitSum[u * ${n} + ${r}u] * exp2(unitMax[u * ${n} + ${r}u] - most${r});
}
let mine${r} = exp2(max${r} - most${r});`)
    }
for (var u = 0u; u < UNITS; u++) {
  if (unit == u && leads) {
${
      each(R, (r) =>
        each(V, (v) =>
          `    {
      let at = ${r}u * ${o.width} + ${o.slot(v)};
      let mine = acc${r}_${v} * mine${r};
      outRows[at] = select(outRows[at] + mine, mine, u == 0u);
    }`))
    }
  }
  workgroupBarrier();
}`;
  return text.split("\n").map((line) => line ? o.indent + line : line).join("\n");
}

/** 0 .. n - 1. */
function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
