/**
 * The float64 reference for a few query rows of a very long sequence. `reference` lists every
 * row's allowed keys, N² predicate tests, which at N = 262144 is 7·10¹⁰; checking sampled rows
 * needs only rows·N. Same arithmetic (`softmaxRow`), JSON or default gates only.
 * @module
 */
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { PlanError, ShapeError } from "../../core/errors.ts";
import type { AttentionShape } from "../../core/shape.ts";
import { allowedMask } from "./allowed.ts";
import { softmaxRow } from "./reference.ts";

/** One sampled row's outputs. */
export interface SampledRow {
  b: number;
  h: number;
  q: number;
  /** `[D]`: the gated blend when gated. */
  o: Float64Array;
  /** Per branch. */
  lse: number[];
}

/**
 * The reference at chosen `(b, h, q)` rows.
 *
 * @param input pattern (gates from its JSON or 1/branches), shape, q/k/v, optional scale
 * @param rows the rows to compute
 * @returns one entry per row, in order
 * @throws {ShapeError} a row outside the shape
 * @example
 * ```ts
 * import { referenceRows } from "./sampled_rows.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 1 };
 * const [row] = referenceRows({ pattern: { kind: "causal" }, shape, q: [0, 0], k: [0, 0], v: [1, 3] }, [{ b: 0, h: 0, q: 1 }]);
 * console.log(row.o, row.lse); // Float64Array [2], [Math.LN2]
 * ```
 */
export function referenceRows(
  input: {
    pattern: Pattern;
    shape: AttentionShape;
    q: ArrayLike<number>;
    k: ArrayLike<number>;
    v: ArrayLike<number>;
    scale?: number;
  },
  rows: { b: number; h: number; q: number }[],
): SampledRow[] {
  const pattern = parsePattern(input.pattern);
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = input.shape;
  if ((input.shape.kvSeqLen ?? N) !== N || (input.shape.valueDim ?? D) !== D) {
    throw new ShapeError(
      "Bad shape: sampled rows need kvSeqLen == seqLen and valueDim == headDim; use reference",
    );
  }
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  const gates = pattern.kind === "gated"
    ? pattern.gates ?? branches.map(() => 1 / branches.length)
    : [1];
  const text = JSON.stringify(pattern);
  if (text.includes('"lowRank"') || text.includes('"hashBucket"')) {
    throw new PlanError(
      "referenceRows: lowRank landmarks and hashBucket codes are not supported here; use reference",
    );
  }
  const allowed = branches.map((p) => allowedMask(p, N));
  const scale = input.scale ?? 1 / Math.sqrt(D);
  return rows.map(({ b, h, q }) => {
    if (b < 0 || b >= B || h < 0 || h >= Hq || q < 0 || q >= N) {
      throw new ShapeError(`Bad row: (b ${b}, h ${h}, q ${q}) is outside [${B}, ${Hq}, ${N}]`);
    }
    const kvHead = Math.floor(h / (Hq / Hkv));
    const o = new Float64Array(D), out = new Float64Array(D);
    const lse = allowed.map((allows, i) => {
      const keys: number[] = [];
      for (let k = 0; k < N; k++) if (allows(q, k)) keys.push(k);
      const l = softmaxRow({
        q: input.q,
        qRow: ((b * Hq + h) * N + q) * D,
        sources: [{
          k: input.k,
          v: input.v,
          kBase: (b * Hkv + kvHead) * N * D,
          vBase: (b * Hkv + kvHead) * N * D,
          keys,
        }],
        D,
        scale,
        out,
      });
      for (let d = 0; d < D; d++) o[d] += gates[i] * out[d];
      return l;
    });
    return { b, h, q, o, lse };
  });
}
