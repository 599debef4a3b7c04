/**
 * The compiler: Pattern -> Plan -> kernel plan -> WGSL. Pure: it returns text, the buffer table,
 * bindings and dispatch sizes; the runtime owns every GPU object.
 * @module
 */
import { type AttentionShape, type Dtype, sequenceSizes } from "../core/shape.ts";
import { checkCall, type CheckedCall, type CompileOptions } from "./checked_call.ts";
import { checkHashFits, checkKernelFits, checkQueryTiles } from "./device_checks.ts";
import { type BufferSpec, bufferTable, checkBufferTable } from "./buffer_table.ts";
import { type Binding, isPrePass, type KernelPlan } from "./kernel_plan.ts";
import { planKernels } from "./plan_kernels.ts";
import { type Plan, planPattern } from "./plan.ts";
import { renderKernels } from "./render.ts";
import { chooseTiles, type KernelShape, kernelShape, mayStageQuery } from "./tiles.ts";
import type { HashLayout } from "./hash_layout.ts";
import { queryRange } from "./query_tiles.ts";
import { packedPlan } from "./packed_call.ts";
import { wholeSequence } from "../core/packed_sequences.ts";
import { learnableConstants } from "../dsl/expression_check.ts";
import type { Pattern } from "../dsl/schema.ts";
import type { PagedKv } from "../core/paged_kv.ts";

export type { CompileOptions } from "./checked_call.ts";
export type { Binding, BufferName } from "./kernel_plan.ts";
export type { Dtype };

/** One compute dispatch, rendered: its module's WGSL, entry point, bindings and workgroups. */
export interface Pass {
  /** What it does, for people: pipeline labels, errors and the kernel plan's text. */
  label: string;
  /** A pre-pass (lowRank pooling, hashBucket codes and sort): runs before any attention kernel. */
  prePass?: true;
  /** Its module's WGSL (shared modules hold several entry points). */
  wgsl: string;
  /** The module's entry point where it is shared by several kernels (else `main`). */
  entryPoint?: string;
  /** Storage bindings, in binding order. */
  bindings: Binding[];
  /** Workgroup counts `[x, y]` to dispatch. */
  workgroups: [number, number];
}

/** Everything the runtime needs to run a pattern at one shape. */
export interface CompiledAttention {
  /** What the kernels do: branches, components, layouts and BlockMasks. */
  plan: Plan;
  /** What runs, as data: every dispatch with its variants, module, bindings and workgroups. */
  kernelPlan: KernelPlan;
  /** The WGSL of each of the kernel plan's modules. */
  modules: string[];
  /** The dispatches in order, each with its module's WGSL. */
  passes: Pass[];
  /** Every buffer the passes bind: its size and first contents. */
  buffers: BufferSpec[];
  /** The shape it was compiled for (one part of `split.full` when split). */
  shape: AttentionShape;
  /**
   * Where query row 0 sits among the keys: row `i` is key position `queryOffset + i` (0 for
   * packed sequences, whose rows' positions come per sequence).
   */
  queryOffset: number;
  /**
   * The rows are packed sequences (`CompileOptions.packed`): each call gives their lengths, and
   * its schedule and sequences words are rebuilt for them (packed_call.ts). The plan and the
   * buffer table hold those of one sequence of every row.
   */
  packed: boolean;
  /** Element type of Q, K, V and O. */
  dtype: Dtype;
  /** The softmax scale applied to `Q·K`. */
  scale: number;
  /** Number of softmax branches; LSE is `[branches, B, Hq, Nq]` when gated, else `[B, Hq, Nq]`. */
  branches: number;
  /** The pattern is `gated`: each branch is a softmax of its own, blended by gates. */
  gated: boolean;
  /** Gate tensors are `[B, Hq, Nq, branches]` rather than `[B, Hq, branches]`. */
  gatesPerPosition: boolean;
  /** Default gates `[branches]` (JSON gates or 1/branches) used when no gate tensor is given. */
  defaultGates: number[];
  /** Per branch and component, the query tiles whose schedule starts with an edge pair. */
  edgePairs: number[][];
  /** The kernel shape every attention kernel was generated for (tiles and invocation split). */
  kernel: KernelShape;
  /** Milliseconds spent checking, planning and generating WGSL. */
  compileMs: number;
  /** hashBucket codes, bucket order and counts: where they lie in the `hash` buffer. */
  hash: HashLayout;
  /** The backward pass follows the forward: a call takes dO and returns the gradients. */
  backward: boolean;
  /** K and V are pages read through a block table given with each call (DESIGN §1). */
  paged?: PagedKv;
  /**
   * With `backward`: the score modifiers' learnable constants, in the order of their entries
   * in the `dConstants` buffer (`scalar`: a number, else an array of `size`).
   */
  learnable: { name: string; offset: number; size: number; scalar: boolean }[];
  /**
   * Set by the runtime when the caller's tensors exceed one storage binding: `shape` is then one
   * part (one batch, `kvHeads` key/value heads) of `split.full`, and `Runtime.run` runs the parts.
   */
  split?: { full: AttentionShape; part: AttentionShape; kvHeads: number };
}

/**
 * Compiles a pattern for one shape.
 *
 * @param pattern a pattern object or JSON value (checked here)
 * @param options shape, scale, device limits, tile override
 * @returns the plan, the kernel plan, its WGSL and the buffer table
 * @throws {PatternError} bad pattern; {ShapeError} bad shape; {PlanError} unplannable at this N
 * @example
 * ```ts
 * import { compile } from "./compile.ts";
 * const c = compile({ kind: "stride", period: 16 }, {
 *   shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 },
 * });
 * console.log(c.passes.length); // 1
 * ```
 */
export function compile(pattern: unknown, options: CompileOptions): CompiledAttention {
  return compileChecked(checkCall(pattern, options));
}

/**
 * Compiles a call already through the door (`checkCall`): the runtime checks once, then
 * compiles the part of a call that one binding holds.
 * @param call the checked call
 * @returns as `compile`
 * @example
 * ```ts
 * import { checkCall } from "./checked_call.ts";
 * import { compileChecked } from "./compile.ts";
 * const call = checkCall({ kind: "causal" }, {
 *   shape: { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 },
 * });
 * compileChecked(call).kernelPlan.kernels.length; // 1
 * ```
 */
export function compileChecked(call: CheckedCall): CompiledAttention {
  const started = performance.now();
  const { shape, dtype } = call;
  const { nk } = sequenceSizes(shape);
  // 1. Tiles from the device's workgroup storage (or the caller's override).
  const tiles = kernelTiles(call);
  checkQueryTiles(nk, tiles);
  // 2. Plan over the Nk key positions: branches of disjoint components, each with layouts and a
  //    BlockMask; the queries are Nq of the positions where they are fewer (query_tiles.ts).
  //    Packed sequences: every component in natural order, its BlockMask that of one sequence
  //    of every row until a call gives lengths (packed_mask.ts).
  const natural = planPattern(call.pattern, nk, tiles, {
    domain: { batch: shape.batch, headsQ: shape.headsQ },
    queries: queryRange(shape, call.queryOffset),
    packed: call.packed,
  });
  const plan = call.packed ? packedPlan(natural, [wholeSequence(shape)], shape) : natural;
  // 3. Kernel plan: every dispatch and its variants, each picked by a rule of kernel_rules.ts.
  const planned = planKernels(plan, tiles, call);
  // 4. What the device must hold: tiles in workgroup memory, hash sorts per dispatch.
  checkDevice(call, planned.kernels, planned.hash);
  // 5. Render: the modules' WGSL, and the aux words the kernels read their numbers from.
  const rendered = renderKernels(planned, plan, call);
  // 6. The buffer table the runtime allocates from.
  const branches = plan.branches.length;
  const buffers = bufferTable(planned, { ...call, branches, aux: rendered.aux });
  if (call.limits?.maxStorageBufferBindingSize !== undefined) {
    checkBufferTable(buffers, call.limits.maxStorageBufferBindingSize);
  }
  const kernels = planned.kernels.kernels;
  return {
    plan,
    kernelPlan: planned.kernels,
    modules: rendered.modules,
    passes: kernels.map((k) => ({
      label: k.label,
      ...(isPrePass(k) ? { prePass: true as const } : {}),
      wgsl: rendered.modules[k.module],
      ...(k.entryPoint === "main" ? {} : { entryPoint: k.entryPoint }),
      bindings: k.bindings,
      workgroups: k.workgroups,
    })),
    buffers,
    shape,
    queryOffset: call.queryOffset,
    packed: call.packed,
    dtype,
    scale: call.scale,
    branches,
    gated: call.pattern.kind === "gated",
    gatesPerPosition: call.gatesPerPosition,
    defaultGates: plan.gates ?? new Array(branches).fill(1 / branches),
    edgePairs: planned.edgePairs,
    kernel: tiles,
    compileMs: performance.now() - started,
    hash: planned.hash,
    backward: call.backward,
    ...(call.paged ? { paged: call.paged } : {}),
    learnable: call.backward ? learnableLayout(call.pattern) : [],
  };
}

/**
 * The kernel shape: the caller's tiles, or the largest candidate that fits the device's
 * workgroup storage. Before the plan only the dtype and the option say whether the query tile
 * is staged; `checkDevice` checks the fit again once the kernel plan knows.
 */
function kernelTiles(call: CheckedCall): KernelShape {
  const { shape } = call;
  // The autotuner keys a packed call as the unpacked one: a subgroup-matrix shape it stored
  // there is not for packed rows, which run register tiles (the door refuses a caller's).
  const tiles = call.packed && call.tiles?.matrix ? undefined : call.tiles;
  const { nq, nk, d, dv } = sequenceSizes(shape);
  if (tiles) {
    return tiles.threads ? tiles as KernelShape : kernelShape(tiles.tileQ, tiles.tileK, 2, dv / 4)!;
  }
  const staged = call.globalQuery === undefined ? mayStageQuery(call.dtype) : !call.globalQuery;
  // The backward kernels walk register tiles: its forward does too, on the same masks. So do
  // calls with queries among longer keys, a value head dim of its own or packed sequences.
  const square = nq === nk && dv === d;
  const limits = (call.backward || call.packed || !square) && call.limits
    ? { ...call.limits, matrices: undefined }
    : call.limits;
  return chooseTiles(d, limits, call.dtype, staged, dv);
}

/** Only a real device's limits are binding; without them the WGSL is text to read. */
function checkDevice(call: CheckedCall, kernels: KernelPlan, hash: HashLayout): void {
  const attention = kernels.kernels.find((k) => k.kind === "attention");
  if (call.limits && attention?.kind === "attention") {
    const staged = attention.querySource === "tile";
    checkKernelFits(kernels.kernel, call.shape, call.dtype, call.limits, staged);
  }
  checkHashFits(hash, call.limits);
}

/** The learnable constants' entries in `dConstants`, in `learnableConstants` order. */
function learnableLayout(pattern: Pattern): CompiledAttention["learnable"] {
  let offset = 0;
  return [...learnableConstants(pattern)].map(([name, c]) => {
    const entry = { name, offset, size: c.size, scalar: c.scalar };
    offset += c.size;
    return entry;
  });
}
