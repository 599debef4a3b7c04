/**
 * The meaning of `hashBucket` (DESIGN §2): the seeded ±1 planes, the bucket of a vector, the
 * check that two implementations' codes agree wherever the sign is not a rounding tie, and
 * where a `weights: "uniform"` hashBucket may stand. The CPU reference, the compiler and the
 * GPU pre-pass all draw the same planes from here.
 * @module
 */
import { PlanError } from "../core/errors.ts";
import { lowbias32 } from "../core/hash.ts";
import type { HashBucketPattern, Pattern } from "./schema.ts";

/**
 * `log2(buckets)`: the planes per round, one code bit each.
 * @example
 * ```ts
 * import { hashBits } from "./hash_bucket.ts";
 * hashBits(64); // 6
 * ```
 */
export function hashBits(buckets: number): number {
  return Math.round(Math.log2(buckets));
}

/**
 * Sign of component `i` of plane `p` in round `t`:
 * `(h(seed + h(t * nbits + p + h(i))) & 1) ? +1 : -1`, additions wrapping at 2^32.
 * @example
 * ```ts
 * import { planeSign } from "./hash_bucket.ts";
 * planeSign(0, 6, 0, 0, 0); // -1: h(0) = 0
 * ```
 */
export function planeSign(seed: number, nbits: number, t: number, p: number, i: number): 1 | -1 {
  const inner = lowbias32((t * nbits + p + lowbias32(i)) >>> 0);
  return lowbias32((seed + inner) >>> 0) & 1 ? 1 : -1;
}

/**
 * The planes of rounds `0..rounds-1`: `[rounds][nbits][dim]` signs.
 * @example
 * ```ts
 * import { hashPlanes } from "./hash_bucket.ts";
 * hashPlanes({ seed: 1, buckets: 4, rounds: 2 }, 8).length; // 2 * 2 * 8
 * ```
 */
export function hashPlanes(
  p: { seed: number; buckets: number; rounds: number },
  dim: number,
): Int8Array {
  const nbits = hashBits(p.buckets);
  const out = new Int8Array(p.rounds * nbits * dim);
  for (let t = 0; t < p.rounds; t++) {
    for (let b = 0; b < nbits; b++) {
      for (let i = 0; i < dim; i++) {
        out[(t * nbits + b) * dim + i] = planeSign(p.seed, nbits, t, b, i);
      }
    }
  }
  return out;
}

/**
 * Bucket codes of `rows` vectors of `dim` (float64 dot products): `[rounds][rows]`, code
 * `sum_p [v · R[t][p] > 0] << p`.
 * @param data the vectors, row-major
 * @param rows how many
 * @param dim their length
 * @param p buckets, rounds, seed
 * @returns the codes
 * @example
 * ```ts
 * import { bucketCodes } from "./hash_bucket.ts";
 * bucketCodes([1, 0, 0, 1], 2, 2, { seed: 0, buckets: 4, rounds: 1 }).length; // 2
 * ```
 */
export function bucketCodes(
  data: ArrayLike<number>,
  rows: number,
  dim: number,
  p: { seed: number; buckets: number; rounds: number },
): Uint32Array {
  const nbits = hashBits(p.buckets);
  const dot = projection(data, dim, hashPlanes(p, dim));
  const out = new Uint32Array(p.rounds * rows);
  for (let t = 0; t < p.rounds; t++) {
    for (let r = 0; r < rows; r++) {
      let code = 0;
      for (let b = 0; b < nbits; b++) if (dot(r, t * nbits + b) > 0) code |= 1 << b;
      out[t * rows + r] = code;
    }
  }
  return out;
}

/** `v · R` of row `r` and plane `plane` (round-major: `t * nbits + p`), in float64. */
function projection(data: ArrayLike<number>, dim: number, planes: Int8Array) {
  return (r: number, plane: number) => {
    let dot = 0;
    for (let i = 0; i < dim; i++) dot += data[r * dim + i] * planes[plane * dim + i];
    return dot;
  };
}

/**
 * Rows whose codes differ on a bit whose projection is clearly signed: `|v · R| > tol * |v|`
 * (DESIGN §2: closer to zero, float32 and float64 may round to either side).
 * @param data the vectors, row-major
 * @param rows how many
 * @param dim their length
 * @param p buckets, rounds, seed
 * @param codes the codes to check, `[rounds][rows]`
 * @param tolerance relative margin (default 1e-4)
 * @returns `[round, row]` of every disagreement (empty when they agree)
 * @example
 * ```ts
 * import { bucketCodes, codeDisagreements } from "./hash_bucket.ts";
 * const p = { seed: 0, buckets: 4, rounds: 1 };
 * codeDisagreements([1, 2], 1, 2, p, bucketCodes([1, 2], 1, 2, p)); // []
 * ```
 */
export function codeDisagreements(
  data: ArrayLike<number>,
  rows: number,
  dim: number,
  p: { seed: number; buckets: number; rounds: number },
  codes: ArrayLike<number>,
  tolerance = 1e-4,
): [number, number][] {
  const nbits = hashBits(p.buckets);
  const projected = projection(data, dim, hashPlanes(p, dim));
  const bad: [number, number][] = [];
  for (let r = 0; r < rows; r++) {
    let norm = 0;
    for (let i = 0; i < dim; i++) norm += data[r * dim + i] ** 2;
    norm = Math.sqrt(norm);
    for (let t = 0; t < p.rounds; t++) {
      for (let b = 0; b < nbits; b++) {
        const dot = projected(r, t * nbits + b);
        const bit = (codes[t * rows + r] >>> b) & 1;
        if (Math.abs(dot) > tolerance * norm && bit !== (dot > 0 ? 1 : 0)) {
          bad.push([t, r]);
          break;
        }
      }
    }
  }
  return bad;
}

/**
 * The key under which codes are shared: every hashBucket with this seed and bucket count
 * draws the same planes in round `t`, whatever its `rounds`.
 * @example
 * ```ts
 * import { hashCodeKey } from "./hash_bucket.ts";
 * hashCodeKey({ seed: 3, buckets: 64 }); // "seed 3, 64 buckets"
 * ```
 */
export function hashCodeKey(p: { seed: number; buckets: number }): string {
  return `seed ${p.seed}, ${p.buckets} buckets`;
}

/**
 * Refuses a `weights: "uniform"` hashBucket where some pair of its softmax would not be one of
 * its collisions: uniform weights set every score of the softmax to 0, which has a meaning only
 * when every allowed pair comes from a uniform hashBucket (an intersection with one, or a union
 * of such). A score modifier over such a softmax would have nothing to modify.
 * @param pattern a parsed pattern
 * @param where its JSON path
 * @returns per softmax branch, whether its weights are uniform
 * @throws {PlanError} naming the path
 * @example
 * ```ts
 * import { checkHashPlacement } from "./hash_bucket.ts";
 * checkHashPlacement({ kind: "hashBucket", buckets: 8, rounds: 2, seed: 1, weights: "uniform" }); // [true]
 * ```
 */
export function checkHashPlacement(pattern: Pattern, where = "pattern"): boolean[] {
  if (pattern.kind === "gated") {
    return pattern.branches.flatMap((b, i) => checkHashPlacement(b, `${where}.branches[${i}]`));
  }
  const uniform = findUniform(pattern, where);
  if (!uniform) return [false];
  if (pattern.kind === "scored") {
    throw new PlanError(
      `Cannot plan pattern: ${where}: a score modifier over ${uniform} (weights "uniform") has ` +
        `no effect: every score of that softmax is 0; drop the modifier or use weights "softmax"`,
    );
  }
  if (!onlyUniform(pattern)) {
    throw new PlanError(
      `Cannot plan pattern: ${uniform}: weights "uniform" make every score of the softmax 0, ` +
        `but ${where} also allows pairs that are not its collisions; put the uniform ` +
        `hashBucket in a gated branch of its own, or intersect the others with it`,
    );
  }
  return [true];
}

/** Every allowed pair is a uniform hashBucket's collision. */
function onlyUniform(p: Pattern): boolean {
  switch (p.kind) {
    case "hashBucket":
      return p.weights === "uniform";
    case "union":
      return p.of.every(onlyUniform);
    case "intersect":
      return p.of.some(onlyUniform);
    default:
      return false;
  }
}

/** The path of the first uniform hashBucket, if any. */
function findUniform(p: Pattern, path: string): string | undefined {
  switch (p.kind) {
    case "hashBucket":
      return p.weights === "uniform" ? path : undefined;
    case "union":
    case "intersect":
      for (const [i, c] of p.of.entries()) {
        const found = findUniform(c, `${path}.of[${i}]`);
        if (found) return found;
      }
      return undefined;
    case "scored":
      return findUniform(p.pattern, `${path}.pattern`);
    default:
      return undefined;
  }
}

/**
 * Every hashBucket of a pattern (each gated branch included), for the reference and the runtime.
 * @example
 * ```ts
 * import { hashBucketsOf } from "./hash_bucket.ts";
 * hashBucketsOf({ kind: "union", of: [{ kind: "causal" }, { kind: "hashBucket", buckets: 4, rounds: 1, seed: 0 }] }).length; // 1
 * ```
 */
export function hashBucketsOf(p: Pattern): HashBucketPattern[] {
  switch (p.kind) {
    case "hashBucket":
      return [p];
    case "union":
    case "intersect":
      return p.of.flatMap(hashBucketsOf);
    case "gated":
      return p.branches.flatMap(hashBucketsOf);
    case "scored":
      return hashBucketsOf(p.pattern);
    default:
      return [];
  }
}

/**
 * Bucket codes a call used, per code key (`hashCodeKey`): `q` is `[rounds][B][Hq][N]`, `k` is
 * `[rounds][B][Hkv][N]`, for the most rounds any hashBucket of that key asks for.
 */
export type HashCodes = Map<string, { rounds: number; q: Uint32Array; k: Uint32Array }>;
