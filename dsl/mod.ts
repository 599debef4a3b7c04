/**
 * The pattern DSL: builders, the zod schemas behind them, and the error classes.
 * @module
 */
export * from "./builders.ts";
export {
  KINDS,
  LEAF_KINDS,
  type LeafPattern,
  parsePattern,
  type Pattern,
  PatternSchema,
  type ScoreModifier,
} from "./schema.ts";
export * from "../core/errors.ts";
export * from "./low_rank.ts";
export type { Constants } from "./expression.ts";
export * from "./hash_bucket.ts";
