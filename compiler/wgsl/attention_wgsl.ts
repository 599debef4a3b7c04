/**
 * The fused attention kernel of one component (FlashAttention-2 forward, float32).
 *
 * One workgroup per (query tile, batch·head); one invocation per query row, its scaled query
 * and output accumulator in registers. For each key tile of its BlockMask row the workgroup
 * stages K and V in workgroup memory (the next tile's K and V already loaded into registers
 * while this one is computed, where they fit; K's memory then holds P for the P·V product),
 * each invocation computes its scores, the tile's row max, and rescales its running sum and
 * accumulator once per tile (online softmax, exp2 with
 * `scale * log2(e)` folded into the query). O is normalised once at the end, then written or
 * merged by log-sum-exp into what earlier components of the branch wrote. Several components of
 * one pattern can share one module (`sharedKernel`): one kernel body, each member's layouts and
 * mask side by side, and an entry point per kernel passing its settings to the body.
 * @module
 */
import { assert } from "../../dsl/errors.ts";
import { atomLabel } from "../atoms.ts";
import type { AuxData, ParamBlock } from "../aux_data.ts";
import { layoutLabel } from "../layout.ts";
import { TAG_SHIFT } from "../run_fusion.ts";
import type { Component } from "../plan.ts";
import { HEADER_WORDS, RUN_WORDS, SLOT_WORDS } from "../schedule_buffer.ts";
import type { AttentionShape } from "../shape.ts";
import { declareLayout } from "./layout_wgsl.ts";
import type { ScoreModifier } from "../../dsl/schema.ts";
import { declareScoreModifier } from "./expression_wgsl.ts";
import {
  allowedReadsHeadOrBatch,
  codeRef,
  declareAllowed,
  hashRoundsRead,
} from "./predicate_wgsl.ts";
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";
import { ParamReader } from "./params_wgsl.ts";
import { codeSetOf, type HashLayout } from "../hash_layout.ts";

/** Where a component kernel finds its schedule and writes its result. */
export interface ComponentKernelOptions {
  component: Component;
  shape: AttentionShape;
  scale: number;
  aux: AuxData;
  /** This component's slot in the schedule header, which holds its row and run offsets. */
  scheduleSlot: number;
  /** Element offsets of this branch's slice of the O and LSE buffers. */
  oBase: number;
  lseBase: number;
  /** Merge into what earlier components wrote (false: overwrite; the first one covers all rows). */
  merge: boolean;
  /** Constant loop bounds (GPUs unroll them); false reads them from the schedule header. */
  unroll: boolean;
  /** Element type of Q, K and V (and of their workgroup tiles); sums are always float32. */
  dtype: "f32" | "f16";
  /**
   * Write O as float16 straight away (a float16 call whose only kernel is this one): saves the
   * float32 O round trip and the cast pass. Only without `merge`, which reads O back.
   */
  outputF16?: boolean;
  /** The branch's score modifier (a `scored` pattern), applied to every raw score. */
  score?: ScoreModifier;
  /** Where hashBucket codes and bucket order live (components that read them). */
  hash?: HashLayout;
  /** A uniform hashBucket's softmax: every score is 0, so no dot products at all. */
  uniform?: boolean;
  /** Load the next K/V tile into registers while the current one is computed. */
  prefetch?: boolean;
  /**
   * Split-K (key_split.ts): workgroup x walks chunk `x % chunks` of query tile `x / chunks` and
   * writes a partial O and LSE to the split buffers (bound as O and LSE), `rows` rows per chunk
   * and head, for the combine pass to merge. No `merge`, no float16 O. Both numbers are read
   * from aux, so they change no pipeline.
   */
  split?: { chunks: number; rows: number };
  /**
   * Further components this kernel walks (run_fusion.ts): its schedule slot tags each run with
   * its member (0: `component`, i: `fused[i - 1]`), whose `allowed` masks that run's PARTIAL
   * tiles. They share `component`'s layouts and branch; only a shared module runs them.
   */
  fused?: Component[];
  /** Invocations per workgroup and query rows per invocation. */
  threads: number;
  rowsPerThread: number;
  label: string;
}

const LOG2E = Math.LOG2E;

/**
 * WGSL of one component's attention kernel.
 * @param o the component, shape, scale, aux data, buffer offsets and merge mode
 * @returns the module text
 * @example
 * ```ts ignore
 * const wgsl = componentKernel({ component, shape, scale, aux, ... });
 * ```
 */
export function componentKernel(o: ComponentKernelOptions): string {
  const { component: c } = o;
  const m = kernelModule(o, [
    `Weft attention kernel: ${o.label}`,
    `allowed: ${allowedLabel(c)}`,
    `layouts: q ${layoutLabel(c.qLayout)}, k ${layoutLabel(c.kLayout)}`,
  ], o.split !== undefined);
  // The pattern's numbers are runtime parameters in aux (comments aside, the WGSL is structural).
  const params = o.aux.paramBlock();
  const declared = declareMember(m, o, params, "allowed");
  declareCodeStaging(m, o);
  if (o.score) {
    declareScoreModifier(m, o.score, o.shape.seqLen);
    m.declare(
      "LOG2E",
      `const LOG2E = ${f32(LOG2E)}; // back to the exp2 domain after the modifier`,
    );
  }
  // Split-K: the chunk count and the partial rows are numbers, read at run time like the rest.
  const splitParams = o.split ? readSplitParams(m, params, o.split).lines : "";
  return m.render(kernelFunction(o, {
    qPos: call(declared.qPos),
    kPos: call(declared.kPos),
    allowed: call("allowed"),
    slot: `${o.scheduleSlot}u`,
    oBase: `${o.oBase}u`,
    lseBase: `${o.lseBase}u`,
    output: o.merge && !o.split ? "merge" : "write",
    split: o.split ? "split" : "none",
    splitParams,
    grid: gridOf([o, ...(o.fused ?? []).map((component) => ({ ...o, component }))]),
  }));
}

/** One module for several component kernels, and the entry point of each one's pipeline. */
export interface SharedKernel {
  wgsl: string;
  /** Per kernel, in order: its entry point (`kernel0`, `kernel1`, ...). */
  entryPoints: string[];
}

/**
 * One WGSL module for several component kernels of a pattern that share a kernel skeleton (same
 * tile shape, dtype and options; `kernelGroups` decides). The module's members are the kernels'
 * components (a fused kernel has several, run_fusion.ts): each member's layouts and `allowed`
 * are declared side by side, the kernel body is one function, `attention`, and each kernel has
 * an entry point that calls it with its settings (`MEMBER`, `SCHEDULE_SLOT`, ...) as constant
 * arguments, which the driver inlines and folds to the single-component code. WGSL's front end
 * in wgpu (parse and validation, about 17 ms for a float16 kernel on the H200 host) and, with
 * no `override` in the module, its SPIR-V translation then run once per pattern instead of
 * once per kernel. All members read one parameter block, so their slots and names never collide.
 * @param kernels the kernels' options, in pass order (at least two members in all)
 * @returns the module text and each kernel's entry point
 */
export function sharedKernel(kernels: readonly ComponentKernelOptions[]): SharedKernel {
  // A fused kernel's members are consecutive: its runs name them relative to its MEMBER.
  const members = kernels.flatMap((k) => [
    { kernel: k, options: k },
    ...(k.fused ?? []).map((component) => ({ kernel: k, options: { ...k, component } })),
  ]);
  assert(members.length >= 2, "a shared kernel of fewer than two members");
  const firstMember = kernels.map((k) => members.findIndex((x) => x.kernel === k));
  const o = kernels[0];
  const anySplit = kernels.some((x) => x.split);
  const anyFused = kernels.some((x) => x.fused);
  const m = kernelModule(o, [
    `Weft attention kernel shared by ${kernels.length} kernel(s) over ${members.length} ` +
    `components (entry point kernelI runs kernel I):`,
    ...kernels.map((k, i) => `kernel ${i}: ${k.label}`),
    ...members.map(({ options: x, kernel }, i) =>
      `member ${i} (kernel ${kernels.indexOf(kernel)}): allowed: ${allowedLabel(x.component)}; ` +
      `layouts: q ${layoutLabel(x.component.qLayout)}, k ${layoutLabel(x.component.kLayout)}`
    ),
  ], anySplit);
  const params = o.aux.paramBlock();
  const declared = members.map((x, i) => declareMember(m, x.options, params, `allowed${i}`));
  // Split kernels' chunk count and partial rows take two slots of the shared block; the body
  // reads them at SPLIT_PARAMS (the reader's own `let`s are not used).
  const splitSlots = kernels.map((x) => x.split ? readSplitParams(m, params, x.split).slot : 0);
  const settings: { name: string; type: "u32" | "bool"; note: string; values: number[] }[] = [
    {
      name: "MEMBER",
      type: "u32",
      note: "its (first) member's layouts and mask",
      values: firstMember,
    },
    {
      name: "SCHEDULE_SLOT",
      type: "u32",
      note: "its slot in the schedule header",
      values: kernels.map((x) => x.scheduleSlot),
    },
  ];
  if (anyFused) {
    settings.push({
      name: "FUSED",
      type: "bool",
      note: "its runs name their member (run_fusion.ts)",
      values: kernels.map((x) => Number(x.fused !== undefined)),
    });
  }
  const merges = kernels.map((x) => x.merge && !x.split);
  const output = merges.every((x) => x) ? "merge" : merges.some((x) => x) ? "either" : "write";
  if (output === "either") {
    settings.push({
      name: "MERGE",
      type: "bool",
      note: "merge into what earlier components wrote (else overwrite)",
      values: merges.map(Number),
    });
  }
  if (anySplit) {
    settings.push({
      name: "SPLIT",
      type: "bool",
      note: "split-K: write a chunk's partial rows for the combine pass",
      values: kernels.map((x) => Number(x.split !== undefined)),
    }, {
      name: "SPLIT_PARAMS",
      type: "u32",
      note: "slot of its chunk count (partial rows in the next)",
      values: splitSlots,
    });
  }
  const base = (name: string, values: number[], note: string) => {
    if (values.every((v) => v === values[0])) return `${values[0]}u`;
    settings.push({ name, type: "u32", note, values });
    return name;
  };
  const oBase = base("O_BASE", kernels.map((x) => x.oBase), "its branch's first O element");
  const lseBase = base("LSE_BASE", kernels.map((x) => x.lseBase), "its branch's first LSE");
  const signature = allowedReadsHeadOrBatch(o.component) ? ["q", "k", "h", "b"] : ["q", "k"];
  const qPos = declareDispatch(m, "queryPosition", declared.map((d) => d.qPos), ["i"], "i32");
  const kPos = declareDispatch(m, "keyPosition", declared.map((d) => d.kPos), ["i"], "i32");
  const allowed = declareDispatch(
    m,
    "allowed",
    declared.map((_, i) => `allowed${i}`),
    signature,
    "bool",
    anyFused ? "tileMember" : "MEMBER",
  );
  const literal = (type: string, v: number) => type === "bool" ? String(v === 1) : `${v}u`;
  const entryPoints = kernels.map((_, i) => `kernel${i}`);
  const builtins =
    "@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32";
  const wrappers = entryPoints.map((name, i) => {
    const args = settings.map((v) => literal(v.type, v.values[i])).join(", ");
    return `
@compute @workgroup_size(${kernelGeometry(o).threads})
fn ${name}(${builtins}) {
  attention(wg, lid, ${args});
}`;
  });
  const body = kernelFunction(o, {
    qPos,
    kPos,
    allowed,
    slot: "SCHEDULE_SLOT",
    oBase,
    lseBase,
    output,
    split: anySplit ? "either" : "none",
    splitParams: "",
    bodyParams: settings.map((v) => `\n  ${v.name}: ${v.type}, // ${v.note}`).join(""),
    taggedRuns: anyFused,
    grid: gridOf(members.map((x) => x.options)),
  });
  const entries = `
// One entry point per kernel: the body with that kernel's settings as constant arguments
// (${settings.map((v) => v.name).join(", ")}), which the driver inlines and folds.${
    wrappers.join("\n")
  }`;
  return { wgsl: m.render(body + "\n" + entries), entryPoints };
}

/**
 * A split-K kernel's chunk count and partial rows, two consecutive slots of the parameter block.
 * @returns the `let` lines reading them, and the first slot
 */
function readSplitParams(
  m: ShaderModule,
  params: ParamBlock,
  split: { chunks: number; rows: number },
): { lines: string; slot: number } {
  const reader = new ParamReader(m, params);
  const slot = params.size;
  reader.unsigned("splits", split.chunks, "key chunks per query tile (split-K)");
  reader.unsigned("splitRows", split.rows, "partial rows per chunk and head");
  return { lines: reader.lines.join("\n") + "\n", slot };
}

/**
 * `fn name(member, args) -> type` that calls that member's function, and how to call it from
 * the body (which passes `member`: its MEMBER, or a fused kernel's tile's member). Members naming
 * the same function share a case; when all do, that function is the answer and nothing is
 * declared.
 */
function declareDispatch(
  m: ShaderModule,
  name: string,
  targets: readonly string[],
  args: readonly string[],
  type: string,
  member = "MEMBER",
): Call {
  const distinct = [...new Set(targets)];
  if (distinct.length === 1) return call(distinct[0]);
  const types: Record<string, string> = { i: "u32", q: "i32", k: "i32", h: "i32", b: "i32" };
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

function allowedLabel(c: Component): string {
  return c.atoms.map(atomLabel).join(" & ") +
    (c.exclusions.length ? `, minus ${c.exclusions.length} earlier component(s)` : "");
}

/**
 * A kernel module with what every member of it shares: header comment, bindings, constants,
 * workgroup memory.
 */
function kernelModule(o: ComponentKernelOptions, header: string[], split: boolean): ShaderModule {
  const { component: c, shape } = o;
  const { tileQ, tileK } = c.mask;
  const n = shape.seqLen, d4 = shape.headDim / 4;
  const m = new ShaderModule();
  for (const line of header) m.comment(line);
  m.comment(
    `tile ${tileQ}x${tileK}, workgroup ${kernelGeometry(o).threads}, N=${n}, D=${shape.headDim}, ` +
      `Hq=${shape.headsQ}, Hkv=${shape.headsKV}, ${
        o.dtype === "f16"
          ? "float16 products summed in float16 over short chunks, float32 running sums"
          : "float32"
      }`,
  );
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
  const g = kernelGeometry(o);
  m.declare(
    "constants",
    `
const N = ${n}u;
const KV_ROWS = ${kvRows}u;     // rows per key/value head in the bound K and V${
      c.kLayout.kind === "landmarks" ? " (landmarks)" : ""
    }
const D4 = ${d4}u;          // head dim / 4: rows are read as vec4
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
const QK_STRIDE = ${d4 + 1}u;     // padded row stride of the Q and K tiles: spreads banks
const P_STRIDE4 = ${tileK / 4 + 1}u;    // P rows are vec4s of 4 keys, padded by one vec4
const SCORE_SCALE = ${f32(o.scale * LOG2E)}; // scale * log2(e): scores live in the exp2 domain
const NO_SCORE = -1.0e30;   // below any real score; never reaches exp2 unguarded
const LN2 = ${f32(Math.LN2)};${
      split ? `\nconst BH = ${shape.batch * shape.headsQ}u;         // batch * query heads` : ""
    }`,
  );
  m.declare(
    "workgroupMemory",
    `
var<workgroup> qTile: array<vec4<${T}>, ${tileQ * (d4 + 1)}>;
// K for QKᵀ, then P for P·V: K is dead once the scores are in registers, and a barrier
// separates the two, so they share memory (less workgroup memory, more workgroups per SM).
var<workgroup> kpTile: array<vec4<${T}>, ${Math.max(tileK * (d4 + 1), tileQ * (tileK / 4 + 1))}>;
var<workgroup> vTile: array<vec4<${T}>, ${tileK * d4}>;
var<workgroup> rowShare: array<f32, ${tileQ * g.cols}>; // per-column row maxima, then row sums
var<workgroup> kPosition: array<i32, ${tileK}>;`,
  );
  declareNegativeInfinity(m);
  return m;
}

/** Declares a member's layouts and its `allowed` (under `allowedName`) in the module. */
function declareMember(
  m: ShaderModule,
  o: ComponentKernelOptions,
  params: ParamBlock,
  allowedName: string,
): { qPos: string; kPos: string } {
  const c = o.component, n = o.shape.seqLen;
  const qPos = declareLayout(m, c.qLayout, n, params, o.hash);
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
  });
  return { qPos, kPos };
}

/**
 * What the kernel reads of its component: literals for a kernel of one, the body's parameter
 * names for a shared module. `output` and `split` are "either" where MERGE and SPLIT choose.
 */
interface MemberRefs {
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
  /** A shared module's body: `fn attention(wg, lid, <these>)`, run by each kernel's entry point. */
  bodyParams?: string;
  /** Runs carry their member (some kernel of the module is fused, run_fusion.ts). */
  taggedRuns?: boolean;
  /** Padding, and natural order, over every member (`gridOf`). */
  grid: Grid;
}

/** A WGSL call written from its argument list. */
type Call = (args: string) => string;

const call = (name: string): Call => (args) => `${name}(${args})`;

/**
 * The kernel: `main`, the entry point of a kernel of its own, or `attention`, the body that a
 * shared module's entry points call (`refs.bodyParams`).
 */
function kernelFunction(o: ComponentKernelOptions, refs: MemberRefs): string {
  const { qPos, kPos } = refs;
  const g = kernelGeometry(o);
  const R = range(g.rows), J = range(g.keys), Dd = range(g.dims4);
  // Register tiles are unrolled into scalars (s{r}_{j}, acc{r}_{d}): WGSL compilers leave
  // loop-indexed private arrays in local memory, which cost 20x on the H100.
  // Predicates and score modifiers that read the query head h or the batch b get them.
  const headBatch = allowedReadsHeadOrBatch(o.component);
  const staged = stagedCodes(o.component).length > 0;
  const grid = refs.grid;
  const keyLoop = o.prefetch
    ? prefetchedTileLoop(o, kPos, refs.taggedRuns ?? false, grid)
    : { prologue: "", loop: tileLoop(o, kPos, refs.taggedRuns ?? false, grid) };
  const queryTile = queryStaging(o, qPos, grid);
  const queryAt = grid.naturalQ && grid.complete ? (i: string) => `i32(${i})` : qPos;
  const each = (f: (r: number) => string) => R.map(f).join("\n");
  const eachRJ = (f: (r: number, j: number) => string) =>
    R.flatMap((r) => J.map((j) => f(r, j))).join("\n");
  const eachRD = (f: (r: number, d: number) => string) =>
    R.flatMap((r) => Dd.map((d) => f(r, d))).join("\n");
  const signature = refs.bodyParams === undefined
    ? `@compute @workgroup_size(${g.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {`
    : `// The kernel body every kernel's entry point runs (see those at the end).
fn attention(wg: vec3<u32>, lid: u32,${refs.bodyParams}
) {`;
  return `
${signature}
  ${loopBounds(o.unroll)}
${workgroupTile(refs)}
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;
  let kvBase = kvHead * KV_ROWS * D4;${
    readsHash(o.component)
      ? "\n  queryRow = bh;                     // whose hashBucket codes and order to read" +
        "\n  keyRow = kvHead;"
      : ""
  }${
    headBatch || o.score
      ? "\n  let head = i32(bh % HQ);           // h and b of the TypeScript predicates and scores" +
        "\n  let batch = i32(bh / HQ);"
      : ""
  }
  // Invocation = (row group, column): COLS consecutive invocations share ROWS query rows; for
  // scores a column owns keys col, col + COLS, ...; for O it owns vec4 dims col, col + COLS, ...
  let col = lid % COLS;
  let firstRow = (lid / COLS) * ROWS;

${queryTile.loads}${schedule(o, refs)}
${keyLoop.prologue}
${queryTile.stores}${
    each((r) => `  let q${r} = ${queryAt(`qTileIndex * TILE_Q + firstRow + ${r}u`)};`)
  }${staged ? "\n" + each((r) => `  let qCodes${r} = queryCodes(max(q${r}, 0));`) : ""}
${each((r) => `  var rowMax${r} = NO_SCORE;`)}
  // Row sums are this invocation's share; the shares are added over columns at the end.
${each((r) => `  var rowSum${r} = 0.0;`)}
${eachRD((r, d) => `  var acc${r}_${d} = vec4<f32>(0.0);`)}

${keyLoop.loop}

${tileMask(o, refs, g, grid)}
    let anyAllowed = ${R.flatMap((r) => J.map((j) => `m${r}_${j}`)).join(" || ")};
${
    o.uniform
      ? "    // Uniform weights (the ANNA estimator): every allowed key scores 0.\n" +
        eachRJ((r, j) => `    var s${r}_${j} = 0.0;`)
      : o.dtype === "f16"
      ? scoresF16(R, J, g.cols)
      : scoresF32(R, J, g.cols)
  }
${o.score ? scoreModifierLines(R, J) : ""}    // This column's share of each row's max.
${
    grid.complete || grid.padded
      ? onlyIf(
        grid.padded ? `isPartial || ${grid.padded}` : "isPartial",
        eachRJ((r, j) => `    s${r}_${j} = select(NO_SCORE, s${r}_${j}, m${r}_${j});`),
      )
      : eachRJ((r, j) => `    s${r}_${j} = select(NO_SCORE, s${r}_${j}, m${r}_${j});`)
  }
${
    each((r) =>
      `    rowShare[(firstRow + ${r}u) * COLS + col] = ${maxOf(J.map((j) => `s${r}_${j}`))};`
    )
  }
    workgroupBarrier();
    // Online softmax: rescale by the new row max, write P for the P·V product.
    var rowsLive = false;             // does any of this invocation's rows see this tile?
${each((r) => softmaxRow(r, J, Dd, g.cols, o.dtype))}
    workgroupBarrier();
${o.dtype === "f16" ? productF16(R, Dd, g.cols) : productF32(R, Dd, g.cols)}
  }

  // Each row's sum is spread over its COLS invocations: add the shares.
  workgroupBarrier();
${each((r) => `  rowShare[(firstRow + ${r}u) * COLS + col] = rowSum${r};`)}
${earlierLse(refs, R)}
  workgroupBarrier();
${each((r) => epilogue(o, refs, r, Dd, g.cols))}
}`;
}

/** What a kernel knows of the positions of its tiles (`gridOf`). */
export interface Grid {
  /** No tile holds padding (position -1): the masks test none, the loads clamp none. */
  complete: boolean;
  /**
   * Every layout is a permutation of [0, N) but N is not a multiple of a tile size: only the
   * last query tile or key tile holds padding, and this WGSL condition says a tile is one of them.
   */
  padded?: string;
  /** Queries (keys) in natural order in a complete or padded grid: positions are computed. */
  naturalQ: boolean;
  naturalK: boolean;
}

/**
 * The grid of a kernel's members. It is complete where every member's layouts are permutations
 * of [0, N) (identity or residue order, whatever the period), N is a multiple of both tile sizes,
 * and no member has a score modifier or hash codes. Then a FULL tile needs no mask at all (every
 * pair counts) and a PARTIAL one only its `allowed`. Measured on the H200 (interleaved A/B,
 * docs/BENCHMARKS.md, eleventh session): the band's FULL tiles stopped paying for its mask (f16
 * ring 4.5%, window(256) 4.4%, dense 1.6%), and positions by arithmetic in natural order gave
 * another 5-7% (f16 c4 ring, window and dense). Where N is not a multiple of a tile size, the
 * grid is `padded`: the kernel masks the last query and key tiles as if PARTIAL, and clamps its
 * loads instead of selecting them.
 * @param members the kernel's components with their options (several for a shared module)
 * @returns whether the grid is complete or padded (and which tiles hold the padding), and
 *   whether each side is in natural order
 */
export function gridOf(members: readonly ComponentKernelOptions[]): Grid {
  const isPermutation = (l: Component["qLayout"]) => l.kind === "identity" || l.kind === "residue";
  const permutation = members.every(({ component: c, score }) =>
    !score && stagedCodes(c).length === 0 && isPermutation(c.qLayout) && isPermutation(c.kLayout)
  );
  const n = members[0].shape.seqLen, { tileQ, tileK } = members[0].component.mask;
  const last = (tile: number) => (Math.ceil(n / tile) - 1) * tile;
  const edges = [
    ...(n % tileQ ? [`qTileIndex == ${last(tileQ) / tileQ}u`] : []),
    ...(n % tileK ? [`kTileStart == ${last(tileK)}u`] : []),
  ];
  const natural = (side: "qLayout" | "kLayout") =>
    permutation && members.every((x) => x.component[side].kind === "identity");
  return {
    complete: permutation && edges.length === 0,
    padded: permutation && edges.length ? edges.join(" || ") : undefined,
    naturalQ: natural("qLayout"),
    naturalK: natural("kLayout"),
  };
}

/**
 * The tile's mask `m{r}_{j}`, before the dot products: an invocation none of whose pairs is
 * allowed skips them, and a warp whose rows all miss this tile (a band's corner) skips the work.
 * Padding positions (-1) are masked too: on every tile in general, on the last tiles of a padded
 * grid, and nowhere in a complete grid, which has none.
 */
function tileMask(
  o: ComponentKernelOptions,
  refs: MemberRefs,
  g: ReturnType<typeof kernelGeometry>,
  grid: Grid,
): string {
  const R = range(g.rows), J = range(g.keys);
  const eachRJ = (f: (r: number, j: number) => string) =>
    R.flatMap((r) => J.map((j) => f(r, j))).join("\n");
  const hb = allowedReadsHeadOrBatch(o.component) ? ", head, batch" : "";
  const positions = (indent: string) =>
    J.map((j) => `${indent}let k${j} = kPosition[col + ${j * g.cols}u];`).join("\n");
  if (grid.complete) {
    const keys = grid.naturalK
      ? J.map((j) => `      let k${j} = i32(kTileStart + col + ${j * g.cols}u);`).join("\n")
      : positions("      ");
    return `    // A complete grid (no padding): FULL tiles allow every pair, PARTIAL ones ask \`allowed\`.
${eachRJ((r, j) => `    var m${r}_${j} = true;`)}
    if (isPartial) {
${keys}
${eachRJ((r, j) => `      m${r}_${j} = ${refs.allowed(`q${r}, k${j}${hb}`)};`)}
    }`;
  }
  if (grid.padded) {
    const kPos = refs.kPos;
    const keys = grid.naturalK
      ? J.map((j) => `      let k${j} = ${kPos(`kTileStart + col + ${j * g.cols}u`)};`).join("\n")
      : positions("      ");
    return `    // Padding only in the last tiles: FULL tiles elsewhere allow every pair.
${eachRJ((r, j) => `    var m${r}_${j} = true;`)}
    if (isPartial || ${grid.padded}) {
${keys}
${
      eachRJ((r, j) =>
        `      m${r}_${j} = q${r} >= 0 && k${j} >= 0 && (!isPartial || ${
          refs.allowed(`q${r}, k${j}${hb}`)
        });`
      )
    }
    }`;
  }
  const staged = stagedCodes(o.component).length > 0;
  const codes = staged
    ? "\n" + J.map((j) => `    let kc${j} = kCodeTile[col + ${j * g.cols}u];`).join("\n")
    : "";
  return `    // Mask first (PARTIAL tiles only): an invocation none of whose pairs is allowed skips its
    // dot products, and a warp whose rows all miss this tile (a band's corner) skips the work.
${positions("    ")}${codes}
${
    eachRJ((r, j) =>
      `    let m${r}_${j} = q${r} >= 0 && k${j} >= 0 && (!isPartial || ${
        refs.allowed(`q${r}, k${j}${hb}${staged ? `, qCodes${r}, kc${j}` : ""}`)
      });`
    )
  }`;
}

/** Which query tile (and, split-K, which key chunk) this workgroup computes. */
function workgroupTile(refs: MemberRefs): string {
  switch (refs.split) {
    case "none":
      return "  let qTileIndex = wg.x;";
    case "split":
      return `${refs.splitParams}  let scheduleRow = wg.x;              // chunk \`split\` of query tile \`qTileIndex\`
  let qTileIndex = wg.x / splits;
  let split = wg.x % splits;`;
    case "either":
      return `  // Split-K members (SPLIT) walk chunk \`split\` of query tile \`qTileIndex\`; others have one.
  let splits = select(1u, param(SPLIT_PARAMS), SPLIT); // key chunks per query tile
  let splitRows = param(SPLIT_PARAMS + 1u); // partial rows per chunk and head (SPLIT only)
  let scheduleRow = wg.x;
  let qTileIndex = wg.x / splits;
  let split = wg.x % splits;`;
  }
}

/** Merging kernels read what earlier components wrote to each row's LSE before the barrier. */
function earlierLse(refs: MemberRefs, R: number[]): string {
  const read = (r: number) => `lseOut[${refs.lseBase} + bh * N + u32(max(q${r}, 0))]`;
  if (refs.output === "write") return "";
  if (refs.output === "merge") return R.map((r) => `  let earlier${r} = ${read(r)};`).join("\n");
  return `${R.map((r) => `  var earlier${r} = 0.0;`).join("\n")}
  if (MERGE) {
${R.map((r) => `    earlier${r} = ${read(r)};`).join("\n")}
  }`;
}

/**
 * The query tile, pre-scaled, into workgroup memory. Where every invocation loads the same few
 * vec4s (at most MAX_QUERY_SLOTS), they are loaded into registers before the schedule is read
 * and stored after it: the query's trip to memory then overlaps the schedule's chain of
 * dependent reads, a fixed cost that weighs on workgroups visiting few key tiles (bands).
 * Otherwise one strided loop.
 */
function queryStaging(
  o: ComponentKernelOptions,
  qPos: Call,
  grid: Grid,
): { loads: string; stores: string } {
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
    qTile[r * QK_STRIDE + i % D4] = qIn[(bh * N + ${row}) * D4 + i % D4] * SCORE_SCALE;
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
    let src = (bh * N + u32(max(q, 0))) * D4 + i % D4;
    qTile[r * QK_STRIDE + i % D4] = select(vec4<${T}>(0.0), qIn[src] * SCORE_SCALE, q >= 0);
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
  let qLoad${l} = select(vec4<${T}>(0.0), qIn[(bh * N + u32(max(qAt${l}, 0))) * D4 + qIndex${l} % D4], qAt${l} >= 0);`
      ).join("\n")
    }
`;
  const stores = `  // Stage the query tile, pre-scaled, in workgroup memory.
${
    L.map((l) =>
      `  qTile[(qIndex${l} / D4) * QK_STRIDE + qIndex${l} % D4] = qLoad${l} * SCORE_SCALE;`
    ).join("\n")
  }
`;
  return { loads, stores };
}

/**
 * Query vec4s an invocation may hold in registers while the schedule is read. Measured on the
 * H200 (interleaved A/B, docs/BENCHMARKS.md): with 4 (float32 64x32x2) ring got 3.4% faster,
 * window(256) 2.1%, dense 0.7%; with 8 (float16 64x32x2c4) dense got 3.9% slower and the bands
 * gained nothing, so those keep the loop.
 */
const MAX_QUERY_SLOTS = 4;

/**
 * The row of Q (or K and V) that layout index `index` loads in a complete or padded grid: the
 * index itself in natural order, else its position; a padded grid clamps padding to a real row,
 * whose scores its mask discards. No select: nothing loaded is ever replaced by zeros.
 */
function sourceRow(grid: Grid, side: "q" | "k", pos: Call, index: string): string {
  const natural = side === "q" ? grid.naturalQ : grid.naturalK;
  if (natural) return grid.complete ? index : `min(${index}, N - 1u)`;
  return grid.complete ? `u32(${pos(index)})` : `u32(max(${pos(index)}, 0))`;
}

/**
 * Move to the next run when the current one is done (reads only uniform values). Tagged runs
 * also name their member, whose mask the run's PARTIAL tiles use (run_fusion.ts).
 */
function nextRun(indent: string, tagged: boolean): string {
  const length = tagged
    ? [
      `  let runWord = schedule[runsAt + ${RUN_WORDS}u * run + 1u]; // kvLength | member << ${TAG_SHIFT}`,
      `  runEnd = keyTile + (runWord & ${2 ** TAG_SHIFT - 1}u);`,
      `  runMember = MEMBER + select(0u, runWord >> ${TAG_SHIFT}u, FUSED);`,
    ]
    : [`  runEnd = keyTile + schedule[runsAt + ${RUN_WORDS}u * run + 1u];`];
  return [
    `if (keyTile == runEnd && run != lastRun) {`,
    `  let runHead = schedule[runsAt + ${RUN_WORDS}u * run]; // kvStart << 1 | partial`,
    `  keyTile = runHead >> 1u;`,
    `  runPartial = (runHead & 1u) == 1u;`,
    ...length,
    `  run++;`,
    `}`,
  ].map((line) => indent + line).join("\n");
}

/** Key tile loop that loads each K/V tile from global memory between two barriers. */
function tileLoop(
  o: ComponentKernelOptions,
  kPos: Call,
  tagged: boolean,
  grid: Grid,
): string {
  const load = grid.naturalK
    ? `      let src = kvBase + (${
      sourceRow(grid, "k", kPos, "kTileStart + i / D4")
    }) * D4 + i % D4;
      kpTile[(i / D4) * QK_STRIDE + i % D4] = kIn[src];
      vTile[i] = vIn[src];`
    : grid.complete || grid.padded
    ? `      let j = i / D4;
      let k = ${kPos("kTileStart + j")};
      if (i % D4 == 0u) { kPosition[j] = k; }
      let src = kvBase + ${grid.complete ? "u32(k)" : "u32(max(k, 0))"} * D4 + i % D4;
      kpTile[j * QK_STRIDE + i % D4] = kIn[src];
      vTile[i] = vIn[src];`
    : `      let j = i / D4;
      let k = ${kPos("kTileStart + j")};
      if (i % D4 == 0u) { kPosition[j] = k;${
      stagedCodes(o.component).length ? " kCodeTile[j] = keyCodes(max(k, 0));" : ""
    } }
      let src = kvBase + u32(max(k, 0)) * D4 + i % D4;
      kpTile[j * QK_STRIDE + i % D4] = select(vec4<${o.dtype}>(0.0), kIn[src], k >= 0);
      vTile[i] = select(vec4<${o.dtype}>(0.0), vIn[src], k >= 0);`;
  return `  loop {
${nextRun("    ", tagged)}
    if (keyTile == runEnd) { break; }
    let kTileStart = keyTile * TILE_K;
    let isPartial = runPartial;${tagged ? "\n    let tileMember = runMember;" : ""}
    keyTile++;

    workgroupBarrier();               // every read of the previous tile is done
    for (var i = lid; i < TILE_K * D4; i += THREADS) {
${load}
    }
    workgroupBarrier();
`;
}

/**
 * Key tile loop with the next tile's K and V loaded into registers while this one is computed:
 * the global loads' latency hides behind the tile's arithmetic instead of sitting between two
 * barriers, which matters most where a workgroup visits few key tiles (bands, rings).
 */
function prefetchedTileLoop(
  o: ComponentKernelOptions,
  kPos: Call,
  tagged: boolean,
  grid: Grid,
): { prologue: string; loop: string } {
  const g = kernelGeometry(o);
  const total = o.component.mask.tileK * o.shape.headDim / 4;
  const L = range(Math.ceil(total / g.threads));
  const even = total % g.threads === 0;
  const codes = stagedCodes(o.component).length > 0;
  const T = o.dtype;
  // Slot l of an invocation is element `lid + l * THREADS` of the tile (key row i / D4).
  const slot = (l: number, indent: string, lines: string[]) => {
    const i = `lid + ${l * g.threads}u`;
    const body = [`let i = ${i};`, ...lines].map((line) => `${indent}  ${line}`).join("\n");
    return `${indent}${even ? "" : "if (" + i + " < TILE_K * D4) "}{\n${body}\n${indent}}`;
  };
  const fetch = (indent: string) =>
    L.map((l) =>
      slot(
        l,
        indent,
        grid.naturalK
          ? [
            `let src = kvBase + (${
              sourceRow(grid, "k", kPos, "nextStart + i / D4")
            }) * D4 + i % D4;`,
            `nextK${l} = kIn[src];`,
            `nextV${l} = vIn[src];`,
          ]
          : grid.complete || grid.padded
          ? [
            `let k = ${kPos("nextStart + i / D4")};`,
            `let src = kvBase + ${grid.complete ? "u32(k)" : "u32(max(k, 0))"} * D4 + i % D4;`,
            `nextK${l} = kIn[src];`,
            `nextV${l} = vIn[src];`,
            `nextPos${l} = k;`,
          ]
          : [
            `let k = ${kPos("nextStart + i / D4")};`,
            `let src = kvBase + u32(max(k, 0)) * D4 + i % D4;`,
            `nextK${l} = select(vec4<${T}>(0.0), kIn[src], k >= 0);`,
            `nextV${l} = select(vec4<${T}>(0.0), vIn[src], k >= 0);`,
            `nextPos${l} = k;`,
            ...(codes ? [`if (i % D4 == 0u) { nextCodes${l} = keyCodes(max(k, 0)); }`] : []),
          ],
      )
    ).join("\n");
  const store = L.map((l) =>
    slot(l, "    ", [
      `let j = i / D4;`,
      ...(grid.naturalK ? [] : [
        `if (i % D4 == 0u) { kPosition[j] = nextPos${l};${
          codes ? ` kCodeTile[j] = nextCodes${l};` : ""
        } }`,
      ]),
      `kpTile[j * QK_STRIDE + i % D4] = nextK${l};`,
      `vTile[i] = nextV${l};`,
    ])
  ).join("\n");
  const registers = L.map((l) =>
    `  var nextK${l} = vec4<${T}>(0.0);\n  var nextV${l} = vec4<${T}>(0.0);` +
    (grid.naturalK ? "" : `\n  var nextPos${l} = -1;`) +
    (codes ? `\n  var nextCodes${l} = vec4<u32>(0u);` : "")
  ).join("\n");
  const advance = (indent: string) =>
    [
      `hasNext = keyTile != runEnd;`,
      `nextStart = keyTile * TILE_K;`,
      `nextPartial = runPartial;`,
      ...(tagged ? [`nextMember = runMember;`] : []),
      `if (hasNext) {`,
    ].map((line) => indent + line).join("\n") + `\n${fetch(indent + "  ")}\n${indent}}`;
  const prologue =
    `  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
${registers}
${nextRun("  ", tagged)}
  var hasNext = false;
  var nextStart = 0u;
  var nextPartial = false;${tagged ? "\n  var nextMember = MEMBER;" : ""}
${advance("  ")}`;
  const loop = `  loop {
    if (!hasNext) { break; }
    let isPartial = nextPartial;${tagged ? "\n    let tileMember = nextMember;" : ""}${
    grid.naturalK || grid.padded ? "\n    let kTileStart = nextStart;" : ""
  }
    workgroupBarrier();               // every read of the previous tile is done
${store}
    workgroupBarrier();
    keyTile++;
${nextRun("    ", tagged)}
${advance("    ")}
`;
  return { prologue, loop };
}

/** Where the key tiles come from: the BlockMask's runs, or a bucket range. */
function schedule(o: ComponentKernelOptions, refs: MemberRefs): string {
  return o.component.kLayout.kind === "sorted" ? bucketRange(o) : scheduleRuns(refs);
}

/** The static schedule: this query tile's runs from the BlockMask. */
function scheduleRuns(refs: MemberRefs): string {
  const row = refs.split === "none" ? "qTileIndex" : "scheduleRow";
  return `  // This query tile's runs of consecutive key tiles of one kind, walked one key tile per step.
  // The slot holds where this component's row pointers and runs start (schedule_buffer.ts).
  let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * ${refs.slot};
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  var run = schedule[rowsAt + ${row}];
  let lastRun = schedule[rowsAt + ${row} + 1u];
  var keyTile = 0u;
  var runEnd = 0u;
  var runPartial = false;${
    refs.taggedRuns
      ? "\n  var runMember = MEMBER;        // whose mask this run's PARTIAL tiles use"
      : ""
  }`;
}

/**
 * The data-dependent schedule of a bucket-ordered component: the tile's queries, sorted by
 * bucket, span buckets \`first..last\`; their keys are bucket order indices
 * \`[starts[first], starts[last + 1])\`, walked as one run of PARTIAL tiles.
 */
function bucketRange(o: ComponentKernelOptions): string {
  const l = o.component.kLayout;
  assert(l.kind === "sorted" && o.hash, "bucketRange of a static mask");
  const set = codeSetOf(o.hash, l);
  const n = o.shape.seqLen;
  const rows = set.rowsQ + set.rowsK;
  const codes = set.codes + l.round * rows * n;
  const order = set.order + l.round * rows * n;
  const starts = set.starts + (l.round * rows + set.rowsQ) * (set.buckets + 1);
  // Indexed by bh and kvHead, not the private queryRow/keyRow: the loop's barriers need
  // values the uniformity analysis can see are the same across the workgroup.
  return `  // Bucket order (${layoutLabel(l)}): the tile's queries span buckets
  // first..last, whose keys are one range of the key order; every tile of it is PARTIAL.
  let orderAt = ${order}u + bh * N;
  let firstQuery = hash[orderAt + qTileIndex * TILE_Q];
  let lastQuery = hash[orderAt + min(N, qTileIndex * TILE_Q + TILE_Q) - 1u];
  let firstBucket = hash[${codes}u + bh * N + firstQuery];
  let lastBucket = hash[${codes}u + bh * N + lastQuery];
  let startsAt = ${starts}u + kvHead * ${set.buckets + 1}u;
  var keyTile = hash[startsAt + firstBucket] / TILE_K;
  var runEnd = (hash[startsAt + lastBucket + 1u] + TILE_K - 1u) / TILE_K;
  var runPartial = true;
  var run = 0u;                       // one run: the loop ends with it
  let lastRun = 0u;
  let runsAt = 0u;`;
}

/**
 * The hashBucket rounds whose codes a kernel stages: every round its predicate reads, when
 * they fit a vec4<u32> (else `allowed` reads them from the hash buffer pair by pair).
 */
function stagedCodes(c: Component): string[] {
  const refs = readsHash(c) ? hashRoundsRead(c) : [];
  return refs.length <= 4 ? refs : [];
}

/**
 * Staged codes: \`queryCodes(q)\` once per row, \`keyCodes(k)\` into \`kCodeTile\` with each
 * key tile, so the mask of a PARTIAL tile compares registers instead of loading two codes per
 * pair and round.
 */
function declareCodeStaging(m: ShaderModule, o: ComponentKernelOptions): void {
  const refs = stagedCodes(o.component);
  if (refs.length === 0) return;
  const n = o.shape.seqLen;
  const word = (side: "q" | "k", ref: string) => {
    const atom = [o.component.atoms, ...o.component.exclusions].flat()
      .find((a) => a.kind === "hashRound" && codeRef(a) === ref)!;
    assert(atom.kind === "hashRound", "staged code of no round");
    const set = codeSetOf(o.hash!, atom);
    const first = set.codes +
      (atom.round * (set.rowsQ + set.rowsK) + (side === "k" ? set.rowsQ : 0)) * n;
    return `hash[${first}u + ${side === "q" ? "queryRow" : "keyRow"} * N + u32(p)]`;
  };
  const codes = (side: "q" | "k") =>
    [0, 1, 2, 3].map((i) => i < refs.length ? word(side, refs[i]) : "0u").join(",\n    ");
  m.declare(
    "kCodeTile",
    `var<workgroup> kCodeTile: array<vec4<u32>, ${o.component.mask.tileK}>; // staged key codes`,
  );
  m.declare(
    "stagedCodes",
    `
// Codes of ${refs.join("; ")} (unused lanes 0), at a position >= 0.
fn queryCodes(p: i32) -> vec4<u32> {
  return vec4<u32>(
    ${codes("q")});
}
fn keyCodes(p: i32) -> vec4<u32> {
  return vec4<u32>(
    ${codes("k")});
}`,
  );
}

/** Whether a component's kernel binds the hash buffer (its atoms or exclusions hash). */
export function readsHash(c: Component): boolean {
  return [c.atoms, ...c.exclusions].some((atoms) => atoms.some((a) => a.kind === "hashRound"));
}

/**
 * Float16 products are summed in float16 for at most this many vec4 steps (64 terms per score
 * or output component, 16 per lane), then added to a float32 sum: packed half arithmetic
 * doubles the CUDA-core rate, and the short chunks bound the rounding error.
 */
const F16_CHUNK = 16;

type Lines = (f: (r: number, x: number) => string) => string;

function grid(rows: number[], xs: number[]): Lines {
  return (f) => rows.flatMap((r) => xs.map((x) => f(r, x))).join("\n");
}

/** Scores in float32: a ROWS x KEYS register tile, vec4 dot products over the head dim. */
function scoresF32(R: number[], J: number[], cols: number): string {
  const rj = grid(R, J);
  return `    // Scores: a ROWS x KEYS register tile, vec4 dot products over the head dim.
${rj((r, j) => `    var s${r}_${j} = 0.0;`)}
${
    onlyIf(
      "anyAllowed",
      `    for (var d = 0u; d < d4; d++) {
${R.map((r) => `      let qv${r} = qTile[(firstRow + ${r}u) * QK_STRIDE + d];`).join("\n")}
${J.map((j) => `      let kv${j} = kpTile[(col + ${j * cols}u) * QK_STRIDE + d];`).join("\n")}
${rj((r, j) => `      s${r}_${j} += dot(qv${r}, kv${j});`)}
    }`,
    )
  }`;
}

/**
 * Scores from float16: lane-wise half products accumulate in vec4<f16> over a chunk of the head
 * dim, then the four lanes are added into the float32 score.
 */
function scoresF16(R: number[], J: number[], cols: number): string {
  const rj = grid(R, J);
  return `    // Scores: a ROWS x KEYS register tile; half products per chunk, float32 across chunks.
${rj((r, j) => `    var s${r}_${j} = 0.0;`)}
${
    onlyIf(
      "anyAllowed",
      `    for (var d0 = 0u; d0 < d4; d0 += ${F16_CHUNK}u) {
${rj((r, j) => `      var h${r}_${j} = vec4<f16>(0.0);`)}
      for (var d = d0; d < min(d0 + ${F16_CHUNK}u, d4); d++) {
${R.map((r) => `        let qv${r} = qTile[(firstRow + ${r}u) * QK_STRIDE + d];`).join("\n")}
${J.map((j) => `        let kv${j} = kpTile[(col + ${j * cols}u) * QK_STRIDE + d];`).join("\n")}
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

/** O += P V in float32: a ROWS x DIMS4 register tile of vec4s. */
function productF32(R: number[], Dd: number[], cols: number): string {
  const rd = grid(R, Dd);
  return `    // O += P V: a ROWS x DIMS4 register tile of vec4s (rows with no allowed key add nothing).
${
    onlyIf(
      "rowsLive",
      `    for (var j4 = 0u; j4 < tileK / 4u; j4++) {
${R.map((r) => `      let p${r} = kpTile[(firstRow + ${r}u) * P_STRIDE4 + j4];`).join("\n")}
${
        [0, 1, 2, 3].flatMap((c) =>
          Dd.map((d) =>
            `      let v${c}_${d} = vTile[(j4 * 4u + ${c}u) * D4 + col + ${d * cols}u];`
          )
        ).join("\n")
      }
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
 * keys, then join the float32 accumulator (already rescaled for this tile's row max).
 */
function productF16(R: number[], Dd: number[], cols: number): string {
  const rd = grid(R, Dd);
  return `    // O += P V: a ROWS x DIMS4 register tile; half products per chunk of keys, float32 across.
    // Rows with no allowed key in this tile add nothing.
${
    onlyIf(
      "rowsLive",
      `    for (var c0 = 0u; c0 < tileK / 4u; c0 += ${F16_CHUNK}u) {
${rd((r, d) => `      var pv${r}_${d} = vec4<f16>(0.0);`)}
      for (var j4 = c0; j4 < min(c0 + ${F16_CHUNK}u, tileK / 4u); j4++) {
${R.map((r) => `        let p${r} = kpTile[(firstRow + ${r}u) * P_STRIDE4 + j4];`).join("\n")}
${
        [0, 1, 2, 3].flatMap((c) =>
          Dd.map((d) =>
            `        let v${c}_${d} = vTile[(j4 * 4u + ${c}u) * D4 + col + ${d * cols}u];`
          )
        ).join("\n")
      }
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
function scoreModifierLines(R: number[], J: number[]): string {
  const lines = R.flatMap((r) =>
    J.map((j) =>
      `    s${r}_${j} = scoreModifier(s${r}_${j} * LN2, max(q${r}, 0), max(k${j}, 0), head, batch) * LOG2E;`
    )
  );
  return onlyIf("anyAllowed", lines.join("\n")) + "\n";
}

/** `body` (lines indented for the tile loop) under `if (cond)`, indented one more level. */
function onlyIf(cond: string, body: string): string {
  const inner = body.split("\n").map((line) => line ? `  ${line}` : line).join("\n");
  return `    if (${cond}) {\n${inner}\n    }`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function maxOf(terms: string[]): string {
  return terms.length === 1 ? terms[0] : `max(${terms[0]}, ${maxOf(terms.slice(1))})`;
}

function softmaxRow(
  r: number,
  J: number[],
  Dd: number[],
  cols: number,
  dtype: "f32" | "f16",
): string {
  const store = (p: string) => dtype === "f16" ? `f16(${p})` : p; // P has the tiles' type
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
${
    J.map((j) =>
      `      kpTile[(firstRow + ${r}u) * P_STRIDE4 + (col + ${j * cols}u) / 4u][(col + ${
        j * cols
      }u) % 4u] = ${store(`p${j}`)};`
    ).join(
      "\n",
    )
  }
    }`;
}

/** Row r's output: normalise once; write, or merge exactly with earlier components by LSE. */
function epilogue(
  o: ComponentKernelOptions,
  refs: MemberRefs,
  r: number,
  Dd: number[],
  cols: number,
): string {
  const at = (d: number) => `outBase + col + ${d * cols}u`;
  // A split-K chunk writes its partial row, normalised by its own sum, to the split buffers:
  // the combine pass weighs the chunks. Otherwise the row is the query's own.
  const splitRow = `row = (split * BH + bh) * splitRows + qTileIndex * TILE_Q + firstRow + ${r}u;`;
  const ownRow = `row = ${refs.lseBase} + bh * N + u32(q${r});`;
  const ownOut = `outBase = ${refs.oBase} + (bh * N + u32(q${r})) * D4;`;
  const rowAt = refs.split === "split"
    ? `let ${splitRow}
    let outBase = row * D4;`
    : refs.split === "none"
    ? `let ${ownRow}
    let ${ownOut}`
    : `var ${ownRow}
    var ${ownOut}
    if (SPLIT) {                      // a chunk's partial row, for the combine pass
      ${splitRow}
      outBase = row * D4;
    }`;
  const head = `  if (q${r} >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + ${r}u) * COLS + c]; }
    ${rowAt}`;
  const out = o.outputF16 ? "f16" : "f32";
  const cast = (x: string) => o.outputF16 ? `vec4<f16>(${x})` : x;
  const write = (indent: string) =>
    `${indent}if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
${indent}  if (col == 0u) { lseOut[row] = negativeInfinity(); }
${Dd.map((d) => `${indent}  oOut[${at(d)}] = vec4<${out}>(0.0);`).join("\n")}
${indent}} else {
${indent}  if (col == 0u) { lseOut[row] = (rowMax${r} + log2(total)) * LN2; }
${Dd.map((d) => `${indent}  oOut[${at(d)}] = ${cast(`acc${r}_${d} / total`)};`).join("\n")}
${indent}}`;
  // lse = logaddexp(earlier, own); O = e^(earlier - lse) O_earlier + e^(own - lse) O_own.
  const merge = (indent: string) =>
    `${indent}if (total > 0.0) {                // else keep what earlier components wrote
${indent}  let lse = (rowMax${r} + log2(total)) * LN2;
${indent}  let merged = max(earlier${r}, lse) + log(1.0 + exp(-abs(earlier${r} - lse)));
${indent}  let wEarlier = exp(earlier${r} - merged); // 0 when earlier components allowed nothing (-inf)
${indent}  let wOwn = exp(lse - merged) / total;
${
      Dd.map((d) => `${indent}  oOut[${at(d)}] = wEarlier * oOut[${at(d)}] + wOwn * acc${r}_${d};`)
        .join("\n")
    }
${indent}  if (col == 0u) { lseOut[row] = merged; }
${indent}}`;
  const body = refs.output === "write"
    ? write("    ")
    : refs.output === "merge"
    ? merge("    ")
    : `    if (MERGE) {\n${merge("      ")}\n    } else {\n${write("      ")}\n    }`;
  return `${head}\n${body}\n  }`;
}

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
    dims4: o.shape.headDim / 4 / cols,
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
 * Inner loop bounds. Constants let a GPU compiler unroll; on software adapters (llvmpipe)
 * unrolling made LLVM take 30-60 s per kernel, so there they come from the schedule header.
 */
function loopBounds(unroll: boolean): string {
  return unroll
    ? "let d4 = D4;\n  let tileK = TILE_K;"
    : "let d4 = schedule[0];            // == D4, opaque to the compiler: no unrolling\n  let tileK = schedule[1];         // == TILE_K";
}
