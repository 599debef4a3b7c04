/**
 * Builders: the TypeScript way to write a pattern. Each returns the plain JSON object of
 * DESIGN §2, checked by the schema, so a builder and a JSON file can never disagree.
 * @module
 */
import { parsePattern, type Pattern } from "./schema.ts";

/**
 * Every key attends: `A(q) = all k`.
 * @returns the pattern `{kind: "dense"}`
 * @example
 * ```ts
 * import { dense } from "./builders.ts";
 * dense(); // { kind: "dense" }
 * ```
 */
export function dense(): Pattern {
  return parsePattern({ kind: "dense" });
}

/**
 * Autoregressive mask: `k <= q`.
 * @returns the pattern `{kind: "causal"}`
 * @example
 * ```ts
 * import { causal } from "./builders.ts";
 * causal(); // { kind: "causal" }
 * ```
 */
export function causal(): Pattern {
  return parsePattern({ kind: "causal" });
}

/**
 * Sliding window without wrap-around: `q - left <= k <= q + right`.
 * @param left keys before the query (integer >= 0)
 * @param right keys after the query (integer >= 0); defaults to `left`
 * @returns the window pattern
 * @example
 * ```ts
 * import { window } from "./builders.ts";
 * window(256, 0); // causal sliding window of 257 keys
 * ```
 */
export function window(left: number, right: number = left): Pattern {
  return parsePattern({ kind: "window", left, right });
}

/**
 * Ring neighbourhood (πAttention's local part): circular distance `<= radius`.
 * @param radius integer >= 0
 * @returns the ring pattern
 * @example
 * ```ts
 * import { ring } from "./builders.ts";
 * ring(128);
 * ```
 */
export function ring(radius: number): Pattern {
  return parsePattern({ kind: "ring", radius });
}

/**
 * π-step stride: `(q - k) mod period == 0`.
 * @param period integer >= 1
 * @returns the stride pattern
 * @example
 * ```ts
 * import { stride } from "./builders.ts";
 * stride(16);
 * ```
 */
export function stride(period: number): Pattern {
  return parsePattern({ kind: "stride", period });
}

/**
 * Global tokens: `q in tokens or k in tokens` (Longformer, BigBird).
 * @param tokens positions (integers >= 0, each < N when compiled)
 * @returns the global pattern
 * @example
 * ```ts
 * import { global } from "./builders.ts";
 * global([0, 1, 2]);
 * ```
 */
export function global(tokens: readonly number[]): Pattern {
  return parsePattern({ kind: "global", tokens: [...tokens] });
}

/**
 * Seeded random key blocks per query block (BigBird); see DESIGN §2 for the hash.
 * @param options `blocks` drawn per query block, `blockSize`, `seed` (u32)
 * @returns the random pattern
 * @example
 * ```ts
 * import { random } from "./builders.ts";
 * random({ blocks: 3, blockSize: 64, seed: 1 });
 * ```
 */
export function random(options: { blocks: number; blockSize: number; seed?: number }): Pattern {
  return parsePattern({ kind: "random", seed: 0, ...options });
}

/**
 * `rank` pooled landmarks (Linformer-style compression, NSA's compressed branch): landmark `j`
 * is the mean of K and V over rows `[jL, min(N, (j+1)L))`, `L = ceil(N / rank)`, and every query
 * scores every landmark; in a union they join the token keys' softmax (DESIGN §2).
 * @param rank landmarks wanted (there are `ceil(N / L)`; `rank >= N` gives one per token)
 * @returns the lowRank pattern
 * @example
 * ```ts
 * import { lowRank, union, window } from "./builders.ts";
 * union(window(256, 256), lowRank(256));
 * ```
 */
export function lowRank(rank: number): Pattern {
  return parsePattern({ kind: "lowRank", rank });
}

/**
 * One softmax over the union of the members' allowed sets.
 * @param members patterns (at least one)
 * @returns the union pattern
 * @example
 * ```ts
 * import { ring, stride, union } from "./builders.ts";
 * union(ring(8), stride(16));
 * ```
 */
export function union(...members: Pattern[]): Pattern {
  return parsePattern({ kind: "union", of: members });
}

/**
 * Keys every member allows.
 * @param members patterns (at least one)
 * @returns the intersect pattern
 * @example
 * ```ts
 * import { causal, intersect, stride } from "./builders.ts";
 * intersect(stride(4), causal());
 * ```
 */
export function intersect(...members: Pattern[]): Pattern {
  return parsePattern({ kind: "intersect", of: members });
}

/**
 * Separate softmax per branch, blended `out = sum_i g_i * out_i`. Gates come from a runtime
 * tensor `[B, Hq, branches]` when given, else `gates`, else `1 / branches` each.
 * @param branches patterns (at least one; none of them gated)
 * @param gates optional fixed gates, one per branch
 * @returns the gated pattern
 * @example
 * ```ts
 * import { gated, ring, stride } from "./builders.ts";
 * gated([ring(128), stride(16)], [0.5, 0.5]); // πAttention
 * ```
 */
export function gated(branches: Pattern[], gates?: number[]): Pattern {
  return parsePattern(gates ? { kind: "gated", branches, gates } : { kind: "gated", branches });
}
