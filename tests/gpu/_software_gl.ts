/**
 * Golden cases the software adapter of the GL path skips. llvmpipe under wgpu's GL backend
 * compiles kernels of head dims past 128 (MLA's 192) in 30-60 s each; lavapipe, CI's Vulkan
 * software adapter, compiles them in seconds, so CI runs those cases there (`.ci/run`,
 * `WEFT_GOLDEN=mla`). A GPU runs every case.
 * @module
 */
import { isSoftwareAdapter } from "../../bench/measure.ts";
import type { AttentionShape } from "../../compiler/mod.ts";
import type { DeviceInfo } from "../../runtime/device.ts";

/** Head dims above this one are left to lavapipe on software adapters. */
const GL_SOFTWARE_MAX_HEAD_DIM = 128;

/**
 * Whether a case is skipped on this adapter: a software adapter without shader-f16 (the GL
 * path) and a head dim above GL_SOFTWARE_MAX_HEAD_DIM.
 * @param shape the case's shape
 * @param info the adapter
 * @returns true to skip
 */
export function skippedOnSoftwareGl(shape: AttentionShape, info: DeviceInfo): boolean {
  return isSoftwareAdapter(info) && !info.shaderF16 && shape.headDim > GL_SOFTWARE_MAX_HEAD_DIM;
}
