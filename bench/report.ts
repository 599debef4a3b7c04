/**
 * Benchmark rows and their three renderings: an aligned text table for the terminal, a
 * markdown table with a header line naming the device and date, and JSON. Derived numbers
 * (throughput, efficiency) are computed here, once, from the raw measurements, and left null
 * for rows of a software adapter, whose times are not performance figures.
 * @module
 */
import { type AttentionShape, kernelShapeName } from "../compiler/mod.ts";
import type { Measurement, Timer } from "./measure.ts";

/**
 * One result row, in the JSON form `--json` writes (snake_case, as other tools read it).
 * Numbers a failed row lacks are `null`, and `error` says why it failed.
 */
export interface BenchRow {
  pattern: string;
  n: number;
  dtype: "f32" | "f16";
  /** Median milliseconds per call. */
  ms: number | null;
  /** `4·B·H·N²·D / t`: what dense attention would need to reach the same time. */
  tflops_dense_equiv: number | null;
  /** `density × tflops_dense_equiv`: the useful work actually done per second. */
  tflops_allowed: number | null;
  /** Pairs computed per N² (gated patterns: summed over branches). */
  density: number | null;
  /** `(t_dense / t) × density` at the same N; `null` when the dense row did not run. */
  efficiency: number | null;
  /**
   * hashBucket rows: density is counted from the codes the run used, exactly for a pattern
   * that is one hashBucket (`true`) or from sampled query rows (`false`); absent otherwise.
   */
  density_exact?: boolean;
  /**
   * Median GPU ms of the pre-passes alone (hashBucket codes and sort, lowRank pooling), timed
   * in the same run; `ms` includes them. Absent for patterns without pre-passes.
   */
  prepass_ms?: number;
  /** Planning and WGSL generation plus pipeline creation. */
  compile_ms: number | null;
  /**
   * Passes whose pipeline was already in the cache (an earlier row of the same structure and
   * shape with other numbers compiled it), and all passes; absent in rows from older runs.
   */
  pipelines_cached?: number | null;
  pipelines?: number | null;
  /**
   * Wall time of the first submission: where a lazily compiling driver (llvmpipe) pays for
   * its shader compile, which `compile_ms` then misses.
   */
  first_submit_ms: number | null;
  /** Back-to-back repetitions per timed sample (`ms` is per repetition); absent in older runs. */
  repeat?: number | null;
  tiles_visited: number | null;
  tiles_dense: number | null;
  timer: Timer | null;
  /** The kernel shape, `tileQ x tileK x rowsPerThread[c columns]` (e.g. "64x32x2", "64x32x2c4"). */
  tiles: string | null;
  /**
   * Where the shape came from: `tuned` (timed before this row), `cache` (tuned by an earlier
   * run), `fallback` (software adapter, not tuned), `default` (not tuned: `--no-tune`).
   */
  tile_source: TileSource | null;
  /** Milliseconds spent tuning before the row (not in `compile_ms`); null when not tuned. */
  tune_ms: number | null;
  device: string;
  /** The WebGPU implementation that ran it (`native`: Deno's wgpu, `dawn`); absent in older runs. */
  backend?: string;
  /**
   * `--backward`: the backward pass alone (a forward and backward call's median less the
   * forward's), its ratio to the forward, and its efficiency against dense's backward at the
   * same N; null where the backward does not cover the pattern.
   */
  backward_ms?: number | null;
  backward_ratio?: number | null;
  backward_efficiency?: number | null;
  /** QKᵀ and P·V on subgroup matrices (`matrix`) or CUDA-core register tiles (`scalar`). */
  tile_math?: "matrix" | "scalar" | null;
  /**
   * Present (true) when the row ran on a software adapter (`isSoftwareAdapter`): its times are
   * not performance figures, so the throughputs and the efficiency are null.
   */
  software_adapter?: boolean;
  error?: string;
}

/** Where a row's kernel shape came from (see `BenchRow.tile_source`). */
export type TileSource = "tuned" | "cache" | "fallback" | "default";

/** What a row needs besides its measurement. */
export interface RowContext {
  pattern: string;
  shape: AttentionShape;
  device: string;
  /** The WebGPU implementation (runtime/device.ts), where known. */
  backend?: string;
  /** Element type of the call (default f32). */
  dtype?: "f32" | "f16";
  /** Median ms of the dense pattern at the same shape and dtype, when it ran. */
  denseMs?: number;
  /** How the kernel shape was picked, and the time spent tuning (default: not tuned). */
  tune?: { source: TileSource; ms: number };
  /**
   * The adapter is a software one (`isSoftwareAdapter`): the row keeps its times but leaves
   * TFLOP/s and efficiency null, since they would read as performance figures.
   */
  software?: boolean;
}

/**
 * Builds a row from a measurement, deriving throughput and efficiency.
 * @param m the measurement
 * @param ctx pattern name, shape, device, dense time at the same shape
 * @returns the row
 * @example
 * ```ts
 * import { buildRow } from "./report.ts";
 * const row = buildRow({
 *   ms: 2, samples: [2], timer: "gpu", compileMs: 1, pipelineMs: 4, pipelinesCached: 0, passes: 1,
 *   prepareMs: 1, firstSubmitMs: 9, repeat: 1,
 *   tiles: { visited: 10, partial: 2, dense: 40 }, density: 0.25,
 *   kernel: { tileQ: 64, tileK: 32, threads: 256, rowsPerThread: 2 },
 * }, {
 *   pattern: "ring", device: "gpu", denseMs: 4,
 *   shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 },
 * });
 * row.efficiency; // 0.5
 * ```
 */
export function buildRow(m: Measurement, ctx: RowContext): BenchRow {
  const { batch, headsQ, seqLen: n, headDim } = ctx.shape;
  const flops = 4 * batch * headsQ * n * n * headDim;
  const tflopsDense = flops / (m.ms * 1e-3) / 1e12;
  const figures = !ctx.software;
  return {
    pattern: ctx.pattern,
    n,
    dtype: ctx.dtype ?? "f32",
    ms: m.ms,
    tflops_dense_equiv: figures ? tflopsDense : null,
    tflops_allowed: figures ? m.density * tflopsDense : null,
    density: m.density,
    efficiency: ctx.denseMs === undefined || !figures ? null : (ctx.denseMs / m.ms) * m.density,
    ...(needsCodesRow(m) ? { density_exact: m.densityExact } : {}),
    ...(m.prePassMs === undefined ? {} : { prepass_ms: m.prePassMs }),
    compile_ms: m.compileMs + m.pipelineMs,
    pipelines_cached: m.pipelinesCached,
    pipelines: m.passes,
    first_submit_ms: m.firstSubmitMs,
    repeat: m.repeat,
    tiles_visited: m.tiles.visited,
    tiles_dense: m.tiles.dense,
    timer: m.timer,
    tiles: kernelShapeName(m.kernel, headDim),
    tile_math: m.kernel.matrix ? "matrix" : "scalar",
    tile_source: ctx.tune?.source ?? "default",
    tune_ms: ctx.tune?.source === "tuned" ? ctx.tune.ms : null,
    device: ctx.device,
    ...(ctx.backend ? { backend: ctx.backend } : {}),
    ...(ctx.software ? { software_adapter: true } : {}),
  };
}

/** Whether the row's density came from hashBucket codes. */
function needsCodesRow(m: Measurement): boolean {
  return m.densityFromCodes === true;
}

/**
 * A row for a pattern that failed to compile or run.
 * @param ctx pattern name, shape, device
 * @param error what went wrong
 * @returns a row with null numbers and the error's message
 * @example
 * ```ts
 * import { failedRow } from "./report.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 64 };
 * failedRow({ pattern: "ring", shape, device: "gpu" }, new Error("boom")).error; // "boom"
 * ```
 */
export function failedRow(ctx: RowContext, error: unknown): BenchRow {
  return {
    pattern: ctx.pattern,
    n: ctx.shape.seqLen,
    dtype: ctx.dtype ?? "f32",
    ms: null,
    tflops_dense_equiv: null,
    tflops_allowed: null,
    density: null,
    efficiency: null,
    compile_ms: null,
    pipelines_cached: null,
    pipelines: null,
    first_submit_ms: null,
    repeat: null,
    tiles_visited: null,
    tiles_dense: null,
    timer: null,
    tiles: null,
    tile_source: ctx.tune?.source ?? null,
    tune_ms: ctx.tune?.source === "tuned" ? ctx.tune.ms : null,
    device: ctx.device,
    ...(ctx.backend ? { backend: ctx.backend } : {}),
    tile_math: null,
    ...(ctx.software ? { software_adapter: true } : {}),
    error: error instanceof Error ? error.message : String(error),
  };
}

const HEADERS = [
  "pattern",
  "N",
  "backend",
  "ms",
  "timer",
  "TFLOP/s dense-eq",
  "TFLOP/s allowed",
  "density",
  "efficiency",
  "compile ms",
  "cached pipelines",
  "tiles visited/dense",
  "tiles",
];

/** The backward columns, where some row measured the backward pass. */
const BACKWARD_HEADERS = ["bwd ms", "bwd / fwd", "bwd efficiency"];

function hasBackward(rows: readonly BenchRow[]): boolean {
  return rows.some((r) => r.backward_ms !== undefined);
}

function backwardCells(r: BenchRow): string[] {
  return [
    sig(r.backward_ms ?? null),
    r.backward_ratio == null ? "" : r.backward_ratio.toFixed(2),
    r.backward_efficiency == null ? "" : r.backward_efficiency.toFixed(3),
  ];
}

function cells(r: BenchRow): string[] {
  if (r.error !== undefined) {
    return [r.pattern, String(r.n), r.backend ?? "", "error", "", "", "", "", "", "", r.error, ""];
  }
  return [
    r.pattern,
    String(r.n),
    r.backend ?? "",
    sig(r.ms),
    r.timer ?? "",
    sig(r.tflops_dense_equiv),
    sig(r.tflops_allowed),
    r.density === null ? "" : r.density.toFixed(4),
    r.efficiency === null ? "" : r.efficiency.toFixed(3),
    r.compile_ms === null ? "" : r.compile_ms.toFixed(0),
    r.pipelines_cached == null ? "" : `${r.pipelines_cached}/${r.pipelines}`,
    `${r.tiles_visited}/${r.tiles_dense}`,
    r.tiles ?? "", // absent from rows of runs before tiles were reported
  ];
}

/** Three significant digits, without exponents for the sizes a benchmark sees. */
function sig(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return "";
  if (x === 0) return "0";
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 6));
}

/**
 * An aligned plain-text table: text left, numbers right.
 * @param rows the rows
 * @returns the table, one line per row under a header and a rule
 * @example
 * ```ts
 * import { formatTable } from "./report.ts";
 * console.log(formatTable([]));
 * ```
 */
export function formatTable(rows: readonly BenchRow[]): string {
  const backward = hasBackward(rows);
  const headers = backward ? [...HEADERS, ...BACKWARD_HEADERS] : HEADERS;
  const table = [
    headers,
    ...rows.map((r) => backward ? [...cells(r), ...backwardCells(r)] : cells(r)),
  ];
  const widths = headers.map((_, c) => Math.max(...table.map((r) => r[c].length)));
  const leftAligned = new Set([0, 2, 4, 11]);
  const line = (r: string[]) =>
    r.map((cell, c) => leftAligned.has(c) ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))
      .join("  ").trimEnd();
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...table.slice(1).map(line)]
    .join("\n");
}

/**
 * What a run on a software adapter says, once: its table keeps the times but not the figures.
 *
 * @param device the adapter's description
 * @returns one sentence
 * @example
 * ```ts
 * import { softwareNote } from "./report.ts";
 * softwareNote("llvmpipe"); // "llvmpipe is a software adapter (it runs on the CPU): ..."
 * ```
 */
export function softwareNote(device: string): string {
  return `${device} is a software adapter (it runs on the CPU): its timings are not ` +
    `performance figures, so TFLOP/s and efficiency are left blank.`;
}

/**
 * A markdown table under a header line naming the device, the date and the shape.
 * @param rows the rows
 * @param meta device description, whether it is a software adapter (`isSoftwareAdapter`; the
 *   table then opens with `softwareNote`), date, shape summary
 * @returns markdown text ending in a newline
 * @example
 * ```ts
 * import { formatMarkdown } from "./report.ts";
 * formatMarkdown([], { device: "llvmpipe", fallback: true, date: new Date(0), shape: "B=1" });
 * ```
 */
export function formatMarkdown(
  rows: readonly BenchRow[],
  meta: { device: string; fallback: boolean; date: Date; shape: string },
): string {
  const device = meta.fallback ? `${meta.device} (software adapter)` : meta.device;
  const backward = hasBackward(rows);
  const headers = backward ? [...HEADERS, ...BACKWARD_HEADERS] : HEADERS;
  const row = (r: BenchRow) => backward ? [...cells(r), ...backwardCells(r)] : cells(r);
  const lines = [
    `### Weft bench: ${device}, ${meta.date.toISOString().slice(0, 10)}, ${meta.shape}`,
    "",
    ...(meta.fallback ? [softwareNote(meta.device), ""] : []),
    `| ${headers.join(" | ")} |`,
    `| ${
      headers.map((_, c) => c === 0 || c === 2 || c === 4 || c === 11 ? "---" : "---:").join(" | ")
    } |`,
    ...rows.map((r) => `| ${row(r).map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n";
}

/**
 * The rows as pretty-printed JSON (an array), with non-finite numbers as `null`.
 * @param rows the rows
 * @returns JSON text ending in a newline
 * @example
 * ```ts
 * import { formatJson } from "./report.ts";
 * formatJson([]); // "[]\n"
 * ```
 */
export function formatJson(rows: readonly BenchRow[]): string {
  return JSON.stringify(rows, null, 2) + "\n";
}
