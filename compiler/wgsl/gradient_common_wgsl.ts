/**
 * What every backward-pass kernel's WGSL depends on, and the constants they all declare.
 * @module
 */
import type { AttentionShape, Dtype } from "../../core/shape.ts";
import type { ParamBlock } from "../aux_data.ts";
import type { HashLayout } from "../hash_layout.ts";
import type { GradientKernel } from "../kernel_plan.ts";
import type { Branch } from "../plan.ts";
import type { LearnableConstant } from "../../dsl/expression_check.ts";
import { f32, type ShaderModule } from "./shader_module.ts";

/** What a gradient kernel's WGSL depends on. */
export interface GradientKernelOptions {
  kernel: GradientKernel;
  shape: AttentionShape;
  dtype: Dtype;
  scale: number;
  branches: Branch[];
  /** Gated patterns: gates per head `[B, Hq, branches]` or per position. */
  gates?: { perPosition: boolean };
  /** The branch's normalised O: its buffer is bound; its first element there. */
  oOffset: number;
  /** Query and key tile sizes of the components' BlockMasks. */
  tileQ: number;
  tileK: number;
  /** The kernel's parameter block (layouts and masks read their numbers from aux). */
  params: ParamBlock;
  /** Where hashBucket codes and bucket order lie in the hash buffer. */
  hash: HashLayout;
  /** The learnable constants, in the order of their entries in a row's slot. */
  learnable: ReadonlyMap<string, LearnableConstant>;
  /**
   * The rows are packed sequences (sequence_wgsl.ts): the tile kernels stage each query row's
   * sequence, and masks and score modifiers see positions within it and its key count.
   */
  packed?: boolean;
}

/** The shape's sizes, the scale and the learnable entries as WGSL constants. */
export function gradientConstants(m: ShaderModule, o: GradientKernelOptions): void {
  const { batch, headsQ, headsKV, seqLen, headDim } = o.shape;
  m.declare(
    "constants",
    `
const N = ${seqLen}u;
const D = ${headDim}u;
const D4 = D / 4u; // vec4s of a row
const HQ = ${headsQ}u;
const HKV = ${headsKV}u;
const GROUP = ${headsQ / headsKV}u; // query heads per key/value head
const ROWS = ${batch * headsQ * seqLen}u;   // query rows of one branch: B * Hq * N
const KEY_ROWS = ${batch * headsKV * seqLen}u; // key rows: B * Hkv * N
const BRANCHES = ${o.branches.length}u;
const SCALE = ${f32(o.scale)};${
      o.learnable.size
        ? `\nconst LEARNABLE = ${learnableEntries(o)}u; // learnable constants' entries`
        : ""
    }`,
  );
}

/** Entries of all learnable constants (a row's slot in dConstRows). */
export function learnableEntries(o: GradientKernelOptions): number {
  return [...o.learnable.values()].reduce((sum, c) => sum + c.size, 0);
}
