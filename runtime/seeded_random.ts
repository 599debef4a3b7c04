/**
 * A tiny seeded PRNG for test and benchmark inputs (golden files, examples, the bench), so runs
 * repeat exactly: `deno task golden` rewrites byte-identical files. Not for anything
 * statistical beyond "unit-normal test data".
 * @module
 */

/**
 * mulberry32: a 32-bit state generator of uniform floats in `[0, 1)`.
 *
 * @param seed any number; its low 32 bits seed the state
 * @returns a function giving the next uniform float in `[0, 1)`
 * @example
 * ```ts
 * import { mulberry32 } from "./seeded_random.ts";
 * const next = mulberry32(1);
 * next(); // the same value on every run
 * ```
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Standard normal samples by Box-Muller over `mulberry32`.
 *
 * @param seed the generator's seed
 * @returns a function giving the next standard normal sample
 * @example
 * ```ts
 * import { normals } from "./seeded_random.ts";
 * const next = normals(7);
 * Number.isFinite(next()); // true
 * ```
 */
export function normals(seed: number): () => number {
  const uniform = mulberry32(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    // 1 - u is in (0, 1], so the log is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

/**
 * A float32 tensor of seeded standard normal samples (the sequence of `normals(seed)`).
 *
 * @param length number of elements
 * @param seed the generator's seed
 * @returns the samples
 * @example
 * ```ts
 * import { normalTensor } from "./seeded_random.ts";
 * normalTensor(4, 7).length; // 4
 * ```
 */
export function normalTensor(length: number, seed: number): Float32Array {
  const next = normals(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = next();
  return out;
}
