/**
 * The arithmetic of one key-tile step, on register tiles unrolled into scalars: scores (QKᵀ),
 * the online softmax of each row, and O += P·V, in float32 or float16 with float32 sums.
 * @module
 */
import { onlyIf } from "./kernel_refs.ts";
import { positionsInSequence } from "./sequence_wgsl.ts";

/**
 * Float16 products are summed in float16 for at most this many vec4 steps (64 terms per score
 * or output component, 16 per lane), then added to a float32 sum: packed half arithmetic
 * doubles the CUDA-core rate, and the short chunks bound the rounding error.
 */
const F16_CHUNK = 16;

/**
 * Where the scores read query row r's vec4 d, pre-scaled by `scale * log2(e)`: the query tile
 * in workgroup memory, or the row in global memory (`qAt{r}`, its first vec4), scaled as read.
 */
export type QueryRead = (r: number) => string;

export const queryFromTile: QueryRead = (r) => `qTile[(firstRow + ${r}u) * QK_STRIDE + d]`;
export const queryFromMemory: QueryRead = (r) => `qIn[qAt${r} + d] * SCORE_SCALE`;

/** How a step reads element `index` of its staged K (or V) tile. */
export type TileRead = (index: string) => string;

const kpTile: TileRead = (i) => `kpTile[${i}]`;
const vTile: TileRead = (i) => `vTile[${i}]`;

type Lines = (f: (r: number, x: number) => string) => string;

function grid(rows: number[], xs: number[]): Lines {
  return (f) => rows.flatMap((r) => xs.map((x) => f(r, x))).join("\n");
}

/** One step of the scores' loop over the head dim: vec4 d of each row's Q and each key's K. */
function scoreLoads(
  R: number[],
  J: number[],
  cols: number,
  query: QueryRead,
  keys: TileRead,
  indent: string,
) {
  return [
    ...R.map((r) => `${indent}let qv${r} = ${query(r)};`),
    ...J.map((j) => `${indent}let kv${j} = ${keys(`(col + ${j * cols}u) * QK_STRIDE + d`)};`),
  ].join("\n");
}

/**
 * One step of P·V's loop over keys: each row's P for keys 4 j4 .. 4 j4 + 3, and their V, whose
 * rows are `width` vec4s (`D4`, or `DV4` for a value head dim of its own).
 */
function productLoads(
  R: number[],
  Dd: number[],
  o: { cols: number; width: string },
  values: TileRead,
  indent: string,
) {
  return [
    ...R.map((r) => `${indent}let p${r} = kpTile[(firstRow + ${r}u) * P_STRIDE4 + j4];`),
    ...[0, 1, 2, 3].flatMap((c) =>
      Dd.map((d) =>
        `${indent}let v${c}_${d} = ${
          values(`(j4 * 4u + ${c}u) * ${o.width} + col + ${d * o.cols}u`)
        };`
      )
    ),
  ].join("\n");
}

/** Scores in float32: a ROWS x KEYS register tile, vec4 dot products over the head dim. */
export function scoresF32(
  R: number[],
  J: number[],
  cols: number,
  query: QueryRead = queryFromTile,
  keys: TileRead = kpTile,
  declare = true,
): string {
  const rj = grid(R, J);
  const scores = declare ? rj((r, j) => `    var s${r}_${j} = 0.0;`) + "\n" : "";
  return `    // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
${scores}${
    onlyIf(
      "anyAllowed",
      `    for (var d = 0u; d < d4; d++) {
${scoreLoads(R, J, cols, query, keys, "      ")}
${rj((r, j) => `      s${r}_${j} += dot(qv${r}, kv${j});`)}
    }`,
    )
  }`;
}

/**
 * Scores from float16: lane-wise half products accumulate in vec4<f16> over a chunk of the head
 * dim, then the four lanes are added into the float32 score.
 */
export function scoresF16(
  R: number[],
  J: number[],
  cols: number,
  query: QueryRead = queryFromTile,
  keys: TileRead = kpTile,
  declare = true,
): string {
  const rj = grid(R, J);
  const scores = declare ? rj((r, j) => `    var s${r}_${j} = 0.0;`) + "\n" : "";
  return `    // Scores: a ROWS x KEYS register tile; half products per chunk, float32 across chunks.
${scores}${
    onlyIf(
      "anyAllowed",
      `    for (var d0 = 0u; d0 < d4; d0 += ${F16_CHUNK}u) {
${rj((r, j) => `      var h${r}_${j} = vec4<f16>(0.0);`)}
      for (var d = d0; d < min(d0 + ${F16_CHUNK}u, d4); d++) {
${scoreLoads(R, J, cols, query, keys, "        ")}
${rj((r, j) => `        h${r}_${j} = fma(qv${r}, kv${j}, h${r}_${j});`)}
      }
${
        rj((r, j) =>
          `      let pair${r}_${j} = h${r}_${j}.xy + h${r}_${j}.zw;
      s${r}_${j} += f32(pair${r}_${j}.x) + f32(pair${r}_${j}.y);`
        )
      }
    }`,
    )
  }`;
}

/** O += P V in float32: a ROWS x DIMS4 register tile of vec4s (V rows `width` vec4s wide). */
export function productF32(
  R: number[],
  Dd: number[],
  cols: number,
  values: TileRead = vTile,
  width = "D4",
): string {
  const rd = grid(R, Dd);
  return `    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
${
    onlyIf(
      "rowsLive",
      `    for (var j4 = 0u; j4 < tileK / 4u; j4++) {
${productLoads(R, Dd, { cols, width }, values, "      ")}
${
        [0, 1, 2, 3].map((c) =>
          rd((r, d) => `      acc${r}_${d} += p${r}.${"xyzw"[c]} * v${c}_${d};`)
        )
          .join("\n")
      }
    }`,
    )
  }`;
}

/**
 * O += P V from float16: P (in [0, 1]) and V products accumulate in vec4<f16> over a chunk of
 * keys, then join the float32 accumulator (already rescaled for this tile's row max). V rows are
 * `width` vec4s wide.
 */
export function productF16(
  R: number[],
  Dd: number[],
  cols: number,
  values: TileRead = vTile,
  width = "D4",
): string {
  const rd = grid(R, Dd);
  return `    // O += P V: a ROWS x DIMS4 register tile; half products per chunk of keys, float32 across.
    // Rows with no allowed key in this tile add nothing.
${
    onlyIf(
      "rowsLive",
      `    for (var c0 = 0u; c0 < tileK / 4u; c0 += ${F16_CHUNK}u) {
${rd((r, d) => `      var pv${r}_${d} = vec4<f16>(0.0);`)}
      for (var j4 = c0; j4 < min(c0 + ${F16_CHUNK}u, tileK / 4u); j4++) {
${productLoads(R, Dd, { cols, width }, values, "        ")}
${
        [0, 1, 2, 3].map((c) =>
          rd((r, d) =>
            `        pv${r}_${d} = fma(vec4<f16>(p${r}.${"xyzw"[c]}), v${c}_${d}, pv${r}_${d});`
          )
        ).join("\n")
      }
      }
${rd((r, d) => `      acc${r}_${d} += vec4<f32>(pv${r}_${d});`)}
    }`,
    )
  }`;
}

/**
 * The scored branch's modifier on every score: scores live in the exp2 domain (`scale *
 * log2(e)` is folded into Q), so the raw score is `s * LN2` and the result goes back by LOG2E.
 * Rows and keys past N (position -1) are masked out below; they are clamped only so the
 * modifier sees positions it was checked for.
 */
export function scoreModifierLines(R: number[], J: number[], packed = false): string {
  const lines = R.flatMap((r) =>
    J.map((j) => {
      // Packed sequences: positions within row r's sequence, and its key count.
      const [q, k] = packed
        ? positionsInSequence(`q${r}`, `k${j}`, `seq${r}`)
        : [`max(q${r}, 0)`, `max(k${j}, 0)`];
      const n = packed ? `, seq${r}.n` : "";
      return `    s${r}_${j} = scoreModifier(s${r}_${j} * LN2, ${q}, ${k}, head, batch${n}) * LOG2E;`;
    })
  );
  return onlyIf("anyAllowed", lines.join("\n")) + "\n";
}

export function maxOf(terms: string[]): string {
  return terms.length === 1 ? terms[0] : `max(${terms[0]}, ${maxOf(terms.slice(1))})`;
}

export function softmaxRow(
  r: number,
  J: number[],
  Dd: number[],
  cols: number,
  dtype: "f32" | "f16",
  matrix = false,
): string {
  const store = (p: string) => dtype === "f16" ? `f16(${p})` : p; // P has the tiles' type
  // The matrix path's P tile is an array of float16 scalars (matrix_math_wgsl.ts).
  const pStore = (j: number) =>
    matrix
      ? `      kpTile[(firstRow + ${r}u) * P_ROW + col + ${j * cols}u] = ${store(`p${j}`)};`
      : `      kpTile[(firstRow + ${r}u) * P_STRIDE4 + (col + ${j * cols}u) / 4u][(col + ${
        j * cols
      }u) % 4u] = ${store(`p${j}`)};`;
  if (matrix) return lazySoftmaxRow(r, J, pStore);
  return `    {
      var tileMax = NO_SCORE;
      for (var c = 0u; c < COLS; c++) { tileMax = max(tileMax, rowShare[(firstRow + ${r}u) * COLS + c]); }
      let newMax = max(rowMax${r}, tileMax);
      let rescale = exp2(rowMax${r} - newMax); // 1 while the row has seen nothing
      rowMax${r} = newMax;
      rowsLive = rowsLive || tileMax > NO_SCORE;
${
    J.map((j) => `      let p${j} = select(0.0, exp2(s${r}_${j} - newMax), s${r}_${j} > NO_SCORE);`)
      .join("\n")
  }
      rowSum${r} = rowSum${r} * rescale + ${J.map((j) => `p${j}`).join(" + ")};
${Dd.map((d) => `      acc${r}_${d} *= rescale;`).join("\n")}
${J.map(pStore).join("\n")}
    }`;
}

/**
 * The matrix path's softmax of row r (its O lives in result matrices, matrix_math_wgsl.ts),
 * from the row's tile max `tileMax{r}` (`matrixRowMaxima`): the row's reference max moves only
 * when the tile's max passes it by more than 2^RESCALE_LOG2; then `alpha` is the factor O must
 * take and the tile raises `rescaleFlag`.
 */
function lazySoftmaxRow(
  r: number,
  J: number[],
  pStore: (j: number) => string,
): string {
  return `    {
      let tileMax = tileMax${r};
      rowsLive = rowsLive || tileMax > NO_SCORE;
      if (tileMax > rowMax${r} + RESCALE_LOG2) {
        alpha${r} = exp2(rowMax${r} - tileMax); // 0 while the row has seen nothing
        rowMax${r} = tileMax;
        rescaleFlag[0] = 1u;
      }
${
    J.map((j) =>
      `      let p${j} = select(0.0, exp2(s${r}_${j} - rowMax${r}), s${r}_${j} > NO_SCORE);`
    )
      .join("\n")
  }
      rowSum${r} = rowSum${r} * alpha${r} + ${J.map((j) => `p${j}`).join(" + ")};
${J.map(pStore).join("\n")}
    }`;
}
