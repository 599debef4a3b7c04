/**
 * The benchmark's pattern suite: plain data, one name and one JSON pattern (DESIGN §2) per
 * entry, so a row of results always says exactly what ran. Names are what `--patterns` takes.
 * @module
 */
import type { Pattern } from "../dsl/schema.ts";

/** One pattern of the suite. */
export interface SuiteEntry {
  /** Short unique name, used by `--patterns` and in every report. */
  name: string;
  /** The pattern in its JSON form. */
  pattern: Pattern;
}

/**
 * The suite, dense first: every other row's sparsity efficiency is measured against the dense
 * row at the same N, so it runs first.
 */
export const SUITE: readonly SuiteEntry[] = [
  { name: "dense", pattern: { kind: "dense" } },
  { name: "causal", pattern: { kind: "causal" } },
  { name: "window256", pattern: { kind: "window", left: 256, right: 256 } },
  { name: "ring", pattern: { kind: "ring", radius: 128 } },
  { name: "stride16", pattern: { kind: "stride", period: 16 } },
  { name: "stride64", pattern: { kind: "stride", period: 64 } },
  {
    name: "ring+stride16",
    pattern: {
      kind: "union",
      of: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }],
    },
  },
  {
    name: "pi-attention",
    pattern: {
      kind: "gated",
      branches: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }],
      gates: [0.5, 0.5],
    },
  },
  {
    name: "bigbird",
    pattern: {
      kind: "union",
      of: [
        { kind: "window", left: 192, right: 192 },
        { kind: "global", tokens: Array.from({ length: 64 }, (_, i) => i) },
        { kind: "random", blocks: 3, blockSize: 128, seed: 1 },
      ],
    },
  },
  {
    name: "window256+lowrank256",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 256, right: 256 }, { kind: "lowRank", rank: 256 }],
    },
  },
  {
    // Density, and so efficiency, is counted from the codes each run used.
    name: "hash64x2",
    pattern: { kind: "hashBucket", buckets: 64, rounds: 2, seed: 1 },
  },
];

/**
 * Picks suite entries by name, in suite order.
 * @param names the names wanted, or undefined for the whole suite
 * @returns the entries
 * @throws {Error} naming any unknown pattern and listing the known ones
 * @example
 * ```ts
 * import { selectPatterns } from "./suite.ts";
 * selectPatterns(["ring", "dense"]).map((e) => e.name); // ["dense", "ring"]
 * ```
 */
export function selectPatterns(names?: readonly string[]): SuiteEntry[] {
  if (!names) return [...SUITE];
  const known = new Set(SUITE.map((e) => e.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length) {
    throw new Error(
      `Unknown pattern ${unknown.map((n) => `"${n}"`).join(", ")}: ` +
        `expected names from ${[...known].join(", ")}`,
    );
  }
  return SUITE.filter((e) => names.includes(e.name));
}
