/**
 * The rules that pick kernel variants, one named function each, with the reason it holds. The
 * kernel plan (kernel_plan.ts) asks these and nothing else; the WGSL renderer asks none of them.
 * Measured reasons name the device (the H200 machine, NVIDIA H200 on Deno's Vulkan WebGPU).
 * @module
 */
import type { Dtype } from "../core/shape.ts";
import type { Branch, Component, Plan } from "./plan.ts";
import type { EdgePairForm } from "./edge_pairs.ts";
import { codeSetOf, type HashLayout } from "./hash_layout.ts";
import { allowedReadsHeadOrBatch, readsHash, stagedCodes } from "./component_reads.ts";
import { keySplits, splittable } from "./key_split.ts";
import { type KernelShape, kernelStorageBytes } from "./tiles.ts";

/**
 * Query rows come from global memory at every key tile rather than a staged query tile.
 * Float32 always: 17 KB less workgroup memory lets more workgroups share an SM (interleaved on
 * the H200: ring 17%, stride(64) 16%, window(256) 12%, dense 8% faster). Float16, whose query
 * tile is 8.5 KB, only without rows that see every key tile (dense, causal, global rows): those
 * pay the staging once against many reads (dense 2.8% and BigBird 3.8% slower from memory).
 * Per pattern, so the kernels of a shared module agree.
 */
export function queryFromMemoryPays(plan: Plan, dtype: Dtype): boolean {
  // tiles.ts sizes candidates before the plan on this: float32 never stages (`mayStageQuery`).
  if (dtype === "f32") return true;
  const longRows = new Set(["dense", "causal", "globalRows"]);
  return !plan.branches.some((b) =>
    b.components.some((c) => c.atoms.some((a) => longRows.has(a.kind)))
  );
}

/**
 * Band kernels walk edge pairs unless the caller says. The pair step is a second copy of a tile
 * step's WGSL, and WGSL parsing is most of a compile: on the H200 host pairs took float16
 * ring(128) from 11.8 to 33.9 ms of warm compile, and patterns whose band shares the module
 * with other kernels (πAttention, ring ∪ stride(16)) from 19-26 to 54-57 ms, past the 50 ms
 * budget, for 1-2% of their time. So float16 pairs only a pattern of one attention kernel (ring
 * 9% faster); float32, whose compiles are shorter, pairs every band (ring 4%, window(256) 4%).
 */
export function pairsPay(plan: Plan, dtype: Dtype): boolean {
  return dtype === "f32" || plan.branches.flatMap((b) => b.components).length === 1;
}

/**
 * The form of an edge pair where the caller asked for pairs without naming one: float16 wide
 * (both K tiles, then both V tiles, side by side: 4.6 KB more), float32 narrow (K_B in the V
 * tile: 512 bytes more), since the wide form's 9 KB cost float32 a fifth of its speed.
 */
export function edgePairForm(asked: true | EdgePairForm, dtype: Dtype): EdgePairForm {
  return asked === true ? (dtype === "f16" ? "wide" : "narrow") : asked;
}

/** Pairs need the larger V tile to fit the device's workgroup memory (none given: text only). */
export function edgePairsFit(o: {
  tiles: KernelShape;
  headDim: number;
  valueDim: number;
  dtype: Dtype;
  stagedQuery: boolean;
  form: EdgePairForm;
  workgroupBytes?: number;
}): boolean {
  return o.workgroupBytes === undefined ||
    kernelStorageBytes(o.tiles, o.headDim, o.dtype, o.stagedQuery, o.form, o.valueDim) <=
      o.workgroupBytes;
}

/**
 * A module shared with kernels that walk no pairs holds them narrow: the module's V tile is
 * every member's, and the wide form's would cost the others occupancy (H200, float16 ring(128)
 * ∪ stride(16): 24.50 ms wide, 23.98 narrow, 24.28 none).
 */
export function modulePairForm(
  forms: readonly (EdgePairForm | undefined)[],
): EdgePairForm | undefined {
  const form = forms.find((f) => f !== undefined);
  return form && forms.some((f) => f === undefined) ? "narrow" : form;
}

/**
 * A float16 call whose one kernel writes every row writes O as float16 itself: no float32 O
 * round trip and no cast pass. Not when a later kernel merges into O, which reads it back.
 */
export function writesF16Directly(plan: Plan, dtype: Dtype, gated: boolean): boolean {
  const components = plan.branches[0].components;
  return dtype === "f16" && !gated && components.length === 1 &&
    components[0].qLayout.kind !== "gather";
}

/**
 * Key chunks of a component (0: not split). Gathered query rows (global tokens) are few query
 * tiles that each see every key tile: split-K spreads their keys over enough workgroups to fill
 * the GPU (key_split.ts), a runtime number that changes no kernel.
 */
export function keyChunks(
  c: Component,
  o: { heads: number; valueDim: number; asked?: number },
): number {
  return splittable(c) ? keySplits(c, o.heads, o.valueDim, o.asked) : 0;
}

/**
 * A branch clears O and LSE first unless its first kernel writes every row: a component whose
 * query layout covers all N positions overwrites instead of merging.
 */
export function branchNeedsClear(branch: Branch): boolean {
  return !(branch.components.length > 0 && branch.components[0].qLayout.kind !== "gather");
}

/**
 * Whether a component's kernel keeps a module of its own: its text holds more than a member's
 * layouts, mask, code staging and hash offsets (landmark K/V, a score modifier, a float16 O,
 * uniform weights, baked numbers), so sharing would save no parsing.
 */
export function keepsOwnModule(
  c: Component,
  o: { score?: unknown; uniform?: boolean; outputF16?: boolean; constants: boolean },
): boolean {
  return o.score !== undefined || (o.uniform ?? false) || (o.outputF16 ?? false) ||
    o.constants || c.kLayout.kind === "landmarks";
}

/**
 * Consecutive natural-order components of a branch are walked by one kernel (run_fusion.ts)
 * where they could share a module anyway and are not split, with masks of one signature: the
 * key says what a member's text depends on; undefined keeps the component in a pass of its own.
 * hashBucket components stage codes per kernel, so they are not fused (they may share a module).
 */
export function fusionKey(
  c: Component,
  o: { branch: Branch; chunks: number; constants: boolean },
): string | undefined {
  const own = o.chunks > 0 || readsHash(c) ||
    keepsOwnModule(c, { ...o.branch, constants: o.constants });
  return own ? undefined : String(allowedReadsHeadOrBatch(c));
}

/**
 * What the shared part of a component kernel's text depends on beyond what one compile fixes
 * (dtype, shape, tiles, loop form, query source): kernels with one key share a module
 * (kernel_groups.ts), since wgpu parses and validates every module on the CPU (about 17 ms for
 * a float16 kernel on the H200 host). Undefined: the kernel keeps a module of its own.
 */
export function moduleKey(
  c: Component,
  o: {
    branch: Branch;
    outputF16: boolean;
    constants: boolean;
    hash: HashLayout;
  },
): string | undefined {
  if (keepsOwnModule(c, { ...o.branch, outputF16: o.outputF16, constants: o.constants })) {
    return undefined;
  }
  return JSON.stringify([
    allowedReadsHeadOrBatch(c),
    // hashBucket: the hash binding, staged codes, and a bucket range (its stride) for a schedule.
    readsHash(c),
    stagedCodes(c).length > 0,
    c.kLayout.kind === "sorted" ? ["bucket range", codeSetOf(o.hash, c.kLayout).buckets] : "runs",
  ]);
}

/**
 * Positions per chunk of a linear branch's scan (plan_linear.ts): 64, so the scan is Nk / 64
 * steps and a row's direct part at most 64 keys; fewer where a key/value head serves many query
 * heads, since the backward's key kernel keeps a weight per (query head, chunk position) in
 * invocation memory (at most 512).
 */
export function linearChunk(group: number): number {
  let chunk = 64;
  while (chunk > 8 && group * chunk > 512) chunk /= 2;
  return chunk;
}

/**
 * Chunks per segment of a linear branch's two-level scan: about √chunks, so both levels (within
 * segments, then over the segments' totals) are about √chunks sequential steps per state entry
 * (64 each at N = 262144) while the first level keeps √chunks times more invocations busy.
 */
export function linearSegment(chunks: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(chunks)));
}

/**
 * A linear branch's output runs cooperative tiles (a workgroup per chunk and query head,
 * plan_linear.ts) where loops are unrolled, that is on GPUs; software adapters keep one
 * invocation per query row: llvmpipe's GL path took minutes to compile the tiled causal output
 * (lavapipe under a second), and on a CPU the tiles gain nothing.
 */
export function linearOutputTiles(unroll: boolean): boolean {
  return unroll;
}
