/**
 * Longformer (Beltagy, Peters and Cohan, 2020): a sliding window of `w` keys around every
 * position, plus task-specific global tokens (here the `[CLS]` token at position 0) that attend
 * everywhere and that every position attends to. One softmax over the union.
 *
 * Run `deno run -A examples/longformer.ts` to check it on the GPU against the float64 reference.
 * @module
 */
import { global, union, window } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** Keys on each side of the query (the paper's one-sided window `w / 2`). */
export const HALF_WINDOW = 64;
/** Positions with global attention. */
export const GLOBAL_TOKENS = [0];

/** One line: the paper and what the pattern keeps. */
export const description =
  `Longformer: window(${HALF_WINDOW}, ${HALF_WINDOW}) + global tokens [${GLOBAL_TOKENS}]`;

/** `union(window(64, 64), global([0]))`. */
export const pattern = union(window(HALF_WINDOW, HALF_WINDOW), global(GLOBAL_TOKENS));

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
  await mainExample({ name: "longformer", pattern, shape });
}
