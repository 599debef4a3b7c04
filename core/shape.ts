/**
 * The attention problem's shape (DESIGN §1): Q `[B, Hq, Nq, D]`, K `[B, Hkv, Nk, D]` and V
 * `[B, Hkv, Nk, Dv]`, with `Nq <= Nk`; query row `i` sits at key position `queryOffset + i`.
 * `Nq == Nk` and `Dv == D` is the plain square call, Q, K and V `[B, H, N, D]`.
 * @module
 */
import { ShapeError } from "./errors.ts";

/** Element type of Q, K, V and O; LSE and every running sum are float32. */
export type Dtype = "f32" | "f16";

/** Sizes of one attention call. */
export interface AttentionShape {
  /** B */
  batch: number;
  /** Hq: query heads */
  headsQ: number;
  /** Hkv: key/value heads; `headsQ % headsKV == 0` (MHA, GQA, MQA) */
  headsKV: number;
  /** Nq: the query rows (N of a square call) */
  seqLen: number;
  /** D: the query and key head dim */
  headDim: number;
  /** Nk: the key and value rows, at least `seqLen` (default `seqLen`) */
  kvSeqLen?: number;
  /** Dv: the value and output head dim (default `headDim`) */
  valueDim?: number;
}

/**
 * Nq, Nk, D and Dv of a shape, defaults filled in.
 * @param shape the sizes
 * @returns the four sizes
 * @example
 * ```ts
 * import { sequenceSizes } from "./shape.ts";
 * sequenceSizes({ batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim: 8, kvSeqLen: 9 });
 * // { nq: 1, nk: 9, d: 8, dv: 8 }
 * ```
 */
export function sequenceSizes(
  shape: AttentionShape,
): { nq: number; nk: number; d: number; dv: number } {
  return {
    nq: shape.seqLen,
    nk: shape.kvSeqLen ?? shape.seqLen,
    d: shape.headDim,
    dv: shape.valueDim ?? shape.headDim,
  };
}

/** Head dims the kernels read as vec4 rows; kept in registers, so bounded. */
export const MAX_HEAD_DIM = 256;

/**
 * Checks the sizes themselves (not the tensors) for the kernels: positive integers,
 * `headsQ % headsKV == 0`, `seqLen <= kvSeqLen`, and head dims the kernels support.
 * @param shape the sizes
 * @throws {ShapeError} one line naming the field
 * @example
 * ```ts
 * import { checkAttentionShape } from "./shape.ts";
 * checkAttentionShape({ batch: 1, headsQ: 8, headsKV: 2, seqLen: 100, headDim: 64 });
 * checkAttentionShape({ batch: 1, headsQ: 8, headsKV: 2, seqLen: 1, headDim: 64, kvSeqLen: 900, valueDim: 32 });
 * ```
 */
export function checkAttentionShape(shape: AttentionShape): void {
  checkSizes(shape);
  checkQueryRows(shape);
  for (const field of ["headDim", "valueDim"] as const) {
    const dim = field === "headDim" ? shape.headDim : sequenceSizes(shape).dv;
    if (dim % 4 !== 0 || dim > MAX_HEAD_DIM) {
      throw new ShapeError(
        `Bad shape: ${field} must be a multiple of 4 in [4, ${MAX_HEAD_DIM}], got ${dim}`,
      );
    }
  }
}

/**
 * The queries' positions must lie among the keys: `seqLen <= kvSeqLen`.
 * @param shape the sizes
 * @throws {ShapeError} naming both fields
 */
function checkQueryRows(shape: AttentionShape): void {
  const { nq, nk } = sequenceSizes(shape);
  if (nq > nk) {
    throw new ShapeError(
      `Bad shape: seqLen (${nq} query rows) must not exceed kvSeqLen (${nk} keys); give K and ` +
        "V at least as many rows as Q",
    );
  }
}

/**
 * Where query row 0 sits among the keys: query row `i` is key position `offset + i`. The
 * default, `Nk - Nq`, puts the queries last: a prefill chunk, or one decoding step.
 * @param shape the sizes (`seqLen <= kvSeqLen`)
 * @param queryOffset the caller's offset, if given
 * @returns the offset, an integer in `[0, Nk - Nq]`
 * @throws {ShapeError} an offset outside `[0, Nk - Nq]`, naming the range
 * @example
 * ```ts
 * import { queryOffsetOf } from "./shape.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 8, kvSeqLen: 9 };
 * queryOffsetOf(shape); // 7
 * queryOffsetOf(shape, 3); // 3
 * ```
 */
export function queryOffsetOf(shape: AttentionShape, queryOffset?: number): number {
  checkQueryRows(shape);
  const { nq, nk } = sequenceSizes(shape);
  const offset = queryOffset ?? nk - nq;
  if (!Number.isInteger(offset) || offset < 0 || offset > nk - nq) {
    throw new ShapeError(
      `Bad input: queryOffset must be an integer in [0, Nk - Nq] = [0, ${nk - nq}] (the ` +
        `queries' positions must lie among the keys), got ${offset}`,
    );
  }
  return offset;
}

/**
 * Checks what any attention call needs, kernel or reference: positive integer sizes and
 * `headsQ % headsKV == 0`.
 * @param shape the sizes
 * @throws {ShapeError} one line naming the field
 * @example
 * ```ts
 * import { checkSizes } from "./shape.ts";
 * checkSizes({ batch: 1, headsQ: 8, headsKV: 2, seqLen: 100, headDim: 3 });
 * ```
 */
export function checkSizes(shape: AttentionShape): void {
  const fields = ["batch", "headsQ", "headsKV", "seqLen", "headDim"] as const;
  for (const f of fields) {
    const x = shape[f];
    if (!Number.isInteger(x) || x < 1 || x > 0x7fffffff) {
      throw new ShapeError(`Bad shape: ${f} must be an integer >= 1, got ${x}`);
    }
  }
  for (const f of ["kvSeqLen", "valueDim"] as const) {
    const x = shape[f];
    if (x !== undefined && (!Number.isInteger(x) || x < 1 || x > 0x7fffffff)) {
      throw new ShapeError(`Bad shape: ${f} must be an integer >= 1 when given, got ${x}`);
    }
  }
  if (shape.headsQ % shape.headsKV !== 0) {
    throw new ShapeError(
      `Bad shape: headsQ (${shape.headsQ}) must be a multiple of headsKV (${shape.headsKV})`,
    );
  }
}
