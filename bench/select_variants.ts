/**
 * `deno run -A bench/select_variants.ts`: the selection passes of the NSA bench (bench/nsa.ts:
 * B=1, Hq=8, Hkv=1, D=64, N=65536 by default, 16 selected blocks of 64, 1 initial, 2 local,
 * causal; float16 where the adapter has shader-f16) with each form of the choice kernel
 * (`SelectPick`, compiler/select_attention.ts), one line per variant with its median time:
 *
 * - `means`: the block means pass alone; every other line is means + the choice kernel;
 * - `planned`: the choice as the compiler plans it on this adapter;
 * - `rounds`: as planned, picking by workgroup argmax rounds;
 * - `forced`: as planned, keeping the forced blocks only (timing only: the logits and
 *   importances without any picking, so `planned - forced` is what the picking costs);
 * - `held-1`, `held-1-f`: the held form with tiles of one position (where the plan has more),
 *   picking as planned and forced only;
 * - `recomp`, `recomp-f`: the recomputed form, picking as planned and forced only.
 *
 * Each is a call of those passes alone (`{ ...compiled, passes }`), as bench/nsa.ts times the
 * selection passes: warmed up, then samples of calls encoded back to back, GPU timestamps on a
 * GPU, the wall clock on a software adapter. Then every picking variant runs the whole call
 * once and its kept blocks are compared with the planned ones: a pick alone changes no bit, so
 * `rounds` must keep the same blocks; the forms add the logits' products in other orders, so
 * they may differ at a near tie (the count is printed).
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
import {
  type SelectChoice,
  selectChoiceTile,
  type SelectPick,
} from "../compiler/select_attention.ts";
import { MAX_WORKGROUPS_X } from "../compiler/dispatch_sizes.ts";
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

const rounds: SelectPick = { kind: "rounds" }, forced: SelectPick = { kind: "forced" };
const laneCount = (tp: number) => sg && Math.min(invocations / tp, sg.size);
const lanes = (tp: number): SelectPick =>
  sg ? { kind: "lanes", lanes: laneCount(tp)!, directive: sg.directive } : rounds;
const device = {
  workgroupBytes: rt.device.limits.maxComputeWorkgroupStorageSize,
  unroll: true,
  subgroups: sg,
};
const recomputed = selectChoiceTile(choiceKernel.geometry, { ...device, logits: "recomputed" });
const heldOne: SelectChoice | undefined = choiceKernel.choice.logits.kind === "held" &&
    choiceKernel.choice.positions > 1
  ? { ...choiceKernel.choice, positions: 1, pick: lanes(1) }
  : undefined;
/** The variants: a name, the choice's form, and what it is. */
const variants: [string, SelectChoice, string][] = [
  ["planned", choiceKernel.choice, "as planned"],
  ["rounds", { ...choiceKernel.choice, pick: rounds }, "as planned, argmax rounds"],
  ["forced", { ...choiceKernel.choice, pick: forced }, "as planned, forced blocks only"],
  ...(heldOne
    ? [
      ["held-1", heldOne, "logits held, tiles of 1 position"],
      ["held-1-f", { ...heldOne, pick: forced }, "logits held, tiles of 1, forced blocks only"],
    ] as typeof variants
    : []),
  ...(recomputed
    ? [
      ["recomp", recomputed, "logits recomputed (the other form)"],
      ["recomp-f", { ...recomputed, pick: forced }, "logits recomputed, forced blocks only"],
    ] as typeof variants
    : []),
];

/** The whole call with the choice kernel of this form. */
function withForm(choice: SelectChoice): CompiledAttention {
  const groupsX = Math.min(Math.ceil(n / choice.positions), MAX_WORKGROUPS_X);
  const wgsl = selectBlocksKernel(choiceKernel.geometry, {
    scale: compiled.scale,
    groupsX,
    ...choice,
  });
  const passes = compiled.passes.map((p, i) =>
    i === at ? { ...p, wgsl, workgroups: [groupsX, p.workgroups[1]] as [number, number] } : p
  );
  return { ...compiled, passes };
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
for (const [name, form, what] of variants) {
  const c = withForm(form);
  const ms = await time(rt, c, [means, at]);
  let check = "";
  if (form.pick.kind !== "forced") {
    const blocks = await kept(c);
    base ??= blocks;
    const slots = NSA_SIZES.blocks;
    let differ = 0;
    for (let p = 0; p < n; p++) {
      for (let s = 0; s < slots; s++) {
        if (blocks[p * slots + s] !== base[p * slots + s]) {
          differ++;
          break;
        }
      }
    }
    check = differ
      ? `, kept blocks differ from the planned at ${differ} positions`
      : ", kept blocks = the planned";
  }
  console.log(`${pad(name)} ${ms.toFixed(3)} ${unit}: means + choice, ${what}${check}`);
}
