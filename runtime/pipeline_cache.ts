/**
 * Compute pipelines, created once per distinct kernel on a device. The key is the WGSL without
 * its comments (`pipelineKey`): the code encodes the plan's structure, the shape, tile shape and
 * dtype, while the pattern's numbers (periods, radii, windows, aux offsets) are runtime values
 * in the aux buffer and gates are a buffer too. So changing those numbers at the same shape is
 * a cache hit; changing the structure (another layout, atom kind or component count, which the
 * plan may choose for very different numbers) compiles anew. A cache lives on one device (one
 * adapter), so the adapter needs no place in the key. Failed compiles become a ShaderError
 * quoting the offending line.
 * @module
 */
import { type Pass, pipelineKey } from "../compiler/mod.ts";
import { ShaderError } from "../dsl/errors.ts";

/** Pipelines by WGSL without comments, with hit and miss counts. */
export class PipelineCache {
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  hits = 0;
  misses = 0;

  constructor(readonly device: GPUDevice) {}

  /**
   * The pipeline for a WGSL module (entry point `main`), compiled on first use.
   * @param pass the pass: WGSL (entry point `main`), label and bindings
   * @returns the pipeline
   * @throws {ShaderError} the compiler's message with the generated line it points at
   */
  get(pass: Pass): Promise<GPUComputePipeline> {
    const key = pipelineKey(pass.wgsl);
    let pipeline = this.#pipelines.get(key);
    if (pipeline) {
      this.hits++;
      return pipeline;
    }
    this.misses++;
    pipeline = this.#create(pass);
    this.#pipelines.set(key, pipeline);
    pipeline.catch(() => this.#pipelines.delete(key));
    return pipeline;
  }

  async #create({ wgsl, label, bindings }: Pass): Promise<GPUComputePipeline> {
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code: wgsl, label });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    const scopeError = await this.device.popErrorScope();
    if (errors.length || scopeError) {
      throw new ShaderError(describeShaderError(wgsl, label, errors, scopeError));
    }
    try {
      return await this.device.createComputePipelineAsync({
        label,
        layout: passLayout(this.device, bindings, label),
        compute: { module, entryPoint: "main" },
      });
    } catch (e) {
      throw new ShaderError(`WGSL of ${label} failed to build a pipeline: ${(e as Error).message}`);
    }
  }
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
