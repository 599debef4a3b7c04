/**
 * `deno run -A bench/select_variants.ts`: the selection passes of the NSA bench (bench/nsa.ts:
 * B=1, Hq=8, Hkv=1, D=64, N=65536 by default, 16 selected blocks of 64, 1 initial, 2 local,
 * causal; float16 where the adapter has shader-f16) with each form of the choice kernel
 * (`SelectChoice`, compiler/select_attention.ts), one line per variant with its median time:
 *
 * - `means`: the block means pass alone; every other line is all the selection passes;
 * - `planned`: the choice as the compiler plans it on this adapter;
 * - `scores`: where the plan writes the importances to a buffer, the passes without the pick
 *   (so `planned - scores` is what the selectPick kernel costs);
 * - `held-1`: as planned with tiles of one position (where the plan has more);
 * - `fused`, `fused-f`: the held logits with the importances in the choice kernel's workgroup
 *   memory, picked there by subgroup lanes or keeping the forced blocks only (timing only);
 * - `rounds`: as fused, picking by workgroup argmax rounds;
 * - `recomp`, `recomp-f`: the logits recomputed in two passes, picking as fused and forced only.
 *
 * Each is a call of those passes alone (`{ ...compiled, passes }`), as bench/nsa.ts times the
 * selection passes: warmed up, then samples of calls encoded back to back, GPU timestamps on a
 * GPU, the wall clock on a software adapter. Then every picking variant runs the whole call
 * once and its kept blocks are compared with the planned ones: a pick alone changes no bit, so
 * `rounds` keeps fused's blocks; the forms add the logits' products in other orders, so
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
import { withSelectChoice } from "../compiler/select_forms.ts";
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
const choiceKernel = kernels.find((k) => k.kind === "selectBlocks") as SelectKernel;
const planned = choiceKernel.choice;
const { positions, invocations } = planned;
const sg = rt.info.subgroups;

const rounds: SelectPick = { kind: "rounds" }, forced: SelectPick = { kind: "forced" };
const lanes = (tp: number): SelectPick =>
  sg
    ? { kind: "lanes", lanes: Math.min(invocations / tp, sg.size), directive: sg.directive }
    : rounds;
const device = {
  workgroupBytes: rt.device.limits.maxComputeWorkgroupStorageSize,
  unroll: true,
  subgroups: sg,
};
const fused = selectChoiceTile(choiceKernel.geometry, { ...device, logits: "held" });
const recomputed = selectChoiceTile(choiceKernel.geometry, { ...device, logits: "recomputed" });
const buffered = planned.importance === "buffer";
/** The variants: a name, the choice's form, whether the pick runs, and what it is. */
const variants: [string, SelectChoice, boolean, string][] = [
  ["planned", planned, true, "as planned"],
  ...(buffered
    ? [["scores", planned, false, "as planned, the importances alone (no pick)"]] as typeof variants
    : []),
  ...(planned.positions > 1
    ? [[
      "held-1",
      { ...planned, positions: 1, ...(buffered ? {} : { pick: lanes(1) }) },
      true,
      "as planned, tiles of 1 position",
    ]] as typeof variants
    : []),
  ...(fused && buffered
    ? [
      ["fused", fused, true, "importances in workgroup memory, picked there"],
      ["fused-f", { ...fused, pick: forced }, true, "as fused, forced blocks only"],
    ] as typeof variants
    : []),
  ...(fused
    ? [["rounds", { ...fused, pick: rounds }, true, "as fused, argmax rounds"]] as typeof variants
    : []),
  ...(recomputed
    ? [
      ["recomp", recomputed, true, "logits recomputed (in two passes)"],
      ["recomp-f", { ...recomputed, pick: forced }, true, "as recomp, forced blocks only"],
    ] as typeof variants
    : []),
];

/** Indices of the call's selection passes: block means, choice, and pick unless left out. */
function selection(c: CompiledAttention, pick: boolean): number[] {
  return c.passes.flatMap((p, i) =>
    p.label.includes(": select,") && !p.label.includes("attention") &&
      (pick || !p.label.includes("from the importances"))
      ? [i]
      : []
  );
}
const meansPass = compiled.passes.findIndex((p) => p.label.includes("select, means"));

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
    (await time(rt, compiled, [meansPass])).toFixed(3)
  } ${unit}: block means pass alone`,
);
let base: Int32Array | undefined;
for (const [name, form, pick, what] of variants) {
  const c = form === planned ? compiled : withSelectChoice(compiled, form);
  const ms = await time(rt, c, selection(c, pick));
  let check = "";
  if (form.pick.kind !== "forced" && pick) {
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
  console.log(`${pad(name)} ${ms.toFixed(3)} ${unit}: selection passes, ${what}${check}`);
}
