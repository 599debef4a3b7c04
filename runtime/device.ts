/**
 * Adapter and device: the high-performance adapter of one of two WebGPU implementations, its
 * real limits requested (WebGPU's defaults are far below what GPUs offer), the optional
 * features Weft uses.
 *
 * - `native`: Deno's built-in WebGPU (wgpu). Always there; CI runs on it. In a browser:
 *   `navigator.gpu`, the browser's own (Chrome's is Dawn, with its subgroup matrices if offered).
 * - `dawn`: Chrome's WebGPU, npm `webgpu` (a prebuilt `dawn.node`, loaded through Node-API only
 *   when asked). With its unsafe APIs allowed it offers subgroup matrices
 *   (`chromium-experimental-subgroup-matrix`): the tensor cores, which wgpu keeps switched off.
 * @module
 */
import { DeviceError } from "../core/errors.ts";
import { currentHost } from "../core/host.ts";
import type { DeviceLimits, MatrixConfig, SubgroupLimits } from "../compiler/mod.ts";
import { gpuWait, guardWaits } from "./gpu_wait.ts";

/** The WebGPU implementations Weft runs on. */
export const BACKENDS = ["native", "dawn"] as const;
/** A WebGPU implementation: `native` (Deno's own, wgpu) or `dawn` (npm `webgpu`). */
export type Backend = typeof BACKENDS[number];

/** The environment variable naming the backend where the caller does not. */
export const BACKEND_ENV = "WEFT_BACKEND";

/** What Weft knows about the device it runs on. */
export interface DeviceInfo {
  /**
   * The adapter's name: its description on Deno's WebGPU, its device on Dawn (whose description
   * is the driver's), else the other, else vendor and architecture (as Chrome reports
   * SwiftShader: "google swiftshader"), e.g. "NVIDIA H100 80GB HBM3".
   */
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
  /** Which WebGPU implementation runs the kernels. */
  backend: Backend;
  /**
   * The implementation and its version, e.g. `deno 2.9.6`, `dawn (npm webgpu 0.6.2)`, or in a
   * browser the browser's, e.g. `Chrome 150`.
   */
  webgpu: string;
  /**
   * The subgroup-matrix shapes the device multiplies (Dawn with
   * `chromium-experimental-subgroup-matrix`), with the subgroup size they run at; empty where
   * there are none.
   */
  matrices: MatrixConfig[];
  /** How this device's WGSL spells a matrix load's majorness (compiler/tiles.ts). */
  matrixMajorness?: "template" | "argument";
  /**
   * The device's subgroups where it was created with them: the smallest size it runs and
   * whether its WGSL wants `enable subgroups;` (Tint does, naga refuses the line).
   */
  subgroups?: SubgroupLimits;
}

/**
 * Dawn's toggles: subgroup matrices are an unsafe API; NVIDIA's f16 is off by default. More
 * toggles (comma-separated, e.g. `disable_robustness`) come from WEFT_DAWN_TOGGLES, for
 * experiments.
 */
function dawnToggles(): string[] {
  const extra = currentHost().env("WEFT_DAWN_TOGGLES")?.split(",").map((t) => t.trim())
    .filter((t) => t) ?? [];
  return [
    `enable-dawn-features=${["allow_unsafe_apis", "vulkan_enable_f16_on_nvidia", ...extra]}`,
  ];
}
const DAWN_PACKAGE = "webgpu 0.6.2";

/**
 * The backend named by the caller, else by WEFT_BACKEND, else `native`.
 * @param backend the caller's choice, if any
 * @returns a backend
 * @throws {DeviceError} naming the allowed values when the choice is not one
 */
export function resolveBackend(backend?: string): Backend {
  const chosen = backend ?? currentHost().env(BACKEND_ENV) ?? "native";
  if (!(BACKENDS as readonly string[]).includes(chosen)) {
    throw new DeviceError(
      `Bad backend "${chosen}"${backend === undefined ? ` (from ${BACKEND_ENV})` : ""}: ` +
        `allowed values are ${BACKENDS.join(", ")}`,
    );
  }
  return chosen as Backend;
}

let dawnInstance: GPU | undefined;
/** Each device's adapter, alive as long as the device is (Dawn's lifetimes, as above). */
const adapterOf = new WeakMap<GPUDevice, GPUAdapter>();

/** The GPU entry point of a backend: `navigator.gpu`, or Dawn's, loaded now. */
async function gpuOf(backend: Backend): Promise<GPU> {
  if (backend === "native") {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new DeviceError(
        "No WebGPU in this runtime: run with Deno 2.x (`npx -y deno@2.9.6 task test`), which ships WebGPU",
      );
    }
    return navigator.gpu;
  }
  if (currentHost().kind === "browser") {
    throw new DeviceError(
      "Backend dawn is npm:webgpu under Deno; in a browser, WebGPU is the browser's own (native)",
    );
  }
  try {
    // One Dawn instance per process, held here: Dawn's objects do not keep their instance
    // alive, and devices whose instance was collected crash the process on their next call.
    dawnInstance ??= (await import("webgpu")).create(dawnToggles());
    return dawnInstance;
  } catch (e) {
    throw new DeviceError(
      `Backend dawn: npm:webgpu (Dawn) could not be loaded (${(e as Error).message}); ` +
        "it ships a prebuilt dawn.node for Linux x64, macOS and Windows",
    );
  }
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
 * What to call an adapter. Deno's WebGPU puts the GPU's name in `description`; Dawn puts the
 * driver's there ("NVIDIA: 580.159.04 580.159.4.0") and the GPU's name in `device`.
 * @param info the adapter's info
 * @param backend the implementation that reported it
 * @returns the GPU's name, else whichever is given, else vendor and architecture
 * @example
 * ```ts
 * import { adapterName } from "./device.ts";
 * const info = { vendor: "nvidia", architecture: "hopper", device: "NVIDIA H100 80GB HBM3",
 *   description: "NVIDIA: 580.159.04 580.159.4.0" };
 * adapterName(info, "dawn"); // "NVIDIA H100 80GB HBM3"
 * ```
 */
export function adapterName(
  info: Pick<GPUAdapterInfo, "vendor" | "architecture" | "device" | "description">,
  backend: Backend,
): string {
  const named = backend === "dawn"
    ? info.device || info.description
    : info.description || info.device;
  return named || [info.vendor, info.architecture].filter(Boolean).join(" ") ||
    "unknown adapter";
}

/**
 * Requests the high-performance adapter (a fallback adapter is accepted and reported) and a
 * device with its real limits and the `timestamp-query` and `shader-f16` features when offered
 * (on Dawn also `subgroups` and subgroup matrices).
 * @param backend which WebGPU implementation (default: WEFT_BACKEND, else `native`)
 * @returns the device and what it is
 * @throws {DeviceError} when no adapter exists, with how to get one
 * @example
 * ```ts ignore
 * import { openDevice } from "./device.ts";
 * const { device, info } = await openDevice();
 * console.log(info.description, info.isFallback);
 * ```
 */
export async function openDevice(
  backend?: string,
): Promise<{ device: GPUDevice; info: DeviceInfo }> {
  const chosen = resolveBackend(backend);
  const gpu = await gpuOf(chosen);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new DeviceError(
      `No WebGPU adapter found (backend ${chosen}): install a Vulkan driver (on a CPU-only ` +
        "Linux machine, Mesa's llvmpipe: `apt-get install mesa-vulkan-drivers`), or on a GPU " +
        "machine set VK_DRIVER_FILES to the vendor's ICD json" +
        (chosen === "dawn"
          ? "; Dawn needs Vulkan 1.1 with features software drivers may lack"
          : ""),
    );
  }
  // A browser's WebGPU is its own implementation (Chrome's is Dawn): its matrices too, if offered.
  const matrixCapable = chosen === "dawn" || currentHost().kind === "browser";
  const optional = [
    "timestamp-query",
    "shader-f16",
    ...(matrixCapable ? ["subgroups", "chromium-experimental-subgroup-matrix"] : []),
  ] as GPUFeatureName[];
  const wanted = optional.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await requestWithSubgroups(adapter, wanted, requiredLimits);
  adapterOf.set(device, adapter);
  if (chosen === "dawn") guardWaits(device);
  const matrices = matricesOf(adapter, device);
  const info = adapter.info;
  return {
    device,
    info: {
      description: adapterName(info, chosen),
      vendor: info.vendor,
      architecture: info.architecture,
      deviceId: info.device,
      isFallback: (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        SOFTWARE_ADAPTERS.test(`${info.description} ${info.device}`),
      features: [...device.features],
      timestamps: device.features.has("timestamp-query"),
      shaderF16: device.features.has("shader-f16"),
      backend: chosen,
      webgpu: chosen === "native" ? currentHost().name : `dawn (npm ${DAWN_PACKAGE})`,
      matrices,
      ...(matrices.length ? { matrixMajorness: await majornessOf(device, matrices[0]) } : {}),
      ...subgroupsOf(adapter, device, chosen === "dawn" || currentHost().kind === "browser"),
    },
  };
}

/**
 * Creates the device, with `subgroups` where the implementation grants it. wgpu (Deno's own
 * WebGPU) grants it on Vulkan though `adapter.features` leaves it out, so it is asked for and,
 * where refused (wgpu's GL backend), the device is created without it.
 */
async function requestWithSubgroups(
  adapter: GPUAdapter,
  wanted: GPUFeatureName[],
  requiredLimits: Record<string, number>,
): Promise<GPUDevice> {
  const subgroups = "subgroups" as GPUFeatureName;
  if (!wanted.includes(subgroups)) {
    try {
      return await adapter.requestDevice({
        requiredFeatures: [...wanted, subgroups],
        requiredLimits,
      });
    } catch {
      // Not granted: the device below has no subgroups, and the kernels use none.
    }
  }
  return await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits });
}

/**
 * The subgroups a device was created with, for the compiler: the adapter's smallest subgroup
 * size (a power of two dividing the decode kernel's workgroup), else none.
 */
function subgroupsOf(
  adapter: GPUAdapter,
  device: GPUDevice,
  directive: boolean,
): { subgroups?: SubgroupLimits } {
  if (!device.features.has("subgroups" as GPUFeatureName)) return {};
  const size = (adapter.info as { subgroupMinSize?: number }).subgroupMinSize;
  if (!size || (size & (size - 1)) !== 0 || size > 256) return {};
  return { subgroups: { size, directive } };
}

/**
 * Whether the device compiles the current spelling of a matrix load's majorness (a template
 * argument) or only the first one (a bool argument): a module of one load and one store, no
 * pipeline. Errors read as the first spelling, which the H200's Dawn ran.
 */
async function majornessOf(
  device: GPUDevice,
  c: MatrixConfig,
): Promise<"template" | "argument"> {
  const code = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
var<workgroup> t: array<f16, ${c.m * c.k}>;
@compute @workgroup_size(${c.subgroupSize})
fn main() {
  let m = subgroupMatrixLoad<subgroup_matrix_left<f16, ${c.k}, ${c.m}>, row_major>(&t, 0u, ${c.k}u);
  subgroupMatrixStore<row_major>(&t, 0u, m, ${c.k}u);
}`;
  try {
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code, label: "majorness probe" });
    const scope = device.popErrorScope();
    const info = await gpuWait(device, "the majorness probe", module.getCompilationInfo());
    const ok = !(await gpuWait(device, "the majorness probe's check", scope)) &&
      !info.messages.some((m) => m.type === "error");
    return ok ? "template" : "argument";
  } catch {
    return "argument";
  }
}

/**
 * The float subgroup-matrix shapes of a device created with subgroup matrices, at the adapter's
 * one subgroup size (none where the size varies: the kernels' rows per subgroup assume one).
 */
function matricesOf(adapter: GPUAdapter, device: GPUDevice): MatrixConfig[] {
  if (!device.features.has("chromium-experimental-subgroup-matrix" as GPUFeatureName)) return [];
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMatrixConfigs?: Iterable<Record<string, unknown>>;
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  const size = info.subgroupMinSize;
  if (!size || size !== info.subgroupMaxSize) return [];
  const configs: MatrixConfig[] = [];
  for (const c of info.subgroupMatrixConfigs ?? []) {
    const input = String(c.componentType), result = String(c.resultComponentType);
    if (input !== "f16" || (result !== "f16" && result !== "f32")) continue;
    configs.push({
      input,
      result,
      m: Number(c.M),
      n: Number(c.N),
      k: Number(c.K),
      subgroupSize: size,
    });
  }
  return configs;
}

/**
 * Adapters that run on the CPU though WebGPU may not call them fallback adapters (wgpu's GL
 * backend on Mesa says nothing): they get the fallback tiles and loops that are not unrolled.
 */
const SOFTWARE_ADAPTERS = /llvmpipe|softpipe|lavapipe|swiftshader|basic render/i;

/**
 * The device limits `compile` sizes kernels for: workgroup memory, invocations per workgroup,
 * the largest storage binding, and the subgroup-matrix shapes where the device has them.
 * @param device an open device
 * @param info what `openDevice` reported (its subgroup matrices)
 * @returns its limits, as the compiler takes them
 */
export function compileLimits(device: GPUDevice, info?: DeviceInfo): DeviceLimits {
  return {
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    ...(info?.matrices.length
      ? { matrices: info.matrices, matrixMajorness: info.matrixMajorness }
      : {}),
    ...(info?.subgroups ? { subgroups: info.subgroups } : {}),
  };
}
