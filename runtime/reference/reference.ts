/**
 * The float64 CPU reference: DESIGN §1 computed literally, one query row at a time, with the
 * allowed set from `allowedMask`. It is the oracle for the kernels and the only source of the
 * golden files, so it favours plain loops over speed.
 * @module
 */
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { ShapeError } from "../../core/errors.ts";
import { checkShape, type GateLayout } from "../../core/input_shapes.ts";
import type { AttentionShape } from "../../core/shape.ts";
import { checkExpressionDomain } from "../../dsl/expression_domain.ts";
import { allowedSetUsesHeadOrBatch, scoreProgram } from "../../dsl/expression_check.ts";
import { allowedMask, type HashLookup } from "./allowed.ts";
import {
  bucketCodes,
  checkHashPlacement,
  codeDisagreements,
  hashBucketsOf,
  hashCodeKey,
  type HashCodes,
} from "../../dsl/hash_bucket.ts";
import { landmarkAllows, landmarkRanks, poolLandmarks } from "./landmarks.ts";
import { checkLowRankPlacement, landmarkGeometry } from "../../dsl/low_rank.ts";
import {
  type ConstantSlope,
  scoreConstantSlopesFunction,
  scoreDerivativeFunction,
  scoreFunction,
} from "./expression_eval.ts";

export type { AttentionShape } from "../../core/shape.ts";

/** Everything one reference call needs; tensors are row-major in DESIGN §1 layout. */
export interface ReferenceInput {
  /** The pattern, in JSON form or from the builders (checked here). */
  pattern: Pattern;
  /** The sizes the tensors are laid out at. */
  shape: AttentionShape;
  /** `[B, Hq, N, D]` */
  q: ArrayLike<number>;
  /** `[B, Hkv, N, D]` */
  k: ArrayLike<number>;
  /** `[B, Hkv, N, D]` */
  v: ArrayLike<number>;
  /** Runtime gates `[B, Hq, branches]` or `[B, Hq, N, branches]` (gated patterns only). */
  gates?: { data: ArrayLike<number>; shape: number[] };
  /** Score scale; defaults to `1 / sqrt(D)`. */
  scale?: number;
  /**
   * hashBucket codes to use (the GPU's, from `Runtime.run`), so that a dot product that rounds
   * to the other side of a plane does not change the allowed set; default: computed here in
   * float64.
   */
  hashCodes?: HashCodes;
}

/** The outputs, float64. */
export interface ReferenceOutput {
  /** `[B, Hq, N, D]` */
  o: Float64Array;
  /** `[B, Hq, N]`, or `[branches, B, Hq, N]` for a gated pattern (each branch's own lse). */
  lse: Float64Array;
  /** The hashBucket codes the allowed sets were built from (empty without hashBuckets). */
  hashCodes: HashCodes;
}

/**
 * Sparse attention in float64, straight from DESIGN §1-§2.
 *
 * @param input pattern, shape, q/k/v, optional runtime gates and scale
 * @returns `o` and `lse`; an empty allowed set gives `o = 0`, `lse = -Infinity`
 * @throws {PatternError} an invalid pattern
 * @throws {PlanError} a global token `>= N`
 * @throws {ShapeError} tensors or gates that disagree with the shape
 * @example
 * ```ts
 * import { reference } from "./reference.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 1 };
 * const { o, lse } = reference({
 *   pattern: { kind: "causal" },
 *   shape,
 *   q: [0, 0],
 *   k: [0, 0],
 *   v: [1, 3],
 * });
 * console.log(o, lse); // Float64Array [1, 2], Float64Array [0, Math.LN2]
 * ```
 */
export function reference(input: ReferenceInput): ReferenceOutput {
  const setup = referenceSetup(input);
  const { batch: B, headsQ: Hq, seqLen: N, headDim: D } = input.shape;
  const branches = setup.branches.length;
  const o = new Float64Array(B * Hq * N * D);
  const lse = new Float64Array(branches * B * Hq * N);
  const row = new Float64Array(D);
  setup.forEachRow((b, h, q, qRow, i, sources) => {
    const lseRow = softmaxRow({
      q: input.q,
      qRow,
      sources,
      D,
      scale: setup.scale,
      score: setup.branches[i].score(b, h, q),
      out: row,
    });
    lse[((i * B + b) * Hq + h) * N + q] = lseRow;
    const g = setup.gate(b, h, q, i);
    for (let d = 0; d < D; d++) o[qRow + d] += g * row[d];
  });
  return { o, lse, hashCodes: setup.hashCodes };
}

/** One branch's softmax inputs, as the reference and its gradients read them. */
export interface BranchSetup {
  /** The keys query `q` of (batch b, query head h) sees, token rows. */
  keys(b: number, h: number): number[][];
  /** The score modifier at (b, h, q), `(s, k) => score`, if the branch has one. */
  score(b: number, h: number, q: number): ((s: number, k: number) => number) | undefined;
  /** Its derivative with respect to the raw score, `(s, k) => ∂score/∂s`, likewise. */
  scoreSlope(b: number, h: number, q: number): ((s: number, k: number) => number) | undefined;
  /** Its derivatives in its learnable constants' entries, `(s, k) => reads`, likewise. */
  scoreConstantSlopes(
    b: number,
    h: number,
    q: number,
  ): ((s: number, k: number) => ConstantSlope[]) | undefined;
  /** lowRank landmarks: pooled K and V per rank, and the landmarks each query sees. */
  landmarks: { rank: number; count: number; k: Float64Array; v: Float64Array; keys: number[][] }[];
}

/** What a reference call is computed from, once its input is checked (DESIGN §1-§2). */
export interface ReferenceSetup {
  scale: number;
  branches: BranchSetup[];
  /** The weight of branch `i` at (b, h, q): 1 where not gated. */
  gate: (b: number, h: number, q: number, i: number) => number;
  /** Where the gates come from: a runtime tensor per head or per position, or fixed. */
  gateLayout: GateLayout | "fixed";
  hashCodes: HashCodes;
  /** Every (batch, query head, query, branch) with its Q row offset and key sources. */
  forEachRow(
    visit: (b: number, h: number, q: number, qRow: number, i: number, sources: KeySource[]) => void,
  ): void;
}

/**
 * Checks a reference input and lays out what its softmaxes read: each branch's allowed keys per
 * query, score modifier, landmarks and gate.
 * @param input as `reference` takes it
 * @returns the setup
 * @throws as `reference`
 */
export function referenceSetup(input: ReferenceInput): ReferenceSetup {
  const pattern = parsePattern(input.pattern);
  const { shape } = input;
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  const gated = pattern.kind === "gated";
  const layout = checkShape(shape, {
    q: input.q,
    k: input.k,
    v: input.v,
    gates: input.gates,
    branches: gated ? branches.length : undefined,
  });
  const scale = input.scale ?? 1 / Math.sqrt(shape.headDim);
  if (!Number.isFinite(scale)) {
    throw new ShapeError(`Bad shape: scale must be a finite number, got ${scale}`);
  }

  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  checkLowRankPlacement(pattern);
  // Predicates and scores that would overflow i32, divide by zero or index past an array at
  // this shape are refused here as in the compiler.
  checkExpressionDomain(pattern, { n: N, batch: B, headsQ: Hq });
  const path = (i: number) => gated ? `pattern.branches[${i}]` : "pattern";
  // A uniform hashBucket's softmax gives every allowed key score 0 (the ANNA estimator).
  const uniform = checkHashPlacement(pattern);
  const hashCodes = input.hashCodes ?? referenceHashCodes(pattern, shape, input.q, input.k);
  const hashAt = (b: number, h: number) => hashLookup(hashCodes, shape, b, h);
  const setups: BranchSetup[] = branches.map((branch, i) => {
    // A(q) depends on batch and head only through predicates that read b or h; otherwise each
    // branch's keys per query are listed once.
    const perHead = allowedSetUsesHeadOrBatch(branch) || hashBucketsOf(branch).length > 0;
    const cache = new Map<number, number[][]>();
    const keys = (b: number, h: number) => {
      const at = perHead ? b * Hq + h : 0;
      let list = cache.get(at);
      if (!list) {
        const allowed = allowedMask(branch, N, {
          path: path(i),
          head: h,
          batch: b,
          hash: hashAt(b, h),
        });
        list = Array.from({ length: N }, (_, q) => keysOf(allowed, q, N));
        cache.set(at, list);
      }
      return list;
    };
    // A scored branch passes every score through its modifier (the same program as the kernel's).
    const program = branch.kind === "scored"
      ? scoreProgram(branch.score, `${path(i)}.score.expr`)
      : undefined;
    const modifier = uniform[i] ? () => 0 : program && scoreFunction(program, N);
    const slope = uniform[i] ? () => 0 : program && scoreDerivativeFunction(program, N);
    const score = (b: number, h: number, q: number) =>
      modifier && ((s: number, k: number) => modifier(s, q, k, h, b));
    const scoreSlope = (b: number, h: number, q: number) =>
      slope && ((s: number, k: number) => slope(s, q, k, h, b));
    const constantSlopes = !uniform[i] && program
      ? scoreConstantSlopesFunction(program, N)
      : undefined;
    const scoreConstantSlopes = (b: number, h: number, q: number) =>
      constantSlopes && ((s: number, k: number) => constantSlopes(s, q, k, h, b));
    // lowRank landmarks: pooled K/V rows per rank, and the landmarks each query sees.
    const landmarks = landmarkRanks(branch).map((rank) => {
      const { count } = landmarkGeometry(N, rank);
      const allows = landmarkAllows(branch, N, rank);
      return {
        rank,
        count,
        k: poolLandmarks(input.k, B * Hkv, N, D, rank),
        v: poolLandmarks(input.v, B * Hkv, N, D, rank),
        keys: Array.from({ length: N }, (_, q) => keysOf(allows, q, count)),
      };
    });
    return { keys, score, scoreSlope, scoreConstantSlopes, landmarks };
  });
  const gate = gateFn(pattern, shape, input.gates?.data, layout);
  return {
    scale,
    branches: setups,
    // Not gated: the single branch has weight 1.
    gate: gated ? gate : () => 1,
    gateLayout: gated && input.gates ? layout : "fixed",
    hashCodes,
    forEachRow(visit) {
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < Hq; h++) {
          // DESIGN §1: query head h reads kv head floor(h / (Hq / Hkv)).
          const kvRow = b * Hkv + Math.floor(h / (Hq / Hkv));
          for (let q = 0; q < N; q++) {
            const qRow = ((b * Hq + h) * N + q) * D;
            setups.forEach((branch, i) =>
              visit(b, h, q, qRow, i, [
                { k: input.k, v: input.v, base: kvRow * N * D, keys: branch.keys(b, h)[q] },
                ...branch.landmarks.map((l) => ({
                  k: l.k,
                  v: l.v,
                  base: kvRow * l.count * D,
                  keys: l.keys[q],
                  landmarks: { rank: l.rank, count: l.count },
                })),
              ])
            );
          }
        }
      }
    },
  };
}

/**
 * The codes one (batch, query head) reads, and its key/value head's, from `[rounds][B][H][N]`.
 * @param codes codes per code key
 * @param shape the call's shape
 * @param b batch
 * @param h query head
 * @returns the lookup `allowedMask` takes
 * @throws {ShapeError} when the codes lack a hashBucket's key or rounds
 */
export function hashLookup(
  codes: HashCodes,
  shape: AttentionShape,
  b: number,
  h: number,
): HashLookup {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N } = shape;
  const kvHead = Math.floor(h / (Hq / Hkv));
  return (p) => {
    const c = codes.get(hashCodeKey(p));
    if (!c || c.rounds < p.rounds) {
      throw new ShapeError(
        `Bad input: hashCodes has no ${p.rounds} rounds for ${hashCodeKey(p)}; pass the codes ` +
          `Runtime.run returned for this pattern`,
      );
    }
    return {
      q: (t, pos) => c.q[((t * B + b) * Hq + h) * N + pos],
      k: (t, pos) => c.k[((t * B + b) * Hkv + kvHead) * N + pos],
    };
  };
}

/**
 * How many (round, row) codes of each hashBucket contradict a clearly signed projection of the
 * inputs they were computed from (`codeDisagreements`): all zero when the codes are sound.
 * @param pattern the pattern
 * @param shape the call's shape
 * @param q the queries the codes were computed from (float16-rounded for an f16 call)
 * @param k the keys likewise
 * @param codes the codes to check (from `Runtime.run`)
 * @returns per code key, the disagreeing query and key codes
 */
export function hashCodeMismatches(
  pattern: Pattern,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  codes: HashCodes,
): { key: string; queries: number; keys: number }[] {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  return [...codeSets(pattern)].map(([key, p]) => {
    const got = codes.get(key);
    if (!got || got.rounds < p.rounds) return { key, queries: Infinity, keys: Infinity };
    const planes = { ...p, rounds: got.rounds };
    return {
      key,
      queries: codeDisagreements(q, B * Hq * N, D, planes, got.q).length,
      keys: codeDisagreements(k, B * Hkv * N, D, planes, got.k).length,
    };
  });
}

/** Each code key of a pattern's hashBuckets, with the most rounds any of them asks of it. */
function codeSets(
  pattern: Pattern,
): Map<string, { seed: number; buckets: number; rounds: number }> {
  const most = new Map<string, { seed: number; buckets: number; rounds: number }>();
  for (const p of hashBucketsOf(pattern)) {
    const key = hashCodeKey(p);
    if ((most.get(key)?.rounds ?? 0) < p.rounds) most.set(key, p);
  }
  return most;
}

/**
 * The bucket codes of every hashBucket in a pattern, in float64 (DESIGN §2).
 * @param pattern a parsed pattern
 * @param shape the attention shape
 * @param q queries `[B, Hq, N, D]`
 * @param k keys `[B, Hkv, N, D]`
 * @returns codes per `hashCodeKey`, each for the most rounds asked of it
 * @example
 * ```ts
 * import { referenceHashCodes } from "./reference.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 4 };
 * const x = [1, 0, 0, 0, 0, 1, 0, 0];
 * referenceHashCodes({ kind: "hashBucket", buckets: 4, rounds: 1, seed: 0 }, shape, x, x).size; // 1
 * ```
 */
export function referenceHashCodes(
  pattern: Pattern,
  shape: AttentionShape,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
): HashCodes {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const out: HashCodes = new Map();
  for (const [key, p] of codeSets(pattern)) {
    out.set(key, {
      rounds: p.rounds,
      q: bucketCodes(q, B * Hq * N, D, p),
      k: bucketCodes(k, B * Hkv * N, D, p),
    });
  }
  return out;
}

function keysOf(allowed: (q: number, k: number) => boolean, q: number, n: number): number[] {
  const keys: number[] = [];
  for (let k = 0; k < n; k++) if (allowed(q, k)) keys.push(k);
  return keys;
}

/** Rows a softmax may draw keys from: token K/V, or one rank's pooled landmarks. */
export interface KeySource {
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  /** Offset of this (batch, kv head)'s row 0. */
  base: number;
  /** Allowed row indices. */
  keys: number[];
  /** Pooled landmarks: the rank and landmark count they were pooled at (absent: token rows). */
  landmarks?: { rank: number; count: number };
}

/**
 * One softmax over the keys of every source for the query row at `qRow`: writes the weighted
 * sum of V rows into `out` and returns the lse. No keys: `out = 0` and lse `-Infinity` (never NaN).
 */
export function softmaxRow(args: {
  q: ArrayLike<number>;
  qRow: number;
  sources: KeySource[];
  D: number;
  scale: number;
  /** The branch's score modifier at this query, `(s, k) => score`, if it has one. */
  score?: (s: number, k: number) => number;
  out: Float64Array;
}): number {
  const { q, qRow, sources, D, scale, score, out } = args;
  out.fill(0);
  const scores = sources.map((s) =>
    s.keys.map((k) => {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[qRow + d] * s.k[s.base + k * D + d];
      return score ? score(scale * dot, k) : scale * dot;
    })
  );
  // Subtracting the row max keeps every exp() <= 1, so nothing overflows.
  // (A loop, not Math.max(...scores): spreading a long row can overflow the call stack.)
  let max = -Infinity;
  for (const row of scores) for (const x of row) max = Math.max(max, x);
  if (max === -Infinity) return -Infinity;
  const weights = scores.map((row) => row.map((x) => Math.exp(x - max)));
  let sum = 0;
  for (const row of weights) for (const w of row) sum += w;
  sources.forEach((s, i) =>
    s.keys.forEach((k, j) => {
      const p = weights[i][j] / sum;
      for (let d = 0; d < D; d++) out[d] += p * s.v[s.base + k * D + d];
    })
  );
  return max + Math.log(sum);
}

/** The gate of branch `i` at `(b, h, q)`: runtime tensor, else JSON gates, else 1/branches. */
function gateFn(
  pattern: Pattern,
  shape: AttentionShape,
  data: ArrayLike<number> | undefined,
  layout: GateLayout,
): (b: number, h: number, q: number, i: number) => number {
  if (pattern.kind !== "gated") return () => 1;
  const count = pattern.branches.length;
  const { headsQ: Hq, seqLen: N } = shape;
  if (data !== undefined && layout === "head") {
    return (b, h, _q, i) => data[(b * Hq + h) * count + i];
  }
  if (data !== undefined && layout === "position") {
    return (b, h, q, i) => data[((b * Hq + h) * N + q) * count + i];
  }
  const fixed = pattern.gates ?? pattern.branches.map(() => 1 / count);
  return (_b, _h, _q, i) => fixed[i];
}
