/**
 * The float64 CPU reference (DESIGN §4): the oracle every kernel and golden file is checked
 * against. `allowedMask` is a pattern's allowed set, `reference` the attention it implies.
 * @module
 */
export { type AllowedFn, allowedMask, type HashLookup, type SelectLookup } from "./allowed.ts";
export {
  keptBlocksAt,
  referenceSelections,
  type SelectedBlocks,
  selectionDisagreements,
  selectLookup,
} from "./selection.ts";
export { referenceRows, type SampledRow } from "./sampled_rows.ts";
export {
  type AttentionShape,
  hashCodeMismatches,
  hashLookup,
  reference,
  referenceHashCodes,
  type ReferenceInput,
  type ReferenceOutput,
} from "./reference.ts";
export { type GradientInput, type ReferenceGradients, referenceGradients } from "./gradients.ts";
