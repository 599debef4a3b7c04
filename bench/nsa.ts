/**
 * `deno task bench --nsa`: NSA (examples/nsa.ts) at the paper's sizes: B=1, Hq=8, Hkv=1 (NSA
 * shares one block selection per GQA group, so one key/value head means one choice per position
 * for all 8 query heads), D=64, N=65536 by default, float16 (float32 where the adapter has no
 * shader-f16); compressed blocks of 64, 16 selected blocks of 64 (1 initial, 2 local), a
 * 512-key window, gated per head by runtime gates.
 *
 * It times the whole call, the selection passes alone (block means and kept blocks), and the
 * selection passes with the selected branch's attention (the branch's attention is the
 * difference), each as a call of those passes alone (`{ ...compiled, passes }`), warmed up and
 * sampled as the suite is (GPU timestamps on a GPU, the wall clock on a software adapter). Then
 * it writes the kept blocks to `.npy` and runs the FlexAttention peer
 * (bench/peers/nsa_peer.py) on them, which builds a BlockMask of exactly the same allowed set
 * for the selected branch; where python3 or torch with CUDA is missing the peer is skipped
 * with a note.
 * @module
 */
import { styleText } from "node:util";
import { join } from "node:path";
import type { CompiledAttention } from "../compiler/mod.ts";
import type { AttentionInputs } from "../runtime/attention_call.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { writeNpy } from "../cli/npy.ts";
import { NSA_SIZES, nsaGates, nsaPattern } from "../examples/nsa.ts";
import { isSoftwareAdapter, median, sustainedGpuTimes } from "./measure.ts";
import { warmUp } from "../runtime/sustained_timing.ts";

/** What `--nsa` takes from the command line. */
export interface NsaBenchOptions {
  /** Sequence length. */
  n: number;
  /** Timed samples per measurement (median reported). */
  reps: number;
  /** Untimed submissions first. */
  warmup: number;
  /** Run the FlexAttention peer (default true). */
  peer: boolean;
  /** The Python interpreter for the peer. */
  python: string;
  /** Where to write the kept blocks and the peer's JSON (default: a temporary folder). */
  dir?: string;
  /** Also write the account as JSON here. */
  json?: string;
}

/** One NSA bench run's figures. */
export interface NsaBenchResult {
  device: string;
  dtype: "f16" | "f32";
  n: number;
  timer: "gpu" | "wall";
  /** The whole call (three branches and the blend). */
  totalMs: number;
  /** Block means and kept blocks. */
  selectionMs: number;
  /** The selected branch's attention over the kept blocks. */
  selectedAttentionMs: number;
  /** The peer's figures, or why it did not run. */
  peer: Record<string, unknown>;
}

const SELECTION = new Set(["selectMeans", "selectBlocks", "selectPick"]);

/**
 * Runs the NSA bench and prints its account.
 * @param rt the runtime
 * @param o N, samples, peer options
 * @returns the figures
 * @example
 * ```ts ignore
 * await runNsaBench(rt, { n: 1024, reps: 3, warmup: 1, peer: false, python: "python3" });
 * ```
 */
export async function runNsaBench(rt: Runtime, o: NsaBenchOptions): Promise<NsaBenchResult> {
  const dtype = rt.info.shaderF16 ? "f16" : "f32";
  const shape = { batch: 1, headsQ: 8, headsKV: 1, seqLen: o.n, headDim: 64 };
  const s = NSA_SIZES;
  const software = isSoftwareAdapter(rt.info);
  const gpuTimer = rt.info.timestamps && !software;
  console.error(
    styleText(
      "bold",
      `Weft NSA bench on ${rt.info.description}: B=1 Hq=8 Hkv=1 (one selection per GQA ` +
        `group, shared by its 8 query heads) N=${o.n} D=64 ${dtype}${
          dtype === "f32" ? " (no shader-f16)" : ""
        }; compressed blocks of ${s.compressBlock}, ${s.blocks} selected blocks of ` +
        `${s.blockSize} (${s.initial} initial, ${s.local} local), window ${s.window}, gated ` +
        `per head; timer: ${gpuTimer ? "GPU timestamps" : "wall clock"}`,
    ),
  );
  if (software) {
    console.error(styleText("yellow", "note: a software adapter: these times are not GPU figures"));
  }
  const make = (count: number, seed: number) => {
    const x = normalTensor(count, seed);
    return dtype === "f16" ? Float16Array.from(x) : x;
  };
  const inputs: AttentionInputs = {
    q: make(8 * o.n * 64, 1),
    k: make(o.n * 64, 2),
    v: make(o.n * 64, 3),
    gates: nsaGates(shape),
  };
  const compiled = rt.compile(nsaPattern(o.n), { shape, dtype });
  const kinds = compiled.kernelPlan.kernels.map((k) => k.kind);
  const only = (keep: (kind: string) => boolean): CompiledAttention => ({
    ...compiled,
    passes: compiled.passes.filter((_, i) => keep(kinds[i])),
  });
  const time = async (c: CompiledAttention) => {
    const call = await rt.prepare(c, inputs);
    try {
      if (gpuTimer) return median(await sustainedGpuTimes(call, o.reps, o.warmup));
      const { repeat } = await warmUp(call, o.warmup, false);
      const wall: number[] = [];
      for (let i = 0; i < o.reps; i++) {
        const t0 = performance.now();
        await call.submit(repeat);
        wall.push((performance.now() - t0) / repeat);
      }
      return median(wall);
    } finally {
      call.destroy();
    }
  };
  const totalMs = await time(compiled);
  const selectionMs = await time(only((k) => SELECTION.has(k)));
  const branchMs = await time(only((k) => SELECTION.has(k) || k === "selectAttention"));
  const selectedAttentionMs = Math.max(0, branchMs - selectionMs);

  // The kept blocks, for the peer: one run of the whole call, read back.
  const call = await rt.prepare(compiled, inputs);
  let kept;
  try {
    await call.submit();
    kept = (await call.read()).selectedBlocks![0];
  } finally {
    call.destroy();
  }
  const dir = o.dir ?? await Deno.makeTempDir({ prefix: "weft_nsa_" });
  await Deno.mkdir(dir, { recursive: true });
  const keptPath = join(dir, "nsa_kept.npy");
  await Deno.writeFile(
    keptPath,
    writeNpy({ dtype: "i4", shape: [1, 1, o.n, kept.blocks], data: kept.chosen }),
  );
  const peer = o.peer
    ? await runPeer(o, { keptPath, out: join(dir, "nsa_peer.json"), dtype })
    : { skipped: "--no-peer" };

  const pct = (x: number) => `${(100 * x / totalMs).toFixed(1)}%`;
  const unit = gpuTimer ? "ms (GPU)" : "ms (wall clock)";
  const lines = [
    `NSA, N=${o.n}, ${dtype}: total ${totalMs.toFixed(3)} ${unit}`,
    `  selection passes (block means, kept blocks): ${selectionMs.toFixed(3)} ms, ` +
    `${pct(selectionMs)} of the total`,
    `  selected branch's attention over the kept blocks: ${selectedAttentionMs.toFixed(3)} ms, ` +
    `${pct(selectedAttentionMs)} of the total`,
    `  the rest (compressed and window branches, blend${dtype === "f16" ? ", cast" : ""}): ` +
    `${Math.max(0, totalMs - branchMs).toFixed(3)} ms`,
    `  kept blocks written to ${keptPath}`,
  ];
  if (typeof peer.skipped === "string") {
    lines.push(`  FlexAttention peer: skipped (${peer.skipped})`);
  } else {
    const ms = (k: string) => typeof peer[k] === "number" ? (peer[k] as number).toFixed(3) : "-";
    lines.push(
      `  FlexAttention peer (${peer.device ?? "?"}, torch ${peer.torch ?? "?"}): selected ` +
        `branch ${ms("selected_ms")} ms (Weft ${selectedAttentionMs.toFixed(3)}), all three ` +
        `branches ${ms("total_ms")} ms (Weft ${totalMs.toFixed(3)}), mask building ` +
        `${ms("mask_ms")} ms (not in the attention times; Weft's selection ` +
        `${selectionMs.toFixed(3)})`,
    );
    if (typeof peer.selected_ms === "number" && peer.selected_ms > 0) {
      lines.push(
        `  selected branch, FlexAttention / Weft: ${
          ((peer.selected_ms as number) / selectedAttentionMs).toFixed(2)
        }x`,
      );
    }
  }
  console.log(lines.join("\n"));
  const result: NsaBenchResult = {
    device: rt.info.description,
    dtype,
    n: o.n,
    timer: gpuTimer ? "gpu" : "wall",
    totalMs,
    selectionMs,
    selectedAttentionMs,
    peer,
  };
  if (o.json) await Deno.writeTextFile(o.json, JSON.stringify(result, null, 2) + "\n");
  return result;
}

/** Runs bench/peers/nsa_peer.py on the kept blocks; its JSON, or why it was skipped. */
async function runPeer(
  o: NsaBenchOptions,
  files: { keptPath: string; out: string; dtype: string },
): Promise<Record<string, unknown>> {
  const script = new URL("./peers/nsa_peer.py", import.meta.url).pathname;
  const args = [
    script,
    "--kept",
    files.keptPath,
    "--out",
    files.out,
    "--heads",
    "8",
    "--head-dim",
    "64",
    "--dtype",
    files.dtype,
    "--block",
    String(NSA_SIZES.blockSize),
    "--compress-block",
    String(NSA_SIZES.compressBlock),
    "--window",
    String(NSA_SIZES.window),
  ];
  console.error(styleText("dim", `peer: ${o.python} ${args.join(" ")}`));
  let status;
  try {
    status = await new Deno.Command(o.python, { args, stdout: "inherit", stderr: "inherit" })
      .output();
  } catch (e) {
    return { skipped: `${o.python} could not be started: ${(e as Error).message}` };
  }
  if (!status.success) return { skipped: `the peer exited with status ${status.code}` };
  return JSON.parse(await Deno.readTextFile(files.out));
}
