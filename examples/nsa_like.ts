/**
 * NSA-like (Native Sparse Attention, Yuan et al. 2025; seed 002): three branches, each its own
 * softmax, blended by per-head gates: a compressed branch over pooled blocks (`lowRank`), a
 * sliding window, and a selected branch of key blocks. NSA selects its blocks by the compressed
 * scores; here the selection is seeded random blocks (BigBird-style), a data-independent stand-in,
 * all causal as in NSA's decoder.
 *
 * Run `deno run -A examples/nsa_like.ts` to check it on the GPU against the float64 reference.
 * @module
 */
import { causal, gated, intersect, lowRank, random, window } from "../dsl/builders.ts";
import { normals } from "../runtime/seeded_random.ts";
import { mainExample } from "./_verify.ts";

/** Compressed branch: one landmark per this many tokens. */
export const BLOCK = 32;
/** Sliding window of the local branch (keys before the query). */
export const WINDOW = 64;
/** Selected key blocks per query block. */
export const SELECTED = 4;

/** One line: the paper and what the pattern keeps. */
export const description =
  `NSA-like: gated(causal lowRank(N/${BLOCK}), causal window(${WINDOW}), causal random ${SELECTED}x${BLOCK} blocks)`;

/** The three causal branches at sequence length `n` (the compressed branch's rank depends on N). */
export function nsaPattern(n: number) {
  return gated([
    intersect(lowRank(Math.ceil(n / BLOCK)), causal()),
    intersect(window(WINDOW, 0), causal()),
    intersect(random({ blocks: SELECTED, blockSize: BLOCK, seed: 7 }), causal()),
  ]);
}

/** At N = 4096. */
export const pattern = nsaPattern(4096);

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 4, headsKV: 1, seqLen: 512, headDim: 64 };
  // NSA's gates come from a sigmoid of the query; a fixed per-head draw stands in for them.
  const next = normals(9);
  const gates = Float32Array.from({ length: 4 * 3 }, () => 1 / (1 + Math.exp(-next())));
  await mainExample({ name: "nsa_like", pattern: nsaPattern(shape.seqLen), shape, gates });
}
