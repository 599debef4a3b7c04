/**
 * NSA (Native Sparse Attention, Yuan et al. 2025) with its three branches, each its own causal
 * softmax, blended by per-head gates:
 *
 * - compressed: every query scores pooled key blocks (`lowRank`, one landmark per `compressBlock`
 *   positions; a landmark counts once its last row is at or before the query);
 * - selected: the `blocks` key blocks of `blockSize` most important to the query's head group
 *   (`select`: importance is the softmax of the queries against the block means, summed over the
 *   group's query heads, so a GQA group shares one choice, as in NSA), with the first block and
 *   the `local` blocks ending at the query's own always kept;
 * - sliding window: the `window` keys before the query and itself.
 *
 * NSA's gates come from a sigmoid of the query; a seeded per-head draw stands in for them here,
 * passed as runtime gates `[B, Hq, 3]`.
 *
 * Run `deno run -A examples/nsa.ts` (any adapter, llvmpipe included): it runs a small GQA call,
 * checks the GPU's kept blocks against the float64 importances (up to float ties) and O and LSE
 * against the float64 reference on those blocks, and prints a few queries' kept blocks.
 * @module
 */
import { causal, gated, intersect, lowRank, select, window } from "../dsl/builders.ts";
import type { Pattern } from "../dsl/schema.ts";
import type { AttentionShape } from "../core/shape.ts";
import { reference, selectionDisagreements } from "../runtime/reference/mod.ts";
import type { SelectedBlocks } from "../runtime/reference/mod.ts";
import type { Runtime } from "../runtime/runtime.ts";
import { normals, normalTensor } from "../runtime/seeded_random.ts";

/** NSA's sizes (the paper's: selection blocks of 64, 16 of them, a 512-key window). */
export interface NsaSizes {
  /** Rows per pooled landmark of the compressed branch. */
  compressBlock: number;
  /** Rows per key block of the selected branch. */
  blockSize: number;
  /** Key blocks kept per query. */
  blocks: number;
  /** Leading blocks always kept. */
  initial: number;
  /** Blocks ending at the query's own, always kept. */
  local: number;
  /** Keys before the query in the sliding window. */
  window: number;
}

/** The paper's sizes (NSA §4: l' = 64, n = 16 including 1 initial and 2 local, w = 512). */
export const NSA_SIZES: NsaSizes = {
  compressBlock: 64,
  blockSize: 64,
  blocks: 16,
  initial: 1,
  local: 2,
  window: 512,
};

/** The example's small sizes: enough blocks that the choice matters at N = 256. */
export const SMALL_SIZES: NsaSizes = {
  compressBlock: 16,
  blockSize: 16,
  blocks: 4,
  initial: 1,
  local: 1,
  window: 32,
};

/** One line: the paper and what the pattern keeps. */
export const description =
  "NSA: gated(causal lowRank(N/64), causal select(16 of 64-key blocks, 1 initial, 2 local), " +
  "causal window(512))";

/**
 * NSA's three causal branches at sequence length `n`: compressed, selected, sliding window.
 * @param n the sequence length (the compressed branch's rank is `ceil(n / compressBlock)`)
 * @param sizes block sizes, kept blocks and window (default: the paper's)
 * @returns the gated pattern
 * @example
 * ```ts
 * import { nsaPattern } from "./nsa.ts";
 * nsaPattern(4096).kind; // "gated"
 * ```
 */
export function nsaPattern(n: number, sizes: NsaSizes = NSA_SIZES): Pattern {
  return gated([
    intersect(lowRank(Math.ceil(n / sizes.compressBlock)), causal()),
    intersect(
      causal(),
      select({
        blockSize: sizes.blockSize,
        blocks: sizes.blocks,
        initial: sizes.initial,
        local: sizes.local,
      }),
    ),
    intersect(window(sizes.window, 0), causal()),
  ]);
}

/** At N = 4096. */
export const pattern = nsaPattern(4096);

/**
 * NSA's gates as a seeded stand-in: a sigmoid of unit normals, per (batch, query head, branch).
 * @param shape the call's shape
 * @param seed the draw's seed
 * @returns gates `[B, Hq, 3]`
 * @example
 * ```ts
 * import { nsaGates } from "./nsa.ts";
 * nsaGates({ batch: 1, headsQ: 2, headsKV: 1, seqLen: 8, headDim: 4 }).length; // 6
 * ```
 */
export function nsaGates(shape: AttentionShape, seed = 9): Float32Array {
  const next = normals(seed);
  return Float32Array.from(
    { length: shape.batch * shape.headsQ * 3 },
    () => 1 / (1 + Math.exp(-next())),
  );
}

/** What one verified NSA call measured. */
export interface NsaRun {
  /** max |O - reference| on the GPU's kept blocks. */
  errorO: number;
  /** max |LSE - reference| relative to max(1, |LSE|), over the three branches. */
  errorLse: number;
  /** Positions whose kept blocks the float64 importances contradict (beyond float ties). */
  disagreements: number;
  /** Positions whose kept blocks differ from the float64 choice at all (ties included). */
  differing: number;
  /** The GPU's kept blocks `[B, Hkv, N, blocks]` (-1 past the kept). */
  kept: SelectedBlocks;
  /** GPU milliseconds of the run (first submission: includes compilation), where timed. */
  gpuMs?: number;
}

/**
 * Runs NSA once on the GPU and checks it: the kept blocks against the float64 importances, then
 * O and LSE against the float64 reference on those blocks.
 * @param rt the runtime
 * @param shape the call's shape (square, float32)
 * @param sizes NSA's sizes
 * @returns the errors, the disagreements and the kept blocks
 * @example
 * ```ts ignore
 * const run = await runNsa(rt, { batch: 1, headsQ: 4, headsKV: 2, seqLen: 256, headDim: 32 });
 * ```
 */
export async function runNsa(
  rt: Runtime,
  shape: AttentionShape,
  sizes: NsaSizes = SMALL_SIZES,
): Promise<NsaRun> {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const p = nsaPattern(N, sizes);
  const q = normalTensor(B * Hq * N * D, 1), k = normalTensor(B * Hkv * N * D, 2);
  const v = normalTensor(B * Hkv * N * D, 3);
  const gates = nsaGates(shape);
  const out = await rt.run(rt.compile(p, { shape }), { q, k, v, gates });
  const kept = out.selectedBlocks![0];
  const disagreements = selectionDisagreements(p, shape, q, k, out.selectedBlocks!)
    .reduce((sum, d) => sum + d.positions, 0);
  const want = reference({
    pattern: p,
    shape,
    q,
    k,
    v,
    gates: { data: gates, shape: [B, Hq, 3] },
    selectedBlocks: out.selectedBlocks,
  });
  const own = reference({ pattern: p, shape, q, k, v, gates: { data: gates, shape: [B, Hq, 3] } })
    .selectedBlocks[0].chosen;
  let differing = 0;
  for (let row = 0; row < B * Hkv * N; row++) {
    const at = row * kept.blocks;
    for (let s = 0; s < kept.blocks; s++) {
      if (kept.chosen[at + s] !== own[at + s]) {
        differing++;
        break;
      }
    }
  }
  let errorO = 0, errorLse = 0;
  for (let i = 0; i < want.o.length; i++) {
    errorO = Math.max(errorO, Math.abs(out.o[i] - want.o[i]));
  }
  for (let i = 0; i < want.lse.length; i++) {
    const w = want.lse[i], g = out.lse[i];
    const e = w === -Infinity ? (g === -Infinity ? 0 : Infinity) : Math.abs(g - w);
    errorLse = Math.max(errorLse, e / Math.max(1, Math.abs(w)));
  }
  return { errorO, errorLse, disagreements, differing, kept, gpuMs: out.gpuMs };
}

/**
 * One query's kept blocks as text: `q=200 (block 12): 0 5 11 12`.
 * @param kept the kept blocks
 * @param shape the call's shape
 * @param row the (batch·Hkv) row and the position
 * @returns the line
 * @example
 * ```ts ignore
 * keptLine(run.kept, shape, { head: 0, pos: 200 }, 16);
 * ```
 */
export function keptLine(
  kept: SelectedBlocks,
  shape: AttentionShape,
  at: { head: number; pos: number },
  blockSize: number,
): string {
  const first = (at.head * shape.seqLen + at.pos) * kept.blocks;
  const blocks = [...kept.chosen.subarray(first, first + kept.blocks)].filter((j) => j >= 0);
  return `kv head ${at.head}, q=${at.pos} (block ${Math.floor(at.pos / blockSize)}): ` +
    `blocks ${blocks.join(" ")}`;
}

if (import.meta.main) {
  const { createRuntime } = await import("../runtime/runtime.ts");
  const { adapterLine, EXIT_FAILURE, runMain } = await import("../cli/_common.ts");
  await runMain(async () => {
    const shape = { batch: 1, headsQ: 4, headsKV: 2, seqLen: 256, headDim: 32 };
    const s = SMALL_SIZES;
    const rt = await createRuntime();
    try {
      console.log(
        `nsa: B=${shape.batch} Hq=${shape.headsQ} Hkv=${shape.headsKV} N=${shape.seqLen} ` +
          `D=${shape.headDim}; compressed blocks of ${s.compressBlock}, ${s.blocks} selected ` +
          `blocks of ${s.blockSize} (${s.initial} initial, ${s.local} local), window ${s.window}`,
      );
      console.log(adapterLine(rt.info));
      const run = await runNsa(rt, shape, s);
      console.log(
        `kept blocks: ${run.disagreements} positions contradict the float64 importances, ` +
          `${run.differing} differ from its choice (float ties)`,
      );
      for (const pos of [5, 40, 130, 255]) {
        console.log(`  ${keptLine(run.kept, shape, { head: 0, pos }, s.blockSize)}`);
      }
      console.log(`max abs error vs float64 reference: ${run.errorO.toExponential(2)}`);
      console.log(`max error of LSE, relative to max(1, |LSE|): ${run.errorLse.toExponential(2)}`);
      const ok = run.disagreements === 0 && run.errorO <= 1e-4 && run.errorLse <= 1e-4;
      console.log(ok ? "ok (tolerance 1e-4)" : "FAILED: above tolerance 1e-4");
      return ok ? 0 : EXIT_FAILURE;
    } finally {
      rt.destroy();
    }
  });
}
