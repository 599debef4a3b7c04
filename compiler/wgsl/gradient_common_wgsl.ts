/**
 * What every backward-pass kernel's WGSL depends on, and the constants they all declare.
 * @module
 */
import { type AttentionShape, type Dtype, sequenceSizes } from "../../core/shape.ts";
import type { ParamBlock } from "../aux_data.ts";
import type { HashLayout } from "../hash_layout.ts";
import type { GradientKernel } from "../kernel_plan.ts";
import type { Branch } from "../plan.ts";
import type { QueryRange } from "../query_tiles.ts";
import type { LearnableConstant } from "../../dsl/expression_check.ts";
import { queriesConstants } from "./kernel_refs.ts";
import { f32, type ShaderModule } from "./shader_module.ts";
import type { PagedRows } from "./kv_row_wgsl.ts";

/** What a gradient kernel's WGSL depends on. */
export interface GradientKernelOptions {
  kernel: GradientKernel;
  shape: AttentionShape;
  /**
   * Where the call's queries are some of the N = Nk key positions (query_tiles.ts): Nq rows from
   * position `offset`, whose Q, dO, dQ and statistics rows are `position - offset`.
   */
  queries?: QueryRange;
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
  /**
   * Paged K and V (DESIGN §1): a tile kernel that binds the block table reads K and V rows
   * through `kvRow` (kv_row_wgsl.ts).
   */
  paged?: PagedRows;
  /**
   * Paged K and V, for `gradPages`: the page size and the table's columns the inverted table
   * counts in. The pool's page count is not in the WGSL, as in the forward kernels.
   */
  pool?: { pageSize: number; columns: number };
}

/**
 * The shape's sizes, the scale and the learnable entries as WGSL constants. N is the key count
 * Nk; NQ and QUERY_OFFSET are declared where the queries are some of the positions, and DV and
 * DV4 where V has a head dim of its own.
 */
export function gradientConstants(m: ShaderModule, o: GradientKernelOptions): void {
  const { batch, headsQ, headsKV, headDim } = o.shape;
  const { nq, nk, dv } = sequenceSizes(o.shape);
  m.declare(
    "constants",
    `
const N = ${nk}u;${queriesConstants(o.queries)}
const D = ${headDim}u;
const D4 = D / 4u; // vec4s of a row${
      dv === headDim ? "" : `
const DV = ${dv}u;        // value head dim: rows of V, O and dO, dV
const DV4 = DV / 4u;`
    }
const HQ = ${headsQ}u;
const HKV = ${headsKV}u;
const GROUP = ${headsQ / headsKV}u; // query heads per key/value head
const ROWS = ${batch * headsQ * nq}u;   // query rows of one branch: B * Hq * ${rowsPerHead(o)}
const KEY_ROWS = ${batch * headsKV * nk}u; // key rows: B * Hkv * N
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

/** The WGSL constant of query rows per head: `N`, or `NQ` where the queries are some of them. */
export function rowsPerHead(o: { queries?: QueryRange }): "N" | "NQ" {
  return o.queries ? "NQ" : "N";
}

/**
 * The WGSL constants of a row of V, O and dO (and dV), in elements and vec4s: `D` and `D4`, or
 * `DV` and `DV4` where V has a head dim of its own.
 */
export function valueWidths(o: { shape: AttentionShape }): { dim: string; vec4s: string } {
  return sequenceSizes(o.shape).dv === o.shape.headDim
    ? { dim: "D", vec4s: "D4" }
    : { dim: "DV", vec4s: "DV4" };
}
