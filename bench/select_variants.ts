/**
 * `deno run -A bench/select_variants.ts`: the selection passes of the NSA bench (bench/nsa.ts:
 * B=1, Hq=8, Hkv=1, D=64, N=65536 by default, 16 selected blocks of 64, 1 initial, 2 local,
 * causal; float16 where the adapter has shader-f16) with each form of the choice kernel
 * (`SelectPick`, compiler/select_attention.ts), one line per variant with its median time:
 *
 * - `means`: the block means pass alone;
 * - `rounds`: means + the choice picking by workgroup argmax rounds (the form without subgroups);
 * - `forced`: means + the choice keeping the forced blocks only (timing only: the logits and
 *   importances without any picking, so `rounds - forced` is what the rounds cost);
 * - `lanes`: means + the choice picking by subgroup lanes (the form where the device has
 *   subgroups), where the adapter has them.
 *
 * Each is a call of those passes alone (`{ ...compiled, passes }`), as bench/nsa.ts times the
 * selection passes: warmed up, then samples of calls encoded back to back, GPU timestamps on a
 * GPU, the wall clock on a software adapter. Then every picking variant runs the whole call
 * once and its kept blocks are compared with `rounds`' (they must be the same bits).
 *
 * ```sh
 * deno run -A bench/select_variants.ts --n 65536 --reps 10
 * ```
 * @module
 */
import { styleText } from "node:util";
import { parseFlags } from "../cli/_common.ts";
import type { CompiledAttention } from "../compiler/mod.ts";
import type { SelectKernel } from "../compiler/kernel_plan.ts";
import type { SelectPick } from "../compiler/select_attention.ts";
import { selectBlocksKernel } from "../compiler/wgsl/select_wgsl.ts";
import { NSA_SIZES, nsaGates, nsaPattern } from "../examples/nsa.ts";
import type { AttentionInputs } from "../runtime/attention_call.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { warmUp } from "../runtime/sustained_timing.ts";
import { isSoftwareAdapter, median, sustainedGpuTimes } from "./measure.ts";

const flags = parseFlags(Deno.args, {
  n: { type: "string", default: "65536" },
  reps: { type: "string", default: "10" },
  warmup: { type: "string", default: "3" },
});
const n = Number(flags.values.n), reps = Number(flags.values.reps);
const warmup = Number(flags.values.warmup);

const rt = await createRuntime({ autotune: false });
const dtype = rt.info.shaderF16 ? "f16" : "f32";
const software = isSoftwareAdapter(rt.info);
const gpuTimer = rt.info.timestamps && !software;
const shape = { batch: 1, headsQ: 8, headsKV: 1, seqLen: n, headDim: 64 };
const compiled = rt.compile(nsaPattern(n), { shape, dtype });
const kernels = compiled.kernelPlan.kernels;
const at = kernels.findIndex((k) => k.kind === "selectBlocks");
const means = kernels.findIndex((k) => k.kind === "selectMeans");
const choiceKernel = kernels[at] as SelectKernel;
const { positions, invocations } = choiceKernel.choice;
const sg = rt.info.subgroups;

/** The variants: a name, its pick, and what it is. */
const variants: [string, SelectPick, string][] = [
  ["rounds", { kind: "rounds" }, "argmax rounds through workgroup memory"],
  ["forced", { kind: "forced" }, "forced blocks only: logits and importances, no picking"],
  ...(sg
    ? [[
      "lanes",
      {
        kind: "lanes",
        lanes: Math.min(invocations / positions, sg.size),
        directive: sg.directive,
      },
      "picking by subgroup lanes, shuffles, no barriers",
    ] as [string, SelectPick, string]]
    : []),
];

/** The whole call with the choice kernel of this pick. */
function withPick(pick: SelectPick): CompiledAttention {
  const wgsl = selectBlocksKernel(choiceKernel.geometry, {
    scale: compiled.scale,
    groupsX: choiceKernel.workgroups[0],
    ...choiceKernel.choice,
    pick,
  });
  return { ...compiled, passes: compiled.passes.map((p, i) => i === at ? { ...p, wgsl } : p) };
}

const make = (count: number, seed: number) => {
  const x = normalTensor(count, seed);
  return dtype === "f16" ? Float16Array.from(x) : x;
};
const inputs: AttentionInputs = {
  q: make(8 * n * 64, 1),
  k: make(n * 64, 2),
  v: make(n * 64, 3),
  gates: nsaGates(shape),
};

/** Median ms of a call of the given passes alone. */
async function time(rt: Runtime, c: CompiledAttention, keep: number[]): Promise<number> {
  const call = await rt.prepare({ ...c, passes: keep.map((i) => c.passes[i]) }, inputs);
  try {
    if (gpuTimer) return median(await sustainedGpuTimes(call, reps, warmup));
    const { repeat } = await warmUp(call, warmup, false);
    const wall: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await call.submit(repeat);
      wall.push((performance.now() - t0) / repeat);
    }
    return median(wall);
  } finally {
    call.destroy();
  }
}

/** The kept blocks of one whole call. */
async function kept(c: CompiledAttention): Promise<Int32Array> {
  const call = await rt.prepare(c, inputs);
  try {
    await call.submit();
    return (await call.read()).selectedBlocks![0].chosen;
  } finally {
    call.destroy();
  }
}

console.error(
  styleText(
    "bold",
    `Weft select variants on ${rt.info.description}: NSA's selection, B=1 Hq=8 Hkv=1 D=64 ` +
      `N=${n} ${dtype}, ${NSA_SIZES.blocks} of ${Math.ceil(n / NSA_SIZES.blockSize)} blocks ` +
      `of ${NSA_SIZES.blockSize}; choice tiles of ${positions} positions, ${invocations} ` +
      `invocations${sg ? `, smallest subgroup ${sg.size}` : ", no subgroups"}; ` +
      `timer: ${gpuTimer ? "GPU timestamps" : "wall clock"}`,
  ),
);
const unit = gpuTimer ? "ms (GPU)" : "ms (wall clock)";
const pad = (s: string) => s.padEnd(8);
console.log(
  `${pad("means")} ${
    (await time(rt, compiled, [means])).toFixed(3)
  } ${unit}: block means pass alone`,
);
let base: Int32Array | undefined;
for (const [name, pick, what] of variants) {
  const c = withPick(pick);
  const ms = await time(rt, c, [means, at]);
  let check = "";
  if (pick.kind !== "forced") {
    const blocks = await kept(c);
    base ??= blocks;
    const same = blocks.length === base.length && blocks.every((x, i) => x === base![i]);
    check = same ? ", kept blocks = rounds'" : ", KEPT BLOCKS DIFFER from rounds'";
  }
  console.log(`${pad(name)} ${ms.toFixed(3)} ${unit}: means + choice, ${what}${check}`);
}
