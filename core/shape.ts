/**
 * The attention problem's shape (DESIGN §1): Q `[B, Hq, N, D]`, K and V `[B, Hkv, N, D]`; in
 * the reference also queries against a longer key sequence and a value head dim of its own
 * (DESIGN §7): Q `[B, Hq, Nq, D]`, K `[B, Hkv, Nk, D]`, V `[B, Hkv, Nk, Dv]`.
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
  /** N (Nq, the query rows, when `kvSeqLen` differs) */
  seqLen: number;
  /** D */
  headDim: number;
  /**
   * Nk, the key and value rows (default `seqLen`). The float64 reference takes any `Nk >=
   * Nq`; the kernels need `Nk == Nq` for now.
   */
  kvSeqLen?: number;
  /** Dv, the value and output head dim (default `headDim`); the reference only, for now. */
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
 * Checks the sizes themselves (not the tensors): positive integers, `headsQ % headsKV == 0`,
 * a head dim the kernels support.
 * @param shape the sizes
 * @throws {ShapeError} one line naming the field
 * @example
 * ```ts
 * import { checkAttentionShape } from "./shape.ts";
 * checkAttentionShape({ batch: 1, headsQ: 8, headsKV: 2, seqLen: 100, headDim: 64 });
 * ```
 */
export function checkAttentionShape(shape: AttentionShape): void {
  checkSizes(shape);
  const { nq, nk, d, dv } = sequenceSizes(shape);
  if (nk !== nq) {
    throw new ShapeError(
      `Bad shape: kvSeqLen (${nk}) must equal seqLen (${nq}) for the kernels; queries against ` +
        "a longer key sequence run in the float64 reference only so far",
    );
  }
  if (dv !== d) {
    throw new ShapeError(
      `Bad shape: valueDim (${dv}) must equal headDim (${d}) for the kernels; a value head dim ` +
        "of its own runs in the float64 reference only so far",
    );
  }
  if (shape.headDim % 4 !== 0 || shape.headDim > MAX_HEAD_DIM) {
    throw new ShapeError(
      `Bad shape: headDim must be a multiple of 4 in [4, ${MAX_HEAD_DIM}], got ${shape.headDim}`,
    );
  }
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
