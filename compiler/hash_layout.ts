/**
 * Where a call's hashBucket data lives on the GPU. Each code set (one seed and bucket count,
 * for the most rounds any hashBucket of the plan asks of it) owns three arrays of the `hash`
 * buffer, indexed by *sort*: one sort per (round, row), the rows being the `B·Hq` query heads
 * then the `B·Hkv` key/value heads, so `sort = round · (B·Hq + B·Hkv) + row`:
 *
 * - `codes[sort · N + position]`: the bucket of that query or key;
 * - `order[sort · N + i]`: the position at bucket-order index `i` (a stable sort by code);
 * - `starts[sort · (buckets + 1) + c]`: the first index of bucket `c` in that order
 *   (`starts[buckets] = N`), so the keys of buckets `c0..c1` are indices `[starts[c0], starts[c1 + 1])`.
 *
 * The counting sort's per-chunk histograms go to a scratch buffer, `hashCounts`:
 * `counts[sort · buckets · chunks + c · chunks + chunk]`, bucket-major so that one exclusive
 * scan turns counts into each chunk's first index in bucket order.
 * @module
 */
import { assert } from "../core/errors.ts";
import { hashBits, hashCodeKey } from "../dsl/hash_bucket.ts";
import type { Plan } from "./plan.ts";
import type { AttentionShape } from "../core/shape.ts";

/** Rows per histogram chunk (one workgroup of the sort passes). */
export const SORT_CHUNK = 256;

/** One code set's arrays (word offsets into `hash` and `hashCounts`). */
export interface HashCodeSet {
  /** `hashCodeKey` of its seed and bucket count (dsl/hash_bucket.ts). */
  key: string;
  /** The planes' seed. */
  seed: number;
  /** Buckets per round. */
  buckets: number;
  /** Planes per round, `log2(buckets)`: one code bit each. */
  nbits: number;
  /** The most rounds any hashBucket of this key asks for. */
  rounds: number;
  /** Query rows `B·Hq`: a round holds `rowsQ + rowsK` sorts, query rows first. */
  rowsQ: number;
  /** Key rows `B·Hkv`. */
  rowsK: number;
  /** Word offset of the codes in `hash`: `codes[sort · N + position]`. */
  codes: number;
  /** Word offset of the bucket order in `hash`: `order[sort · N + i]`. */
  order: number;
  /** Word offset of the bucket starts in `hash`: `starts[sort · (buckets + 1) + c]`. */
  starts: number;
  /** Word offset of the per-chunk histograms in `hashCounts`. */
  counts: number;
  /** Histogram chunks per sort, `ceil(N / SORT_CHUNK)`. */
  chunks: number;
}

/** Where a call's hashBucket data lies in the `hash` and `hashCounts` buffers (module comment). */
export interface HashLayout {
  /** One per distinct seed and bucket count, ordered by key. */
  sets: HashCodeSet[];
  /** Words of the `hash` buffer. */
  words: number;
  /** Words of the `hashCounts` buffer. */
  countWords: number;
}

/**
 * The code sets a plan reads and their place in the buffers.
 * @param plan the plan
 * @param shape the call's shape
 * @returns the layout (no sets when the plan has no hashBucket)
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { hashLayout } from "./hash_layout.ts";
 * const plan = planPattern({ kind: "hashBucket", buckets: 8, rounds: 2, seed: 1 }, 64, { tileQ: 16, tileK: 16 });
 * hashLayout(plan, { batch: 1, headsQ: 2, headsKV: 1, seqLen: 64, headDim: 8 }).sets[0].rounds; // 2
 * ```
 */
export function hashLayout(plan: Plan, shape: AttentionShape): HashLayout {
  const most = new Map<string, { seed: number; buckets: number; rounds: number }>();
  for (const b of plan.branches) {
    for (const c of b.components) {
      for (const a of [c.atoms, ...c.exclusions].flat()) {
        if (a.kind !== "hashRound") continue;
        const key = hashCodeKey(a);
        const rounds = Math.max(most.get(key)?.rounds ?? 0, a.round + 1);
        most.set(key, { seed: a.seed, buckets: a.buckets, rounds });
      }
    }
  }
  // Query sorts are as long as key sorts: where the queries are some of the N positions, each
  // query's code sits at its position, and its sort holds the Nq queries only.
  const n = plan.n;
  const rowsQ = shape.batch * shape.headsQ, rowsK = shape.batch * shape.headsKV;
  const chunks = Math.ceil(n / SORT_CHUNK);
  let words = 0, countWords = 0;
  const sets = [...most.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([key, p]) => {
    const sorts = p.rounds * (rowsQ + rowsK);
    const set: HashCodeSet = {
      key,
      ...p,
      nbits: hashBits(p.buckets),
      rowsQ,
      rowsK,
      codes: words,
      order: words + sorts * n,
      starts: words + 2 * sorts * n,
      counts: countWords,
      chunks,
    };
    words += sorts * (2 * n + p.buckets + 1);
    countWords += sorts * p.buckets * chunks;
    return set;
  });
  return { sets, words, countWords };
}

/**
 * The code set of a hashBucket round.
 * @param layout the call's hash layout
 * @param a seed and buckets
 * @returns the set
 */
export function codeSetOf(layout: HashLayout, a: { seed: number; buckets: number }): HashCodeSet {
  const key = hashCodeKey(a);
  const set = layout.sets.find((s) => s.key === key);
  assert(set, `no hash code set for ${key}`);
  return set;
}
