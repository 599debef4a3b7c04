/**
 * WGSL for packed sequences (DESIGN §5): the `sequences` buffer, each query row's sequence found
 * in it, and the pair test of a packed kernel's mask. The kernel's tiles are cut from the packed
 * rows, so positions are rows; a pair is allowed when the key row lies in the query row's
 * sequence and the pattern allows their positions within it, at `n` its key count. The lengths
 * are in the buffer, never in the WGSL, so new lengths run on the same pipeline.
 * @module
 */
import type { ShaderModule } from "./shader_module.ts";

/** The WGSL name `allowed` and the pattern's helpers read a packed sequence's key count by. */
export const SEQUENCE_N = "n";

/**
 * Declares the `sequences` binding, the `Sequence` a query row belongs to and `sequenceOf`,
 * which finds it.
 * @param m the module being built
 * @param binding the binding index (after every other binding of the kernel)
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareSequences } from "./sequence_wgsl.ts";
 * declareSequences(new ShaderModule(), 7);
 * ```
 */
export function declareSequences(m: ShaderModule, binding: number): void {
  m.declare(
    "sequences",
    `
// Packed sequences, written per call (packed_call.ts): their count S, each one's first query
// row (S + 1 words, the last one past the end), then each one's first key row likewise.
@group(0) @binding(${binding}) var<storage, read> sequences: array<u32>;

// The packed sequence of a query row: its key rows [keyStart, keyEnd), the shift from a row to
// its position within the sequence, and n, its key count.
struct Sequence {
  keyStart: i32,
  keyEnd: i32,
  shift: i32,
  n: i32,
}

// The last sequence that starts at or before the row holds it: a sequence with no query rows
// starts where the next one does, so it is never found. A sequence's queries are its last
// positions: row qStart is position n - (qEnd - qStart).
fn sequenceOf(row: i32) -> Sequence {
  let count = sequences[0];
  var lo = 0u;
  var hi = count - 1u;
  loop {
    if (lo >= hi) { break; }
    let mid = (lo + hi + 1u) / 2u;
    if (i32(sequences[1u + mid]) <= row) { lo = mid; } else { hi = mid - 1u; }
  }
  let queryStart = i32(sequences[1u + lo]);
  let queryEnd = i32(sequences[2u + lo]);
  let keyStart = i32(sequences[2u + count + lo]);
  let keyEnd = i32(sequences[3u + count + lo]);
  let n = keyEnd - keyStart;
  return Sequence(keyStart, keyEnd, n - (queryEnd - queryStart) - queryStart, n);
}`,
  );
}

/**
 * A packed kernel's pair test: key row `k` lies in the sequence `s` of query row `q`, and the
 * pattern allows their positions within it.
 * @param q the query row (i32 WGSL)
 * @param k the key row (i32 WGSL)
 * @param s the query row's `Sequence`
 * @param allowed the pattern's test at a position pair and key count
 * @returns a boolean WGSL expression
 * @example
 * ```ts
 * import { pairInSequence } from "./sequence_wgsl.ts";
 * pairInSequence("q0", "k1", "seq0", (q, k, n) => `allowed(${q}, ${k}, ${n})`);
 * // "(k1 >= seq0.keyStart && k1 < seq0.keyEnd && allowed(q0 + seq0.shift, k1 - seq0.keyStart, seq0.n))"
 * ```
 */
export function pairInSequence(
  q: string,
  k: string,
  s: string,
  allowed: (q: string, k: string, n: string) => string,
): string {
  return `(${k} >= ${s}.keyStart && ${k} < ${s}.keyEnd && ${
    allowed(`${q} + ${s}.shift`, `${k} - ${s}.keyStart`, `${s}.n`)
  })`;
}

/**
 * A query row's and a key row's positions within the row's sequence, clamped into it, for a
 * score modifier: pairs of two sequences are masked anyway, and clamping keeps the modifier in
 * the domain it was proven safe on.
 * @param q the query row
 * @param k the key row
 * @param s the query row's `Sequence`
 * @returns the two positions, as i32 WGSL
 */
export function positionsInSequence(q: string, k: string, s: string): [string, string] {
  return [`clamp(${q} + ${s}.shift, 0, ${s}.n - 1)`, `clamp(${k} - ${s}.keyStart, 0, ${s}.n - 1)`];
}
