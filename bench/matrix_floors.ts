/**
 * Where a subgroup-matrix kernel's time goes: the dense kernel as compiled, and copies of it with
 * one part of the key-tile step cut out (the scores' reads, P's stores, the QKᵀ products, K and
 * V's loads from storage, ...), timed interleaved in one process so that their differences share
 * one GPU state. Only "as-compiled" computes attention; every other floor gives wrong results on
 * purpose and is a timing probe, never a kernel to use. The as-compiled kernel is first checked
 * against the float64 reference.
 *
 * ```sh
 * WEFT_BACKEND=dawn deno run -A bench/matrix_floors.ts
 * WEFT_BACKEND=dawn deno run -A bench/matrix_floors.ts --shape 64x32x2c4.mma16x16x16s32 \
 *   --head-dim 128 --floors as-compiled,no-score-reads,no-kv-loads
 * ```
 * Runs where the device lists subgroup matrices (Dawn on a GPU); the cuts are text edits of the
 * generated WGSL, so tests/bench/matrix_floors_test.ts checks that each still finds its target.
 * @module
 */
import { parseArgs } from "node:util";
import { parseKernelShapeName } from "../compiler/mod.ts";
import { reference } from "../runtime/reference/mod.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { interleavedGpuTimes, median } from "./measure.ts";

/** One cut of the key-tile step: a text edit of the attention kernel's WGSL. */
interface Floor {
  name: string;
  /** What the cut removes, for the table. */
  removes: string;
  edit: (wgsl: string) => string;
}

/** Replaces every match of `pattern`; a pattern that matches nothing is an error. */
function cut(name: string, pattern: RegExp, by: string): (wgsl: string) => string {
  const global = new RegExp(pattern.source, "g");
  return (wgsl) => {
    const out = wgsl.replace(global, by);
    if (out === wgsl) throw new Error(`floor ${name}: the kernel has no ${pattern.source}`);
    return out;
  };
}

const scoreBarrier = cut("no-score-barrier", /workgroupBarrier\(\);\n(\s*var s0_0 = mmaOut)/, "$1");
const rescaleRead = /if \(workgroupUniformLoad\(&rescaleFlag\[0\]\) != 0u\) \{/;
const rescaleCheck = cut("no-rescale-check", rescaleRead, "workgroupBarrier();\n    if (false) {");
const rescaleBarriers = cut("no-rescale-barriers", rescaleRead, "if (false) {");
const scoreReads = cut(
  "no-score-reads",
  /var (s\d+_\d+) = mmaOut\[[^\n]*\];/,
  "var $1 = f32(lid & 7u) * 0.125;",
);
const pStores = cut("no-p-stores", /\n\s*kpTile\[\(firstRow \+ \d+u\) \* P_ROW[^\n]*/, "");
const exps = cut("no-exp", /exp2\((s\d+_\d+) - (rowMax\d+)\)/, "($1 - $2)");
// Prefetched into registers or staged straight away: either way read as `kIn[src]`.
const kvLoads = cut("no-kv-loads", /\b[kv]In\[src\]/, "vec4<f16>(f16(src & 3u))");
const then = (...edits: ((w: string) => string)[]) => (wgsl: string) =>
  edits.reduce((w, e) => e(w), wgsl);
const softmaxCuts = then(scoreBarrier, rescaleBarriers, scoreReads, pStores, exps);

/** The floors, in the order of the table. */
export const FLOORS: Floor[] = [
  { name: "as-compiled", removes: "nothing (checked against float64)", edit: (w) => w },
  { name: "no-score-barrier", removes: "the barrier before the scores' reads", edit: scoreBarrier },
  {
    name: "no-rescale-check",
    removes: "the lazy rescaling (a plain barrier stays)",
    edit: rescaleCheck,
  },
  {
    name: "no-rescale-barriers",
    removes: "the lazy rescaling and its barriers",
    edit: rescaleBarriers,
  },
  {
    name: "no-qk",
    removes: "QKᵀ's products and K's matrix loads",
    edit: cut("no-qk", /\n\s*s\d+ = subgroupMatrixMultiplyAccumulate\(qm[^\n]*/, ""),
  },
  {
    name: "no-pv",
    removes: "P·V's products and P's and V's matrix loads",
    edit: cut("no-pv", /\n\s*o\d+_\d+ = subgroupMatrixMultiplyAccumulate\(pm[^\n]*/, ""),
  },
  { name: "no-score-reads", removes: "the invocations' reads of S", edit: scoreReads },
  { name: "no-p-stores", removes: "the invocations' stores of P", edit: pStores },
  { name: "no-exp", removes: "exp2 (P = s - max)", edit: exps },
  { name: "no-kv-loads", removes: "K's and V's loads from storage", edit: kvLoads },
  {
    name: "no-staging",
    removes: "K's and V's loads and stores into workgroup memory",
    edit: cut("no-staging", /\n\s*put(KP|V)\((j|\(i \/ D4\)) \* [^\n]*/, ""),
  },
  {
    name: "matrices-only",
    removes: "the softmax's memory traffic, exp2 and two barriers",
    edit: softmaxCuts,
  },
  {
    name: "matrices-only-no-kv-loads",
    removes: "the same and K's and V's loads from storage",
    edit: then(softmaxCuts, kvLoads),
  },
];

/**
 * The attention kernel's WGSL with one floor's cut.
 * @param wgsl a dense subgroup-matrix attention kernel
 * @param name a floor's name (FLOORS)
 * @returns the edited WGSL
 * @throws {Error} for an unknown floor, or a cut whose target the kernel lacks
 */
export function floorWgsl(wgsl: string, name: string): string {
  const floor = FLOORS.find((f) => f.name === name);
  if (!floor) {
    throw new Error(`--floors: "${name}" is none of ${FLOORS.map((f) => f.name).join(", ")}`);
  }
  return floor.edit(wgsl);
}

const USAGE = `Usage: deno run -A bench/matrix_floors.ts [options]

  --shape S       a matrix kernel shape (default 128x32x2c4.mma16x16x16s32)
  --head-dim D    head dim (default 64)
  --n N           sequence length of the timed dense call, B 1, H 8 (default 16384)
  --floors LIST   floors to time (default: all): ${FLOORS.map((f) => f.name).join(", ")}
  --samples K     interleaved samples of each (default 7)
  --help          show this`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      shape: { type: "string", default: "128x32x2c4.mma16x16x16s32" },
      "head-dim": { type: "string", default: "64" },
      n: { type: "string", default: "16384" },
      floors: { type: "string" },
      samples: { type: "string", default: "7" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return console.log(USAGE);
  const d = Number(values["head-dim"]), n = Number(values.n), samples = Number(values.samples);
  const tiles = parseKernelShapeName(values.shape, d);
  if (!tiles?.matrix) throw new Error(`--shape: "${values.shape}" is no matrix shape at D = ${d}`);
  const names = values.floors
    ? values.floors.split(",").map((s) => s.trim())
    : FLOORS.map((f) => f.name);
  const rt = await createRuntime({ autotune: false });
  try {
    if (rt.info.matrices.length === 0 || rt.info.isFallback) {
      throw new Error(
        `${rt.info.description} [${rt.info.webgpu}] lists no subgroup matrices ` +
          "(run on a GPU with WEFT_BACKEND=dawn)",
      );
    }
    const edited = (compiled: ReturnType<typeof rt.compile>, name: string) => ({
      ...compiled,
      passes: compiled.passes.map((p) =>
        /Weft attention kernel/.test(p.wgsl) ? { ...p, wgsl: floorWgsl(p.wgsl, name) } : p
      ),
    });
    // The kernel as compiled, against float64 (GQA 2:1, N 512).
    const check = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 512, headDim: d };
    const h = (x: Float32Array) => Float16Array.from(x);
    const q = h(normalTensor(2 * 512 * d, 11)), k = h(normalTensor(512 * d, 12));
    const v = h(normalTensor(512 * d, 13));
    const got = await rt.run(rt.compile({ kind: "dense" }, { shape: check, dtype: "f16", tiles }), {
      q,
      k,
      v,
    });
    const want = reference({ pattern: { kind: "dense" }, shape: check, q, k, v });
    let err = 0;
    for (let i = 0; i < want.o.length; i++) {
      const e = Math.abs(Number(got.o[i]) - want.o[i]);
      err = Number.isNaN(e) ? Infinity : Math.max(err, e);
    }
    console.log(
      `matrix floors on ${rt.info.description} [${rt.info.webgpu}], ${values.shape}, dense, ` +
        `B 1, H 8, N ${n}, D ${d}, float16; as compiled: max |O - ref| ${err.toExponential(2)}`,
    );
    if (!(err <= 5e-3)) throw new Error("the kernel as compiled is wrong on this device");

    const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: n, headDim: d };
    const inputs = {
      q: normalTensor(8 * n * d, 1),
      k: normalTensor(8 * n * d, 2),
      v: normalTensor(8 * n * d, 3),
    };
    const compiled = rt.compile({ kind: "dense" }, { shape, dtype: "f16", tiles });
    const calls = [];
    try {
      for (const name of names) calls.push(await rt.prepare(edited(compiled, name), inputs));
      const times = await interleavedGpuTimes(calls, samples, 2);
      const base = median(times[0]);
      console.log(
        "| floor | ms | TFLOP/s | of first | removes |\n| --- | ---: | ---: | ---: | --- |",
      );
      names.forEach((name, i) => {
        const ms = median(times[i]);
        console.log(
          `| ${name} | ${ms.toFixed(2)} | ${(4 * 8 * n * n * d / ms / 1e9).toFixed(1)} | ` +
            `${(ms / base).toFixed(2)} | ${FLOORS.find((f) => f.name === name)!.removes} |`,
        );
      });
    } finally {
      for (const call of calls) call.destroy();
    }
  } finally {
    rt.destroy();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`matrix_floors: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
  Deno.exit(0); // as the bench does: Dawn's event loop has nothing left to wait for
}
