/**
 * Compute pipelines, created once per distinct kernel on a device. The key is the WGSL without
 * its comments (`pipelineKey`): the code encodes the plan's structure, the shape, tile shape and
 * dtype, while the pattern's numbers (periods, radii, windows, aux offsets) are runtime values
 * in the aux buffer and gates are a buffer too. So changing those numbers at the same shape is
 * a cache hit; changing the structure (another layout, atom kind or component count, which the
 * plan may choose for very different numbers) compiles anew. A cache lives on one device (one
 * adapter), so the adapter needs no place in the key. Component kernels of one pattern may
 * share a module, one entry point each (compiler/kernel_groups.ts): the module is created once
 * (wgpu parses, validates and translates it on the CPU, the bulk of a warm compile) and each
 * entry point gets its pipeline. Failed compiles become a ShaderError quoting the offending
 * line.
 * @module
 */
import { type Pass, pipelineKey } from "../compiler/mod.ts";
import { ShaderError } from "../core/errors.ts";
import { gpuWait } from "./gpu_wait.ts";

/** Pipelines by WGSL without comments and entry point, with hit and miss counts. */
export class PipelineCache {
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  readonly #modules = new Map<string, Promise<GPUShaderModule>>();
  /** Pipelines found in the cache. */
  hits = 0;
  /** Pipelines created (each a compile). */
  misses = 0;
  /** Shader modules created (fewer than `misses` where passes share one). */
  modules = 0;

  /**
   * An empty cache.
   * @param device the device every pipeline is created on
   */
  constructor(readonly device: GPUDevice) {}

  /**
   * The pipeline for a pass, compiled on first use.
   * @param pass the pass: WGSL, its entry point (default `main`), label and bindings
   * @returns the pipeline
   * @throws {ShaderError} the compiler's message with the generated line it points at
   */
  get(pass: Pass): Promise<GPUComputePipeline> {
    const moduleKey = pipelineKey(pass.wgsl);
    const key = pass.entryPoint ? `${moduleKey}\n@${pass.entryPoint}` : moduleKey;
    let pipeline = this.#pipelines.get(key);
    if (pipeline) {
      this.hits++;
      return pipeline;
    }
    this.misses++;
    pipeline = this.#create(pass, moduleKey);
    this.#pipelines.set(key, pipeline);
    pipeline.catch(() => this.#pipelines.delete(key));
    return pipeline;
  }

  async #create(pass: Pass, moduleKey: string): Promise<GPUComputePipeline> {
    const { label, bindings, entryPoint = "main" } = pass;
    const module = await this.#module(pass, moduleKey);
    try {
      return await gpuWait(
        this.device,
        `building the pipeline of ${label}`,
        this.device.createComputePipelineAsync({
          label,
          layout: passLayout(this.device, bindings, label),
          compute: { module, entryPoint },
        }),
      );
    } catch (e) {
      throw new ShaderError(`WGSL of ${label} failed to build a pipeline: ${(e as Error).message}`);
    }
  }

  #module({ wgsl, label }: Pass, key: string): Promise<GPUShaderModule> {
    let module = this.#modules.get(key);
    if (!module) {
      this.modules++;
      module = createModule(this.device, wgsl, label);
      this.#modules.set(key, module);
      module.catch(() => this.#modules.delete(key));
    }
    return module;
  }
}

/**
 * A shader module, checked. Its error scope is pushed and popped with no await in between:
 * scopes are a stack, and another pass's module created meanwhile would take this one's errors.
 */
async function createModule(
  device: GPUDevice,
  wgsl: string,
  label: string,
): Promise<GPUShaderModule> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: wgsl, label });
  const scope = device.popErrorScope();
  const info = await gpuWait(device, `compiling ${label}`, module.getCompilationInfo());
  const errors = info.messages.filter((m) => m.type === "error");
  const scopeError = await gpuWait(device, `checking ${label}`, scope);
  if (errors.length || scopeError) {
    throw new ShaderError(describeShaderError(wgsl, label, errors, scopeError));
  }
  return module;
}

/**
 * A pass's pipeline layout: one bind group, its buffers in binding order. Explicit, because
 * "auto" would drop bindings a kernel happens not to read.
 * @param device the device
 * @param bindings the pass's buffers, in binding order
 * @param label for the driver's messages
 * @returns the layout
 */
export function passLayout(
  device: GPUDevice,
  bindings: Pass["bindings"],
  label?: string,
): GPUPipelineLayout {
  return device.createPipelineLayout({
    bindGroupLayouts: [device.createBindGroupLayout({
      label,
      entries: bindings.map((b, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.writable ? "storage" : "read-only-storage" },
      })),
    })],
  });
}

function describeShaderError(
  wgsl: string,
  label: string,
  errors: readonly GPUCompilationMessage[],
  scopeError: GPUError | null,
): string {
  const lines = wgsl.split("\n");
  if (errors.length) {
    const e = errors[0];
    const source = e.lineNum > 0 ? lines[e.lineNum - 1]?.trim() : undefined;
    const message = e.message.split("\n").map((l) => l.trim()).find((l) => l) ?? "";
    return `WGSL of ${label} does not compile: line ${e.lineNum}:${e.linePos}: ${message}` +
      (source ? ` (at: ${source})` : "");
  }
  return `WGSL of ${label} does not compile: ${scopeError!.message.split("\n")[0]}`;
}
