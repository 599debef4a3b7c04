/**
 * The playground's builder forms: the published systems Weft's examples reproduce, each a few
 * numbers and the DSL builders that turn them into a pattern (the same builders as
 * `examples/`, at sizes that suit a browser). The TypeScript seed is JSON with source text, so
 * choosing it is what first loads the predicate parser.
 * @module
 */
import {
  causal,
  gated,
  global,
  hashBucket,
  intersect,
  lowRank,
  random,
  ring,
  stride,
  union,
  window,
} from "../dsl/builders.ts";
import type { Pattern } from "../dsl/schema.ts";

/** One number a form asks for. */
export interface SeedField {
  /** The key `build` reads. */
  key: string;
  /** What the form calls it. */
  label: string;
  /** Its starting value. */
  value: number;
  /** The smallest value the input offers. */
  min: number;
  /** The input's step (1 for integers). */
  step?: number;
}

/** A published system as a form. */
export interface Seed {
  /** Stable id (`data-seed` on its button). */
  id: string;
  /** The system's name. */
  title: string;
  /** One line: the paper and what the pattern keeps. */
  description: string;
  /** The numbers it is built from. */
  fields: SeedField[];
  /** The pattern for these numbers at sequence length `n`. */
  build(values: Record<string, number>, n: number): Pattern;
}

/** The seeds in the order the page offers them. */
export const SEEDS: Seed[] = [
  {
    id: "pi_attention",
    title: "πAttention",
    description: "a ring and π-steps, each with its own softmax, blended by a gate g",
    fields: [
      { key: "radius", label: "ring radius r", value: 16, min: 0 },
      { key: "period", label: "π-step period P", value: 16, min: 1 },
      { key: "gate", label: "gate g", value: 0.5, min: 0, step: 0.05 },
    ],
    build: (v) => gated([ring(v.radius), stride(v.period)], [v.gate, 1 - v.gate]),
  },
  {
    id: "longformer",
    title: "Longformer",
    description: "a sliding window and global tokens",
    fields: [
      { key: "half", label: "keys each side", value: 16, min: 0 },
      { key: "globals", label: "global tokens (first)", value: 1, min: 0 },
    ],
    build: (v) =>
      union(window(v.half, v.half), global(Array.from({ length: v.globals }, (_, i) => i))),
  },
  {
    id: "bigbird",
    title: "BigBird",
    description: "a window, a global block and seeded random blocks",
    fields: [
      { key: "block", label: "block size b", value: 16, min: 1 },
      { key: "blocks", label: "random blocks r", value: 2, min: 1 },
      { key: "seed", label: "seed", value: 0, min: 0 },
    ],
    build: (v) =>
      union(
        window(v.block, v.block),
        global(Array.from({ length: v.block }, (_, i) => i)),
        random({ blocks: v.blocks, blockSize: v.block, seed: v.seed }),
      ),
  },
  {
    id: "reformer",
    title: "Reformer",
    description: "causal keys that share an angular-LSH bucket with the query (hashBucket)",
    fields: [
      { key: "buckets", label: "buckets (power of 2)", value: 8, min: 2 },
      { key: "rounds", label: "rounds", value: 2, min: 1 },
      { key: "seed", label: "seed", value: 2020, min: 0 },
    ],
    build: (v) =>
      intersect(causal(), hashBucket({ buckets: v.buckets, rounds: v.rounds, seed: v.seed })),
  },
  {
    id: "nsa_like",
    title: "NSA",
    description: "compressed, sliding and selected causal branches, gated (NSA-like)",
    fields: [
      { key: "block", label: "compression block", value: 16, min: 1 },
      { key: "window", label: "window", value: 32, min: 0 },
      { key: "selected", label: "selected blocks", value: 2, min: 1 },
    ],
    build: (v, n) =>
      gated([
        intersect(lowRank(Math.ceil(n / v.block)), causal()),
        intersect(window(v.window, 0), causal()),
        intersect(random({ blocks: v.selected, blockSize: v.block, seed: 7 }), causal()),
      ]),
  },
  {
    id: "sparse_transformer",
    title: "Sparse Transformer",
    description: "the strided pattern: the last l keys, and every l-th earlier key",
    fields: [{ key: "stride", label: "stride l", value: 16, min: 1 }],
    build: (v) => union(window(v.stride - 1, 0), intersect(stride(v.stride), causal())),
  },
  {
    id: "predicate",
    title: "TypeScript predicate",
    description: "a causal dilated window written as a TypeScript function, with ALiBi",
    fields: [
      { key: "span", label: "span", value: 48, min: 0 },
      { key: "dilation", label: "dilation", value: 3, min: 1 },
    ],
    build: (v) => ({
      kind: "scored",
      pattern: {
        kind: "predicate",
        expr: "(q, k) => q - k >= 0 && q - k <= SPAN && (q - k) % DILATION == 0",
        constants: { SPAN: v.span, DILATION: v.dilation },
      },
      score: { expr: "(s, q, k) => s - 0.0625 * Math.abs(q - k)" },
    }),
  },
];

/**
 * Whether a pattern's JSON holds TypeScript source (a predicate or a score modifier), which
 * needs the parser loaded before it is checked.
 * @param json a parsed pattern, checked or not
 * @returns true when some node is a predicate or scored
 * @example
 * ```ts
 * import { holdsSource } from "./seeds.ts";
 * holdsSource({ kind: "union", of: [{ kind: "predicate", expr: "q >= k" }] }); // true
 * ```
 */
export function holdsSource(json: unknown): boolean {
  if (Array.isArray(json)) return json.some(holdsSource);
  if (json === null || typeof json !== "object") return false;
  const kind = (json as { kind?: unknown }).kind;
  if (kind === "predicate" || kind === "scored") return true;
  return Object.values(json).some(holdsSource);
}
