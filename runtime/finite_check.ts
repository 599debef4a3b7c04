/**
 * Non-finite inputs are refused before upload. A NaN or infinite entry in Q, K or V makes
 * every score it touches NaN, and online softmax spreads it over whole rows; a kernel cannot
 * tell that from a bug, so the caller hears which tensor and which entry instead. Gates are
 * checked the same way. The scan reads each input once on the CPU (about 30 ms for 33 M floats).
 * @module
 */
import { DataError } from "../core/errors.ts";
import type { AttentionInputs } from "./attention_call.ts";
import { firstNonFiniteRead, type PagedKv } from "../core/paged_kv.ts";
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";

/**
 * Throws on the first NaN or infinite entry of q, k, v or gates. Of paged K and V only the rows
 * the call reads count: a pool's other pages may hold anything.
 *
 * @param inputs the tensors of one call (with its block table where K and V are paged)
 * @param paged the call's shape and page layout where K and V are paged
 * @throws {DataError} naming the tensor, the flat index and the value
 * @example
 * ```ts
 * import { checkFinite } from "./finite_check.ts";
 * const ok = new Float32Array([1, 2]);
 * checkFinite({ q: ok, k: ok, v: ok }); // fine
 * ```
 */
export function checkFinite(
  inputs: AttentionInputs,
  paged?: PagedKv & { shape: AttentionShape },
): void {
  for (const name of ["q", "k", "v", "gates"] as const) {
    const data = inputs[name];
    if (!data) continue;
    const keys = name === "k" || name === "v";
    const i = paged && keys
      ? firstNonFiniteRead(data, inputs.blockTable!, {
        ...paged,
        width: name === "k" ? paged.shape.headDim : sequenceSizes(paged.shape).dv,
      })
      : firstNonFinite(data);
    if (i >= 0) {
      throw new DataError(
        `Bad input: ${name}[${i}] is ${data[i]}; Q, K, V and gates must be finite (a NaN or ` +
          `infinite entry would turn whole output rows into NaN)`,
      );
    }
  }
}

/** The index of the first NaN or infinite entry, or -1. */
function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    // x - x is NaN exactly when x is NaN or infinite: one compare per entry.
    if (x - x !== 0) return i;
  }
  return -1;
}
