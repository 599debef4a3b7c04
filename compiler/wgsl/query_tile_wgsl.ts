/**
 * The query tile of an attention kernel: each invocation's share of Q, pre-scaled by
 * `scale * log2(e)`, staged in workgroup memory before the key loop. Kernels that read their
 * query rows from global memory at every key tile (`globalQuery`, compile.ts) stage nothing.
 * @module
 */
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { type Call, kernelGeometry, queryRowOf, range } from "./kernel_refs.ts";
import { type Grid, sourceRow } from "./tile_mask_wgsl.ts";
import { tileStore } from "./matrix_math_wgsl.ts";

/**
 * The query tile, pre-scaled, into workgroup memory. Where every invocation loads the same few
 * vec4s (at most MAX_QUERY_SLOTS), they are loaded into registers before the schedule is read
 * and stored after it: the query's trip to memory then overlaps the schedule's chain of
 * dependent reads, a fixed cost that weighs on workgroups visiting few key tiles (bands).
 * Otherwise one strided loop.
 */
export function queryStaging(
  o: ComponentKernelOptions,
  qPos: Call,
  grid: Grid,
): { loads: string; stores: string } {
  // Staged part by part between the matrix loads (queryPart, matrixQueryLoads).
  if (o.globalQuery || (o.queryParts ?? 1) > 1) return { loads: "", stores: "" };
  const g = kernelGeometry(o);
  const total = o.component.mask.tileQ * o.shape.headDim / 4;
  const slots = total / g.threads;
  const T = o.dtype;
  if (!Number.isInteger(slots) || slots > MAX_QUERY_SLOTS) {
    if (grid.complete || grid.padded) {
      const row = sourceRow(grid, "q", qPos, "qTileIndex * TILE_Q + r");
      return {
        loads: "",
        stores: `  // Stage the query tile, pre-scaled, in workgroup memory.
  for (var i = lid; i < TILE_Q * D4; i += THREADS) {
    let r = i / D4;
    ${
          tileStore(
            o,
            "q",
            "r * QK_STRIDE + i % D4",
            `qIn[(bh * N + ${row}) * D4 + i % D4] * SCORE_SCALE`,
          )
        }
  }
`,
      };
    }
    return {
      loads: "",
      stores: `  // Stage the query tile, pre-scaled, in workgroup memory.
  for (var i = lid; i < TILE_Q * D4; i += THREADS) {
    let r = i / D4;
    let q = ${qPos("qTileIndex * TILE_Q + r")};
    let src = (${queryRowOf(o, "q", true)}) * D4 + i % D4;
    ${
        tileStore(
          o,
          "q",
          "r * QK_STRIDE + i % D4",
          `select(vec4<${T}>(0.0), qIn[src] * SCORE_SCALE, q >= 0)`,
        )
      }
  }
`,
    };
  }
  const L = range(slots);
  const loads =
    `  // This invocation's share of the query tile, loaded now and staged after the schedule reads.
${
      L.map((l) =>
        grid.complete || grid.padded
          ? `  let qIndex${l} = lid + ${l * g.threads}u;
  let qLoad${l} = qIn[(bh * N + ${
            sourceRow(grid, "q", qPos, `qTileIndex * TILE_Q + qIndex${l} / D4`)
          }) * D4 + qIndex${l} % D4];`
          : `  let qIndex${l} = lid + ${l * g.threads}u;
  let qAt${l} = ${qPos(`qTileIndex * TILE_Q + qIndex${l} / D4`)};
  let qLoad${l} = select(vec4<${T}>(0.0), qIn[(${
            queryRowOf(o, `qAt${l}`, true)
          }) * D4 + qIndex${l} % D4], qAt${l} >= 0);`
      ).join("\n")
    }
`;
  const stores = `  // Stage the query tile, pre-scaled, in workgroup memory.
${
    L.map((l) =>
      `  ${
        tileStore(
          o,
          "q",
          `(qIndex${l} / D4) * QK_STRIDE + qIndex${l} % D4`,
          `qLoad${l} * SCORE_SCALE`,
        )
      }`
    ).join("\n")
  }
`;
  return { loads, stores };
}

/**
 * Query vec4s an invocation may hold in registers while the schedule is read. Measured on the
 * H200 (interleaved A/B): with 4 (float32 64x32x2) ring got 3.4% faster,
 * window(256) 2.1%, dense 0.7%; with 8 (float16 64x32x2c4) dense got 3.9% slower and the bands
 * gained nothing, so those keep the loop.
 */
const MAX_QUERY_SLOTS = 4;

/**
 * One part of a matrix kernel's query tile (`queryParts` > 1), pre-scaled, into workgroup
 * memory: its Q_PART4 vec4s of every row, rows Q_STRIDE4 vec4s apart.
 * @param o the kernel's options
 * @param qPos the query positions of the tile's rows
 * @param grid the kernel's grid
 * @param part which part: dims part * D / queryParts onwards
 * @returns the staging loop
 */
export function queryPart(o: ComponentKernelOptions, qPos: Call, grid: Grid, part: number): string {
  const T = o.dtype;
  const first = part * o.shape.headDim / 4 / (o.queryParts ?? 1);
  const dims = `${first ? `${first}u + ` : ""}i % Q_PART4`;
  const at = "r * Q_STRIDE4 + i % Q_PART4";
  const store = grid.complete || grid.padded
    ? tileStore(
      o,
      "q",
      at,
      `qIn[(bh * N + ${sourceRow(grid, "q", qPos, "qTileIndex * TILE_Q + r")}) * D4 + ${dims}] * ` +
        "SCORE_SCALE",
    )
    : `let q = ${qPos("qTileIndex * TILE_Q + r")};
    let src = (${queryRowOf(o, "q", true)}) * D4 + ${dims};
    ${tileStore(o, "q", at, `select(vec4<${T}>(0.0), qIn[src] * SCORE_SCALE, q >= 0)`)}`;
  return `  for (var i = lid; i < TILE_Q * Q_PART4; i += THREADS) {
    let r = i / Q_PART4;
    ${store}
  }
`;
}
