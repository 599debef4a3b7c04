/**
 * Tile math on subgroup matrices (WGSL `chromium_experimental_subgroup_matrix`, Dawn): S = Q·Kᵀ
 * and P·V as float16 products with float32 sums, on the GPU's matrix units. Each subgroup owns
 * a band of the query tile's rows: its Q is loaded into left matrices once, before the key
 * loop; each key tile's K is read as Kᵀ (K loaded column-major, so no transpose is stored).
 *
 * A matrix's elements are opaque to the invocations, and the online softmax rescales each row
 * of O by its own factor, which no matrix operation does. So the scores go through workgroup
 * memory (`mmaOut`), where the invocations' softmax reads them in the register-tile split
 * (masks, score modifiers and row maxima unchanged), and each tile's P·V goes through it again
 * into the invocations' float32 accumulators, already rescaled by the softmax.
 * @module
 */
import type { ShaderModule } from "./shader_module.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { kernelGeometry, range } from "./kernel_refs.ts";
import { MATRIX_OUT_PAD, MATRIX_PAD, type MatrixConfig } from "../tiles.ts";

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
}

function matrixGeometry(o: ComponentKernelOptions): MatrixGeometry {
  const config = o.matrix!;
  const { tileQ, tileK } = o.component.mask;
  const d = o.shape.headDim;
  const subgroups = o.threads / config.subgroupSize;
  const bandRows = tileQ / subgroups;
  return {
    config,
    bandRows,
    rowBlocks: range(bandRows / config.m),
    dimSteps: range(d / config.k),
    keyBlocks: range(tileK / config.n),
    dimBlocks: range(d / config.n),
    keySteps: range(tileK / config.k),
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
  const outRow = Math.max(tileK, d) + MATRIX_OUT_PAD;
  m.enable("f16").enable("subgroups").enable("chromium_experimental_subgroup_matrix");
  m.declare(
    "matrixConstants",
    `
const QK_ROW = ${qkRow}u;       // padded float16 row of the Q and K tiles (QK_STRIDE vec4s)
const P_ROW = ${pRow}u;        // padded float16 row of the P tile (P_STRIDE4 vec4s)
const V_STRIDE4 = ${qkRow / 4}u;    // padded row of the V tile, in vec4s
const V_ROW = ${qkRow}u;        // the same, in float16 elements
const OUT_ROW = ${outRow}u;      // float32 row of the matrices' results (S, then P·V)
const BAND_ROWS = ${mg.bandRows}u;   // query rows per subgroup: ${mg.rowBlocks.length} block(s) of ${mg.config.m}`,
  );
  m.declare(
    "workgroupMemory",
    `
// The query tile (until its matrices are loaded), then K for QKᵀ, then P for P·V, in
// float16; barriers separate each use from the next.
var<workgroup> kpTile: array<f16, ${Math.max(tileQ * qkRow, tileK * qkRow, tileQ * pRow)}>;
var<workgroup> vTile: array<f16, ${tileK * qkRow}>;
// The matrices' float32 results, read by the invocations: this tile's scores, then its P·V.
var<workgroup> mmaOut: array<f32, ${tileQ * outRow}>;
var<workgroup> rowShare: array<f32, ${tileQ * g.cols}>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, ${tileK}>;`,
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
 * registers for the whole key loop, then a barrier before K overwrites the staged tile.
 */
export function matrixQueryLoads(o: ComponentKernelOptions): string {
  const mg = matrixGeometry(o), c = mg.config;
  const sp = { majorness: o.matrixMajorness };
  const band = "  let band = sg * BAND_ROWS;           // this subgroup's first query row\n";
  // A uniform softmax scores nothing: only P·V reads the band.
  if (o.uniform) return band;
  const loads = mg.rowBlocks.flatMap((a) =>
    mg.dimSteps.map((t) =>
      `  let qm${a}_${t} = ${
        load(sp, left(c), "kpTile", `(band + ${a * c.m}u) * QK_ROW + ${t * c.k}u`, false, "QK_ROW")
      };`
    )
  );
  return `  workgroupBarrier();                 // the query tile is staged
${band}  // This subgroup's band of Q as left matrices, for every key tile.
${loads.join("\n")}
  workgroupBarrier();                 // K may now overwrite the staged query tile
`;
}

/**
 * S = Q·Kᵀ for this subgroup's band and every key of the tile, stored in `mmaOut`, then read
 * by each invocation into its register tile s{r}_{j} (the softmax's split).
 */
export function matrixScores(o: ComponentKernelOptions, R: number[], J: number[]): string {
  const mg = matrixGeometry(o), c = mg.config, cols = kernelGeometry(o).cols;
  const sp = { majorness: o.matrixMajorness };
  const blocks = mg.keyBlocks.map((b) => {
    const kt = mg.dimSteps.map((t) =>
      `      let kt${t} = ${
        load(sp, right(c), "kpTile", `${b * c.n}u * QK_ROW + ${t * c.k}u`, true, "QK_ROW")
      };`
    );
    const products = mg.rowBlocks.map((a) =>
      [
        `      var s${a} = ${result(c)}();`,
        ...mg.dimSteps.map((t) =>
          `      s${a} = subgroupMatrixMultiplyAccumulate(qm${a}_${t}, kt${t}, s${a});`
        ),
        `      ${
          store(sp, "mmaOut", `(band + ${a * c.m}u) * OUT_ROW + ${b * c.n}u`, `s${a}`, "OUT_ROW")
        }`,
      ].join("\n")
    );
    return `    {                                 // keys ${b * c.n}..${b * c.n + c.n - 1}
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
 * O += P·V: this subgroup's band of P (float16, written by the softmax) times V on matrices,
 * stored in `mmaOut`, then added by each invocation to its accumulators.
 */
export function matrixProduct(o: ComponentKernelOptions, R: number[], Dd: number[]): string {
  const mg = matrixGeometry(o), c = mg.config, cols = kernelGeometry(o).cols;
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
        load(sp, right(c), "vTile", `${t * c.k}u * V_ROW + ${b * c.n}u`, false, "V_ROW")
      };`
    );
    const products = mg.rowBlocks.map((a) =>
      [
        `      var pv${a} = ${result(c)}();`,
        ...mg.keySteps.map((t) =>
          `      pv${a} = subgroupMatrixMultiplyAccumulate(pm${a}_${t}, vm${t}, pv${a});`
        ),
        `      ${
          store(sp, "mmaOut", `(band + ${a * c.m}u) * OUT_ROW + ${b * c.n}u`, `pv${a}`, "OUT_ROW")
        }`,
      ].join("\n")
    );
    return `    {                                 // dims ${b * c.n}..${b * c.n + c.n - 1}
${vm.join("\n")}
${products.join("\n")}
    }`;
  });
  const adds = R.flatMap((r) =>
    Dd.map((d) => {
      const at = `(firstRow + ${r}u) * OUT_ROW + (col + ${d * cols}u) * 4u`;
      return `    { let at = ${at}; acc${r}_${d} += vec4<f32>(mmaOut[at], mmaOut[at + 1u], mmaOut[at + 2u], mmaOut[at + 3u]); }`;
    })
  );
  return `    // O += P·V on subgroup matrices: this subgroup's band of P times the V tile, float32
    // sums, through workgroup memory into the invocations' (rescaled) accumulators.
${pLoads.join("\n")}
${blocks.join("\n")}
    workgroupBarrier();
${adds.join("\n")}`;
}
