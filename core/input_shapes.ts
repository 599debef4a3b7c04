/**
 * Shape checks for one attention call (DESIGN §1): Q `[B, Hq, Nq, D]`, K `[B, Hkv, Nk, D]` and V
 * `[B, Hkv, Nk, Dv]` (Q, K and V `[B, H, N, D]` for a square call), or K and V in pages with a
 * block table (paged_kv.ts).
 * Shared by the CPU reference and the GPU runtime so both refuse the same inputs with the same
 * one-line messages. Kernel-only limits (head dim a multiple of 4, ...) stay in the compiler.
 * @module
 */
import { ShapeError } from "./errors.ts";
import { type AttentionShape, checkSizes, sequenceSizes } from "./shape.ts";
import { checkPagedInputs, type PagedKv } from "./paged_kv.ts";

/** Gates with an explicit shape, as read from a `.npy` file. */
export interface ShapedGates {
  data: ArrayLike<number>;
  shape: readonly number[];
}

/** The tensors of one call; only their lengths (and the gates' shape, when given) are read. */
export interface ShapeInputs {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  /** Runtime gates: a flat array (layout told by its length) or data with a shape. */
  gates?: ArrayLike<number> | ShapedGates;
  /** The gated pattern's branch count; `undefined` when the pattern is not gated. */
  branches?: number;
  /** K and V are pages through `blockTable` (paged_kv.ts), as the call was compiled. */
  paged?: PagedKv;
  /** Paged K and V: `[B, maxPages]` page indices. */
  blockTable?: ArrayLike<number>;
}

/**
 * How runtime gates are laid out: `"none"` (not given), `"head"` `[B, Hq, branches]` or
 * `"position"` `[B, Hq, N, branches]`.
 */
export type GateLayout = "none" | "head" | "position";

/**
 * Checks the sizes and that every tensor has the element count they imply.
 *
 * @param shape the sizes
 * @param inputs q, k, v, optional gates, the branch count when the pattern is gated, and for
 *   paged K and V their layout and block table
 * @returns the gates' layout
 * @throws {ShapeError} one line naming the field, what was expected and what came
 * @example
 * ```ts
 * import { checkShape } from "./input_shapes.ts";
 * const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 4, headDim: 8 };
 * const q = new Float32Array(64), kv = new Float32Array(32);
 * checkShape(shape, { q, k: kv, v: kv }); // "none"
 * checkShape(shape, { q, k: kv, v: kv, gates: new Float32Array(4), branches: 2 }); // "head"
 * ```
 */
export function checkShape(shape: AttentionShape, inputs: ShapeInputs): GateLayout {
  checkSizes(shape);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  // The formulas name Nq, Nk and Dv only where the shape has them.
  const [Q, K] = shape.kvSeqLen === undefined ? ["N", "N"] : ["Nq", "Nk"];
  const V = shape.valueDim === undefined ? "D" : "Dv";
  checkLength("q", inputs.q.length, `B*Hq*${Q}*D`, B * Hq * nq * d);
  if (inputs.paged) {
    checkPagedInputs(shape, inputs.paged, inputs);
  } else {
    if (inputs.blockTable !== undefined) {
      throw new ShapeError(
        "Bad input: blockTable was given but the call was not compiled with paged K and V; " +
          "drop it or compile with the paged option",
      );
    }
    checkLength("k", inputs.k.length, `B*Hkv*${K}*D`, B * Hkv * nk * d);
    checkLength("v", inputs.v.length, `B*Hkv*${K}*${V}`, B * Hkv * nk * dv);
  }
  return checkGates(shape, inputs.gates, inputs.branches);
}

function checkLength(field: string, got: number, formula: string, expected: number): void {
  if (got !== expected) {
    throw new ShapeError(
      `Bad shape: ${field} has ${got} elements, expected ${formula} = ${expected}`,
    );
  }
}

function checkGates(
  shape: AttentionShape,
  gates: ShapeInputs["gates"],
  branches: number | undefined,
): GateLayout {
  if (gates === undefined) return "none";
  if (branches === undefined) {
    throw new ShapeError(
      "Bad shape: gates were given but the pattern is not gated; drop them or use a gated pattern",
    );
  }
  const { batch: B, headsQ: Hq, seqLen: N } = shape;
  const perHead = [B, Hq, branches];
  const perPosition = [B, Hq, N, branches];
  const expected = `[B, Hq, branches] = [${perHead.join(", ")}] or ` +
    `[B, Hq, N, branches] = [${perPosition.join(", ")}]`;

  if (isShaped(gates)) {
    const given = [...gates.shape];
    const layout: GateLayout | undefined = sameDims(given, perHead)
      ? "head"
      : sameDims(given, perPosition)
      ? "position"
      : undefined;
    if (layout === undefined) {
      throw new ShapeError(`Bad shape: gates shape is [${given.join(", ")}], expected ${expected}`);
    }
    const count = given.reduce((a, b) => a * b, 1);
    if (gates.data.length !== count) {
      throw new ShapeError(
        `Bad shape: gates has ${gates.data.length} elements, its shape [${given.join(", ")}] ` +
          `needs ${count}`,
      );
    }
    return layout;
  }
  // A flat array says its layout by its length (with N = 1 both layouts are the same bytes).
  const length = gates.length;
  if (length === B * Hq * branches) return "head";
  if (length === B * Hq * N * branches) return "position";
  throw new ShapeError(`Bad shape: gates has ${length} elements, expected ${expected}`);
}

function isShaped(gates: ArrayLike<number> | ShapedGates): gates is ShapedGates {
  return "shape" in gates && "data" in gates;
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
