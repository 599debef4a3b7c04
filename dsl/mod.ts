/**
 * The pattern DSL: builders, the zod schemas behind them, and the error classes.
 * @module
 */
export * from "./builders.ts";
export {
  type CausalPattern,
  type DensePattern,
  type GatedPattern,
  type GlobalPattern,
  type HashBucketPattern,
  type IntersectPattern,
  KINDS,
  LEAF_KINDS,
  type LeafPattern,
  LINEAR_FEATURES_MAX,
  type LinearPattern,
  type LowRankPattern,
  parsePattern,
  type Pattern,
  type PredicatePattern,
  type RandomPattern,
  type RingPattern,
  type ScoredPattern,
  type ScoreModifier,
  SELECT_BLOCKS_MAX,
  type SelectPattern,
  type StridePattern,
  type UnionPattern,
  type WindowPattern,
} from "./schema.ts";
export type { ExpressionSource, MaskSource } from "./expression_parse.ts";
export { loadExpressionParser } from "./expression_syntax.ts";
export * from "../core/errors.ts";
export * from "./low_rank.ts";
export type { Constants } from "./expression.ts";
export * from "./hash_bucket.ts";
export * from "./select.ts";
