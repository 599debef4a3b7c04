/**
 * Tile math on subgroup matrices (WGSL `chromium_experimental_subgroup_matrix`, Dawn): S = Q·Kᵀ
 * and P·V as float16 products with float32 sums, on the GPU's matrix units. Each subgroup owns
 * a band of the query tile's rows: its Q is loaded into left matrices once, before the key
 * loop; each key tile's K is read as Kᵀ (K loaded column-major, so no transpose is stored).
 *
 * A matrix's elements are opaque to the invocations, so the scores go through workgroup
 * memory (`mmaOut`), where the invocations' softmax reads them in the register-tile split
 * (masks and score modifiers unchanged; a row's maxima meet by subgroup shuffles, its COLS
 * invocations being neighbouring lanes). P·V accumulates in result matrices, which hold the
 * band's O for the whole key loop. The online softmax rescales a row of O by its own factor,
 * which no matrix operation does, so the rescaling is lazy: a row keeps its reference max until
 * a tile's max passes it by more than 2^RESCALE_LOG2 (P stays below that, well inside
 * float16's range), and only on the tiles where some row's does are the matrices stored to
 * `mmaOut`, their rows scaled there by the invocations and loaded back. O passes through
 * `mmaOut` in D / tileK passes where the key tile is narrower than D, so that `mmaOut` holds
 * one tile of scores (tiles.ts, `matrixOutColumns`): that is what lets 128-row tiles fit.
 * Keeping O out of the invocations' registers during the loop is what lets those tiles run
 * fast. After the loop the matrices go to the accumulators once, and the epilogue normalises
 * and writes O.
 * @module
 */
import { assert } from "../../core/errors.ts";
import type { ShaderModule } from "./shader_module.ts";
import { maxOf } from "./tile_math_wgsl.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { kernelGeometry, range } from "./kernel_refs.ts";
import {
  MATRIX_OUT_PAD,
  MATRIX_PAD,
  type MatrixConfig,
  matrixOutColumns,
  matrixQueryRow,
} from "../tiles.ts";

/** How the subgroups split the tile, in matrices. */
interface MatrixGeometry {
  config: MatrixConfig;
  /** Query rows per subgroup, and their M-row blocks. */
  bandRows: number;
  rowBlocks: number[];
  /** K-wide blocks of the head dim (the reduction of QKᵀ). */
  dimSteps: number[];
  /** N-wide blocks of the key tile (columns of S). */
  keyBlocks: number[];
  /** N-wide blocks of the head dim (columns of P·V). */
  dimBlocks: number[];
  /** K-wide blocks of the key tile (the reduction of P·V). */
  keySteps: number[];
  /**
   * Subgroups per band (`bandSplit`): with 2, keyBlocks and dimBlocks are this subgroup's half,
   * counted from `partKeys` and `partDims` (WGSL), which these prefix its offsets with.
   */
  split: number;
  keysFrom: string;
  dimsFrom: string;
}

function matrixGeometry(o: ComponentKernelOptions): MatrixGeometry {
  const config = o.matrix!;
  const { tileQ, tileK } = o.component.mask;
  const d = o.shape.headDim;
  const subgroups = o.threads / config.subgroupSize;
  const split = o.bandSplit ?? 1;
  const bandRows = (tileQ * split) / subgroups;
  return {
    config,
    bandRows,
    rowBlocks: range(bandRows / config.m),
    dimSteps: range(d / config.k),
    keyBlocks: range(tileK / config.n / split),
    dimBlocks: range(d / config.n / split),
    keySteps: range(tileK / config.k),
    split,
    keysFrom: split > 1 ? "partKeys + " : "",
    dimsFrom: split > 1 ? "partDims + " : "",
  };
}

/**
 * A matrix load from a workgroup array: row- or column-major, `stride` elements between rows
 * (columns). Dawn spells the majorness as a template argument (`majorness: "template"`) or, in
 * older releases, as a bool argument, which newer ones still take with a deprecation warning
 * per call; runtime/device.ts asks the device which it compiles.
 */
function load(
  o: Spelling,
  type: string,
  tile: string,
  offset: string,
  colMajor: boolean,
  stride: string,
): string {
  return o.majorness === "template"
    ? `subgroupMatrixLoad<${type}, ${
      colMajor ? "col_major" : "row_major"
    }>(&${tile}, ${offset}, ${stride})`
    : `subgroupMatrixLoad<${type}>(&${tile}, ${offset}, ${colMajor}, ${stride})`;
}

/** A row-major matrix store into a workgroup array (spelt as `load` says). */
function store(o: Spelling, tile: string, offset: string, m: string, stride: string): string {
  return o.majorness === "template"
    ? `subgroupMatrixStore<row_major>(&${tile}, ${offset}, ${m}, ${stride});`
    : `subgroupMatrixStore(&${tile}, ${offset}, ${m}, false, ${stride});`;
}

type Spelling = { majorness?: "template" | "argument" };

const left = (c: MatrixConfig) => `subgroup_matrix_left<f16, ${c.k}, ${c.m}>`;
const right = (c: MatrixConfig) => `subgroup_matrix_right<f16, ${c.n}, ${c.k}>`;
const result = (c: MatrixConfig) => `subgroup_matrix_result<f32, ${c.n}, ${c.m}>`;

/**
 * The constants, workgroup memory and vec4 stores of a subgroup-matrix kernel (in place of the
 * register-tile kernel's): matrices load from arrays of scalars, so the tiles are float16
 * arrays, with rows padded for alignment and banks (tiles.ts, MATRIX_PAD).
 */
export function declareMatrixTiles(m: ShaderModule, o: ComponentKernelOptions): void {
  const { tileQ, tileK } = o.component.mask;
  const d = o.shape.headDim, g = kernelGeometry(o), mg = matrixGeometry(o);
  const qkRow = d + MATRIX_PAD, pRow = tileK + MATRIX_PAD;
  const parts = o.queryParts ?? 1, qRow = matrixQueryRow(d, parts);
  const outRow = matrixOutColumns(tileK, d, g.cols).columns + MATRIX_OUT_PAD;
  m.enable("f16").enable("subgroups").enable("chromium_experimental_subgroup_matrix");
  m.declare(
    "matrixConstants",
    `
const QK_ROW = ${qkRow}u;       // padded float16 row of the Q and K tiles (QK_STRIDE vec4s)
const P_ROW = ${pRow}u;        // padded float16 row of the P tile (P_STRIDE4 vec4s)
const V_STRIDE4 = ${qkRow / 4}u;    // padded row of the V tile, in vec4s
const V_ROW = ${qkRow}u;        // the same, in float16 elements
const OUT_ROW = ${outRow}u;      // float32 row of the matrices' results (S, then O${
      outColumns(o).passes > 1 ? ` in ${outColumns(o).passes} passes` : ""
    })
const BAND_ROWS = ${mg.bandRows}u;   // query rows per ${
      mg.split > 1 ? "pair of subgroups" : "subgroup"
    }: ${mg.rowBlocks.length} block(s) of ${mg.config.m}${
      parts > 1
        ? `
const Q_PART4 = ${
          d / 4 / parts
        }u;      // vec4s of a query row per part (the tile is staged in ${parts})
const Q_ROW = ${qRow}u;        // padded float16 row of a part of the query tile
const Q_STRIDE4 = ${qRow / 4}u;    // the same, in vec4s`
        : ""
    }
const RESCALE_LOG2 = 8.0;  // a row's max may grow this much (log2) before O is rescaled`,
  );
  m.declare(
    "workgroupMemory",
    `
// The query tile (${
      parts > 1 ? `part by part, ` : ""
    }until its matrices are loaded), then K for QKᵀ, then P for P·V, in
// float16; barriers separate each use from the next.
var<workgroup> kpTile: array<f16, ${Math.max(tileQ * qRow, tileK * qkRow, tileQ * pRow)}>;
var<workgroup> vTile: array<f16, ${tileK * qkRow}>;
// The matrices' float32 results, read by the invocations: each tile's scores, and O where
// rows are rescaled and once at the end.
var<workgroup> mmaOut: array<f32, ${tileQ * outRow}>;
var<workgroup> rowShare: array<f32, ${tileQ * g.cols}>; // per-column row sums, added at the end
var<workgroup> kPosition: array<i32, ${tileK}>;
// [0]: some row's max grew past its reference this tile. 16 bytes, as every workgroup variable
// here: the matrices load float16 tiles in 16-byte rows, wherever the driver places them.
var<workgroup> rescaleFlag: array<u32, 4>;`,
  );
  const put = (name: string, tile: string) => `
fn ${name}(at4: u32, x: vec4<f16>) {
  let i = 4u * at4;
  ${tile}[i] = x.x;
  ${tile}[i + 1u] = x.y;
  ${tile}[i + 2u] = x.z;
  ${tile}[i + 3u] = x.w;
}`;
  m.declare(
    "matrixStores",
    `
// A vec4 into a float16 tile at vec4 index at4 (matrices load from arrays of scalars).${
      put("putKP", "kpTile")
    }${put("putV", "vTile")}`,
  );
}

/** A vec4 store into a staged tile: Q and K share `kpTile` on the matrix path. */
export function tileStore(
  o: { matrix?: MatrixConfig },
  tile: "q" | "k" | "v",
  index: string,
  value: string,
): string {
  if (o.matrix) return `${tile === "v" ? "putV" : "putKP"}(${index}, ${value});`;
  return `${{ q: "qTile", k: "kpTile", v: "vTile" }[tile]}[${index}] = ${value};`;
}

/** The V tile's vec4 index of key row `row`, dims `i % D4` (padded rows on the matrix path). */
export function vIndex(o: { matrix?: MatrixConfig }, row: string, plain: string): string {
  return o.matrix ? `${row} * V_STRIDE4 + i % D4` : plain;
}

/**
 * After the query tile is staged: this subgroup's band of Q as left matrices, held in
 * registers for the whole key loop, then a barrier before K overwrites the staged tile. Where
 * the tile is staged in parts (`queryParts`), each part is staged (`stagePart`, query_tile_wgsl.ts),
 * its matrices loaded, and a barrier passed before the next part overwrites it.
 */
export function matrixQueryLoads(
  o: ComponentKernelOptions,
  stagePart: (part: number) => string,
): string {
  const mg = matrixGeometry(o), c = mg.config;
  const sp = { majorness: o.matrixMajorness };
  const parts = o.queryParts ?? 1;
  const outputs = mg.rowBlocks.flatMap((a) =>
    mg.dimBlocks.map((b) => `  var o${a}_${b} = ${result(c)}();`)
  );
  const band = `${
    mg.split > 1
      ? `  // Two subgroups share each band: part 0 scores the first half of the key tile and holds O's
  // first half of the dims, part 1 the second halves.
  let band = (sg / 2u) * BAND_ROWS;    // this pair's first query row
  let part = sg % 2u;
  let partKeys = part * ${o.component.mask.tileK / 2}u;      // this part's first key of the tile
  let partDims = part * ${o.shape.headDim / 2}u;      // and first dim of O
`
      : `  let band = sg * BAND_ROWS;           // this subgroup's first query row
`
  }  if (lid == 0u) { rescaleFlag[0] = 0u; }
  // This subgroup's band of P·V since the last rescaling, in result matrices.
${outputs.join("\n")}
`;
  // A uniform softmax scores nothing: only P·V reads the band.
  if (o.uniform) return band;
  const loads = (steps: number[], row: string, first: number) =>
    mg.rowBlocks.flatMap((a) =>
      steps.map((t) =>
        `  let qm${a}_${t} = ${
          load(
            sp,
            left(c),
            "kpTile",
            `(band + ${a * c.m}u) * ${row} + ${t * c.k - first}u`,
            false,
            row,
          )
        };`
      )
    ).join("\n");
  if (parts === 1) {
    return `  workgroupBarrier();                 // the query tile is staged
${band}  // This subgroup's band of Q as left matrices, for every key tile.
${loads(mg.dimSteps, "QK_ROW", 0)}
  workgroupBarrier();                 // K may now overwrite the staged query tile
`;
  }
  const steps = mg.dimSteps.length / parts, dims = o.shape.headDim / parts;
  const staged = range(parts).map((p) =>
    `  // Q's dims ${p * dims}..${
      (p + 1) * dims - 1
    }, pre-scaled, then this subgroup's band of them.
${stagePart(p)}  workgroupBarrier();
${loads(mg.dimSteps.slice(p * steps, (p + 1) * steps), "Q_ROW", p * dims)}
  workgroupBarrier();                 // read: ${
      p < parts - 1 ? "the next part" : "K"
    } may overwrite it
`
  );
  return `${band}  // The query tile in ${parts} parts through workgroup memory; this subgroup's band of Q as left
  // matrices, for every key tile.
${staged.join("")}`;
}

/**
 * S = Q·Kᵀ for this subgroup's band and every key of the tile, stored in `mmaOut`, then read
 * by each invocation into its register tile s{r}_{j} (the softmax's split).
 */
export function matrixScores(o: ComponentKernelOptions, R: number[], J: number[]): string {
  const mg = matrixGeometry(o), c = mg.config, cols = kernelGeometry(o).cols;
  const sp = { majorness: o.matrixMajorness };
  const blocks = mg.keyBlocks.map((b) => {
    const keyRow = mg.split > 1 ? `(partKeys + ${b * c.n}u)` : `${b * c.n}u`;
    const kt = mg.dimSteps.map((t) =>
      `      let kt${t} = ${
        load(sp, right(c), "kpTile", `${keyRow} * QK_ROW + ${t * c.k}u`, true, "QK_ROW")
      };`
    );
    const products = mg.rowBlocks.map((a) =>
      [
        `      var s${a} = ${result(c)}();`,
        ...mg.dimSteps.map((t) =>
          `      s${a} = subgroupMatrixMultiplyAccumulate(qm${a}_${t}, kt${t}, s${a});`
        ),
        `      ${
          store(
            sp,
            "mmaOut",
            `(band + ${a * c.m}u) * OUT_ROW + ${mg.keysFrom}${b * c.n}u`,
            `s${a}`,
            "OUT_ROW",
          )
        }`,
      ].join("\n")
    );
    return `    {                                 // keys ${mg.keysFrom}${b * c.n}..${
      b * c.n + c.n - 1
    }
${kt.join("\n")}
${products.join("\n")}
    }`;
  });
  const reads = R.flatMap((r) =>
    J.map((j) => `    var s${r}_${j} = mmaOut[(firstRow + ${r}u) * OUT_ROW + col + ${j * cols}u];`)
  );
  return `    // Scores on subgroup matrices: this subgroup's band of S = Q·Kᵀ (K read column-major
    // as Kᵀ), float32 sums, through workgroup memory into the invocations' registers.
${blocks.join("\n")}
    workgroupBarrier();
${reads.join("\n")}`;
}

/**
 * The matrix kernels' builtins beyond the workgroup and invocation: the subgroup and the lane,
 * from which the invocations' rows are counted (attention_wgsl.ts).
 */
export const MATRIX_BUILTINS =
  "@builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) sgi: u32";

/**
 * Each row's max over the tile, in `tileMax{r}`: a row's COLS invocations are neighbouring
 * lanes of one subgroup, so their shares meet by shuffles, with no workgroup barrier.
 */
export function matrixRowMaxima(R: number[], J: number[], cols: number): string {
  assert(Number.isInteger(Math.log2(cols)), `matrix kernels need a power-of-two COLS, got ${cols}`);
  const shuffles = (r: number) =>
    range(Math.log2(cols)).map((b) =>
      `\n    tileMax${r} = max(tileMax${r}, subgroupShuffleXor(tileMax${r}, ${1 << b}u));`
    ).join("");
  return R.map((r) => `    var tileMax${r} = ${maxOf(J.map((j) => `s${r}_${j}`))};${shuffles(r)}`)
    .join("\n");
}

/**
 * O += P·V for this subgroup's band, into its result matrices. First, where the softmax found
 * some row's max grown past its reference (`rescaleFlag`, read uniformly, which is also the
 * barrier that makes P visible), every band's matrices go through `mmaOut`, where the
 * invocations scale their rows by `alpha`, and are loaded back.
 */
export function matrixProduct(o: ComponentKernelOptions, R: number[], Dd: number[]): string {
  const mg = matrixGeometry(o), c = mg.config;
  const sp = { majorness: o.matrixMajorness };
  const pLoads = mg.rowBlocks.flatMap((a) =>
    mg.keySteps.map((t) =>
      `    let pm${a}_${t} = ${
        load(sp, left(c), "kpTile", `(band + ${a * c.m}u) * P_ROW + ${t * c.k}u`, false, "P_ROW")
      };`
    )
  );
  const blocks = mg.dimBlocks.map((b) => {
    const vm = mg.keySteps.map((t) =>
      `      let vm${t} = ${
        load(
          sp,
          right(c),
          "vTile",
          `${t * c.k}u * V_ROW + ${mg.dimsFrom}${b * c.n}u`,
          false,
          "V_ROW",
        )
      };`
    );
    const products = mg.rowBlocks.flatMap((a) =>
      mg.keySteps.map((t) =>
        `      o${a}_${b} = subgroupMatrixMultiplyAccumulate(pm${a}_${t}, vm${t}, o${a}_${b});`
      )
    );
    return `    {                                 // dims ${mg.dimsFrom}${b * c.n}..${
      b * c.n + c.n - 1
    }
${vm.join("\n")}
${products.join("\n")}
    }`;
  });
  return `    // Lazy rescaling: only where some row's max passed its reference by 2^RESCALE_LOG2 are
    // the matrices' rows scaled, through workgroup memory.
    if (workgroupUniformLoad(&rescaleFlag[0]) != 0u) {
${oThroughOut(o, R, Dd, "      ", "rescale")}
    }
    if (lid == 0u) { rescaleFlag[0] = 0u; }  // every invocation has read it
    // O += P·V on subgroup matrices: this subgroup's band of P times the V tile.
${pLoads.join("\n")}
${blocks.join("\n")}
    workgroupBarrier();                 // P and V read: the next tile may be staged`;
}

/**
 * After the key loop: the band's O matrices through `mmaOut` into the invocations'
 * accumulators, which the epilogue normalises and writes.
 */
export function matrixResults(o: ComponentKernelOptions, R: number[], Dd: number[]): string {
  return `  // O from the result matrices into the accumulators.
  workgroupBarrier();
${oThroughOut(o, R, Dd, "  ", "collect")}
`;
}

/** The float32 columns of `mmaOut` and the passes O takes through them (tiles.ts). */
function outColumns(o: ComponentKernelOptions): { columns: number; passes: number } {
  return matrixOutColumns(o.component.mask.tileK, o.shape.headDim, kernelGeometry(o).cols);
}

/**
 * Where O's dims sit in `mmaOut` as O passes through it: in `passes` passes of `width` columns,
 * each holding `share` consecutive dims of every part's `partDims` (one part, all of D, where
 * bands are not split), side by side. `place` finds a dim's pass and column.
 */
function oPassLayout(o: ComponentKernelOptions) {
  const { columns, passes } = outColumns(o);
  const d = o.shape.headDim, split = o.bandSplit ?? 1;
  const width = passes > 1 ? columns : d;
  const share = width / split, partDims = d / split;
  return {
    passes,
    width,
    share,
    partDims,
    /** The pass and column of dim `dim` (counted within its part's dims) of part `part`. */
    place: (part: number, dim: number) => {
      const pass = Math.floor(dim / share);
      return { pass, column: part * share + dim - pass * share };
    },
  };
}

/**
 * The band's O matrices through `mmaOut`, pass by pass: each pass's dim blocks stored, a
 * barrier, then each invocation's vec4 columns of that pass either scaled in place by their
 * rows' `alpha` and, after a barrier, loaded back into the matrices (`rescale`, inside the key
 * loop), or added to its accumulators (`collect`, after it); a barrier before the next pass
 * overwrites them. A subgroup reads and writes only its band's rows, so no barrier is needed
 * before the first pass's stores once the scores there are read. Where two subgroups share a
 * band, each stores its half's blocks at its part's place in the pass (`oPassLayout`).
 */
function oThroughOut(
  o: ComponentKernelOptions,
  R: number[],
  Dd: number[],
  indent: string,
  mode: "rescale" | "collect",
): string {
  const mg = matrixGeometry(o), c = mg.config, cols = kernelGeometry(o).cols;
  const sp = { majorness: o.matrixMajorness };
  const layout = oPassLayout(o);
  const partColumn = mg.split > 1 ? `part * ${layout.share}u + ` : "";
  return range(layout.passes).map((p) => {
    const blocks = mg.rowBlocks.flatMap((a) =>
      mg.dimBlocks.filter((b) => layout.place(0, b * c.n).pass === p).map((b) => ({
        name: `o${a}_${b}`,
        at: `(band + ${a * c.m}u) * OUT_ROW + ${partColumn}${layout.place(0, b * c.n).column}u`,
      }))
    );
    const stores = blocks.map((m) => `${indent}${store(sp, "mmaOut", m.at, m.name, "OUT_ROW")}`);
    // An invocation's vec4 column col + d * cols: its part and pass do not depend on col.
    const placeOf = (d: number) => {
      const dim = 4 * d * cols, part = Math.floor(dim / layout.partDims);
      return layout.place(part, dim - part * layout.partDims);
    };
    const own = R.flatMap((r) =>
      Dd.filter((d) => placeOf(d).pass === p).map((d) => {
        const at = `(firstRow + ${r}u) * OUT_ROW + (col + ${placeOf(d).column / 4}u) * 4u`;
        return `${indent}{ let i = ${at}; ${
          mode === "rescale"
            ? range(4).map((e) => `mmaOut[i${e ? ` + ${e}u` : ""}] *= alpha${r};`).join(" ")
            : `acc${r}_${d} += vec4<f32>(mmaOut[i], mmaOut[i + 1u], mmaOut[i + 2u], mmaOut[i + 3u]);`
        } }`;
      })
    );
    const reloads = mode === "rescale"
      ? [
        `${indent}workgroupBarrier();           // rows scaled`,
        ...blocks.map((m) =>
          `${indent}${m.name} = ${load(sp, result(c), "mmaOut", m.at, false, "OUT_ROW")};`
        ),
      ]
      : [];
    const dims = mg.split > 1
      ? `${indent}// O's dims ${p * layout.share}..${(p + 1) * layout.share - 1} of each half`
      : `${indent}// O's dims ${p * layout.width}..${(p + 1) * layout.width - 1}`;
    return [
      ...(layout.passes > 1 ? [dims] : []),
      ...stores,
      `${indent}workgroupBarrier();`,
      ...own,
      ...reloads,
      ...(p < layout.passes - 1
        ? [`${indent}workgroupBarrier();           // read: the next pass may store`]
        : []),
    ].join("\n");
  }).join("\n");
}
