/**
 * Adapter and device: the high-performance adapter, its real limits requested (WebGPU's
 * defaults are far below what GPUs offer), the optional features Weft uses.
 * @module
 */
import { DeviceError } from "../core/errors.ts";
import type { DeviceLimits } from "../compiler/mod.ts";

/** What Weft knows about the device it runs on. */
export interface DeviceInfo {
  /** The adapter's description (else its device id), e.g. "NVIDIA H100 80GB HBM3". */
  description: string;
  /** The adapter's vendor as WebGPU reports it (may be empty). */
  vendor: string;
  /** The adapter's architecture as WebGPU reports it (may be empty). */
  architecture: string;
  /** The adapter's device id as WebGPU reports it (may be empty or "0"; no driver version is exposed). */
  deviceId: string;
  /** A software adapter (e.g. Mesa llvmpipe): correct, but timings mean nothing. */
  isFallback: boolean;
  /** The features the device was created with. */
  features: string[];
  /** `timestamp-query` is enabled: submissions are timed on the GPU. */
  timestamps: boolean;
  /** `shader-f16` is enabled: float16 calls can run. */
  shaderF16: boolean;
}

/** The limits Weft raises to the adapter's maximum. */
const RAISED_LIMITS = [
  "maxComputeWorkgroupStorageSize",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

/**
 * Requests the high-performance adapter (a fallback adapter is accepted and reported) and a
 * device with its real limits and the `timestamp-query` and `shader-f16` features when offered.
 * @returns the device and what it is
 * @throws {DeviceError} when no adapter exists, with how to get one
 * @example
 * ```ts ignore
 * import { openDevice } from "./device.ts";
 * const { device, info } = await openDevice();
 * console.log(info.description, info.isFallback);
 * ```
 */
export async function openDevice(): Promise<{ device: GPUDevice; info: DeviceInfo }> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new DeviceError(
      "No WebGPU in this runtime: run with Deno 2.x (`npx -y deno@2.9.6 task test`), which ships WebGPU",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new DeviceError(
      "No WebGPU adapter found: install a Vulkan driver (on a CPU-only Linux machine, Mesa's " +
        "llvmpipe: `apt-get install mesa-vulkan-drivers`), or on a GPU machine set " +
        "VK_DRIVER_FILES to the vendor's ICD json",
    );
  }
  const optional: GPUFeatureName[] = ["timestamp-query", "shader-f16"];
  const wanted = optional.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits });
  const info = adapter.info;
  return {
    device,
    info: {
      description: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      architecture: info.architecture,
      deviceId: info.device,
      isFallback: (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        SOFTWARE_ADAPTERS.test(`${info.description} ${info.device}`),
      features: [...device.features],
      timestamps: device.features.has("timestamp-query"),
      shaderF16: device.features.has("shader-f16"),
    },
  };
}

/**
 * Adapters that run on the CPU though WebGPU may not call them fallback adapters (wgpu's GL
 * backend on Mesa says nothing): they get the fallback tiles and loops that are not unrolled.
 */
const SOFTWARE_ADAPTERS = /llvmpipe|softpipe|lavapipe|swiftshader|basic render/i;

/**
 * The device limits `compile` sizes kernels for: workgroup memory, invocations per workgroup,
 * the largest storage binding.
 * @param device an open device
 * @returns its limits, as the compiler takes them
 */
export function compileLimits(device: GPUDevice): DeviceLimits {
  return {
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
  };
}
