/**
 * A score modifier's derivative in s, as WGSL (compiler/wgsl/expression_slope_wgsl.ts), run on
 * the device and compared with the reference's forward-mode interpreter of the same program:
 * every math function, selects, locals, captured arrays and integer parts. (The backward pass
 * multiplies it into dS, DESIGN §6.)
 */
import assert from "node:assert/strict";
import { declareScoreSlope } from "../../compiler/wgsl/expression_slope_wgsl.ts";
import { ShaderModule } from "../../compiler/wgsl/shader_module.ts";
import { scoreProgram } from "../../dsl/expression_check.ts";
import type { ScoreModifier } from "../../dsl/schema.ts";
import { scoreDerivativeFunction } from "../../runtime/reference/expression_eval.ts";
import { createRuntime } from "../../runtime/runtime.ts";

const rt = await createRuntime({ autotune: false });
addEventListener("unload", () => rt.destroy());

const N = 64;
const SCORES: ScoreModifier[] = [
  { expr: "s" },
  { expr: "s - 0.1 * Math.abs(q - k)" },
  { expr: "s * s * s - q" },
  { expr: "Math.exp(-s) + Math.log(2 + s * s)" },
  { expr: "30 * Math.tanh(s / 30) + Math.tanh(s)" },
  { expr: "Math.sqrt(1 + s * s) / (1 + Math.abs(k))" },
  { expr: "Math.pow(1 + s * s, 1.5) + Math.pow(s, 3) - Math.pow(2, s)" },
  { expr: "Math.min(s, 0.5) + Math.max(2 * s, -1, s * s) + Math.abs(s - 0.25)" },
  { expr: "q > k ? s / (1 + k) : -s * SLOPES[h]", constants: { SLOPES: [0.5, 0.25] } },
  { expr: "(k % 3) * s + Math.floor(q / 2) - Math.floor(2 * s) + (q == k ? 1 : 0)" },
  { expr: "(s, q, k) => { const t = s * 2; const u = t * t - q; return u / (1 + t * t) + k; }" },
];
/** (s, q, k, h) points away from the kinks of abs, min, max and floor. */
const POINTS: [number, number, number, number][] = [];
for (const s of [-1.7, -0.3, 0.2, 0.9, 1.3, 2.6]) {
  for (const [q, k, h] of [[3, 1, 0], [1, 4, 1], [7, 7, 0]]) POINTS.push([s, q, k, h]);
}

/** Evaluates `scoreModifierSlope` at every point on the device. */
async function onDevice(score: ScoreModifier): Promise<Float32Array> {
  const m = new ShaderModule();
  declareScoreSlope(m, score, N);
  const code = m.render(`
@group(0) @binding(0) var<storage, read> points: array<vec4<f32>>; // s, q, k, h
@group(0) @binding(1) var<storage, read_write> slopes: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= arrayLength(&slopes)) { return; }
  let p = points[g.x];
  slopes[g.x] = scoreModifierSlope(p.x, i32(p.y), i32(p.z), i32(p.w), 0);
}`);
  const device = rt.device;
  const data = Float32Array.from(POINTS.flat());
  const input = device.createBuffer({
    size: data.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(input, 0, new Uint8Array(data.buffer));
  const bytes = POINTS.length * 4;
  const output = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [input, output].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(Math.ceil(POINTS.length / 64));
  pass.end();
  encoder.copyBufferToBuffer(output, 0, read, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [input, output, read]) b.destroy();
  return got;
}

Deno.test("the WGSL slope of every score modifier matches the reference's derivative", async (t) => {
  for (const score of SCORES) {
    await t.step(score.expr, async () => {
      const got = await onDevice(score);
      const want = scoreDerivativeFunction(scoreProgram(score), N);
      POINTS.forEach(([s, q, k, h], i) => {
        const expected = want(Math.fround(s), q, k, h, 0);
        const err = Math.abs(got[i] - expected);
        assert.ok(
          err <= 1e-4 * Math.max(1, Math.abs(expected)),
          `at s=${s}, q=${q}, k=${k}, h=${h}: ${got[i]}, expected ${expected}`,
        );
      });
    });
  }
});

Deno.test("a bias on s differentiates to the constant 1", () => {
  const m = new ShaderModule();
  declareScoreSlope(m, { expr: "s - 0.5 * Math.abs(q - k) + (q > k ? 0 : -1)" }, N);
  assert.match(m.render(""), /fn scoreModifierSlope\([^)]*\) -> f32 \{\n {2}return 1\.0;\n\}/);
});
