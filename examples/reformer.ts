/**
 * Reformer's LSH attention (Kitaev, Kaiser and Levskaya 2020): queries and keys are hashed by
 * random rotations (here DESIGN §2's seeded ±1 planes) into buckets, and each query attends
 * only the keys of its own bucket, in several independent rounds whose collisions are merged
 * into one softmax, a pair that collides twice counted once. Keys are the queries (shared-QK
 * attention, so every query's own bucket holds itself), and the model is causal.
 *
 * The GPU hashes Q and K, sorts each head by bucket, and attends each query tile to one
 * contiguous range of keys: time follows the colliding pairs, not N².
 *
 * Run `deno run -A examples/reformer.ts` to check it on the GPU against the float64 reference.
 * @module
 */
import { causal, hashBucket, intersect } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** Buckets per round (a power of two): about N / 64 keys per bucket at N = 2048. */
export const BUCKETS = 32;
/** Independent hashing rounds (Reformer's n_hashes). */
export const ROUNDS = 4;

/** One line: the paper and what the pattern keeps. */
export const description =
  `Reformer: causal ∩ hashBucket(${BUCKETS} buckets, ${ROUNDS} rounds): each query sees the ` +
  `earlier keys sharing one of its buckets, one softmax over all rounds`;

/** `intersect(causal(), hashBucket({ buckets: 32, rounds: 4, seed: 2020 }))`. */
export const pattern = intersect(
  causal(),
  hashBucket({ buckets: BUCKETS, rounds: ROUNDS, seed: 2020 }),
);

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 4, headsKV: 4, seqLen: 2048, headDim: 64 };
  await mainExample({ name: "reformer", pattern, shape, sharedQK: true });
}
