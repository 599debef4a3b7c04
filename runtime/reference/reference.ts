/**
 * The float64 CPU reference: DESIGN §1 computed literally, one query row at a time, with the
 * allowed set from `allowedMask`. It is the oracle for the kernels and the only source of the
 * golden files, so it favours plain loops over speed.
 * @module
 */
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { ShapeError } from "../../core/errors.ts";
import { checkShape, type GateLayout } from "../../core/input_shapes.ts";
import { packedSequences, type Sequence } from "../../core/packed_sequences.ts";
import { type AttentionShape, queryOffsetOf, sequenceSizes } from "../../core/shape.ts";
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
import { type LinearRows, linearRows } from "./linear.ts";
import { landmarkAllows, landmarkRanks, poolLandmarks } from "./landmarks.ts";
import { checkLowRankPlacement, landmarkGeometry } from "../../dsl/low_rank.ts";
import {
  referenceSelections,
  selectBranchesAt,
  type SelectedBlocks,
  selectLookup,
} from "./selection.ts";
import {
  type ConstantSlope,
  scoreConstantSlopesFunction,
  scoreDerivativeFunction,
  scoreFunction,
} from "./expression_eval.ts";

export type { AttentionShape } from "../../core/shape.ts";
export type { Sequence } from "../../core/packed_sequences.ts";

/** Everything one reference call needs; tensors are row-major in DESIGN §1 layout. */
export interface ReferenceInput {
  /** The pattern, in JSON form or from the builders (checked here). */
  pattern: Pattern;
  /** The sizes the tensors are laid out at (`kvSeqLen` and `valueDim` where they differ). */
  shape: AttentionShape;
  /** `[B, Hq, Nq, D]` */
  q: ArrayLike<number>;
  /** `[B, Hkv, Nk, D]` */
  k: ArrayLike<number>;
  /** `[B, Hkv, Nk, Dv]` */
  v: ArrayLike<number>;
  /** Runtime gates `[B, Hq, branches]` or `[B, Hq, Nq, branches]` (gated patterns only). */
  gates?: { data: ArrayLike<number>; shape: number[] };
  /** Score scale; defaults to `1 / sqrt(D)`. */
  scale?: number;
  /**
   * hashBucket codes to use (the GPU's, from `Runtime.run`), so that a dot product that rounds
   * to the other side of a plane does not change the allowed set; default: computed here in
   * float64.
   */
  hashCodes?: HashCodes;
  /**
   * The blocks each select kept (the GPU's, from `Runtime.run`), so that two blocks whose
   * importances round the other way do not change the allowed set; default: chosen here in
   * float64 (selection.ts).
   */
  selectedBlocks?: SelectedBlocks[];
  /**
   * Where query row 0 sits among the keys (DESIGN §1): query row `i` is position
   * `queryOffset + i`; default `Nk - Nq` (the last Nq positions: a prefill chunk or decoding).
   */
  queryOffset?: number;
  /**
   * Packed sequences (B = 1): the query rows of each sequence, laid end to end; each attends
   * only to its own keys, with positions from its start and `n` its key count.
   */
  seqLens?: number[];
  /** The key rows of each packed sequence (default `seqLens`). */
  kvSeqLens?: number[];
}

/** The outputs, float64. */
export interface ReferenceOutput {
  /** `[B, Hq, Nq, Dv]` */
  o: Float64Array;
  /** `[B, Hq, Nq]`, or `[branches, B, Hq, Nq]` for a gated pattern (each branch's own lse). */
  lse: Float64Array;
  /** The hashBucket codes the allowed sets were built from (empty without hashBuckets). */
  hashCodes: HashCodes;
  /** The blocks each select kept, as the allowed sets used them (empty without selects). */
  selectedBlocks: SelectedBlocks[];
}

/**
 * Sparse attention in float64, straight from DESIGN §1-§2 (and §4: queries against a longer
 * key sequence, packed sequences, a value head dim of its own).
 *
 * @param input pattern, shape, q/k/v, optional runtime gates, scale, query offset and packing
 * @returns `o` and `lse`; an empty allowed set gives `o = 0`, `lse = -Infinity`
 * @throws {PatternError} an invalid pattern
 * @throws {PlanError} a global token `>= N`
 * @throws {ShapeError} tensors, gates, offset or sequence lengths that disagree with the shape
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
  const { batch: B, headsQ: Hq } = input.shape;
  const { nq: N, d: D, dv: Dv } = sequenceSizes(input.shape);
  const branches = setup.branches.length;
  const o = new Float64Array(B * Hq * N * Dv);
  const lse = new Float64Array(branches * B * Hq * N);
  const row = new Float64Array(Dv);
  setup.forEachRow((b, h, q, qRow, i, sources) => {
    const linear = setup.branches[i].linear;
    const lseRow = linear ? linear.row(b, h, q, row) : softmaxRow({
      q: input.q,
      qRow,
      sources,
      D,
      Dv,
      scale: setup.scale,
      score: setup.branches[i].score(b, h, q),
      out: row,
    });
    lse[((i * B + b) * Hq + h) * N + q] = lseRow;
    const g = setup.gate(b, h, q, i);
    const oRow = ((b * Hq + h) * N + q) * Dv;
    for (let d = 0; d < Dv; d++) o[oRow + d] += g * row[d];
  });
  return { o, lse, hashCodes: setup.hashCodes, selectedBlocks: setup.selectedBlocks };
}

/**
 * The sequences of a call: the packed ones (`seqLens`, `kvSeqLens`), else one of all Nq query
 * rows at `queryOffset` (default `Nk - Nq`) among all Nk keys.
 * @param input the call
 * @returns the sequences, in row order
 * @throws {ShapeError} lengths or an offset that do not fit the shape
 * @example
 * ```ts
 * import { sequencesOf } from "./reference.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 3, headDim: 4, kvSeqLen: 7 };
 * sequencesOf({ shape, seqLens: [1, 2], kvSeqLens: [3, 4] });
 * // [{ qStart: 0, qLen: 1, kStart: 0, kLen: 3, offset: 2 }, { qStart: 1, qLen: 2, kStart: 3, kLen: 4, offset: 2 }]
 * ```
 */
export function sequencesOf(
  input: Pick<ReferenceInput, "shape" | "queryOffset" | "seqLens" | "kvSeqLens">,
): Sequence[] {
  const { nq, nk } = sequenceSizes(input.shape);
  if (!input.seqLens) {
    if (input.kvSeqLens) {
      throw new ShapeError("Bad input: kvSeqLens needs seqLens (the packed sequences' query rows)");
    }
    const offset = queryOffsetOf(input.shape, input.queryOffset);
    return [{ qStart: 0, qLen: nq, kStart: 0, kLen: nk, offset }];
  }
  if (input.queryOffset !== undefined) {
    throw new ShapeError(
      "Bad input: queryOffset does not apply to packed sequences (sequence s's queries are " +
        "its last seqLens[s] positions)",
    );
  }
  return packedSequences(input.shape, input.seqLens, input.kvSeqLens);
}

/** One branch's softmax inputs, as the reference and its gradients read them. */
export interface BranchSetup {
  /**
   * The key sources of query row `q` of (batch b, query head h): its sequence's token keys,
   * then each lowRank rank's landmarks. Keys are positions within the sequence.
   */
  sources(b: number, h: number, q: number): KeySource[];
  /** The score modifier at query row q, `(s, k) => score`, if the branch has one. */
  score(b: number, h: number, q: number): ((s: number, k: number) => number) | undefined;
  /** Its derivative with respect to the raw score, `(s, k) => ∂score/∂s`, likewise. */
  scoreSlope(b: number, h: number, q: number): ((s: number, k: number) => number) | undefined;
  /** Its derivatives in its learnable constants' entries, `(s, k) => reads`, likewise. */
  scoreConstantSlopes(
    b: number,
    h: number,
    q: number,
  ): ((s: number, k: number) => ConstantSlope[]) | undefined;
  /** A linear branch (DESIGN §2): its rows, computed without a softmax; it has no sources. */
  linear?: LinearRows;
}

/** What a reference call is computed from, once its input is checked (DESIGN §1-§2, §4). */
export interface ReferenceSetup {
  scale: number;
  branches: BranchSetup[];
  sequences: Sequence[];
  /** The weight of branch `i` at (b, h, q): 1 where not gated. */
  gate: (b: number, h: number, q: number, i: number) => number;
  /** Where the gates come from: a runtime tensor per head or per position, or fixed. */
  gateLayout: GateLayout | "fixed";
  hashCodes: HashCodes;
  selectedBlocks: SelectedBlocks[];
  /** Every (batch, query head, query row, branch) with its Q row offset and key sources. */
  forEachRow(
    visit: (b: number, h: number, q: number, qRow: number, i: number, sources: KeySource[]) => void,
  ): void;
}

/**
 * Checks a reference input and lays out what its softmaxes read: each branch's allowed keys per
 * query, score modifier, landmarks and gate, per sequence.
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
  const sequences = sequencesOf(input);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const { nq: Nq, nk: Nk, d: D, dv: Dv } = sequenceSizes(shape);
  checkLowRankPlacement(pattern);
  // Predicates and scores that would overflow i32, divide by zero or index past an array at
  // this shape are refused here as in the compiler (at each sequence's key count).
  for (const n of new Set(sequences.map((s) => s.kLen))) {
    checkExpressionDomain(pattern, { n, batch: B, headsQ: Hq });
  }
  // Each query row's sequence.
  const sequenceOf = new Int32Array(Nq);
  sequences.forEach((s, i) => sequenceOf.fill(i, s.qStart, s.qStart + s.qLen));
  const path = (i: number) => gated ? `pattern.branches[${i}]` : "pattern";
  // A uniform hashBucket's softmax gives every allowed key score 0 (the ANNA estimator).
  const uniform = checkHashPlacement(pattern);
  const hashCodes = input.hashCodes ?? referenceHashCodes(pattern, shape, input.q, input.k);
  const selects = selectBranchesAt(pattern, shape, input);
  const selectedBlocks = selects.some((s) => s)
    ? input.selectedBlocks ?? referenceSelections(pattern, shape, input.q, input.k, scale)
    : [];
  const setups: BranchSetup[] = branches.map((branch, i) => {
    if (branch.kind === "linear") {
      const rows = linearRows(branch, { ...input, shape, scale, sequences, sequenceOf });
      const none = () => undefined;
      return {
        sources: () => [],
        score: none,
        scoreSlope: none,
        scoreConstantSlopes: none,
        linear: rows,
      };
    }
    // A(q) depends on batch and head only through predicates that read b or h; otherwise each
    // branch's keys per query are listed once per sequence.
    const perHead = allowedSetUsesHeadOrBatch(branch) || hashBucketsOf(branch).length > 0 ||
      selects[i] !== undefined;
    const cache = new Map<string, number[][]>();
    const keys = (b: number, h: number, s: number) => {
      const at = `${perHead ? b * Hq + h : 0}/${s}`;
      let list = cache.get(at);
      if (!list) {
        const seq = sequences[s];
        const allowed = allowedMask(branch, seq.kLen, {
          path: path(i),
          head: h,
          batch: b,
          hash: hashLookup(hashCodes, shape, b, h, seq),
          ...(selects[i] ? { select: selectLookup(selectedBlocks, i, shape, b, h) } : {}),
        });
        list = Array.from(
          { length: seq.qLen },
          (_, r) => keysOf(allowed, seq.offset + r, seq.kLen),
        );
        cache.set(at, list);
      }
      return list;
    };
    // A scored branch passes every score through its modifier (the same program as the kernel's),
    // whose `n` is the sequence's key count.
    const program = branch.kind === "scored"
      ? scoreProgram(branch.score, `${path(i)}.score.expr`)
      : undefined;
    const perLength = <T>(make: (n: number) => T) => {
      const made = new Map<number, T>();
      return (n: number) => {
        if (!made.has(n)) made.set(n, make(n));
        return made.get(n)!;
      };
    };
    const modifier = perLength((n) => uniform[i] ? () => 0 : program && scoreFunction(program, n));
    const slope = perLength((n) =>
      uniform[i] ? () => 0 : program && scoreDerivativeFunction(program, n)
    );
    const constantSlopes = perLength((n) =>
      !uniform[i] && program ? scoreConstantSlopesFunction(program, n) : undefined
    );
    /** Query row q's sequence and position. */
    const where = (q: number) => {
      const seq = sequences[sequenceOf[q]];
      return { seq, p: seq.offset + q - seq.qStart };
    };
    const score = (b: number, h: number, q: number) => {
      const { seq, p } = where(q), f = modifier(seq.kLen);
      return f && ((s: number, k: number) => f(s, p, k, h, b));
    };
    const scoreSlope = (b: number, h: number, q: number) => {
      const { seq, p } = where(q), f = slope(seq.kLen);
      return f && ((s: number, k: number) => f(s, p, k, h, b));
    };
    const scoreConstantSlopes = (b: number, h: number, q: number) => {
      const { seq, p } = where(q), f = constantSlopes(seq.kLen);
      return f && ((s: number, k: number) => f(s, p, k, h, b));
    };
    // lowRank landmarks per sequence: pooled K/V rows per rank, and the landmarks each query
    // sees.
    const landmarks = sequences.map((seq) =>
      landmarkRanks(branch).map((rank) => {
        const { count } = landmarkGeometry(seq.kLen, rank);
        const allows = landmarkAllows(branch, seq.kLen, rank);
        const rows = { stride: Nk, start: seq.kStart };
        return {
          rank,
          count,
          k: poolLandmarks(input.k, B * Hkv, seq.kLen, D, rank, rows),
          v: poolLandmarks(input.v, B * Hkv, seq.kLen, Dv, rank, rows),
          keys: Array.from({ length: seq.qLen }, (_, r) => keysOf(allows, seq.offset + r, count)),
        };
      })
    );
    const sources = (b: number, h: number, q: number): KeySource[] => {
      const s = sequenceOf[q], seq = sequences[s], r = q - seq.qStart;
      // DESIGN §1: query head h reads kv head floor(h / (Hq / Hkv)).
      const kvRow = b * Hkv + Math.floor(h / (Hq / Hkv));
      const first = kvRow * Nk + seq.kStart;
      return [
        { k: input.k, v: input.v, kBase: first * D, vBase: first * Dv, keys: keys(b, h, s)[r] },
        ...landmarks[s].map((l) => ({
          k: l.k,
          v: l.v,
          kBase: kvRow * l.count * D,
          vBase: kvRow * l.count * Dv,
          keys: l.keys[r],
          landmarks: { rank: l.rank, count: l.count, sequence: s },
        })),
      ];
    };
    return { sources, score, scoreSlope, scoreConstantSlopes };
  });
  const gate = gateFn(pattern, shape, input.gates?.data, layout);
  return {
    scale,
    branches: setups,
    sequences,
    // Not gated: the single branch has weight 1.
    gate: gated ? gate : () => 1,
    gateLayout: gated && input.gates ? layout : "fixed",
    hashCodes,
    selectedBlocks,
    forEachRow(visit) {
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < Hq; h++) {
          for (let q = 0; q < Nq; q++) {
            const qRow = ((b * Hq + h) * Nq + q) * D;
            setups.forEach((branch, i) => visit(b, h, q, qRow, i, branch.sources(b, h, q)));
          }
        }
      }
    },
  };
}

/**
 * The codes one (batch, query head) reads, and its key/value head's, from `[rounds][B][Hq][Nq]`
 * and `[rounds][B][Hkv][Nk]`, by position within a sequence.
 * @param codes codes per code key
 * @param shape the call's shape
 * @param b batch
 * @param h query head
 * @param seq the sequence the positions are in (default: one of all rows, queries last)
 * @returns the lookup `allowedMask` takes
 * @throws {ShapeError} when the codes lack a hashBucket's key or rounds
 */
export function hashLookup(
  codes: HashCodes,
  shape: AttentionShape,
  b: number,
  h: number,
  seq?: Sequence,
): HashLookup {
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const { nq: Nq, nk: Nk } = sequenceSizes(shape);
  const kvHead = Math.floor(h / (Hq / Hkv));
  const { qStart, kStart, offset } = seq ?? { qStart: 0, kStart: 0, offset: Nk - Nq };
  return (p) => {
    const c = codes.get(hashCodeKey(p));
    if (!c || c.rounds < p.rounds) {
      throw new ShapeError(
        `Bad input: hashCodes has no ${p.rounds} rounds for ${hashCodeKey(p)}; pass the codes ` +
          `Runtime.run returned for this pattern`,
      );
    }
    return {
      q: (t, pos) => c.q[((t * B + b) * Hq + h) * Nq + qStart + pos - offset],
      k: (t, pos) => c.k[((t * B + b) * Hkv + kvHead) * Nk + kStart + pos],
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
  const { batch: B, headsQ: Hq, headsKV: Hkv, headDim: D } = shape;
  const { nq, nk } = sequenceSizes(shape);
  return [...codeSets(pattern)].map(([key, p]) => {
    const got = codes.get(key);
    if (!got || got.rounds < p.rounds) return { key, queries: Infinity, keys: Infinity };
    const planes = { ...p, rounds: got.rounds };
    return {
      key,
      queries: codeDisagreements(q, B * Hq * nq, D, planes, got.q).length,
      keys: codeDisagreements(k, B * Hkv * nk, D, planes, got.k).length,
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
 * @param q queries `[B, Hq, Nq, D]`
 * @param k keys `[B, Hkv, Nk, D]`
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
  const { batch: B, headsQ: Hq, headsKV: Hkv, headDim: D } = shape;
  const { nq, nk } = sequenceSizes(shape);
  const out: HashCodes = new Map();
  for (const [key, p] of codeSets(pattern)) {
    out.set(key, {
      rounds: p.rounds,
      q: bucketCodes(q, B * Hq * nq, D, p),
      k: bucketCodes(k, B * Hkv * nk, D, p),
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
  /** Offsets in `k` and `v` of row 0 (the sequence's first key of this batch and kv head). */
  kBase: number;
  vBase: number;
  /** Allowed rows, counted from row 0 (positions within the sequence). */
  keys: number[];
  /**
   * Pooled landmarks: the rank and landmark count they were pooled at, and the packed sequence
   * they were pooled from (absent: token rows).
   */
  landmarks?: { rank: number; count: number; sequence: number };
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
  /** The value head dim (default D). */
  Dv?: number;
  scale: number;
  /** The branch's score modifier at this query, `(s, k) => score`, if it has one. */
  score?: (s: number, k: number) => number;
  out: Float64Array;
}): number {
  const { q, qRow, sources, D, scale, score, out } = args;
  const Dv = args.Dv ?? D;
  out.fill(0);
  const scores = sources.map((s) =>
    s.keys.map((k) => {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[qRow + d] * s.k[s.kBase + k * D + d];
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
      for (let d = 0; d < Dv; d++) out[d] += p * s.v[s.vBase + k * Dv + d];
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
  const { headsQ: Hq, seqLen: N } = shape; // N: query rows
  if (data !== undefined && layout === "head") {
    return (b, h, _q, i) => data[(b * Hq + h) * count + i];
  }
  if (data !== undefined && layout === "position") {
    return (b, h, q, i) => data[((b * Hq + h) * N + q) * count + i];
  }
  const fixed = pattern.gates ?? pattern.branches.map(() => 1 / count);
  return (_b, _h, _q, i) => fixed[i];
}
