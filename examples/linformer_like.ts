/**
 * Linformer-style compression (Wang et al. 2020, with pooling instead of a learned projection,
 * as in Luna/NSA's compressed keys): every query attends the mean-pooled landmarks of K and V,
 * `lowRank(rank)`, plus an exact local window, in ONE softmax: the window keeps local detail,
 * the landmarks carry the rest of the sequence at `rank` keys per query.
 *
 * Run `deno run -A examples/linformer_like.ts` to check it on the GPU against the float64
 * reference.
 * @module
 */
import { lowRank, union, window } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** Landmarks: K and V pooled into this many segment means. */
export const RANK = 64;
/** Exact neighbours on each side. */
export const WINDOW = 32;

/** One line: the paper and what the pattern keeps. */
export const description =
  `Linformer-like: union(window(${WINDOW}, ${WINDOW}), lowRank(${RANK})): local keys and ${RANK} pooled landmarks in one softmax`;

/** `union(window(32, 32), lowRank(64))`. */
export const pattern = union(window(WINDOW, WINDOW), lowRank(RANK));

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 1000, headDim: 64 };
  await mainExample({ name: "linformer_like", pattern, shape });
}
