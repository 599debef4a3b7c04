/**
 * Random patterns for the fuzzer. A *skeleton* is a pattern's structure (kinds and nesting, up
 * to depth 3, gated only at the top as the schema requires); `fillPattern` gives it numbers for
 * one N, drawn mostly from the edges (radius 0 and >= N/2, period 1 and > N, windows past N,
 * global tokens at both ends, block sizes 1 and >= N, lowRank rank 1 and >= N). Runs draw a few skeletons and many fillings,
 * so most cases reuse compiled pipelines (a pattern's numbers are runtime values) and the time
 * goes to checking, not compiling.
 * @module
 */
import type { Pattern } from "../../dsl/schema.ts";

/** A pattern's structure without its numbers. */
export type Skeleton =
  | {
    kind:
      | (typeof LEAVES)[number]
      | "lowRank"
      | "lowRankCausal"
      | "predicate"
      | "hashBucket"
      | "hashUniform"
      | "linear"
      | "select"
      | "selectCausal";
  }
  | { kind: "scored"; pattern: Skeleton }
  | { kind: "union" | "intersect"; of: Skeleton[] }
  | { kind: "gated"; branches: Skeleton[]; jsonGates: boolean };

const LEAVES = ["dense", "causal", "window", "ring", "stride", "global", "random"] as const;

/** Uniform integer in [0, n). */
export type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

/**
 * A random skeleton: combinators nested up to `depth`, a gated top with probability 1/4.
 * @param rng uniform [0, 1) source
 * @param depth how deep combinators may nest (3 in the issue)
 * @returns the skeleton
 */
export function randomSkeleton(rng: Rng, depth = 3): Skeleton {
  if (rng() < 0.1) return { kind: "scored", pattern: inner(rng, depth - 1, true) };
  // Uniform hashBucket weights only where every pair of the softmax is theirs.
  const uniformOr = (s: Skeleton): Skeleton => rng() < 0.06 ? { kind: "hashUniform" } : s;
  // A gated branch may also be linear attention (never a union or intersect member). The same
  // draw decides both, so the skeletons after it stay those of the seed.
  const branchOf = (s: Skeleton): Skeleton => {
    const r = rng();
    return r < 0.06 ? { kind: "hashUniform" } : r >= 0.84 ? { kind: "linear" } : s;
  };
  if (rng() < 0.25) {
    const branches = Array.from(
      { length: int(rng, 2, 3) },
      () => branchOf(inner(rng, depth - 1)),
    );
    return { kind: "gated", branches, jsonGates: rng() < 0.5 };
  }
  return uniformOr(inner(rng, depth));
}

/**
 * A skeleton with a select (a whole softmax, DESIGN §2): alone, under causal, or as a gated
 * branch beside a window (NSA's selected and sliding branches).
 * @param rng uniform [0, 1) source
 * @returns the skeleton
 */
export function selectSkeleton(rng: Rng): Skeleton {
  const select: Skeleton = { kind: rng() < 0.5 ? "select" : "selectCausal" };
  if (rng() < 0.6) return select;
  return { kind: "gated", branches: [select, { kind: "window" }], jsonGates: rng() < 0.5 };
}

function inner(rng: Rng, depth: number, underIntersect = false): Skeleton {
  if (depth <= 0 || rng() < 0.55) {
    // In an intersect, lowRank landmarks may meet only causal, dense or the same lowRank
    // (DESIGN §2): never under one here.
    if (!underIntersect && rng() < 0.15) return { kind: rng() < 0.5 ? "lowRank" : "lowRankCausal" };
    if (rng() < 0.12) return { kind: "predicate" };
    if (rng() < 0.1) return { kind: "hashBucket" };
    return { kind: pick(rng, LEAVES) };
  }
  const kind = rng() < 0.6 ? "union" : "intersect";
  const count = kind === "union" ? int(rng, 2, 3) : 2;
  const under = underIntersect || kind === "intersect";
  return { kind, of: Array.from({ length: count }, () => inner(rng, depth - 1, under)) };
}

/**
 * Numbers for a skeleton at sequence length `n`.
 * @param s the skeleton
 * @param n N
 * @param rng uniform [0, 1) source
 * @returns a valid pattern
 */
export function fillPattern(s: Skeleton, n: number, rng: Rng): Pattern {
  const half = Math.floor(n / 2);
  switch (s.kind) {
    case "dense":
    case "causal":
      return { kind: s.kind };
    case "window": {
      const size = () => pick(rng, [0, 1, 2, 3, int(rng, 0, n), Math.max(0, n - 1), n, n + 5]);
      return { kind: "window", left: size(), right: size() };
    }
    case "ring":
      return {
        kind: "ring",
        radius: pick(rng, [0, 1, 2, int(rng, 0, half), Math.max(0, half - 1), half, n]),
      };
    case "stride":
      return {
        kind: "stride",
        period: pick(rng, [1, 2, 3, 5, 7, 16, Math.max(1, n - 1), n, n + 3]),
      };
    case "global": {
      const tokens = new Set<number>();
      if (rng() < 0.5) tokens.add(0);
      if (rng() < 0.5) tokens.add(n - 1);
      for (let i = int(rng, tokens.size ? 0 : 1, 3); i > 0; i--) tokens.add(int(rng, 0, n - 1));
      return { kind: "global", tokens: [...tokens].sort((a, b) => a - b) };
    }
    case "random":
      return {
        kind: "random",
        blocks: int(rng, 1, 4),
        blockSize: pick(rng, [1, 2, 3, 8, 16, n, n + 1]),
        seed: int(rng, 0, 0xffffffff),
      };
    case "lowRank":
    case "lowRankCausal": {
      // Rank 1, a few, about sqrt(N), and >= N (one landmark per token).
      const rank = pick(rng, [1, 2, 3, Math.max(1, Math.round(Math.sqrt(n))), n, n + 7]);
      const p: Pattern = { kind: "lowRank", rank };
      return s.kind === "lowRank" ? p : { kind: "intersect", of: [p, { kind: "causal" }] };
    }
    case "hashBucket":
    case "hashUniform":
      // 1 to 4 rounds; 2 buckets (half of all pairs) up to 16; a few seeds share code sets.
      return {
        kind: "hashBucket",
        buckets: pick(rng, [2, 4, 8, 16]),
        rounds: int(rng, 1, 4),
        seed: pick(rng, [0, 1, 2]),
        ...(s.kind === "hashUniform" ? { weights: "uniform" as const } : {}),
      };
    case "linear":
      // elu1, causal or not, drawn from N so the stream of numbers stays the seed's. favor's
      // exp(W x' - |x'|²/2) underflows float32 at the fuzzer's large magnitudes (tests/gpu has
      // it at unit scale).
      return { kind: "linear", featureMap: "elu1", causal: n % 2 === 1 };
    case "select":
    case "selectCausal": {
      // Block sizes 1, small, N and past N; more slots than blocks; forced blocks.
      const blocks = pick(rng, [1, 2, 3, 64]);
      const initial = int(rng, 0, Math.min(1, blocks));
      const local = int(rng, 0, Math.min(2, blocks - initial));
      const p: Pattern = {
        kind: "select",
        blockSize: pick(rng, [1, 2, 3, 8, n, n + 1]),
        blocks,
        ...(initial ? { initial } : {}),
        ...(local ? { local } : {}),
      };
      return s.kind === "select" ? p : { kind: "intersect", of: [{ kind: "causal" }, p] };
    }
    case "predicate":
      // Predicates bake their constants into the WGSL: a few templates and values keep the
      // number of kernels bounded; negative operands of % and floor division included.
      return pick(rng, [
        {
          kind: "predicate",
          expr: "(q, k) => (q - k) % P == 0",
          constants: { P: pick(rng, [3, 5]) },
        },
        {
          kind: "predicate",
          expr: "(q, k) => Math.abs(q - k) <= W || k % 8 == 0",
          constants: { W: 2 },
        },
        {
          kind: "predicate",
          expr: "(q, k, n, h, b) => Math.floor((k - q) / 4) % 2 == 0 && (h + b + q) % 3 != 1",
        },
      ] as Pattern[]);
    case "scored":
      return {
        kind: "scored",
        pattern: fillPattern(s.pattern, n, rng),
        score: pick(rng, [
          { expr: "(s) => 3 * Math.tanh(s / 3)" },
          {
            // Learnable: read from the learned buffer, and --grad checks its gradient.
            expr: "(s, q, k, h) => s - slope[h % 2] * Math.abs(q - k)",
            constants: { slope: [0.5, 0.125] },
            learnable: ["slope"],
          },
        ]),
      } as Pattern;
    case "union":
    case "intersect":
      return { kind: s.kind, of: s.of.map((c) => fillPattern(c, n, rng)) };
    case "gated": {
      const branches = s.branches.map((b) => fillPattern(b, n, rng));
      return s.jsonGates
        ? { kind: "gated", branches, gates: branches.map(() => Math.round(rng() * 100) / 100) }
        : { kind: "gated", branches };
    }
  }
}
