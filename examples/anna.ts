/**
 * Approximate nearest-neighbour attention with uniform weights (the ANNA estimator of seed
 * 001, after Reformer's LSH): several independent hash tables each put every query and key in
 * one of `BUCKETS` buckets; a query's output is the plain mean of V over every key that shares
 * a bucket with it in at least one table. The allowed set stands in for the keys with the
 * largest scores, so no score is computed at all: every weight is `1 / |A(q)|` and the LSE is
 * `log |A(q)|`.
 *
 * Run `deno run -A examples/anna.ts` to check it on the GPU against the float64 reference.
 * @module
 */
import { hashBucket } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** Buckets per table. */
export const BUCKETS = 16;
/** Hash tables (rounds). */
export const TABLES = 3;

/** One line: the paper and what the pattern keeps. */
export const description =
  `ANNA: hashBucket(${BUCKETS} buckets, ${TABLES} tables, uniform weights): the mean of V over ` +
  `the keys sharing a bucket with the query in some table`;

/** `hashBucket({ buckets: 16, rounds: 3, seed: 1, weights: "uniform" })`. */
export const pattern = hashBucket({
  buckets: BUCKETS,
  rounds: TABLES,
  seed: 1,
  weights: "uniform",
});

if (import.meta.main) {
  const shape = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1024, headDim: 64 };
  await mainExample({ name: "anna", pattern, shape });
}
