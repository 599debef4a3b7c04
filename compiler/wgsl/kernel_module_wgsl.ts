/**
 * What every kernel of an attention module shares: the header comment, bindings, constants and
 * workgroup memory (`kernelModule`); each member's layouts and mask (`declareMember`); and, in a
 * module of several members, the functions that pick a member's (`declareDispatch`).
 * @module
 */
import { vTileLength } from "../edge_pairs.ts";
import { sequenceSizes } from "../../core/shape.ts";
import { atomLabel } from "../atoms.ts";
import type { ParamBlock } from "../aux_data.ts";
import type { Component } from "../plan.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { type Call, call, kernelGeometry, queriesConstants, valueWidth } from "./kernel_refs.ts";
import { declareLayout, declareQueryLayout } from "./layout_wgsl.ts";
import { declareAllowed } from "./predicate_wgsl.ts";
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";
import { readsHash, stagedCodes } from "../component_reads.ts";
import { MATRIX_PAD } from "../tiles.ts";
import { declareMatrixTiles } from "./matrix_math_wgsl.ts";
import { declareKvRow } from "./kv_row_wgsl.ts";
import { declareSequences } from "./sequence_wgsl.ts";

/**
 * `fn name(member, args) -> type` that calls that member's function, and how to call it from
 * the body (which passes `member`: its MEMBER, or a fused kernel's tile's member). Members naming
 * the same function share a case; when all do, that function is the answer and nothing is
 * declared.
 */
export function declareDispatch(
  m: ShaderModule,
  name: string,
  targets: readonly string[],
  args: readonly string[],
  type: string,
  member = "MEMBER",
): Call {
  const distinct = [...new Set(targets)];
  if (distinct.length === 1) return call(distinct[0]);
  const types: Record<string, string> = {
    i: "u32",
    p: "i32",
    q: "i32",
    k: "i32",
    h: "i32",
    b: "i32",
    n: "i32",
    qc: "vec4<u32>",
    kc: "vec4<u32>",
  };
  const cases = distinct.map((f, n) => {
    const label = n === distinct.length - 1
      ? "default"
      : "case " + targets.flatMap((t, i) => t === f ? [`${i}u`] : []).join(", ");
    return `    ${label}: { return ${f}(${args.join(", ")}); }`;
  });
  m.declare(
    name,
    `
fn ${name}(member: u32, ${args.map((a) => `${a}: ${types[a]}`).join(", ")}) -> ${type} {
  switch member {
${cases.join("\n")}
  }
}`,
  );
  return (a) => `${name}(${member}, ${a})`;
}

export function allowedLabel(c: Component): string {
  return c.atoms.map(atomLabel).join(" & ") +
    (c.exclusions.length ? `, minus ${c.exclusions.length} earlier component(s)` : "");
}

/**
 * A kernel module with what every member of it shares: header comment, bindings, constants,
 * workgroup memory.
 */
export function kernelModule(
  o: ComponentKernelOptions,
  header: string[],
  split: boolean,
): ShaderModule {
  const { component: c, shape } = o;
  const { tileQ, tileK } = c.mask;
  const n = o.n, d4 = shape.headDim / 4;
  const dv4 = sequenceSizes(shape).dv / 4, ownValueDim = valueWidth(o) === "DV4";
  const q = o.queries;
  const m = new ShaderModule();
  for (const line of header) m.comment(line);
  m.comment(
    `tile ${tileQ}x${tileK}, workgroup ${kernelGeometry(o).threads}, N=${n}, ` +
      (o.packed
        ? `Nq=${q?.count ?? n} in packed sequences, `
        : q
        ? `Nq=${q.count} from position ${q.offset}, `
        : "") +
      `D=${shape.headDim}, ` +
      (ownValueDim ? `Dv=${4 * dv4}, ` : "") +
      `Hq=${shape.headsQ}, Hkv=${shape.headsKV}, ${
        o.matrix
          ? `float16 products on ${o.matrix.m}x${o.matrix.n}x${o.matrix.k} subgroup matrices ` +
            `(subgroups of ${o.matrix.subgroupSize}), float32 sums`
          : o.dtype === "f16"
          ? "float16 products summed in float16 over short chunks, float32 running sums"
          : "float32"
      }`,
  );
  if (o.paged) m.comment(`K and V in pages of ${o.paged.pageSize} positions (kvRow)`);
  const T = o.dtype; // element type of Q, K, V and their workgroup tiles
  const kvRows = c.kLayout.kind === "landmarks" ? c.kLayout.count : n;
  if (T === "f16") m.enable("f16");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${T}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${T}>>;
@group(0) @binding(3) var<storage, read> schedule: array<u32>;
@group(0) @binding(4) var<storage, read> aux: array<u32>;
@group(0) @binding(5) var<storage, read_write> oOut: array<vec4<${o.outputF16 ? "f16" : "f32"}>>;
@group(0) @binding(6) var<storage, read_write> lseOut: array<f32>;${
      readsHash(c)
        ? "\n@group(0) @binding(7) var<storage, read> hash: array<u32>; // codes, bucket order"
        : ""
    }`,
  );
  if (o.packed) {
    // The last binding, after the hash buffer and the learnable constants (plan_kernels.ts).
    const learned = o.score !== undefined && o.learned !== undefined;
    declareSequences(m, 7 + Number(readsHash(c)) + Number(learned));
  }
  const g = kernelGeometry(o);
  // Subgroup matrices want 16-byte aligned rows: two vec4s of float16 padding (tiles.ts).
  const pad4 = o.matrix ? MATRIX_PAD / 4 : 1;
  m.declare(
    "constants",
    `
const N = ${n}u;${queriesConstants(q)}${
      o.paged ? "" : `
const KV_ROWS = ${kvRows}u;     // rows per key/value head in the bound K and V${
        c.kLayout.kind === "landmarks" ? " (landmarks)" : ""
      }`
    }
const D4 = ${d4}u;          // head dim / 4: rows are read as vec4${
      ownValueDim ? `\nconst DV4 = ${dv4}u;         // value head dim / 4: V's and O's rows` : ""
    }
const HQ = ${shape.headsQ}u;
const HKV = ${shape.headsKV}u;
const GROUP = ${shape.headsQ / shape.headsKV}u; // query heads per key/value head
const TILE_Q = ${tileQ}u;
const TILE_K = ${tileK}u;
const THREADS = ${g.threads}u;
const ROWS = ${g.rows}u;          // query rows per invocation
const COLS = ${g.cols}u;          // invocations sharing those rows
const KEYS = ${g.keys}u;          // keys per invocation per tile: col, col + COLS, ...
const DIMS4 = ${g.dims4}u;         // output vec4s per row per invocation
const QK_STRIDE = ${d4 + pad4}u;     // padded row stride of the Q and K tiles: spreads banks
const P_STRIDE4 = ${tileK / 4 + pad4}u;    // P rows are vec4s of 4 keys, padded by ${
      o.matrix ? "two vec4s" : "one vec4"
    }
const SCORE_SCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = ${f32(Math.LN2)};${
      split ? `\nconst BH = ${shape.batch * shape.headsQ}u;         // batch * query heads` : ""
    }`,
  );
  if (o.paged) declareKvRow(m, o.paged);
  if (o.matrix) {
    declareMatrixTiles(m, o);
    declareNegativeInfinity(m);
    return m;
  }
  m.declare(
    "workgroupMemory",
    `${o.globalQuery ? "" : `\nvar<workgroup> qTile: array<vec4<${T}>, ${tileQ * (d4 + 1)}>;`}
// K for QKᵀ, then P for P·V: K is dead once the scores are in registers, and a barrier
// separates the two, so they share memory (less workgroup memory, more workgroups per SM).
var<workgroup> kpTile: array<vec4<${T}>, ${Math.max(tileK * (d4 + 1), tileQ * (tileK / 4 + 1))}>;
var<workgroup> vTile: array<vec4<${T}>, ${vTileLength(tileK, dv4, o.edgePairs)}>;${
      o.edgePairs === "wide"
        ? " // an edge pair's two K tiles, then its two V tiles"
        : o.edgePairs === "narrow"
        ? " // also an edge pair's K_B (padded rows)"
        : ""
    }
var<workgroup> rowShare: array<f32, ${tileQ * g.cols}>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, ${tileK}>;`,
  );
  declareNegativeInfinity(m);
  return m;
}

/** Declares a member's layouts and its `allowed` (under `allowedName`) in the module. */
export function declareMember(
  m: ShaderModule,
  o: ComponentKernelOptions,
  params: ParamBlock,
  allowedName: string,
): { qPos: string; kPos: string } {
  const c = o.component, n = o.n;
  const layout = declareLayout(m, c.qLayout, n, params, o.hash);
  // Queries that are some of the positions: the layout's other positions are padding.
  const qPos = o.queries ? declareQueryLayout(m, c.qLayout, layout) : layout;
  const kPos = declareLayout(m, c.kLayout, n, params, o.hash);
  declareAllowed(m, {
    atoms: c.atoms,
    exclusions: c.exclusions,
    n,
    params,
    landmarkSegment: c.kLayout.kind === "landmarks" ? c.kLayout.segment : undefined,
    hash: o.hash,
    stagedCodes: stagedCodes(c),
    name: allowedName,
    packed: o.packed,
  });
  return { qPos, kPos };
}
