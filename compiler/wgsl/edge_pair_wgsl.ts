/**
 * The edge-pair step of an attention kernel (edge_pairs.ts): a query tile whose schedule starts
 * with a pair walks its two half-seen key tiles as one step before the key loop, the upper half
 * of its rows on tile A and the lower half on tile B. Each half's mask is evaluated: both tiles
 * are a band's corners. P goes to kpTile as in every step. Two forms, by workgroup memory:
 *
 * - wide: vTile holds K_A and K_B side by side for the scores, then V_A and V_B, and both halves
 *   add P·V at once (vTile grows to two padded K tiles);
 * - narrow: K_A in kpTile and K_B in vTile, then the halves add P·V one after the other through
 *   vTile (one padded row more than the plain kernel, two more barriers).
 * @module
 */
import { RUN_WORDS } from "../schedule_buffer.ts";
import { tileSlots } from "./key_loop_wgsl.ts";
import { kvSource } from "./kv_row_wgsl.ts";
import type { EdgePairForm } from "../edge_pairs.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { kernelGeometry, type MemberRefs, range } from "./kernel_refs.ts";
import type { ShaderModule } from "./shader_module.ts";
import { type Grid, maskedTiles, tileMask } from "./tile_mask_wgsl.ts";
import {
  maxOf,
  productF16,
  productF32,
  type QueryRead,
  scoresF16,
  scoresF32,
  softmaxRow,
} from "./tile_math_wgsl.ts";

/** Declares where the pair's second K tile and second V tile start in vTile (wide form). */
export function declareEdgePair(m: ShaderModule, form: EdgePairForm): void {
  m.declare(
    "edgePair",
    `
const PAIR_BIT = 0x80000000u;       // an edge pair's second schedule word: B | PAIR_BIT${
      form === "wide"
        ? `
const PAIR_K = TILE_K * QK_STRIDE;  // K_B in vTile (K_A at 0), for the pair's scores
const PAIR_V = TILE_K * D4;         // V_B in vTile (V_A at 0), for its P·V`
        : ""
    }`,
  );
}

/**
 * The edge pair's parts, in kernel order: `loads` after the schedule (reads the pair run, stages
 * K_A and K_B, holds V_A and V_B in registers), `scores` once the accumulators exist (scores,
 * softmax, P, V staged), `product` after the key loop's prologue (P·V), so the loop's first
 * tile loads while the pair is computed.
 */
export function edgePairStep(
  o: ComponentKernelOptions,
  refs: MemberRefs,
  query: QueryRead,
): { loads: string; scores: string; product: string } {
  // Only kernels whose component walks pairs run this code (walksEdgePairs: natural keys on a
  // complete grid), whatever the other members of a shared module are.
  const grid: Grid = { complete: true, naturalQ: refs.grid.naturalQ, naturalK: true };
  const form = o.edgePairs!;
  const wide = form === "wide";
  const g = kernelGeometry(o);
  const R = range(g.rows), J = range(g.keys), Dd = range(g.dims4);
  const { L, slot } = tileSlots(o);
  const T = o.dtype;
  const slots = (lines: (l: number) => string[]) =>
    L.map((l) => slot(l, "    ", lines(l))).join("\n");
  const registers = L.map((l) =>
    `  var pairVA${l} = vec4<${T}>(0.0);\n  var pairVB${l} = vec4<${T}>(0.0);`
  ).join("\n");
  const loads =
    `  // An edge pair (edge_pairs.ts) is the row's first run, \`A << 1 | 1\` and \`B | PAIR_BIT\`:
  // one step before the loop, rows 0 .. TILE_Q / 2 - 1 on key tile A and the others on B.
  var hasPair = false;
  var pairA = 0u;
  var pairB = 0u;
  if (${refs.pairsSetting ? "PAIRS && " : ""}run != lastRun) {
    let pairWord = schedule[runsAt + ${RUN_WORDS}u * run + 1u];
    if ((pairWord & PAIR_BIT) != 0u) {
      hasPair = true;
      pairA = (schedule[runsAt + ${RUN_WORDS}u * run] >> 1u) * TILE_K;
      pairB = (pairWord & ~PAIR_BIT) * TILE_K;
      run++;
    }
  }
${registers}
  if (hasPair) {
${
      slots((l) => [
        `let j = i / D4;`,
        `let srcA = ${kvSource(!!o.paged, "(pairA + j)", "i % D4")};`,
        `let srcB = ${kvSource(!!o.paged, "(pairB + j)", "i % D4")};`,
        wide
          ? `vTile[j * QK_STRIDE + i % D4] = kIn[srcA];`
          : `kpTile[j * QK_STRIDE + i % D4] = kIn[srcA];`,
        wide
          ? `vTile[PAIR_K + j * QK_STRIDE + i % D4] = kIn[srcB];`
          : `vTile[j * QK_STRIDE + i % D4] = kIn[srcB];`,
        `pairVA${l} = vIn[srcA];`,
        `pairVB${l} = vIn[srcB];`,
      ])
    }
  }`;
  const eachRJ = (f: (r: number, j: number) => string) =>
    R.flatMap((r) => J.map((j) => f(r, j))).join("\n");
  const scoresFrom = (keys: (i: string) => string, declare: boolean) =>
    o.dtype === "f16"
      ? scoresF16(R, J, g.cols, query, keys, declare)
      : scoresF32(R, J, g.cols, query, keys, declare);
  const indent = (text: string) =>
    text.split("\n").map((line) => line ? `  ${line}` : line).join("\n");
  // Wide: one score loop with the half's offset. Narrow: the halves read different arrays, a
  // branch that is uniform per warp (each half is whole warps).
  const scoreLoops = wide
    ? scoresFrom((i) => `vTile[kOff + ${i}]`, true)
    : `${eachRJ((r, j) => `    var s${r}_${j} = 0.0;`)}
    if (lower) {
${indent(scoresFrom((i) => `vTile[${i}]`, false))}
    } else {
${indent(scoresFrom((i) => `kpTile[${i}]`, false))}
    }`;
  const masked = maskedTiles(grid)!;
  const scores =
    `  var pairLive = false;              // does any of this invocation's rows see its pair tile?
  if (hasPair) {
    workgroupBarrier();               // K_A and K_B are staged
    let lower = firstRow >= TILE_Q / 2u;
    let kTileStart = select(pairA, pairB, lower);
    let isPartial = true;             // corners of a band: every pair asks \`allowed\`${
      refs.taggedRuns
        ? "\n    let tileMember = MEMBER;          // a pair's tiles are the kernel's own"
        : ""
    }${wide ? "\n    let kOff = select(0u, PAIR_K, lower);" : ""}
${tileMask(o, refs, g, grid)}
    let anyAllowed = ${R.flatMap((r) => J.map((j) => `m${r}_${j}`)).join(" || ")};
${scoreLoops}
    if (${masked}) {
${eachRJ((r, j) => `      s${r}_${j} = select(NO_SCORE, s${r}_${j}, m${r}_${j});`)}
    }
${
      R.map((r) =>
        `    rowShare[(firstRow + ${r}u) * COLS + col] = ${maxOf(J.map((j) => `s${r}_${j}`))};`
      ).join("\n")
    }
    workgroupBarrier();               // every score is read: K_A and K_B are dead
    var rowsLive = false;
${R.map((r) => softmaxRow(r, J, Dd, g.cols, o.dtype)).join("\n")}
    pairLive = rowsLive;
${
      wide
        ? slots((l) => [`vTile[i] = pairVA${l};`, `vTile[PAIR_V + i] = pairVB${l};`])
        : slots((l) => [`vTile[i] = pairVA${l};`])
    }
  }`;
  const productFrom = (values: (i: string) => string) =>
    o.dtype === "f16" ? productF16(R, Dd, g.cols, values) : productF32(R, Dd, g.cols, values);
  const product = wide
    ? `  if (hasPair) {
    workgroupBarrier();               // P, V_A and V_B are staged
    let vOff = select(0u, PAIR_V, firstRow >= TILE_Q / 2u);
    let rowsLive = pairLive;
${productFrom((i) => `vTile[vOff + ${i}]`)}
  }`
    : `  if (hasPair) {
    // The upper half adds P·V_A, then V_B replaces V_A and the lower half adds P·V_B.
    workgroupBarrier();               // P and V_A are staged
    let lower = firstRow >= TILE_Q / 2u;
    var rowsLive = pairLive && !lower;
${productFrom((i) => `vTile[${i}]`)}
    workgroupBarrier();               // every read of V_A is done
${slots((l) => [`vTile[i] = pairVB${l};`])}
    workgroupBarrier();
    rowsLive = pairLive && lower;
${productFrom((i) => `vTile[${i}]`)}
  }`;
  return { loads, scores, product };
}
