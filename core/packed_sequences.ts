/**
 * Packed sequences (DESIGN §1): with batch 1, the rows of Q, and those of K and V, hold several
 * independent sequences laid end to end. Sequence `s` has `seqLens[s]` query rows and
 * `kvSeqLens[s]` key rows; its queries attend only to its own keys, with positions counted from
 * its start, `n` its key count, and its queries its last positions. The CPU reference and the
 * GPU runtime read the lengths through this one check, so both refuse the same lengths with the
 * same messages.
 * @module
 */
import { ShapeError } from "./errors.ts";
import { type AttentionShape, sequenceSizes } from "./shape.ts";

/**
 * One sequence of a call: its query rows `[qStart, qStart + qLen)`, its key rows
 * `[kStart, kStart + kLen)`, and the position of its first query among its keys. An unpacked
 * call is one sequence.
 */
export interface Sequence {
  /** First query row. */
  qStart: number;
  /** Query rows (0 for a sequence whose keys no query of this call reads). */
  qLen: number;
  /** First key row. */
  kStart: number;
  /** Key rows, its `n` (at least 1). */
  kLen: number;
  /** Position of its first query among its keys: `kLen - qLen` for a packed sequence. */
  offset: number;
}

/**
 * Every row as one sequence, its queries the last positions: a packed call given no lengths.
 * @param shape the call's sizes
 * @returns the sequence
 * @example
 * ```ts
 * import { wholeSequence } from "./packed_sequences.ts";
 * wholeSequence({ batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 4, kvSeqLen: 5 });
 * // { qStart: 0, qLen: 2, kStart: 0, kLen: 5, offset: 3 }
 * ```
 */
export function wholeSequence(shape: AttentionShape): Sequence {
  const { nq, nk } = sequenceSizes(shape);
  return { qStart: 0, qLen: nq, kStart: 0, kLen: nk, offset: nk - nq };
}

/**
 * The packed sequences of a call, checked against its shape: batch 1, one query and one key
 * length per sequence, `0 <= seqLens[s] <= kvSeqLens[s]`, `kvSeqLens[s] >= 1`, the query
 * lengths summing to `seqLen` and the key lengths to `kvSeqLen`.
 * @param shape the call's sizes
 * @param seqLens query rows of each sequence
 * @param kvSeqLens key rows of each sequence (default `seqLens`)
 * @returns the sequences, in row order
 * @throws {ShapeError} naming the field and the range it must lie in
 * @example
 * ```ts
 * import { packedSequences } from "./packed_sequences.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 3, headDim: 4, kvSeqLen: 7 };
 * packedSequences(shape, [1, 2], [3, 4]);
 * // [{ qStart: 0, qLen: 1, kStart: 0, kLen: 3, offset: 2 }, { qStart: 1, qLen: 2, kStart: 3, kLen: 4, offset: 2 }]
 * ```
 */
export function packedSequences(
  shape: AttentionShape,
  seqLens: readonly number[],
  kvSeqLens: readonly number[] = seqLens,
): Sequence[] {
  const { nq, nk } = sequenceSizes(shape);
  if (shape.batch !== 1) {
    throw new ShapeError(
      `Bad shape: packed sequences (seqLens) need batch = 1, got ${shape.batch}; lay the ` +
        "batch's sequences end to end in one row of sequences instead",
    );
  }
  const qs = seqLens, ks = kvSeqLens;
  if (qs.length === 0 || ks.length !== qs.length) {
    throw new ShapeError(
      `Bad input: seqLens and kvSeqLens must list the same sequences (at least one), got ` +
        `${qs.length} and ${ks.length}`,
    );
  }
  const out: Sequence[] = [];
  let qStart = 0, kStart = 0;
  qs.forEach((qLen, s) => {
    const kLen = ks[s];
    if (!Number.isInteger(qLen) || qLen < 0 || !Number.isInteger(kLen) || kLen < 1 || qLen > kLen) {
      throw new ShapeError(
        `Bad input: sequence ${s} has seqLens ${qLen} and kvSeqLens ${kLen}; each needs ` +
          "integers with 0 <= seqLens[s] <= kvSeqLens[s] and kvSeqLens[s] >= 1",
      );
    }
    out.push({ qStart, qLen, kStart, kLen, offset: kLen - qLen });
    qStart += qLen;
    kStart += kLen;
  });
  if (qStart !== nq || kStart !== nk) {
    throw new ShapeError(
      `Bad input: seqLens sum to ${qStart} and kvSeqLens to ${kStart}; the shape has ` +
        `seqLen ${nq} and kvSeqLen ${nk}, which they must sum to`,
    );
  }
  return out;
}
