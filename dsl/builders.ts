/**
 * Builders: the TypeScript way to write a pattern. Each returns the plain JSON object of
 * DESIGN §2, checked by the schema, so a builder and a JSON file can never disagree.
 * @module
 */
import type { Constants } from "./expression.ts";
import { functionSource, masksCalledBy } from "./mask_registry.ts";
import { parsePattern, type Pattern, type ScoreModifier } from "./schema.ts";

export { registerMask } from "./mask_registry.ts";

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
 * Angular LSH buckets (Reformer, ANNA; DESIGN §2): `k` is allowed for `q` when, in some round,
 * `Q[q]` and `K[k]` fall in the same of `buckets` buckets of the seeded ±1 planes. The allowed
 * set depends on the data: a GPU pre-pass hashes and sorts, and the codes used come back with O.
 * @param options `buckets` (a power of two, 2 to 1024), `rounds` (1 to 8, default 1), `seed`
 *   (default 0), `weights`: `"softmax"` (default) or `"uniform"` (every allowed key weighs the
 *   same: the ANNA estimator)
 * @returns the hashBucket pattern
 * @example
 * ```ts
 * import { hashBucket } from "./builders.ts";
 * hashBucket({ buckets: 64, rounds: 2, seed: 7 });
 * ```
 */
export function hashBucket(options: {
  buckets: number;
  rounds?: number;
  seed?: number;
  weights?: "softmax" | "uniform";
}): Pattern {
  return parsePattern({ kind: "hashBucket", rounds: 1, seed: 0, ...options });
}

/**
 * Linear attention (DESIGN §2): `out[q] = φ(Q_q)ᵀ S / φ(Q_q)ᵀ z` with `S = Σ_k φ(K_k) V_kᵀ`
 * and `z = Σ_k φ(K_k)` over every key, or keys `k <= q` with `causal`. `"elu1"` maps a row to
 * `elu(x) + 1` (D features); `"favor"` to Performer's `features` positive random features, the
 * projection drawn from `seed`. Not a softmax: use it alone or as a branch of `gated`.
 * @param options the feature map, favor's feature count and seed (default 0), and `causal`
 * @returns the linear pattern
 * @example
 * ```ts
 * import { gated, linear, window } from "./builders.ts";
 * linear({ featureMap: "favor", features: 64, seed: 1, causal: true }); // Performer, causal
 * gated([window(64, 0), linear({ featureMap: "elu1", causal: true })]); // a hybrid
 * ```
 */
export function linear(options: {
  featureMap: "elu1" | "favor";
  features?: number;
  seed?: number;
  causal?: boolean;
}): Pattern {
  return parsePattern({ kind: "linear", ...options });
}

/**
 * NSA's selected blocks (DESIGN §2): key blocks of `blockSize`; each query keeps the keys of the
 * `blocks` blocks its key/value group's query heads find most important against the blocks'
 * mean keys, the first `initial` blocks and the `local` blocks ending at its own always among
 * them. Intersect it with `causal` for NSA's causal form: only whole blocks at or before the
 * query then compete. The GPU's choice comes back with O (`selectedBlocks`).
 * @param options `blockSize` (>= 1), `blocks` (1 to 64), `initial` and `local` (default 0,
 *   together at most `blocks`)
 * @returns the select pattern
 * @example
 * ```ts
 * import { causal, intersect, select } from "./builders.ts";
 * intersect(causal(), select({ blockSize: 64, blocks: 16, initial: 1, local: 2 }));
 * ```
 */
export function select(
  options: { blockSize: number; blocks: number; initial?: number; local?: number },
): Pattern {
  return parsePattern({ kind: "select", ...options });
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

/** What `mask` and `score` take besides the function. */
export interface ExpressionOptions {
  /**
   * The numbers (or numeric arrays) the function's source refers to by name. JavaScript cannot
   * read a closure's variables, so a function that uses a constant must name it here:
   * `const W = 16; mask((q, k) => Math.abs(q - k) <= W, { constants: { W } })`.
   */
  constants?: Constants;
}

/** What `score` takes besides the function. */
export interface ScoreOptions extends ExpressionOptions {
  /**
   * Constants whose gradients the backward pass returns (`gradients.dConstants`, each of its
   * constant's shape), e.g. ALiBi's slopes: `{ constants: { slopes }, learnable: ["slopes"] }`.
   */
  learnable?: string[];
}

/**
 * A predicate written in TypeScript: `k` is allowed for `q` when `fn(q, k, n, h, b)` is true
 * (`n` is N, `h` the query head, `b` the batch). Weft reads the function's source and compiles
 * it (dsl/expression.ts has the subset: integer arithmetic, comparisons, `%` as the
 * mathematical modulo, `Math.abs/min/max/floor`, `?:`, `const`, captured constants, calls to
 * registered masks); the kernel and the CPU reference both run that source, so the function
 * itself is never called. Anything else fails here, naming the line and the construct.
 * @param fn the predicate, e.g. `(q, k) => (q - k) % 3 == 0`
 * @param options `constants` the source uses by name
 * @returns `{kind: "predicate", expr, constants?, masks?}`; `masks` holds the source of every
 *   registered mask it calls, so the JSON stands alone
 * @throws {PatternError} source outside the subset: "line L: <construct> is not allowed"
 * @example
 * ```ts
 * import { mask } from "./builders.ts";
 * const W = 8;
 * mask((q, k) => Math.abs(q - k) <= W && (q - k) % 2 == 0, { constants: { W } });
 * ```
 */
export function mask(
  fn: (q: number, k: number, n: number, h: number, b: number) => boolean,
  options: ExpressionOptions = {},
): Pattern {
  return parsePattern({ kind: "predicate", ...expressionFields(functionSource(fn), options) });
}

/**
 * A score modifier written in TypeScript: `fn(s, q, k, h, b, n)` replaces the raw score
 * `s = scale * Q[q]·K[k]` of every allowed pair before the softmax. The same subset as `mask`,
 * plus reals, `/`, `Math.exp/log/tanh/sqrt/pow`, and captured numeric arrays indexed by an
 * integer (`slopes[h]`). Attach it to a pattern with `scored`.
 * @param fn e.g. ALiBi `(s, q, k, h) => s - slopes[h] * Math.abs(q - k)`
 * @param options `constants` the source uses by name; `learnable`, those of them whose
 *   gradients the backward pass returns
 * @returns the modifier `{expr, constants?, masks?, learnable?}`
 * @throws {PatternError} source outside the subset
 * @example
 * ```ts
 * import { score } from "./builders.ts";
 * const c = 30;
 * score((s) => c * Math.tanh(s / c), { constants: { c } }); // tanh soft-capping
 * ```
 */
export function score(
  fn: (s: number, q: number, k: number, h: number, b: number, n: number) => number,
  options: ScoreOptions = {},
): ScoreModifier {
  const modifier = {
    ...expressionFields(functionSource(fn), options),
    ...(options.learnable ? { learnable: options.learnable } : {}),
  };
  parsePattern({ kind: "scored", pattern: { kind: "dense" }, score: modifier });
  return modifier;
}

/**
 * `pattern`'s allowed set with every score passed through `modifier` before the softmax.
 * Outermost, or a branch of `gated` (each branch is a softmax of its own).
 * @param pattern the allowed set
 * @param modifier from `score`
 * @returns `{kind: "scored", pattern, score}`
 * @example
 * ```ts
 * import { causal, score, scored } from "./builders.ts";
 * const slopes = [0.5, 0.25];
 * scored(causal(), score((s, q, k, h) => s - slopes[h] * (q - k), { constants: { slopes } }));
 * ```
 */
export function scored(pattern: Pattern, modifier: ScoreModifier): Pattern {
  return parsePattern({ kind: "scored", pattern, score: modifier });
}

function expressionFields(expr: string, options: ExpressionOptions) {
  const masks = masksCalledBy(expr);
  return {
    expr,
    ...(options.constants ? { constants: options.constants } : {}),
    ...(masks ? { masks } : {}),
  };
}
