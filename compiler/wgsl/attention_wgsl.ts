/**
 * The fused attention kernel of one component (FlashAttention-2's forward pass), in float32, or
 * float16 with float32 running sums.
 *
 * One workgroup per (query tile, batch·head); each invocation owns a few query rows and a share
 * of their keys and output dims, in registers. For each key tile of its BlockMask row the
 * workgroup stages K and V in workgroup memory (the next tile already in registers where it
 * fits), computes the scores (query rows from a staged query tile, or from global memory with
 * `globalQuery`), rescales each row's running sum and accumulator by the tile's row
 * max (online softmax, exp2 with `scale * log2(e)` folded into the query), and adds P·V. O is
 * normalised once at the end, then written or merged by log-sum-exp into what earlier
 * components of the branch wrote. Several components of one pattern can share one module
 * (`sharedKernel`): one kernel body, each member's layouts and mask side by side, and an entry
 * point per kernel passing its settings to the body.
 *
 * This file assembles the kernel; its parts are `kernel_module_wgsl.ts` (declarations),
 * `query_tile_wgsl.ts`, `key_loop_wgsl.ts`, `tile_mask_wgsl.ts` (padding and masks),
 * `tile_math_wgsl.ts` (scores, softmax, P·V), `edge_pair_wgsl.ts` (a band's corner tiles as one
 * step), `epilogue_wgsl.ts`, `code_staging_wgsl.ts` (hashBucket codes) and `kernel_refs.ts`
 * (what they share).
 * @module
 */
import { assert } from "../../core/errors.ts";
import type { ScoreModifier } from "../../dsl/schema.ts";
import type { AuxData, ParamBlock } from "../aux_data.ts";
import type { EdgePairForm } from "../edge_pairs.ts";
import type { HashLayout } from "../hash_layout.ts";
import { layoutLabel } from "../layout.ts";
import type { Component } from "../plan.ts";
import type { AttentionShape } from "../../core/shape.ts";
import type { MatrixConfig } from "../tiles.ts";
import type { QueryRange } from "../query_tiles.ts";
import { declareCodeStaging } from "./code_staging_wgsl.ts";
import { earlierLse, epilogue } from "./epilogue_wgsl.ts";
import { declareScoreModifier } from "./expression_wgsl.ts";
import {
  call,
  kernelGeometry,
  type MemberRefs,
  onlyIf,
  queryRowOf,
  range,
  valueWidth,
} from "./kernel_refs.ts";
import {
  allowedLabel,
  declareDispatch,
  declareMember,
  kernelModule,
} from "./kernel_module_wgsl.ts";
import { bucketOffsets, prefetchedTileLoop, schedule, tileLoop } from "./key_loop_wgsl.ts";
import { declareEdgePair, edgePairStep } from "./edge_pair_wgsl.ts";
import { ParamReader } from "./params_wgsl.ts";
import type { PagedRows } from "./kv_row_wgsl.ts";
import { SEQUENCE_N } from "./sequence_wgsl.ts";
import { queryPart, queryStaging } from "./query_tile_wgsl.ts";
import { f32, type ShaderModule } from "./shader_module.ts";
import { gridOf, maskedTiles, tileMask } from "./tile_mask_wgsl.ts";
import {
  MATRIX_BUILTINS,
  matrixProduct,
  matrixQueryLoads,
  matrixResults,
  matrixRowMaxima,
  matrixScores,
} from "./matrix_math_wgsl.ts";
import {
  maxOf,
  productF16,
  productF32,
  queryFromMemory,
  queryFromTile,
  scoreModifierLines,
  scoresF16,
  scoresF32,
  softmaxRow,
} from "./tile_math_wgsl.ts";
import { allowedReadsHeadOrBatch, readsHash, stagedCodes } from "../component_reads.ts";

/** Where a component kernel finds its schedule and writes its result. */
export interface ComponentKernelOptions {
  component: Component;
  shape: AttentionShape;
  /** N: the key positions the plan is over (the query rows are `queries` of them, where given). */
  n: number;
  /**
   * Where the call's queries are some of the N positions (query_tiles.ts): Nq rows from
   * position `offset`, read and written at `position - offset`; other positions are padding.
   */
  queries?: QueryRange;
  /** With `queries`: the query tiles this kernel runs, tile `queryTiles[x]` at workgroup x. */
  queryTiles?: readonly number[];
  /**
   * The rows are packed sequences (sequence_wgsl.ts): positions are rows, each query row's
   * sequence is read from the `sequences` buffer, and the mask and score modifier see
   * positions within it and its key count.
   */
  packed?: boolean;
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
  /** Where the modifier's learnable constants start in the `learned` buffer, when it has any. */
  learned?: ReadonlyMap<string, number>;
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
  /**
   * Read each query row from global memory at every key tile (through the cache) instead of
   * staging the query tile in workgroup memory: less workgroup memory and no staging before
   * the key loop, for more reads per tile (compile.ts decides).
   */
  globalQuery?: boolean;
  /**
   * Walk an edge pair (edge_pairs.ts) before the key loop where the schedule row starts with
   * one: two key tiles each seen by half of the rows, as one step, held wide or narrow
   * (edge_pair_wgsl.ts). Needs a complete grid in natural order and the prefetched loop.
   */
  edgePairs?: EdgePairForm;
  /** Invocations per workgroup and query rows per invocation. */
  threads: number;
  rowsPerThread: number;
  /**
   * QKᵀ and P·V on subgroup matrices of this shape (matrix_math_wgsl.ts); the softmax keeps
   * the invocations' split. Needs a staged query tile and no edge pairs.
   */
  matrix?: MatrixConfig;
  /** How the device's WGSL spells a matrix load's majorness (tiles.ts, DeviceLimits). */
  matrixMajorness?: "template" | "argument";
  /** The parts the query tile is staged in on the matrix path (tiles.ts, KernelShape). */
  queryParts?: number;
  /** Subgroups per band of query rows on the matrix path (tiles.ts, KernelShape). */
  bandSplit?: number;
  /**
   * K and V in pages, every row read through the block table (`kvRow`, kv_row_wgsl.ts); absent
   * where they are contiguous, and for landmark keys, which the pooling pass writes contiguous.
   */
  paged?: PagedRows;
  label: string;
}

const LOG2E = Math.LOG2E;
const V4 = "vec4<u32>"; // a row's or key's staged hashBucket codes

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
  if (o.edgePairs) declareEdgePair(m, o.edgePairs);
  if (o.score) {
    declareScoreModifier(m, o.score, o.packed ? SEQUENCE_N : o.n, o.learned);
    if (o.learned) {
      // After the hash buffer where there is one (plan_kernels.ts binds in this order).
      m.declare(
        "learnedBinding",
        `
@group(0) @binding(${
          readsHash(c) ? 8 : 7
        }) var<storage, read> learned: array<f32>; // learnable constants`,
      );
    }
    m.declare(
      "LOG2E",
      `const LOG2E = ${f32(LOG2E)}; // back to the exp2 domain after the modifier`,
    );
  }
  // Split-K: the chunk count and the partial rows are numbers, read at run time like the rest.
  const splitParams = o.split ? readSplitParams(m, params, o.split).lines : "";
  // The query tiles it runs (queries that are some of the positions): a list in aux.
  const tileList = o.queryTiles ? readQueryTiles(m, params, o.queryTiles) : undefined;
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
    ...(tileList ? { queryTiles: { lines: tileList.lines, at: tileList.name } } : {}),
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
 * (and hashBucket code staging) are declared side by side, the kernel body is one function,
 * `attention`, and each kernel has an entry point that calls it with its settings (`MEMBER`,
 * `SCHEDULE_SLOT`, a hashBucket round's offsets `ORDER_AT`, whether it walks edge pairs
 * `PAIRS`, ...) as constant arguments, which the driver inlines and folds to the
 * single-component code. WGSL's front end in wgpu (parse and validation, about 17 ms for a
 * float16 kernel on the H200 host) and, with no `override` in the module, its SPIR-V
 * translation then run once per pattern instead of once per kernel. All members read one
 * parameter block, so their slots and names never collide.
 * @param kernels the kernels' options, in pass order (at least two members in all)
 * @param pairs the edge-pair form the module holds (`modulePairForm`), where a kernel walks pairs
 * @returns the module text and each kernel's entry point
 */
export function sharedKernel(
  kernels: readonly ComponentKernelOptions[],
  pairs?: EdgePairForm,
): SharedKernel {
  // A fused kernel's members are consecutive: its runs name them relative to its MEMBER.
  const members = kernels.flatMap((k) => [
    { kernel: k, options: k },
    ...(k.fused ?? []).map((component) => ({ kernel: k, options: { ...k, component } })),
  ]);
  assert(members.length >= 2, "a shared kernel of fewer than two members");
  const firstMember = kernels.map((k) => members.findIndex((x) => x.kernel === k));
  // Edge pairs are a setting (PAIRS) where only some kernels walk them, in the module's form.
  const o = { ...kernels[0], edgePairs: pairs };
  assert(
    kernels.every((k) => k.paged?.binding === o.paged?.binding),
    "the kernels of a shared module bind the block table alike",
  );
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
  if (o.edgePairs) declareEdgePair(m, o.edgePairs);
  // hashBucket members (kernelGroups groups them only with each other): each member's code
  // staging here, and below each bucket-ordered member's round in the hash buffer.
  const staging = members.map((x, i) => declareCodeStaging(m, x.options, String(i)));
  const staged = staging.every((x) => x !== undefined);
  assert(staged || staging.every((x) => x === undefined), "members stage codes alike");
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
  if (pairs && kernels.some((x) => !x.edgePairs)) {
    settings.push({
      name: "PAIRS",
      type: "bool",
      note: "its schedule may start a row with an edge pair (edge_pairs.ts)",
      values: kernels.map((x) => Number(x.edgePairs !== undefined)),
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
  // Queries that are some of the positions: each kernel's list of query tiles, one slot each.
  const tileSlots = kernels.map((x) =>
    x.queryTiles ? readQueryTiles(m, params, x.queryTiles).slot : undefined
  );
  const queryTiles = tileSlots[0] === undefined ? undefined : {
    lines: "",
    at: `param(${
      base("QUERY_TILES", tileSlots.map((x) => x!), "slot of its query tile list's aux offset")
    })`,
  };
  const oBase = base("O_BASE", kernels.map((x) => x.oBase), "its branch's first O element");
  const lseBase = base("LSE_BASE", kernels.map((x) => x.lseBase), "its branch's first LSE");
  const sorted = o.component.kLayout.kind === "sorted";
  const at = sorted ? kernels.map((x) => bucketOffsets(x)) : [];
  const bucketAt = sorted
    ? {
      order: base("ORDER_AT", at.map((x) => x.order), "its round's query order in hash"),
      codes: base("CODES_AT", at.map((x) => x.codes), "its round's query codes in hash"),
      starts: base("STARTS_AT", at.map((x) => x.starts), "its round's key bucket starts"),
    }
    : undefined;
  const signature = [
    "q",
    "k",
    ...o.packed ? [SEQUENCE_N] : [],
    ...allowedReadsHeadOrBatch(o.component) ? ["h", "b"] : [],
    ...staged ? ["qc", "kc"] : [],
  ];
  const codeCalls = staged
    ? {
      queryCodes: declareDispatch(m, "queryCodes", staging.map((x) => x!.queryCodes), ["p"], V4),
      keyCodes: declareDispatch(m, "keyCodes", staging.map((x) => x!.keyCodes), ["p"], V4),
    }
    : {};
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
    "@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32" +
    (o.matrix ? `, ${MATRIX_BUILTINS}` : "");
  const wrappers = entryPoints.map((name, i) => {
    const args = settings.map((v) => literal(v.type, v.values[i])).join(", ");
    return `
@compute @workgroup_size(${kernelGeometry(o).threads})
fn ${name}(${builtins}) {
  attention(wg, lid, ${o.matrix ? "sg, sgi, " : ""}${args});
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
    ...(queryTiles ? { queryTiles } : {}),
    bodyParams: settings.map((v) => `\n  ${v.name}: ${v.type}, // ${v.note}`).join(""),
    taggedRuns: anyFused,
    pairsSetting: settings.some((v) => v.name === "PAIRS"),
    grid: gridOf(members.map((x) => x.options)),
    ...codeCalls,
    bucketAt,
  });
  const entries = `
// One entry point per kernel: the body with that kernel's settings as constant arguments
// (${settings.map((v) => v.name).join(", ")}), which the driver inlines and folds.${
    wrappers.join("\n")
  }`;
  return { wgsl: m.render(body + "\n" + entries), entryPoints };
}

/**
 * The query tiles a kernel runs, where the call's queries are some of the positions: the aux
 * offset of their list, one slot of the parameter block.
 * @returns the `let` line reading it, its name, and its slot
 */
function readQueryTiles(
  m: ShaderModule,
  params: ParamBlock,
  tiles: readonly number[],
): { lines: string; name: string; slot: number } {
  const reader = new ParamReader(m, params);
  const slot = params.size;
  const name = reader.dataOffset(
    "queryTiles",
    params.aux.tileList(tiles),
    `aux offset of the ${tiles.length} query tile(s) that hold the call's queries`,
  );
  return { lines: reader.lines.join("\n") + "\n", name, slot };
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
  const keyCodes = refs.keyCodes ?? call("keyCodes");
  const queryCodes = refs.queryCodes ?? call("queryCodes");
  const keyLoop = o.prefetch
    ? prefetchedTileLoop(o, kPos, refs.taggedRuns ?? false, grid, keyCodes)
    : { prologue: "", loop: tileLoop(o, kPos, refs.taggedRuns ?? false, grid, keyCodes) };
  const queryTile = queryStaging(o, qPos, grid);
  const query = o.globalQuery ? queryFromMemory : queryFromTile;
  assert(!o.edgePairs || o.prefetch, "edge pairs come with the prefetched key loop");
  const pair = o.edgePairs ? edgePairStep(o, refs, query) : undefined;
  const queryAt = grid.naturalQ && grid.complete ? (i: string) => `i32(${i})` : qPos;
  const each = (f: (r: number) => string) => R.map(f).join("\n");
  const eachRJ = (f: (r: number, j: number) => string) =>
    R.flatMap((r) => J.map((j) => f(r, j))).join("\n");
  const eachRD = (f: (r: number, d: number) => string) =>
    R.flatMap((r) => Dd.map((d) => f(r, d))).join("\n");
  const matrix = o.matrix !== undefined;
  const sg = matrix ? `, ${MATRIX_BUILTINS}` : "";
  const signature = refs.bodyParams === undefined
    ? `@compute @workgroup_size(${g.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32${sg}) {`
    : `// The kernel body every kernel's entry point runs (see those at the end).
fn attention(wg: vec3<u32>, lid: u32,${matrix ? " sg: u32, sgi: u32," : ""}${refs.bodyParams}
) {`;
  return `
${signature}
  ${loopBounds(o.unroll)}
${workgroupTile(refs)}
  let bh = wg.y;                      // batch * HQ + query head
  let kvHead = (bh / HQ) * HKV + (bh % HQ) / GROUP;${
    o.paged ? "" : "\n  let kvBase = kvHead * KV_ROWS * D4;"
  }${
    valueWidth(o) === "DV4" && !o.paged
      ? "\n  let vBase = kvHead * KV_ROWS * DV4;  // V's rows are DV4 vec4s"
      : ""
  }${
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
  // scores a column owns keys col, col + COLS, ...; for O it owns vec4 dims col, col + COLS, ...${
    matrix
      ? `
  // Counted by subgroup lane, so that a row's COLS invocations are neighbouring lanes of one
  // subgroup (the row maxima are shuffled between them).
  let lane = sg * ${o.matrix!.subgroupSize}u + sgi;
  let col = lane % COLS;
  let firstRow = (lane / COLS) * ROWS;`
      : `
  let col = lid % COLS;
  let firstRow = (lid / COLS) * ROWS;`
  }

${queryTile.loads}${schedule(o, refs)}
${pair ? pair.loads + "\n" : keyLoop.prologue}
${queryTile.stores}${matrix ? matrixQueryLoads(o, (part) => queryPart(o, qPos, grid, part)) : ""}${
    each((r) => `  let q${r} = ${queryAt(`qTileIndex * TILE_Q + firstRow + ${r}u`)};`)
  }${
    o.packed
      ? "\n  // Each row's packed sequence: its keys, and its positions within it.\n" +
        each((r) => `  let seq${r} = sequenceOf(q${r});`)
      : ""
  }${staged ? "\n" + each((r) => `  let qCodes${r} = ${queryCodes(`max(q${r}, 0)`)};`) : ""}${
    o.globalQuery && !o.uniform
      ? "\n" +
        each((r) => `  let qAt${r} = (${queryRowOf(o, `q${r}`, true)}) * D4; // its row of Q`)
      : ""
  }
${each((r) => `  var rowMax${r} = NO_SCORE;`)}
  // Row sums are this invocation's share; the shares are added over columns at the end.
${each((r) => `  var rowSum${r} = 0.0;`)}
${eachRD((r, d) => `  var acc${r}_${d} = vec4<f32>(0.0);`)}
${pair ? `${pair.scores}\n${keyLoop.prologue}\n${pair.product}\n` : ""}
${keyLoop.loop}

${tileMask(o, refs, g, grid)}
    let anyAllowed = ${R.flatMap((r) => J.map((j) => `m${r}_${j}`)).join(" || ")};
${
    o.uniform
      ? "    // Uniform weights (the ANNA estimator): every allowed key scores 0.\n" +
        eachRJ((r, j) => `    var s${r}_${j} = 0.0;`)
      : matrix
      ? matrixScores(o, R, J)
      : o.dtype === "f16"
      ? scoresF16(R, J, g.cols, query)
      : scoresF32(R, J, g.cols, query)
  }
${o.score ? scoreModifierLines(R, J, o.packed) : ""}    // This column's share of each row's max.
${
    onlyIfMasked(
      maskedTiles(grid),
      eachRJ((r, j) => `    s${r}_${j} = select(NO_SCORE, s${r}_${j}, m${r}_${j});`),
    )
  }
${
    matrix
      ? matrixRowMaxima(R, J, g.cols)
      : each((r) =>
        `    rowShare[(firstRow + ${r}u) * COLS + col] = ${maxOf(J.map((j) => `s${r}_${j}`))};`
      ) + "\n    workgroupBarrier();"
  }
    // Online softmax: rescale by the new row max, write P for the P·V product.
    var rowsLive = false;             // does any of this invocation's rows see this tile?${
    matrix
      ? "\n" + each((r) => `    var alpha${r} = 1.0;                // what O's row ${r} takes`)
      : ""
  }
${each((r) => softmaxRow(r, J, Dd, g.cols, o.dtype, matrix))}${
    matrix ? "" : "\n    workgroupBarrier();"
  }
${
    matrix
      ? matrixProduct(o, R, Dd)
      : o.dtype === "f16"
      ? productF16(R, Dd, g.cols, undefined, valueWidth(o))
      : productF32(R, Dd, g.cols, undefined, valueWidth(o))
  }
  }
${matrix ? matrixResults(o, R, Dd) : ""}
  // Each row's sum is spread over its COLS invocations: add the shares.
  workgroupBarrier();
${each((r) => `  rowShare[(firstRow + ${r}u) * COLS + col] = rowSum${r};`)}
${earlierLse(o, refs, R)}
  workgroupBarrier();
${each((r) => epilogue(o, refs, r, Dd, g.cols))}
}`;
}

/** `body` under `if (cond)`, or as it is where every tile is masked (`cond` undefined). */
function onlyIfMasked(cond: string | undefined, body: string): string {
  return cond ? onlyIf(cond, body) : body;
}

/**
 * Which query tile (and, split-K, which key chunk) this workgroup computes. Where the queries
 * are some of the positions, the tile comes from the kernel's list (query_tiles.ts) and the
 * schedule holds the listed tiles' rows only.
 */
function workgroupTile(refs: MemberRefs): string {
  const listed = refs.queryTiles;
  const tile = (x: string) =>
    listed ? `aux[${listed.at} + ${x}]; // one of the tiles that hold queries` : `${x};`;
  switch (refs.split) {
    case "none":
      return listed
        ? `${listed.lines}  let scheduleRow = wg.x;
  let qTileIndex = ${tile("wg.x")}`
        : "  let qTileIndex = wg.x;";
    case "split":
      return `${refs.splitParams}${
        listed?.lines ?? ""
      }  let scheduleRow = wg.x;              // chunk \`split\` of query tile \`qTileIndex\`
  let qTileIndex = ${tile("wg.x / splits")}
  let split = wg.x % splits;`;
    case "either":
      return `  // Split-K members (SPLIT) walk chunk \`split\` of query tile \`qTileIndex\`; others have one.
  let splits = select(1u, param(SPLIT_PARAMS), SPLIT); // key chunks per query tile
  let splitRows = param(SPLIT_PARAMS + 1u); // partial rows per chunk and head (SPLIT only)${
        listed?.lines ? `\n${listed.lines.trimEnd()}` : ""
      }
  let scheduleRow = wg.x;
  let qTileIndex = ${tile("wg.x / splits")}
  let split = wg.x % splits;`;
  }
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
