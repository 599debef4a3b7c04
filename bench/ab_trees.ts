/**
 * Two compiler trees side by side, interleaved in one process: A, B, A, B, ... on the same
 * device, inputs and kernel shape, so that any clock or temperature drift falls on both and the
 * ratio is measured in one run. On the H200 an interleaved ratio repeated across two device
 * calls to 0.2%, which is what it takes to see the 1-4% that a change to the kernel text moves
 * NVIDIA's register allocation by.
 *
 * ```sh
 * git worktree add /tmp/base HEAD~1            # the tree to compare against
 * deno run -A bench/ab_trees.ts --a /tmp/base --shapes 64x32x2c4,64x32x2 --dtype f16,f32
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type CompileOptions, parseKernelShapeName } from "../compiler/mod.ts";
import type { CompiledAttention } from "../compiler/mod.ts";
import { compileLimits } from "../runtime/device.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { warmUp } from "../runtime/sustained_timing.ts";
import { median } from "./measure.ts";

const USAGE = `Usage: deno run -A bench/ab_trees.ts --a DIR [options]

  --a DIR          checkout whose compiler is A (another revision of this repository)
  --b DIR          checkout whose compiler is B (default: this one)
  --shapes LIST    kernel shapes, e.g. 64x32x2c4,64x32x2 (default 64x32x2c4)
  --dtype LIST     f32, f16, one per shape or one for all (default f16)
  --jobs LIST      dense, ring, window256, stride64, ring+stride16, pi, window256+lowrank256,
                   bigbird (default: all)
  --rounds R       timed rounds of A then B (default 9)
  --n N            one sequence length for every job (default: dense 16384, the rest 65536)
  --help           show this`;

const tokens = Array.from({ length: 64 }, (_, i) => i);
const JOBS: { name: string; pattern: unknown; n: number }[] = [
  { name: "dense", pattern: { kind: "dense" }, n: 16384 },
  { name: "ring", pattern: { kind: "ring", radius: 128 }, n: 65536 },
  { name: "window256", pattern: { kind: "window", left: 256, right: 256 }, n: 65536 },
  { name: "stride64", pattern: { kind: "stride", period: 64 }, n: 65536 },
  {
    name: "ring+stride16",
    pattern: { kind: "union", of: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }] },
    n: 65536,
  },
  {
    name: "pi",
    pattern: {
      kind: "gated",
      branches: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }],
      gates: [0.5, 0.5],
    },
    n: 65536,
  },
  {
    name: "window256+lowrank256",
    pattern: {
      kind: "union",
      of: [{ kind: "window", left: 256, right: 256 }, { kind: "lowRank", rank: 256 }],
    },
    n: 65536,
  },
  {
    name: "bigbird",
    pattern: {
      kind: "union",
      of: [
        { kind: "window", left: 192, right: 192 },
        { kind: "global", tokens },
        { kind: "random", blocks: 3, blockSize: 128, seed: 1 },
      ],
    },
    n: 65536,
  },
];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    a: { type: "string" },
    b: { type: "string" },
    shapes: { type: "string" },
    dtype: { type: "string" },
    jobs: { type: "string" },
    rounds: { type: "string" },
    n: { type: "string" },
    help: { type: "boolean" },
  },
});
if (values.help || !values.a) {
  console.log(USAGE);
  Deno.exit(values.help ? 0 : 2);
}
type Compile = (pattern: unknown, options: CompileOptions) => CompiledAttention;
const load = async (dir: string): Promise<Compile> =>
  (await import(pathToFileURL(resolve(dir, "compiler/mod.ts")).href)).compile;
const here = new URL("..", import.meta.url).pathname;
const trees = [
  { name: "A", compile: await load(values.a) },
  { name: "B", compile: await load(values.b ?? here) },
];
const shapes = (values.shapes ?? "64x32x2c4").split(",");
const dtypes = (values.dtype ?? "f16").split(",") as ("f32" | "f16")[];
const rounds = Number(values.rounds ?? 9);
const jobs = (values.jobs
  ? values.jobs.split(",").map((j) => {
    const job = JOBS.find((x) => x.name === j.trim());
    if (!job) throw new Error(`--jobs: "${j}" is none of ${JOBS.map((x) => x.name).join(", ")}`);
    return job;
  })
  : JOBS).map((job) => values.n ? { ...job, n: Number(values.n) } : job);

const rt = await createRuntime({ autotune: false });
if (rt.info.isFallback) console.log("software adapter: the times below mean nothing");
const limits = compileLimits(rt.device);
const headDim = 64;
const most = 8 * Math.max(...jobs.map((j) => j.n)) * headDim;
const data = { q: normalTensor(most, 1), k: normalTensor(most, 2), v: normalTensor(most, 3) };
console.log(`A = ${values.a}, B = ${values.b ?? here}, on ${rt.info.description}`);
for (const [i, shapeName] of shapes.entries()) {
  const dtype = dtypes[Math.min(i, dtypes.length - 1)];
  const tiles = parseKernelShapeName(shapeName, headDim);
  if (!tiles) throw new Error(`--shapes: "${shapeName}" is not a kernel shape at D=${headDim}`);
  for (const job of jobs) {
    const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: job.n, headDim };
    const count = 8 * job.n * headDim;
    const inputs = {
      q: data.q.subarray(0, count),
      k: data.k.subarray(0, count),
      v: data.v.subarray(0, count),
    };
    const options = { shape, dtype, tiles, unroll: !rt.info.isFallback, limits };
    const calls = await Promise.all(
      trees.map((t) => rt.prepare(t.compile(job.pattern, options), inputs)),
    );
    try {
      // One repetition count for both, the larger of what each needs to be sustained.
      let repeat = 1;
      for (const c of calls) repeat = Math.max(repeat, (await warmUp(c, 2, true)).repeat);
      const samples: number[][] = [[], []];
      for (let r = 0; r < rounds; r++) {
        for (const [k, c] of calls.entries()) samples[k].push((await c.submit(repeat)) ?? NaN);
      }
      const [a, b] = samples.map(median);
      console.log(
        `${dtype} ${shapeName.padEnd(10)} ${job.name.padEnd(13)} N=${job.n}: A ${
          a.toFixed(3)
        } ms, ` +
          `B ${b.toFixed(3)} ms, B/A ${(b / a).toFixed(4)}`,
      );
    } finally {
      for (const c of calls) c.destroy();
    }
  }
}
rt.destroy();
