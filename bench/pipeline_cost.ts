/**
 * Where pipeline creation goes, pass by pass: the shader module (WGSL parsed and validated by
 * wgpu's front end, on the CPU) against the compute pipeline (translation for the backend and
 * the driver's compile, or its cache). On the H200 with NVIDIA's cache warm, a float16 attention
 * kernel (25 KB of WGSL) spent about 11 ms in its module and 1-2 ms in its pipeline, a float32 one
 * (15 KB) about 5 and 1 ms: the warm compile is the front end's.
 *
 * With `--deferred` every module gets an unused `override`: wgpu then keeps it as IR and writes
 * SPIR-V per pipeline, so the module time is the front end alone (measured: the same 17 ms).
 *
 *   deno run -A bench/pipeline_cost.ts [N] [--patterns dense,bigbird] [--dtype f16,f32] [--deferred]
 * @module
 */
import { parseArgs } from "node:util";
import { passLayout } from "../runtime/pipeline_cache.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { selectPatterns } from "./suite.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    patterns: { type: "string" },
    dtype: { type: "string" },
    deferred: { type: "boolean" },
  },
});
const rt = await createRuntime({ autotune: false });
const device = rt.device;
const n = Number(positionals[0] ?? 65536);
const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: n, headDim: 64 };
const suite = selectPatterns(values.patterns?.split(","));
const dtypes = (values.dtype ?? (rt.info.shaderF16 ? "f16,f32" : "f32")).split(",") as (
  | "f32"
  | "f16"
)[];
console.log(`pipeline cost on ${rt.info.description || "this adapter"}, N=${n}, D=64, H=8`);
for (const dtype of dtypes) {
  for (const { name, pattern } of suite) {
    // Passes sharing a module (compiler/kernel_groups.ts) create it once: module 0 ms after.
    const modules = new Map<string, GPUShaderModule>();
    for (const pass of rt.compile(pattern, { shape, dtype }).passes) {
      const t0 = performance.now();
      let module = modules.get(pass.wgsl);
      if (!module) {
        const code = values.deferred
          ? `${pass.wgsl}\noverride weftDeferred: u32 = 0u;\n`
          : pass.wgsl;
        module = device.createShaderModule({ code, label: pass.label });
        await module.getCompilationInfo();
        modules.set(pass.wgsl, module);
      }
      const t1 = performance.now();
      const layout = passLayout(device, pass.bindings, pass.label);
      await device.createComputePipelineAsync({
        layout,
        compute: { module, entryPoint: pass.entryPoint ?? "main" },
      });
      const t2 = performance.now();
      console.log(
        `${dtype} ${name.padEnd(20)} ${pass.label.slice(0, 44).padEnd(44)} ` +
          `${String(pass.wgsl.length).padStart(6)} chars: module ${
            (t1 - t0).toFixed(1).padStart(6)
          } ms, ` +
          `pipeline ${(t2 - t1).toFixed(1).padStart(6)} ms`,
      );
    }
  }
}
rt.destroy();
