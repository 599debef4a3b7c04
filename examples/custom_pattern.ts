/**
 * A pattern written only in TypeScript: a causal dilated window (every `DILATION`-th key among
 * the last `SPAN` positions, as in dilated sliding-window attention) with ALiBi (Press, Smith
 * and Lewis, 2022: each head subtracts `slope_h * (q - k)` from its scores, slopes a geometric
 * sequence per head). No built-in kind is used: the mask and the score are TypeScript
 * functions, which Weft compiles to WGSL for the kernel and interprets for the float64
 * reference, and classifies tile by tile by interval analysis (it picks the residue layout
 * for `% DILATION`, where the dilated band is block-dense).
 *
 * Run `deno run -A examples/custom_pattern.ts` to check it on the GPU against the float64
 * reference.
 * @module
 */
import { mask, registerMask, score, scored } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** How far back a query looks, in positions. */
export const SPAN = 192;
/** Every DILATION-th position in the span is kept. */
export const DILATION = 3;
/** Query heads; ALiBi gives each its own slope. */
export const HEADS = 4;

/**
 * ALiBi's slopes for `heads` heads: `2^(-8 i / heads)` for `i = 1..heads`.
 * @param heads number of query heads
 * @returns one slope per head, largest first
 * @example
 * ```ts
 * import { alibiSlopes } from "./custom_pattern.ts";
 * alibiSlopes(4); // [0.25, 0.0625, 0.015625, 0.00390625]
 * ```
 */
export function alibiSlopes(heads: number): number[] {
  return Array.from({ length: heads }, (_, i) => 2 ** (-8 * (i + 1) / heads));
}

/** The slopes the score modifier indexes by head (a captured constant array). */
export const SLOPES = alibiSlopes(HEADS);

/** A registered mask: other predicates call it by name, and the pattern embeds its source. */
export const onDilation = registerMask("onDilation", (d: number, r: number) => d % r == 0);

/** One line: what the pattern keeps. */
export const description = `causal dilated window (span ${SPAN}, dilation ${DILATION}) with ` +
  `ALiBi slopes for ${HEADS} heads, written in TypeScript`;

/** The mask and the score, both TypeScript functions; constants are passed by name. */
export const pattern = scored(
  mask((q, k) => {
    const d = q - k;
    return d >= 0 && d <= SPAN && onDilation(d, DILATION);
  }, { constants: { SPAN, DILATION } }),
  score((s, q, k, h) => s - SLOPES[h] * (q - k), { constants: { SLOPES } }),
);

if (import.meta.main) {
  const shape = { batch: 1, headsQ: HEADS, headsKV: HEADS, seqLen: 512, headDim: 64 };
  await mainExample({ name: "custom_pattern", pattern, shape });
}
