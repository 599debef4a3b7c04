/**
 * Where a band workgroup's time goes: ring(r) at N = 65536 for r = 128 ... 2048, so that a
 * workgroup visits 10 to 130 key tiles, and a least-squares line through GPU time per workgroup
 * against tiles per workgroup. Its slope is the cost of one key-tile step (against a dense step
 * of the same kernel, dense at N = 16384), its intercept the fixed cost of a workgroup (query
 * load, schedule reads, epilogue), in steps. Ring(128) workgroups visit 10 tiles, so a fixed
 * cost of one step is a tenth of their time.
 *
 * ```sh
 * deno run -A bench/band_cost.ts --shapes 64x32x2c4,64x32x2 --dtype f16,f32
 * deno run -A bench/band_cost.ts --shapes 64x32x2c4 --dtype f16 --radii 97,104,112,120,128
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { parseKernelShapeName, planTileCounts } from "../compiler/mod.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { median, sustainedGpuTimes } from "./measure.ts";

const USAGE = `Usage: deno run -A bench/band_cost.ts [options]

  --shapes LIST    kernel shapes (default 64x32x2c4,64x32x2)
  --dtype LIST     f32, f16, one per shape or one for all (default f16,f32)
  --n N            sequence length of the rings (default 65536)
  --radii LIST     ring radii (default 128,256,512,1024,2048); radii whose workgroups visit
                   the same tiles (e.g. 104-128 with 64x32 tiles) show what the corner tiles cost
  --help           show this`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    shapes: { type: "string" },
    dtype: { type: "string" },
    n: { type: "string" },
    radii: { type: "string" },
    help: { type: "boolean" },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const n = Number(values.n ?? 65536), headDim = 64, heads = 8;
const radii = (values.radii ?? "128,256,512,1024,2048").split(",").map(Number);
if (radii.some((r) => !Number.isInteger(r) || r < 1 || 2 * r + 1 > n)) {
  throw new Error(
    `--radii: "${values.radii}" must be integers from 1 to (N - 1) / 2 = ${(n - 1) >> 1}`,
  );
}
const shapes = (values.shapes ?? "64x32x2c4,64x32x2").split(",");
const dtypes = (values.dtype ?? "f16,f32").split(",") as ("f32" | "f16")[];
const rt = await createRuntime({ autotune: false });
if (rt.info.isFallback) console.log("software adapter: the times below mean nothing");
const count = heads * Math.max(n, 16384) * headDim;
const data = { q: normalTensor(count, 1), k: normalTensor(count, 2), v: normalTensor(count, 3) };

/** Median GPU ms of a pattern, and the key tiles its plan visits (all heads). */
async function time(pattern: unknown, shapeName: string, dtype: "f32" | "f16", seqLen: number) {
  const shape = { batch: 1, headsQ: heads, headsKV: heads, seqLen, headDim };
  const tiles = parseKernelShapeName(shapeName, headDim);
  if (!tiles) throw new Error(`--shapes: "${shapeName}" is not a kernel shape at D=${headDim}`);
  const compiled = rt.compile(pattern, { shape, dtype, tiles });
  const size = heads * seqLen * headDim;
  const inputs = {
    q: data.q.subarray(0, size),
    k: data.k.subarray(0, size),
    v: data.v.subarray(0, size),
  };
  const call = await rt.prepare(compiled, inputs);
  let ms: number;
  try {
    ms = median(await sustainedGpuTimes(call, 7, 2, rt.info.timestamps));
  } finally {
    call.destroy();
  }
  const plan = compiled.plan;
  return { ms, tiles: planTileCounts(plan).visited * heads, plan };
}

console.log(`band cost on ${rt.info.description}, N=${n}, D=${headDim}, H=${heads}`);
for (const [i, shapeName] of shapes.entries()) {
  const dtype = dtypes[Math.min(i, dtypes.length - 1)];
  const dense = await time({ kind: "dense" }, shapeName, dtype, 16384);
  const denseNs = dense.ms * 1e6 / dense.tiles;
  const points: [number, number][] = []; // [tiles per workgroup, GPU ns per workgroup]
  for (const radius of radii) {
    const { ms, tiles, plan } = await time({ kind: "ring", radius }, shapeName, dtype, n);
    const workgroups = plan.branches[0].components[0].mask.qTiles * heads;
    points.push([tiles / workgroups, ms * 1e6 / workgroups]);
    console.log(
      `${dtype} ${shapeName} ring(${radius}): ${ms.toFixed(3)} ms, ` +
        `${(tiles / workgroups).toFixed(2)} tiles per workgroup, ${
          (ms * 1e6 / tiles).toFixed(2)
        } ` +
        `ns per tile (dense ${denseNs.toFixed(2)})`,
    );
  }
  const mean = (k: 0 | 1) => points.reduce((s, p) => s + p[k], 0) / points.length;
  const [mx, my] = [mean(0), mean(1)];
  const spread = points.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
  if (spread === 0) {
    console.log(`${dtype} ${shapeName} fit: every radius visits the same tiles, no line to fit`);
    continue;
  }
  const slope = points.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0) / spread;
  const fixed = (my - slope * mx) / slope;
  console.log(
    `${dtype} ${shapeName} fit: ${slope.toFixed(2)} ns per tile ` +
      `(${(slope / denseNs).toFixed(3)}x dense), fixed ${fixed.toFixed(2)} tiles per workgroup`,
  );
}
rt.destroy();
