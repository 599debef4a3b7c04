/**
 * Weft: sparse attention patterns declared in TypeScript, compiled to fused WGSL kernels with
 * online softmax, run and verified on WebGPU.
 *
 * ```ts ignore
 * import { compile, createRuntime, gated, reference, ring, stride } from "./mod.ts";
 * const rt = await createRuntime();
 * const pattern = gated([ring(128), stride(16)], [0.5, 0.5]); // πAttention
 * const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 };
 * await rt.tune(pattern, { shape }); // times a few tile shapes once; stored on disk for next time
 * const compiled = rt.compile(pattern, { shape });
 * const { o, lse, gpuMs } = await rt.run(compiled, { q, k, v });
 * ```
 * @module
 */
export * from "./dsl/mod.ts";
// The types the exported functions and CompiledAttention expose, down to the plan's parts.
export {
  type Atom,
  type AttentionKernel,
  type AttentionShape,
  type Binding,
  type BlendKernel,
  type BlockMask,
  type Branch,
  type BufferName,
  type BufferSpec,
  type CastKernel,
  type ClearKernel,
  type CombineKernel,
  compile,
  type CompiledAttention,
  type CompileOptions,
  type Component,
  type DecodeCombineKernel,
  type DecodeGeometry,
  type DecodeKernel,
  type DecodeLanes,
  type DeviceLimits,
  type Dispatch,
  type Dtype,
  type EdgePairForm,
  type GradientKernel,
  type GradientTiling,
  type HashCodeSet,
  type HashKernel,
  type HashLayout,
  type Kernel,
  type KernelPlan,
  type KernelShape,
  type Layout,
  type LinearKernel,
  type LinearTile,
  type MatrixConfig,
  type ModuleEntry,
  type PackedCallData,
  type Pass,
  type Plan,
  planSummary,
  planTileCounts,
  type PoolKernel,
  type QueryRange,
  type RandomAtom,
  type RandomTable,
  type RandomTables,
  type SelectChoice,
  type SelectGeometry,
  type SelectGradientKernel,
  type SelectKernel,
  type SelectLogits,
  type SelectPick,
  type SubgroupLimits,
  type TileShape,
} from "./compiler/mod.ts";
// Paged K and V: the compile option's layout, and the gather a caller checks a paged call with.
export { gatherPages, MAX_PAGE_SIZE, type PagedKv, scatterPages } from "./core/paged_kv.ts";
export {
  createRuntime,
  type Runtime,
  type RuntimeCompileOptions,
  type RuntimeOptions,
} from "./runtime/runtime.ts";
export type { Autotuner, AutotunerDeps, TuneOptions, TuneResult } from "./runtime/autotune.ts";
export type { AutotuneEntry, CandidateResult, StoredKey } from "./runtime/autotune_cache.ts";
export type { TuneKey } from "./runtime/autotune_key.ts";
export { type Backend, BACKENDS, type DeviceInfo } from "./runtime/device.ts";
export type { PipelineCache } from "./runtime/pipeline_cache.ts";
export type {
  AttentionCall,
  AttentionGradients,
  AttentionInputs,
  AttentionOutputs,
} from "./runtime/attention_call.ts";
export {
  type AllowedFn,
  allowedMask,
  type GradientInput,
  type HashLookup,
  reference,
  type ReferenceGradients,
  referenceGradients,
  referenceHashCodes,
  type ReferenceInput,
  type ReferenceOutput,
  referenceSelections,
  type SelectedBlocks,
  selectionDisagreements,
  type SelectLookup,
} from "./runtime/reference/mod.ts";
