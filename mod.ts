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
export {
  type AttentionShape,
  compile,
  type CompiledAttention,
  type CompileOptions,
  type Plan,
  planSummary,
  planTileCounts,
} from "./compiler/mod.ts";
export { createRuntime, type Runtime, type RuntimeOptions } from "./runtime/runtime.ts";
export type { TuneOptions, TuneResult } from "./runtime/autotune.ts";
export type { AttentionInputs, AttentionOutputs } from "./runtime/attention_call.ts";
export { allowedMask, reference, referenceHashCodes } from "./runtime/reference/mod.ts";
