/**
 * What the parts of an attention kernel's WGSL share: how the kernel body refers to its member's
 * layouts, mask, schedule slot and outputs (`MemberRefs`), how invocations split a tile
 * (`kernelGeometry`), and two small helpers (`range`, `onlyIf`).
 * @module
 */
import { assert } from "../../core/errors.ts";
import type { Component } from "../plan.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import type { Grid } from "./tile_mask_wgsl.ts";
import type { QueryRange } from "../query_tiles.ts";

/**
 * What the kernel reads of its component: literals for a kernel of one, the body's parameter
 * names for a shared module. `output` and `split` are "either" where MERGE and SPLIT choose.
 */
export interface MemberRefs {
  qPos: Call;
  kPos: Call;
  allowed: Call;
  slot: string;
  oBase: string;
  lseBase: string;
  output: "write" | "merge" | "either";
  split: "none" | "split" | "either";
  /** The `let`s reading `splits` and `splitRows` (split "split" only). */
  splitParams: string;
  /**
   * Where the call's queries are some of the positions: the `let` reading the aux offset of the
   * kernel's list of query tiles (a shared module's body: none), and the WGSL naming it.
   */
  queryTiles?: { lines: string; at: string };
  /** A shared module's body: `fn attention(wg, lid, <these>)`, run by each kernel's entry point. */
  bodyParams?: string;
  /** Runs carry their member (some kernel of the module is fused, run_fusion.ts). */
  taggedRuns?: boolean;
  /** Only kernels whose PAIRS setting is true walk edge pairs (a shared module's body). */
  pairsSetting?: boolean;
  /** Padding, and natural order, over every member (`gridOf`). */
  grid: Grid;
  /** How the body reads a row's and a key's staged hashBucket codes (code_staging_wgsl.ts). */
  queryCodes?: Call;
  keyCodes?: Call;
  /** A bucket-ordered kernel's hash-buffer offsets (`bucketOffsets`), as WGSL expressions. */
  bucketAt?: { order: string; codes: string; starts: string };
}

/** A WGSL call written from its argument list. */
export type Call = (args: string) => string;

export const call = (name: string): Call => (args) => `${name}(${args})`;

/**
 * How a workgroup's invocations split the tile: `tileQ / rows` row groups of `cols`
 * invocations each; a column owns `keys` keys of a tile and `dims4` vec4s of each output row.
 */
export function kernelGeometry(
  o: { component: Component; shape: AttentionShape; threads: number; rowsPerThread: number },
) {
  const { tileQ, tileK } = o.component.mask;
  const rows = o.rowsPerThread;
  const cols = o.threads / (tileQ / rows);
  const geometry = {
    threads: o.threads,
    rows,
    cols,
    keys: tileK / cols,
    dims4: sequenceSizes(o.shape).dv / 4 / cols,
  };
  for (const [name, value] of Object.entries(geometry)) {
    assert(
      Number.isInteger(value) && value >= 1,
      `kernel geometry ${name} = ${value} is not a positive integer`,
    );
  }
  return geometry;
}

/**
 * The WGSL constant holding V's and O's rows in vec4s: `D4`, or `DV4` where V has a head dim of
 * its own (`shape.valueDim`).
 */
export function valueWidth(o: { shape: AttentionShape }): "D4" | "DV4" {
  return sequenceSizes(o.shape).dv === o.shape.headDim ? "D4" : "DV4";
}

/**
 * The constants of a kernel whose queries are some of the N key positions (query_tiles.ts):
 * query rows per head, and query row 0's position. Empty for a square call.
 * @param queries the call's queries, if they are some of the positions
 * @returns WGSL lines, each starting with a newline
 */
export function queriesConstants(queries: QueryRange | undefined): string {
  if (!queries) return "";
  return `
const NQ = ${queries.count}u;         // query rows per head: key positions QUERY_OFFSET .. + NQ - 1
const QUERY_OFFSET = ${queries.offset};  // query row 0's position among the N keys`;
}

/**
 * The row of Q, O and LSE that query position `q` (an i32 WGSL expression) reads and writes,
 * counted over every batch·head `bh`: `bh * N + q`, or where the queries are some of the
 * positions, `bh * NQ + q - QUERY_OFFSET`. `clamp` sends padding (-1) to the head's row 0, for
 * loads whose value a select then drops.
 * @param o the call's queries, if they are some of the positions
 * @param q the position
 * @param clamp clamp padding to row 0
 * @returns a u32 WGSL expression
 */
export function queryRowOf(o: { queries?: QueryRange }, q: string, clamp = false): string {
  const row = o.queries ? `${q} - QUERY_OFFSET` : q;
  return `bh * ${o.queries ? "NQ" : "N"} + ${clamp ? `u32(max(${row}, 0))` : `u32(${row})`}`;
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** `body` (lines indented for the tile loop) under `if (cond)`, indented one more level. */
export function onlyIf(cond: string, body: string): string {
  const inner = body.split("\n").map((line) => line ? `  ${line}` : line).join("\n");
  return `    if (${cond}) {\n${inner}\n    }`;
}
