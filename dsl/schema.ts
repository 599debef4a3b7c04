/**
 * Zod schemas for the JSON pattern form (DESIGN §2). They are the single source of truth: each
 * kind's interface is written out for the documentation and checked against its schema at
 * compile time, the builders produce exactly these objects, and `parsePattern` is the one place
 * user input is checked.
 * @module
 */
import { z } from "zod";
import { PatternError } from "../core/errors.ts";
import type { Expect, SameType } from "../core/same_type.ts";
import { checkExpressions } from "./expression_check.ts";
import type { ExpressionSource } from "./expression_parse.ts";

const U32_MAX = 0xffffffff;
/** Positions and sizes are i32 in the kernels. */
const I32_MAX = 0x7fffffff;

function integer(what: string, min: number, max = I32_MAX) {
  const error = (i: { input: unknown }) =>
    `${what} must be an integer in [${min}, ${max}], got ${show(i.input)}`;
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 40 ? text.slice(0, 37) + "..." : text;
}

export const DenseSchema = z.strictObject({ kind: z.literal("dense") });
export const CausalSchema = z.strictObject({ kind: z.literal("causal") });
export const WindowSchema = z.strictObject({
  kind: z.literal("window"),
  left: integer("window left", 0),
  right: integer("window right", 0),
});
export const RingSchema = z.strictObject({
  kind: z.literal("ring"),
  radius: integer("ring radius", 0),
});
export const StrideSchema = z.strictObject({
  kind: z.literal("stride"),
  period: integer("stride period", 1),
});
export const GlobalSchema = z.strictObject({
  kind: z.literal("global"),
  tokens: z.array(integer("global token", 0), {
    error: (i) => `global tokens must be an array of integers >= 0, got ${show(i.input)}`,
  }),
});
export const RandomSchema = z.strictObject({
  kind: z.literal("random"),
  blocks: integer("random blocks", 1, 1 << 16),
  blockSize: integer("random blockSize", 1),
  seed: integer("random seed", 0, U32_MAX),
});

export const LowRankSchema = z.strictObject({
  kind: z.literal("lowRank"),
  rank: integer("lowRank rank", 1),
});
/** The most blocks a `select` may choose per query (its selection kernel keeps them in registers). */
export const SELECT_BLOCKS_MAX = 64;
export const SelectSchema = z.strictObject({
  kind: z.literal("select"),
  blockSize: integer("select blockSize", 1),
  blocks: integer("select blocks", 1, SELECT_BLOCKS_MAX),
  initial: integer("select initial", 0, SELECT_BLOCKS_MAX).optional(),
  local: integer("select local", 0, SELECT_BLOCKS_MAX).optional(),
}).refine((p) => (p.initial ?? 0) + (p.local ?? 0) <= p.blocks, {
  error: (i) => {
    const p = i.input as { blocks: number; initial?: number; local?: number };
    return `select initial + local must be at most select blocks (${p.blocks}), got ` +
      `${p.initial ?? 0} + ${p.local ?? 0}; the forced blocks take slots of the ${p.blocks}`;
  },
  path: ["local"],
});
/** The bucket counts hashBucket accepts: powers of two, one GPU histogram per 256 rows each. */
export const HASH_BUCKETS_MAX = 1024;
export const HASH_ROUNDS_MAX = 8;
export const HashBucketSchema = z.strictObject({
  kind: z.literal("hashBucket"),
  buckets: integer("hashBucket buckets", 2, HASH_BUCKETS_MAX).refine((b) => (b & (b - 1)) === 0, {
    error: (i) =>
      `hashBucket buckets must be a power of two in [2, ${HASH_BUCKETS_MAX}], got ${show(i.input)}`,
  }),
  rounds: integer("hashBucket rounds", 1, HASH_ROUNDS_MAX),
  seed: integer("hashBucket seed", 0, U32_MAX),
  weights: z.enum(["softmax", "uniform"], {
    error: (i) => `hashBucket weights must be "softmax" or "uniform", got ${show(i.input)}`,
  }).optional(),
});

const ConstantsSchema = z.record(
  z.string(),
  z.union([z.number(), z.array(z.number())], {
    error: (i) => `constants must map names to numbers or arrays of numbers, got ${show(i.input)}`,
  }),
  { error: (i) => `constants must be an object of numbers, got ${show(i.input)}` },
);
const SourceSchema = (what: string) =>
  z.string({ error: (i) => `${what} must be TypeScript source text, got ${show(i.input)}` });
const MaskSourceSchema = z.strictObject({
  expr: SourceSchema("a mask's expr"),
  constants: ConstantsSchema.optional(),
});
const MasksSchema = z.record(z.string(), MaskSourceSchema);
/**
 * A predicate written in TypeScript (dsl/expression.ts has the subset): `expr` is a bare
 * expression over `q, k, n, h, b`, or a function `(q, k, n, h, b) => boolean` whose parameters
 * bind to those in order. `constants` are the numbers (and numeric arrays) it refers to by
 * name; `masks` the registered masks it calls, by name (the builders fill it in).
 */
export const PredicateSchema = z.strictObject({
  kind: z.literal("predicate"),
  expr: SourceSchema("predicate expr"),
  constants: ConstantsSchema.optional(),
  masks: MasksSchema.optional(),
});
/**
 * A score modifier: `expr` maps the raw score `s = scale * q·k` to the score the softmax uses,
 * a bare expression over `s, q, k, h, b, n` or a function `(s, q, k, h, b, n) => number`.
 */
export const ScoreSchema = z.strictObject({
  expr: SourceSchema("score expr"),
  constants: ConstantsSchema.optional(),
  masks: MasksSchema.optional(),
  learnable: z.array(
    z.string({ error: (i) => `score.learnable must list constant names, got ${show(i.input)}` }),
    { error: (i) => `score.learnable must be an array of constant names, got ${show(i.input)}` },
  ).optional(),
});

/** The most random features a `favor` linear attention may draw (DESIGN §2, linear attention). */
export const LINEAR_FEATURES_MAX = 1024;
/**
 * Linear attention (DESIGN §2): not a softmax but `φ(Q)ᵀ S / φ(Q)ᵀ z` over every key, or over
 * `k <= q` with `causal`. `features` is favor's `m` (elu1 has D features); `seed` draws favor's
 * projection. Outermost or a gated branch only (`parsePattern` checks the place).
 */
export const LinearSchema = z.strictObject({
  kind: z.literal("linear"),
  featureMap: z.enum(["elu1", "favor"], {
    error: (i) => `linear featureMap must be "elu1" or "favor", got ${show(i.input)}`,
  }),
  features: integer("linear features", 1, LINEAR_FEATURES_MAX).optional(),
  seed: integer("linear seed", 0, U32_MAX).optional(),
  causal: z.boolean({
    error: (i) => `linear causal must be true or false, got ${show(i.input)}`,
  }).optional(),
}).refine((p) => p.featureMap !== "favor" || p.features !== undefined, {
  error:
    `linear features must be an integer in [1, ${LINEAR_FEATURES_MAX}] for "favor", got nothing`,
  path: ["features"],
});

/** The leaf kinds: each is one allowed-set rule from DESIGN §2. */
export const LEAF_KINDS = [
  "dense",
  "causal",
  "window",
  "ring",
  "stride",
  "global",
  "random",
  "lowRank",
  "hashBucket",
  "select",
  "predicate",
] as const;
/** Every kind the schema accepts. */
export const KINDS = [...LEAF_KINDS, "linear", "union", "intersect", "gated", "scored"] as const;

function patternList(what: string) {
  return z.array(z.lazy(() => PatternSchema), {
    error: (i) => `${what} must be an array of patterns, got ${show(i.input)}`,
  }).min(1, { error: `${what} must hold at least one pattern, got []` });
}

export const UnionSchema = z.strictObject({
  kind: z.literal("union"),
  of: patternList("union.of"),
});
export const IntersectSchema = z.strictObject({
  kind: z.literal("intersect"),
  of: patternList("intersect.of"),
});
export const GatedSchema = z.strictObject({
  kind: z.literal("gated"),
  branches: patternList("gated.branches"),
  gates: z.array(
    z.number({ error: (i) => `gated.gates must hold finite numbers, got ${show(i.input)}` })
      .refine(Number.isFinite, { error: "gated.gates must hold finite numbers" }),
  ).optional(),
}).refine((g) => g.gates === undefined || g.gates.length === g.branches.length, {
  error: (i) => {
    const g = i.input as { gates: unknown[]; branches: unknown[] };
    return `gated.gates must have one gate per branch (${g.branches.length}), got ${g.gates.length}`;
  },
  path: ["gates"],
});

/**
 * A pattern whose scores pass through a modifier before the softmax: `{"kind": "scored",
 * "pattern": P, "score": {"expr": ..., "constants": ...}}`. The allowed set is P's; the score of
 * every allowed pair is `score(s, q, k, h, b, n)` with `s = scale * Q[q]·K[k]`. A score applies
 * to a whole softmax, so `scored` is the outermost pattern or a gated branch.
 */
export const ScoredSchema = z.strictObject({
  kind: z.literal("scored"),
  pattern: z.lazy(() => PatternSchema),
  score: ScoreSchema,
});

/** A sparse attention pattern in its JSON form (DESIGN §2). */
export type Pattern =
  | LeafPattern
  | LinearPattern
  | UnionPattern
  | IntersectPattern
  | GatedPattern
  | ScoredPattern;
/** The allowed set of `pattern`, its scores passed through `score`. */
export interface ScoredPattern {
  /** The JSON tag that selects this combinator (DESIGN §2). */
  kind: "scored";
  /** The allowed set; not `gated` (a score applies to one softmax). */
  pattern: Pattern;
  /** Maps each allowed pair's raw score `s = scale * Q[q]·K[k]` to the score the softmax uses. */
  score: ScoreModifier;
}
/**
 * A score modifier's source, constants and registered masks (`ScoreSchema`), and which of its
 * constants are learnable: the backward pass returns their gradients (`dConstants`).
 */
export interface ScoreModifier extends ExpressionSource {
  /** Constants (by name) whose gradients the backward pass returns. */
  learnable?: string[];
}
/** Any member allows: one softmax over the union. */
export interface UnionPattern {
  /** The JSON tag that selects this combinator (DESIGN §2). */
  kind: "union";
  /** The members, at least one. */
  of: Pattern[];
}
/** Every member allows. */
export interface IntersectPattern {
  /** The JSON tag that selects this combinator (DESIGN §2). */
  kind: "intersect";
  /** The members, at least one. */
  of: Pattern[];
}
/** A softmax per branch, blended by gates. */
export interface GatedPattern {
  /** The JSON tag that selects this combinator (DESIGN §2). */
  kind: "gated";
  /** One softmax each, at least one; none of them `gated`. */
  branches: Pattern[];
  /**
   * Default weights, one finite number per branch (need not sum to 1); a gate tensor given with
   * the call takes precedence, and without either each branch weighs `1 / branches`.
   */
  gates?: number[];
}

// The annotation breaks the type's self-reference; the leaves' types are checked against their
// schemas below.
/**
 * The zod schema of any pattern. `parsePattern` applies it and then the checks zod cannot
 * express (`gated` only at the top, the TypeScript sources' subset), so input should go through
 * `parsePattern`. Not exported from dsl/mod.ts for that reason, and because its type is zod's,
 * which is no part of Weft's API.
 */
export const PatternSchema: z.ZodType<Pattern> = z.discriminatedUnion("kind", [
  DenseSchema,
  CausalSchema,
  WindowSchema,
  RingSchema,
  StrideSchema,
  GlobalSchema,
  RandomSchema,
  LowRankSchema,
  HashBucketSchema,
  LinearSchema,
  SelectSchema,
  UnionSchema,
  IntersectSchema,
  GatedSchema,
  PredicateSchema,
  ScoredSchema,
], {
  error: (i) => {
    const kind = (i.input as { kind?: unknown } | undefined)?.kind;
    return kind === undefined
      ? `a pattern must be an object with a "kind" (one of ${KINDS.join(", ")}), got ${
        show(i.input)
      }`
      : `unknown kind ${show(kind)}; expected one of ${KINDS.join(", ")}`;
  },
});

// The leaves' types are written out so that the documentation can show them; the checks below
// tie each to its schema, which stays the one definition `parsePattern` applies.
/** Every key for every query. */
export interface DensePattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "dense";
}
/** Keys at or before the query: `k <= q`. */
export interface CausalPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "causal";
}
/** A band without wrap-around: `q - left <= k <= q + right`. */
export interface WindowPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "window";
  /** Keys allowed before the query (an integer >= 0). */
  left: number;
  /** Keys allowed after the query (an integer >= 0). */
  right: number;
}
/** A band that wraps around the sequence: `min(|q - k|, N - |q - k|) <= radius`. */
export interface RingPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "ring";
  /** An integer >= 0. */
  radius: number;
}
/** Keys a multiple of `period` away from the query: `(q - k) mod period == 0`. */
export interface StridePattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "stride";
  /** An integer >= 1. */
  period: number;
}
/** Rows and columns of chosen tokens: allowed when `q` or `k` is one of `tokens`. */
export interface GlobalPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "global";
  /** Positions, each `< N` (checked when planned); repeats count once, an empty list allows nothing. */
  tokens: number[];
}
/** Random key blocks: each query block draws `blocks` key blocks of `blockSize` (DESIGN §2). */
export interface RandomPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "random";
  /** Draws per query block, 1 to 65536 (a block drawn twice is allowed once). */
  blocks: number;
  /** Positions per block, an integer >= 1 (the last block may be shorter). */
  blockSize: number;
  /** The draws' seed, a u32. */
  seed: number;
}
/**
 * Pooled keys: with `L = ceil(N / rank)`, landmark `j` is the mean of the K and V rows
 * `[j L, (j + 1) L)`; landmarks are keys of their own, in the same softmax as the token keys
 * (DESIGN §2).
 */
export interface LowRankPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "lowRank";
  /** Landmarks wanted, an integer >= 1; there are `ceil(N / L)` (empty segments are dropped). */
  rank: number;
}
/**
 * Angular locality-sensitive hashing (Reformer, ANNA): allowed when `Q[q]` and `K[k]` share a
 * bucket in some round (DESIGN §2). The allowed set depends on the data.
 */
export interface HashBucketPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "hashBucket";
  /** A power of two from 2 to 1024 (`HASH_BUCKETS_MAX`). */
  buckets: number;
  /** Hash rounds, 1 to 8 (`HASH_ROUNDS_MAX`); a pair sharing a bucket in any round is allowed. */
  rounds: number;
  /** The planes' seed, a u32. */
  seed: number;
  /** `"softmax"` (default), or `"uniform"`: every allowed score of its softmax is 0 (ANNA). */
  weights?: "softmax" | "uniform";
}
/**
 * Linear attention (Katharopoulos et al.'s elu+1, Performer's FAVOR+): `out[q] = φ(Q_q)ᵀ S /
 * φ(Q_q)ᵀ z` with `S = Σ_k φ(K_k) V_kᵀ` and `z = Σ_k φ(K_k)` over every key, or `k <= q` when
 * `causal` (DESIGN §2). Not a softmax: the outermost pattern or a gated branch only.
 */
export interface LinearPattern {
  /** The JSON tag that selects this kind (DESIGN §2). */
  kind: "linear";
  /** `"elu1"`: `φ(x) = elu(x) + 1`; `"favor"`: positive random features (DESIGN §2). */
  featureMap: "elu1" | "favor";
  /** favor's random features `m`, 1 to 1024 (`LINEAR_FEATURES_MAX`); elu1: D, if given. */
  features?: number;
  /** favor's projection seed, a u32 (default 0). */
  seed?: number;
  /** Keys `k <= q` only (default false: every key). */
  causal?: boolean;
}

/**
 * NSA's selected blocks: key blocks `[j s, (j + 1) s)`; each query keeps the keys of the
 * `blocks` blocks most important to its key/value group, scored against the blocks' mean keys
 * (DESIGN §2). The allowed set depends on the data.
 */
export interface SelectPattern {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "select";
  /** Positions per key block `s`, an integer >= 1 (the last block may be shorter). */
  blockSize: number;
  /** Blocks kept per query, 1 to 64 (`SELECT_BLOCKS_MAX`), the forced ones included. */
  blocks: number;
  /** The first `initial` blocks are always kept (default 0). */
  initial?: number;
  /** The `local` blocks ending at the query's own block are always kept (default 0). */
  local?: number;
}
/** A predicate written in TypeScript (`PredicateSchema` and dsl/expression.ts say what it may hold). */
export interface PredicatePattern extends ExpressionSource {
  /** The JSON tag that selects this rule (DESIGN §2). */
  kind: "predicate";
}

type _LeavesMatchSchemas = [
  Expect<SameType<DensePattern, z.infer<typeof DenseSchema>>>,
  Expect<SameType<CausalPattern, z.infer<typeof CausalSchema>>>,
  Expect<SameType<WindowPattern, z.infer<typeof WindowSchema>>>,
  Expect<SameType<RingPattern, z.infer<typeof RingSchema>>>,
  Expect<SameType<StridePattern, z.infer<typeof StrideSchema>>>,
  Expect<SameType<GlobalPattern, z.infer<typeof GlobalSchema>>>,
  Expect<SameType<RandomPattern, z.infer<typeof RandomSchema>>>,
  Expect<SameType<LowRankPattern, z.infer<typeof LowRankSchema>>>,
  Expect<SameType<HashBucketPattern, z.infer<typeof HashBucketSchema>>>,
  Expect<SameType<SelectPattern, z.infer<typeof SelectSchema>>>,
  Expect<SameType<PredicatePattern, z.infer<typeof PredicateSchema>>>,
  Expect<SameType<LinearPattern, z.infer<typeof LinearSchema>>>,
  Expect<SameType<ScoreModifier, z.infer<typeof ScoreSchema>>>,
];
/** A pattern that is not a combinator. */
export type LeafPattern =
  | DensePattern
  | CausalPattern
  | WindowPattern
  | RingPattern
  | StridePattern
  | GlobalPattern
  | RandomPattern
  | LowRankPattern
  | HashBucketPattern
  | SelectPattern
  | PredicatePattern;

/**
 * Checks unknown input (parsed JSON, builder output) and returns it as a `Pattern`.
 * `gated` is allowed only at the top: a branch mixes softmaxes, it is not an allowed set.
 *
 * @param input the candidate pattern
 * @returns the same value, typed
 * @throws {PatternError} one line naming the field, what was expected and what came
 * @example
 * ```ts
 * import { parsePattern } from "./schema.ts";
 * const p = parsePattern({ kind: "stride", period: 16 });
 * console.log(p.kind); // "stride"
 * ```
 */
export function parsePattern(input: unknown): Pattern {
  const result = PatternSchema.safeParse(input);
  if (!result.success) {
    const issue = deepestIssue(result.error.issues);
    const where = issue.path.length ? `pattern${formatPath(issue.path)}` : "pattern";
    throw new PatternError(`Cannot compile pattern: ${where}: ${oneLine(issue)}`);
  }
  rejectNestedGated(result.data, "pattern", true);
  rejectNestedLinear(result.data, "pattern", true);
  checkExpressions(result.data);
  return result.data;
}

function rejectNestedGated(p: Pattern, where: string, top: boolean): void {
  if (p.kind === "gated" && !top) {
    throw new PatternError(
      `Cannot compile pattern: ${where}: "gated" may only be the outermost pattern ` +
        `(it blends separate softmaxes); move it to the top or use "union"`,
    );
  }
  const children = p.kind === "union" || p.kind === "intersect"
    ? p.of.map((c, i) => [c, `${where}.of[${i}]`] as const)
    : p.kind === "gated"
    ? p.branches.map((c, i) => [c, `${where}.branches[${i}]`] as const)
    : p.kind === "scored"
    ? [[p.pattern, `${where}.pattern`] as const]
    : [];
  for (const [child, path] of children) rejectNestedGated(child, path, false);
}

/** Linear attention is no allowed set: it stands alone or as a gated branch (DESIGN §2). */
function rejectNestedLinear(p: Pattern, where: string, place: boolean): void {
  if (p.kind === "linear" && !place) {
    throw new PatternError(
      `Cannot compile pattern: ${where}: "linear" may only be the outermost pattern or a gated ` +
        `branch (it is not a softmax, so it cannot join a union, an intersection or a score); ` +
        `blend it with softmax patterns as a branch of "gated"`,
    );
  }
  if (p.kind === "gated") {
    p.branches.forEach((c, i) => rejectNestedLinear(c, `${where}.branches[${i}]`, true));
  } else if (p.kind === "union" || p.kind === "intersect") {
    p.of.forEach((c, i) => rejectNestedLinear(c, `${where}.of[${i}]`, false));
  } else if (p.kind === "scored") rejectNestedLinear(p.pattern, `${where}.pattern`, false);
}

type Issue = z.core.$ZodIssue;

/** Zod reports a union failure as one issue holding each member's issues; take the deepest. */
function deepestIssue(issues: readonly Issue[]): Issue {
  let best = issues[0];
  for (const issue of issues) {
    if (issue.path.length > best.path.length) best = issue;
  }
  return best;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("");
}

function oneLine(issue: Issue): string {
  if (issue.code === "unrecognized_keys") {
    return `unexpected field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}; ` +
      `remove ${issue.keys.length > 1 ? "them" : "it"} (see DESIGN §2 for each kind's fields)`;
  }
  return issue.message.replace(/\s+/g, " ");
}
