/**
 * What the tools and the playground page report: errors against the float64 reference,
 * durations, the adapter line. Plain TypeScript, no Deno or Node APIs, so the browser bundle
 * shares it; `_common.ts` re-exports it for the command line.
 * @module
 */

/**
 * Largest `|actual - expected|` over entries where the reference is finite; an infinite
 * reference entry (the `-inf` LSE of an empty row) must be matched exactly, and a NaN anywhere
 * counts as an infinite error.
 *
 * @param actual the GPU's output
 * @param expected the float64 reference
 * @returns the worst absolute error (Infinity on a mismatched infinity, a NaN or a length mismatch)
 * @example
 * ```ts
 * import { maxAbsError } from "./_report.ts";
 * maxAbsError([1, -Infinity], [1.5, -Infinity]); // 0.5
 * ```
 */
export function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  return worstError(actual, expected, () => 1);
}

/**
 * Largest LSE error relative to its size, `|actual - expected| / max(1, |expected|)` (DESIGN
 * §4): a float32 LSE of scores near 1e4 is off by ~1e-3 at best, so an absolute bound would fail
 * a correct result. Infinite reference entries must match exactly; a NaN is an infinite error.
 *
 * @param actual the GPU's LSE
 * @param expected the float64 reference's
 * @returns the worst relative error (Infinity on a mismatched infinity, a NaN or a length mismatch)
 * @example
 * ```ts
 * import { maxLseError } from "./_report.ts";
 * maxLseError([10000.001, 2.5, -Infinity], [10000, 2, -Infinity]); // 0.25: 2.5 against 2
 * ```
 */
export function maxLseError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  return worstError(actual, expected, (e) => Math.max(1, Math.abs(e)));
}

/** The largest `|a - e| / size(e)`; infinities must match exactly, a NaN is an infinite error. */
function worstError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  size: (e: number) => number,
): number {
  if (actual.length !== expected.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(a) || Number.isNaN(e)) return Infinity;
    if (!Number.isFinite(e) || !Number.isFinite(a)) {
      if (a !== e) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(a - e) / size(e));
  }
  return worst;
}

/**
 * Milliseconds for humans: three significant digits.
 *
 * @param ms a duration
 * @returns e.g. `"12.3 ms"`
 * @example
 * ```ts
 * import { formatMs } from "./_report.ts";
 * formatMs(12.345); // "12.3 ms"
 * ```
 */
export function formatMs(ms: number): string {
  return `${ms >= 100 ? ms.toFixed(0) : ms.toPrecision(3)} ms`;
}

/**
 * The adapter line: its description, and a warning when it is a software fallback.
 *
 * @param info the runtime's device info
 * @returns one line
 * @example
 * ```ts
 * import { adapterLine } from "./_report.ts";
 * adapterLine({ description: "NVIDIA H200", isFallback: false, webgpu: "deno 2.9.6" });
 * // "adapter: NVIDIA H200 [deno 2.9.6]"
 * ```
 */
export function adapterLine(
  info: { description: string; isFallback: boolean; webgpu?: string; matrices?: unknown[] },
): string {
  const on = info.webgpu
    ? ` [${info.webgpu}${info.matrices?.length ? ", subgroup matrices" : ""}]`
    : "";
  return info.isFallback
    ? `adapter: ${info.description}${on} (fallback software adapter: correct, but timings ` +
      `are not representative of a GPU)`
    : `adapter: ${info.description}${on}`;
}
