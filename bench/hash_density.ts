/**
 * Density of patterns with a hashBucket, from the codes a run used: the allowed set depends on
 * the data, so it is counted after the run, never planned. A branch that is one hashBucket is
 * counted exactly (inclusion-exclusion over its rounds); any other branch with a hashBucket is
 * estimated from evenly spaced query rows, each counted exactly against all N keys.
 * @module
 */
import type { AttentionShape } from "../core/shape.ts";
import type { HashBucketPattern, Pattern } from "../dsl/schema.ts";
import { hashBucketsOf, type HashCodes } from "../dsl/hash_bucket.ts";
import { allowedMask, type HashLookup } from "../runtime/reference/allowed.ts";
import { hashLookup } from "../runtime/reference/reference.ts";

/** Query rows per head sampled for a branch that mixes a hashBucket with other rules. */
const SAMPLED_ROWS = 512;

/**
 * Allowed pairs per N², averaged over (batch, query head), of one softmax branch.
 * @param branch a non-gated pattern holding a hashBucket
 * @param shape the call's shape
 * @param codes the codes the run used
 * @returns the density in [0, 1], and whether it is exact or sampled
 * @example
 * ```ts ignore
 * const { density } = hashBranchDensity(pattern, shape, out.hashCodes!);
 * ```
 */
export function hashBranchDensity(
  branch: Pattern,
  shape: AttentionShape,
  codes: HashCodes,
): { density: number; exact: boolean } {
  const { batch: B, headsQ: Hq, seqLen: N } = shape;
  let pairs = 0;
  if (branch.kind === "hashBucket") {
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Hq; h++) {
        pairs += collisions(branch, hashLookup(codes, shape, b, h)(branch), N);
      }
    }
    return { density: pairs / (B * Hq * N * N), exact: true };
  }
  const rows = Math.min(N, SAMPLED_ROWS);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const allows = allowedMask(branch, N, {
        head: h,
        batch: b,
        hash: hashLookup(codes, shape, b, h),
      });
      for (let i = 0; i < rows; i++) {
        const q = Math.floor((i + 0.5) * N / rows);
        for (let k = 0; k < N; k++) if (allows(q, k)) pairs++;
      }
    }
  }
  return { density: pairs / (B * Hq * rows * N), exact: false };
}

/**
 * Pairs colliding in at least one round: by inclusion-exclusion, the sum over non-empty round
 * subsets S of (-1)^(|S|+1) times the pairs colliding in every round of S, each counted by
 * grouping keys on their codes in S.
 */
function collisions(p: HashBucketPattern, at: ReturnType<HashLookup>, n: number): number {
  let total = 0;
  for (let subset = 1; subset < 1 << p.rounds; subset++) {
    const rounds = [...Array(p.rounds).keys()].filter((t) => subset >> t & 1);
    const joint = (code: (t: number, pos: number) => number, pos: number) =>
      rounds.map((t) => code(t, pos)).join(",");
    const keys = new Map<string, number>();
    for (let k = 0; k < n; k++) {
      const key = joint(at.k, k);
      keys.set(key, (keys.get(key) ?? 0) + 1);
    }
    let both = 0;
    for (let q = 0; q < n; q++) both += keys.get(joint(at.q, q)) ?? 0;
    total += rounds.length % 2 === 1 ? both : -both;
  }
  return total;
}

/**
 * Whether a pattern's density needs its codes (it holds a hashBucket).
 * @example
 * ```ts
 * import { needsCodes } from "./hash_density.ts";
 * needsCodes({ kind: "causal" }); // false
 * ```
 */
export function needsCodes(p: Pattern): boolean {
  return hashBucketsOf(p).length > 0;
}
