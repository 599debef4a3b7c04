/**
 * The meaning of linear attention's feature maps (DESIGN §2): the favor projection drawn from
 * the seeded hash, and φ in float64. The reference computes with these, and the compiler uploads
 * the same projection (rounded to float32) for the kernels, so both read one definition.
 * @module
 */
import { lowbias32 } from "../core/hash.ts";
import { PlanError } from "../core/errors.ts";
import type { LinearPattern, Pattern } from "./schema.ts";

/**
 * The number of features `m` a linear pattern maps each row to: D for elu1, `features` for
 * favor.
 * @param p the linear pattern
 * @param headDim D
 * @param where the pattern's path, for the error
 * @returns m
 * @throws {PlanError} an elu1 pattern whose `features` is not D
 * @example
 * ```ts
 * import { linearFeatureCount } from "./linear.ts";
 * linearFeatureCount({ kind: "linear", featureMap: "favor", features: 32 }, 64); // 32
 * linearFeatureCount({ kind: "linear", featureMap: "elu1" }, 64); // 64
 * ```
 */
export function linearFeatureCount(p: LinearPattern, headDim: number, where = "pattern"): number {
  if (p.featureMap === "favor") return p.features!;
  if (p.features !== undefined && p.features !== headDim) {
    throw new PlanError(
      `Cannot plan pattern: ${where}.features: elu1 maps each row to its own D = ${headDim} ` +
        `features, got ${p.features}; leave features out or use featureMap "favor"`,
    );
  }
  return headDim;
}

/**
 * favor's projection `W [m, D]`, standard normal by Box-Muller over the seeded hash: entry
 * `i = f·D + d` takes the uniform `u_i = (h(seed + h(i)) + 0.5) / 2^32` (addition wrapping at
 * 2^32); the pair of entries `2t, 2t + 1` is `sqrt(-2 ln u_2t+1) · (cos, sin)(2π u_2t)`.
 * (The radius takes the odd uniform: `h(0) = 0` makes `u_0` tiny at seed 0, harmless as an
 * angle.)
 * @param seed the pattern's seed (u32)
 * @param features m
 * @param headDim D
 * @returns W, row-major, float64
 * @example
 * ```ts
 * import { favorProjection } from "./linear.ts";
 * favorProjection(0, 2, 4).length; // 8
 * ```
 */
export function favorProjection(seed: number, features: number, headDim: number): Float64Array {
  const count = features * headDim;
  const uniform = (i: number) => (lowbias32((seed + lowbias32(i)) >>> 0) + 0.5) / 2 ** 32;
  const w = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform(i + 1))), angle = 2 * Math.PI * uniform(i);
    w[i] = r * Math.cos(angle);
    if (i + 1 < count) w[i + 1] = r * Math.sin(angle);
  }
  return w;
}

/** A feature map in float64: φ of a row, and its vector-Jacobian product. */
export interface FeatureMap {
  /** m, the features per row. */
  features: number;
  /** φ(x) of the D values at `x[at..at+D)`, into `out` (m values). */
  map(x: ArrayLike<number>, at: number, out: Float64Array): void;
  /**
   * Adds `(∂φ/∂x)ᵀ g` (the gradient with respect to the row, given `g = ∂loss/∂φ`) into
   * `dx[at..at+D)`; `phi` is φ(x) as `map` wrote it.
   */
  pullback(
    x: ArrayLike<number>,
    at: number,
    phi: Float64Array,
    g: Float64Array,
    dx: Float64Array,
  ): void;
}

/**
 * The feature map of a linear pattern at one head dim and scale (DESIGN §2): elu1,
 * `φ(x) = elu(x) + 1`; favor, `φ(x) = exp(W x' - |x'|²/2) / sqrt(m)` with `x' = x·sqrt(scale)`.
 * @param p the linear pattern
 * @param headDim D
 * @param scale the call's score scale
 * @returns φ and its pullback, in float64
 * @example
 * ```ts
 * import { featureMap } from "./linear.ts";
 * const phi = featureMap({ kind: "linear", featureMap: "elu1" }, 2, 0.5);
 * const out = new Float64Array(2);
 * phi.map([1, -1], 0, out); // out = [2, exp(-1)]
 * ```
 */
export function featureMap(p: LinearPattern, headDim: number, scale: number): FeatureMap {
  const D = headDim;
  if (p.featureMap === "elu1") {
    return {
      features: D,
      map(x, at, out) {
        for (let d = 0; d < D; d++) {
          const v = x[at + d];
          out[d] = v > 0 ? v + 1 : Math.exp(v);
        }
      },
      pullback(x, at, _phi, g, dx) {
        for (let d = 0; d < D; d++) {
          const v = x[at + d];
          dx[at + d] += g[d] * (v > 0 ? 1 : Math.exp(v));
        }
      },
    };
  }
  const m = p.features!, w = favorProjection(p.seed ?? 0, m, D);
  const root = Math.sqrt(scale), norm = 1 / Math.sqrt(m);
  return {
    features: m,
    map(x, at, out) {
      let square = 0;
      for (let d = 0; d < D; d++) square += (x[at + d] * root) ** 2;
      for (let f = 0; f < m; f++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += w[f * D + d] * x[at + d] * root;
        out[f] = Math.exp(dot - square / 2) * norm;
      }
    },
    // ∂φ_f/∂x' = φ_f (W_f - x'), and x' = x·sqrt(scale).
    pullback(x, at, phi, g, dx) {
      let total = 0;
      const acc = new Float64Array(D);
      for (let f = 0; f < m; f++) {
        const s = g[f] * phi[f];
        total += s;
        for (let d = 0; d < D; d++) acc[d] += s * w[f * D + d];
      }
      for (let d = 0; d < D; d++) dx[at + d] += root * (acc[d] - total * x[at + d] * root);
    },
  };
}

/**
 * A pattern's linear branches: the pattern itself when it is linear, else a gated pattern's
 * linear branches, by branch index.
 * @param pattern a parsed pattern
 * @returns `[branch, pattern]` pairs
 * @example
 * ```ts
 * import { linearBranches } from "./linear.ts";
 * linearBranches({ kind: "gated", branches: [{ kind: "causal" }, { kind: "linear", featureMap: "elu1" }] });
 * // [[1, { kind: "linear", featureMap: "elu1" }]]
 * ```
 */
export function linearBranches(pattern: Pattern): [number, LinearPattern][] {
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  return branches.flatMap((b, i) => b.kind === "linear" ? [[i, b] as [number, LinearPattern]] : []);
}
