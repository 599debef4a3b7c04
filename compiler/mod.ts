/**
 * The compiler: Pattern -> Plan -> kernel plan -> WGSL. Pure functions; no GPU here.
 * @module
 */
export {
  type Binding,
  type BufferName,
  compile,
  compileChecked,
  type CompiledAttention,
  type CompileOptions,
  type Dtype,
  type Pass,
} from "./compile.ts";
export { checkCall, type CheckedCall } from "./checked_call.ts";
export type {
  AttentionKernel,
  BlendKernel,
  CastKernel,
  ClearKernel,
  CombineKernel,
  DecodeCombineKernel,
  DecodeKernel,
  Dispatch,
  GradientKernel,
  HashKernel,
  Kernel,
  KernelPlan,
  LinearKernel,
  LinearTile,
  ModuleEntry,
  PoolKernel,
  SelectGradientKernel,
  SelectKernel,
} from "./kernel_plan.ts";
export type { DecodeGeometry, DecodeLanes } from "./decode.ts";
export type { SelectChoice, SelectGeometry, SelectLogits, SelectPick } from "./select_attention.ts";
export type { GradientTiling } from "./gradient_tiling.ts";
export type { HashCodeSet, HashLayout } from "./hash_layout.ts";
export type { EdgePairForm } from "./edge_pairs.ts";
export type { RandomAtom, RandomTable, RandomTables } from "./random_table.ts";
export { kernelPlanText } from "./kernel_plan_text.ts";
export { MAX_WORKGROUPS_X } from "./dispatch_sizes.ts";
export { type BufferSpec, checkBufferTable } from "./buffer_table.ts";
export {
  type Branch,
  type Component,
  type Plan,
  planPattern,
  planSummary,
  planTileCounts,
  type TileShape,
} from "./plan.ts";
export { type BlockMask, blockMaskCounts, forEachKeyTile } from "./block_mask.ts";
export { type AttentionShape, checkAttentionShape } from "../core/shape.ts";
export {
  chooseTiles,
  DEFAULT_LIMITS,
  type DeviceLimits,
  kernelFits,
  type KernelShape,
  kernelShape,
  kernelShapeName,
  type MatrixConfig,
  parseKernelShapeName,
  type SubgroupLimits,
  tuningCandidates,
} from "./tiles.ts";
export { type Layout, layoutPositions } from "./layout.ts";
export type { QueryRange } from "./query_tiles.ts";
export { type PackedCallData, packedCallData, packedPlan, sequenceWords } from "./packed_call.ts";
export { packedBlockMask, type PackedMaskOptions } from "./packed_mask.ts";
export { checkPackable, checkPackedLengths, PACKED_KINDS } from "./packed_patterns.ts";
export { type Atom, Coverage } from "./atoms.ts";
export { pipelineKey } from "./render.ts";
