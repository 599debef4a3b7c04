/**
 * A select branch's kernels (DESIGN §2, NSA's selected branch): the block means of K, the kept
 * blocks per position, then attention over them, writing the branch's O and LSE. A select is a
 * whole softmax (dsl/select.ts), so its branch has no components: these three kernels are the
 * branch. The calls it takes are square (every key position a query) with contiguous K and V
 * of the same head dim; the rest are refused at the door, naming the field.
 * @module
 */
import { PlanError, ShapeError } from "../core/errors.ts";
import { type AttentionShape, type Dtype, sequenceSizes } from "../core/shape.ts";
import type { SelectBranch } from "../dsl/select.ts";
import { selectBlockCount, selectBranches } from "../dsl/select.ts";
import type { Pattern } from "../dsl/schema.ts";
import {
  elementwiseWorkgroups,
  MAX_WORKGROUPS_X,
  SELECT_CHOICE_WORKGROUP,
  SELECT_CHOICE_WORKGROUP_SOFTWARE,
} from "./dispatch_sizes.ts";
import type { BufferName, SelectKernel } from "./kernel_plan.ts";
import { DECODE_LANE_ROWS, type DecodeLanes, decodeLanes } from "./decode.ts";
import type { SubgroupLimits } from "./tiles.ts";
import { own, read, written } from "./support_kernels.ts";

/** What a select branch's kernels are specialised on. */
export interface SelectGeometry {
  /** Key/value heads of every batch, `B·Hkv`. */
  heads: number;
  /** Query heads per key/value head. */
  group: number;
  /** N, the positions (queries and keys). */
  n: number;
  /** D / 4. */
  d4: number;
  /** Rows per block `s`. */
  blockSize: number;
  /** Blocks `ceil(N / s)`. */
  count: number;
  /** Blocks kept per position. */
  blocks: number;
  /** Forced leading blocks. */
  initial: number;
  /** Forced blocks ending at the position's own. */
  local: number;
  /** Only whole blocks at or before the position compete. */
  causal: boolean;
  /** Element type of Q and K. */
  dtype: Dtype;
}

/** WebGPU's guaranteed workgroup storage, where the call brings no device limits. */
const DEFAULT_WORKGROUP_BYTES = 16384;

/**
 * Refuses what a select's kernels do not run, naming the option or field: packed sequences,
 * paged K and V, queries among longer keys or at an offset, a value head dim of its own.
 * @param pattern the parsed pattern
 * @param options the call's options
 * @throws {ShapeError} naming the option that a select does not take
 * @example
 * ```ts
 * import { checkSelectCall } from "./select_attention.ts";
 * checkSelectCall({ kind: "select", blockSize: 4, blocks: 2 }, {
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 16, headDim: 8 },
 * }); // fine
 * ```
 */
export function checkSelectCall(
  pattern: Pattern,
  options: {
    shape: AttentionShape;
    packed?: boolean;
    paged?: unknown;
    queryOffset?: number;
  },
): void {
  const at = selectBranches(pattern).find((b) => b)?.path;
  if (at === undefined) return;
  const { nq, nk, d, dv } = sequenceSizes(options.shape);
  const bad = options.packed
    ? "packed (packed sequences)"
    : options.paged
    ? "paged (paged K and V)"
    : nq !== nk
    ? `shape.kvSeqLen (${nk} keys for ${nq} queries: a prefill chunk or decoding)`
    : options.queryOffset
    ? `queryOffset (${options.queryOffset})`
    : dv !== d
    ? `shape.valueDim (${dv}, not headDim ${d})`
    : undefined;
  if (bad) {
    throw new ShapeError(
      `Bad options: ${at} (select) runs on square calls only (every key position a query, ` +
        `contiguous K and V, valueDim == headDim); drop ${bad}`,
    );
  }
}

/**
 * The kernels of one select branch.
 * @param branch the branch's select
 * @param b the branch's index
 * @param o the call's shape, dtype and scale, the device's workgroup storage, largest binding,
 *   subgroups and unrolling, and where the branch's O (`oName`, from `oBase` vec4s) and LSE (from `lseBase`) lie
 * @returns selectMeans, selectBlocks, selectPick where the importances go to a buffer, and
 *   selectAttention
 * @throws {PlanError} where the blocks or a tile do not fit the device's workgroup memory
 * @example
 * ```ts
 * import { selectKernels } from "./select_attention.ts";
 * const select = { kind: "select" as const, blockSize: 16, blocks: 2 };
 * selectKernels({ select, causal: true, path: "pattern" }, 0, {
 *   shape: { batch: 1, headsQ: 2, headsKV: 1, seqLen: 64, headDim: 8 },
 *   dtype: "f32", oName: "o", oBase: 0, lseBase: 0,
 * }).map((k) => k.kind); // ["selectMeans", "selectBlocks", "selectAttention"]
 * ```
 */
export function selectKernels(
  branch: SelectBranch,
  b: number,
  o: {
    shape: AttentionShape;
    dtype: Dtype;
    workgroupBytes?: number;
    bindingBytes?: number;
    subgroups?: SubgroupLimits;
    unroll?: boolean;
    oName: BufferName;
    oBase: number;
    lseBase: number;
  },
): SelectKernel[] {
  const { shape } = o;
  const { nk: n, d } = sequenceSizes(shape);
  const s = branch.select;
  const geometry: SelectGeometry = {
    heads: shape.batch * shape.headsKV,
    group: shape.headsQ / shape.headsKV,
    n,
    d4: d / 4,
    blockSize: s.blockSize,
    count: selectBlockCount(n, s.blockSize),
    blocks: s.blocks,
    initial: s.initial ?? 0,
    local: s.local ?? 0,
    causal: branch.causal,
    dtype: o.dtype,
  };
  if (geometry.group > 64) {
    throw new PlanError(
      `Cannot plan ${branch.path}: a select's workgroup holds at most 64 query heads per ` +
        `key/value head, got ${geometry.group} (headsQ / headsKV)`,
    );
  }
  const bytes = o.workgroupBytes ?? DEFAULT_WORKGROUP_BYTES;
  const choice = selectChoiceTile(geometry, {
    workgroupBytes: bytes,
    unroll: o.unroll ?? true,
    subgroups: o.subgroups,
    bindingBytes: o.bindingBytes,
  });
  if (!choice) {
    throw new PlanError(
      `Cannot plan ${branch.path}: choosing among ${geometry.count} blocks of ${s.blockSize} ` +
        `needs ${
          selectChoiceBytes(geometry, {
            invocations: SELECT_CHOICE_WORKGROUP_SOFTWARE,
            positions: 1,
            logits: { kind: "recomputed", chunk: 1, rowQ: "value" },
            importance: "workgroup",
            pick: { kind: "rounds" },
          })
        } bytes of workgroup memory, over the ` +
        `device's ${bytes}; use a larger select blockSize`,
    );
  }
  const tileK = selectTileK(geometry, bytes);
  if (tileK === 0) {
    throw new PlanError(
      `Cannot plan ${branch.path}: ${geometry.group} query heads of D = ${d} per key/value ` +
        `head do not fit the device's ${bytes} bytes of workgroup memory`,
    );
  }
  const lanes = selectLanes(geometry, { element: o.dtype === "f16" ? 2 : 4, ...o });
  const positions: [number, number] = [Math.min(n, MAX_WORKGROUPS_X), geometry.heads];
  const means: BufferName = `selectMeans${b}`, kept: BufferName = `selection${b}`;
  const common = {
    ...own,
    branch: b,
    geometry,
    tileK,
    choice,
    oBase: o.oBase,
    lseBase: o.lseBase,
  };
  return [
    {
      kind: "selectMeans",
      label: `branch ${b}: select, means of K over ${geometry.count} blocks`,
      bindings: [read("k"), written(means)],
      workgroups: elementwiseWorkgroups(geometry.heads * geometry.count * geometry.d4),
      ...common,
    },
    ...choiceKernels(common),
    {
      kind: "selectAttention",
      label: `branch ${b}: select, attention over the kept blocks ` +
        (lanes ? `(subgroup lanes of ${lanes.lanes})` : `(key tiles of ${tileK})`),
      ...(lanes ? { lanes } : {}),
      bindings: [read("q"), read("k"), read("v"), read(kept), written(o.oName), written("lse")],
      workgroups: positions,
      ...common,
    },
  ];
}

/**
 * The kernels that keep a select branch's blocks, in its choice's form: selectBlocks, and where
 * the importances go to a buffer, selectPick after it.
 * @param k what every kernel of the branch shares: its branch, geometry, choice, tile and slices
 * @returns the kernels
 * @example
 * ```ts ignore
 * choiceKernels({ ...own, branch: 0, geometry, choice, tileK: 8, oBase: 0, lseBase: 0 });
 * ```
 */
export function choiceKernels(
  k: Omit<SelectKernel, "kind" | "label" | "bindings" | "workgroups" | "lanes">,
): SelectKernel[] {
  const { branch: b, geometry: g, choice } = k;
  const means: BufferName = `selectMeans${b}`, keptBuffer: BufferName = `selection${b}`;
  const importance: BufferName = `selectImportance${b}`;
  const kept = `${g.blocks} of ${g.count} blocks`;
  const blocks: SelectKernel = {
    kind: "selectBlocks",
    label: `branch ${b}: select, ` +
      (choice.importance === "buffer" ? `importance of ${g.count} blocks` : kept) +
      ` per position (${choiceName(choice)})`,
    bindings: [
      read("q"),
      read(means),
      written(choice.importance === "buffer" ? importance : keptBuffer),
    ],
    workgroups: [Math.min(Math.ceil(g.n / choice.positions), MAX_WORKGROUPS_X), g.heads],
    ...k,
  };
  if (choice.importance !== "buffer" || choice.pick.kind !== "lanes") return [blocks];
  const positions = SELECT_PICK_WORKGROUP / choice.pick.lanes;
  return [blocks, {
    kind: "selectPick",
    label: `branch ${b}: select, ${kept} per position from the importances ` +
      `(${choice.pick.lanes} lanes per position)`,
    bindings: [written(importance), written(keptBuffer)],
    workgroups: [Math.min(Math.ceil(g.n / positions), MAX_WORKGROUPS_X), g.heads],
    ...k,
  }];
}

/**
 * The subgroup form of the attention kernel (select_lanes_wgsl.ts), where the device has
 * subgroups: the decode kernel's split of a key row into lanes, since a select position is a
 * decode query of its group's heads over its kept keys. Its lanes hold every row's share of Q
 * and O in registers, so only groups of at most DECODE_LANE_ROWS query heads take it.
 * @param g the geometry
 * @param o bytes per element of K and V, unrolling, the device's subgroups
 * @returns the split, or undefined for the staged form
 * @example
 * ```ts
 * import { selectLanes } from "./select_attention.ts";
 * selectLanes({ group: 8, d4: 16 }, {
 *   element: 2, unroll: true, subgroups: { size: 32, directive: false },
 * }); // 8 lanes of a K row, 2 keys at a time, wide float16 loads
 * ```
 */
export function selectLanes(
  g: Pick<SelectGeometry, "group" | "d4">,
  o: { element: number; unroll?: boolean; subgroups?: SubgroupLimits },
): DecodeLanes | undefined {
  if (g.group > DECODE_LANE_ROWS) return undefined;
  return decodeLanes({
    headDim: g.d4 * 4,
    valueDim: g.d4 * 4,
    rows: g.group,
    element: o.element,
    unroll: o.unroll ?? true,
    subgroups: o.subgroups,
  });
}

/**
 * The sizes of a select branch's buffers: the float32 block means `[B·Hkv, D / 4, count]`
 * (vec4s), the kept blocks `[B·Hkv, N, blocks]` (u32), and where the choice writes them, the
 * importances `[B·Hkv, N, count]` (float32).
 * @param k the branch's selectBlocks kernel
 * @returns the two buffers' names and bytes
 * @example
 * ```ts ignore
 * selectBuffers(kernel); // [["selectMeans0", ...], ["selection0", ...]]
 * ```
 */
export function selectBuffers(k: SelectKernel): [BufferName, number][] {
  const g = k.geometry;
  return [
    [`selectMeans${k.branch}`, g.heads * g.count * g.d4 * 16],
    [`selection${k.branch}`, g.heads * g.n * g.blocks * 4],
    ...(k.choice.importance === "buffer"
      ? [[`selectImportance${k.branch}`, g.heads * g.n * g.count * 4] as [BufferName, number]]
      : []),
  ];
}

/** Most positions per tile of the choice: each keeps W / TP >= 16 invocations for its argmax. */
const SELECT_TILE_POSITIONS = 16;

/**
 * Most logits an invocation of the `held` form keeps in registers (rows x slots): the bench's
 * 2 positions x 8 heads x 4 slots. Beyond it the registers spill; the `recomputed` form takes
 * those geometries.
 */
const SELECT_HELD_LOGITS = 64;

/**
 * Most positions per tile of the held form, where loops are unrolled and where not: its
 * logits live across six barriers, and llvmpipe's compile time grows steeply with them (1.4 s
 * at one position of 3 query heads, 10 s at 4, 123 s at 16).
 */
const SELECT_HELD_POSITIONS = { unrolled: 2, software: 1 };

/**
 * Blocks each invocation scores per chunk of the recomputed form's second pass, a barrier pair
 * each. Where loops are not unrolled, one: llvmpipe unrolls the chunk's loop all the same, and
 * compiles a chunk of 8 in about 5 times as long.
 */
const SELECT_CHUNKS = [8, 4, 2, 1];

/**
 * How the choice picks each position's blocks past the forced ones (select_wgsl.ts), from its
 * W / TP invocations: `rounds`, one workgroup argmax (a tree through workgroup memory, a barrier
 * per step) per slot; `lanes`, `lanes` invocations of one subgroup, each keeping the best of its
 * slice of the blocks in registers, a slot's winner found by a butterfly of
 * `subgroupShuffleXor` with no barrier, and only its owner rescanning its slice; `forced`, the
 * forced blocks alone, a timing variant (bench/select_variants.ts) that leaves the other slots
 * empty and is never planned.
 */
export type SelectPick =
  | { kind: "rounds" }
  | { kind: "lanes"; lanes: number; directive: boolean }
  | { kind: "forced" };

/**
 * How the choice computes its logits (select_logits_wgsl.ts). `held`: each invocation scores
 * `slots` blocks against every row of the tile and keeps those logits in registers, so each is
 * computed once; planned wherever `rows x slots` stays within SELECT_HELD_LOGITS. `recomputed`:
 * each invocation holds one row of Q and walks its blocks twice (maximum and sum, then
 * probabilities), in chunks of `chunk` blocks per invocation; its row of Q a `value` (a `let`
 * array read at constant indices: registers) or `private` (a module-scope array, in registers
 * only where the driver promotes it: a timing variant, never planned).
 */
export type SelectLogits =
  | { kind: "held"; slots: number }
  | { kind: "recomputed"; chunk: number; rowQ: "value" | "private" };

/** The choice's tile (select_wgsl.ts): invocations, positions, the logits' form, the pick. */
export interface SelectChoice {
  /** Invocations of a workgroup. */
  invocations: number;
  /** Positions of a tile (one workgroup). */
  positions: number;
  /** How the logits are computed. */
  logits: SelectLogits;
  /**
   * Where the importances wait for the pick: `workgroup`, in the choice kernel's workgroup
   * memory, picked by the same workgroup; `buffer`, written to `selectImportance{branch}`
   * (`[B·Hkv, N, count]` float32) and picked by the selectPick kernel, one subgroup per
   * position, so the picking's rounds of shuffles overlap across many positions instead of
   * holding the scoring workgroup at a barrier.
   */
  importance: "workgroup" | "buffer";
  /** How a position's blocks are picked. */
  pick: SelectPick;
}

/** Invocations of a selectPick workgroup: one subgroup of lanes per position. */
export const SELECT_PICK_WORKGROUP = 256;

/** A choice's words for a kernel's label. */
function choiceName(c: SelectChoice): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const logits = c.logits.kind === "held"
    ? `logits held, ${plural(c.logits.slots, "slot")}`
    : "logits recomputed";
  const then = c.importance === "buffer"
    ? "importances to a buffer"
    : c.pick.kind === "lanes"
    ? `picked by subgroup lanes of ${c.pick.lanes}`
    : c.pick.kind === "rounds"
    ? "picked by workgroup rounds"
    : "forced blocks only";
  return `tiles of ${plural(c.positions, "position")}, ${logits}, ${then}`;
}

/**
 * Workgroup memory of the choice (select_wgsl.ts, select_logits_wgsl.ts): the tile's
 * importances, the scratch (the held form's partials by row and invocation; the recomputed
 * form's lanes' row statistics or a chunk's probabilities, rows padded by one; the argmax), the
 * argmax's blocks, the rows' statistics, the held form's rows of Q, the chosen blocks and their
 * counts.
 * @param g the geometry
 * @param c the tile
 * @returns bytes
 */
function selectChoiceBytes(
  g: Pick<SelectGeometry, "group" | "count" | "blocks" | "d4">,
  c: SelectChoice,
): number {
  const { invocations: W, positions } = c;
  const R = positions * g.group, C = Math.floor(W / R);
  const phase = c.logits.kind === "held"
    ? R * W
    : Math.max(2 * C * R, R * (C * c.logits.chunk + 1));
  const qTile = c.logits.kind === "held" ? 4 * R * g.d4 : 0;
  if (c.importance === "buffer") return 4 * (phase + 2 * R + qTile);
  const scratch = Math.max(phase, c.pick.kind === "rounds" ? W : 1);
  const argmax = c.pick.kind === "rounds" ? W : 0;
  return 4 *
    (positions * g.count + scratch + argmax + 2 * R + qTile + positions * (g.blocks + 1));
}

/**
 * The choice's tile (select_wgsl.ts): SELECT_CHOICE_WORKGROUP invocations (fewer where loops
 * are not unrolled). The held form where its logits fit the registers (slots of W blocks to
 * cover every block, rows x slots within SELECT_HELD_LOGITS), with the most positions per tile
 * that allows up to SELECT_HELD_POSITIONS, since the block means are read once per tile;
 * otherwise the recomputed form with the most positions (a power of two, up to 16, whose rows
 * the invocations hold) whose importances fit, then the longest chunks that fit. Where the
 * device has subgroups the blocks are picked by subgroup lanes (no barrier per slot), and the
 * held form writes the importances to a buffer for the selectPick kernel where that buffer
 * binds; elsewhere the workgroup picks by argmax rounds.
 * @param g the geometry
 * @param o the device's workgroup storage, whether loops are unrolled (not on software
 *   adapters), its subgroups, its largest storage binding, and `logits` to consider that form
 *   only (tests and the variants bench run the recomputed form where the held one is planned)
 * @returns the tile, or undefined where even one position does not fit
 * @example
 * ```ts
 * import { selectChoiceTile } from "./select_attention.ts";
 * const g = { heads: 1, n: 65536, group: 8, count: 1024, blocks: 16, d4: 16 };
 * selectChoiceTile(g, { workgroupBytes: 49152, unroll: true });
 * // { invocations: 256, positions: 2, logits: { kind: "held", slots: 4 },
 * //   importance: "workgroup", pick: { kind: "rounds" } }
 * ```
 */
export function selectChoiceTile(
  g: Pick<SelectGeometry, "heads" | "n" | "group" | "count" | "blocks" | "d4">,
  o: {
    workgroupBytes: number;
    unroll: boolean;
    subgroups?: SubgroupLimits;
    logits?: SelectLogits["kind"];
    bindingBytes?: number;
  },
): SelectChoice | undefined {
  const invocations = o.unroll ? SELECT_CHOICE_WORKGROUP : SELECT_CHOICE_WORKGROUP_SOFTWARE;
  const pickFor = (positions: number): SelectPick =>
    o.subgroups
      ? {
        kind: "lanes",
        lanes: Math.min(invocations / positions, o.subgroups.size),
        directive: o.subgroups.directive,
      }
      : { kind: "rounds" };
  // The importances to a buffer where the pick has subgroups and the buffer binds.
  const importanceBytes = g.heads * g.n * g.count * 4;
  const buffered = o.subgroups !== undefined && o.bindingBytes !== undefined &&
    importanceBytes <= o.bindingBytes;
  const slots = Math.ceil(g.count / invocations);
  const most = SELECT_HELD_POSITIONS[o.unroll ? "unrolled" : "software"];
  for (let positions = most; positions >= 1; positions /= 2) {
    if (o.logits === "recomputed" || positions * g.group * slots > SELECT_HELD_LOGITS) continue;
    const c: SelectChoice = {
      invocations,
      positions,
      logits: { kind: "held", slots },
      importance: buffered ? "buffer" : "workgroup",
      pick: buffered
        ? {
          kind: "lanes",
          lanes: Math.min(SELECT_PICK_WORKGROUP, o.subgroups!.size),
          directive: o.subgroups!.directive,
        }
        : pickFor(positions),
    };
    if (selectChoiceBytes(g, c) <= o.workgroupBytes) return c;
  }
  for (let positions = SELECT_TILE_POSITIONS; positions >= 1; positions /= 2) {
    if (o.logits === "held" || positions * g.group > invocations) continue;
    for (const chunk of o.unroll ? SELECT_CHUNKS : [1]) {
      const c: SelectChoice = {
        invocations,
        positions,
        logits: { kind: "recomputed", chunk, rowQ: "value" },
        importance: "workgroup",
        pick: pickFor(positions),
      };
      if (selectChoiceBytes(g, c) <= o.workgroupBytes) return c;
    }
  }
  return undefined;
}

/**
 * The keys per staged tile of a select's attention kernel: up to 32 (never more than a block
 * holds), halved until the workgroup's memory fits.
 * @param g the geometry
 * @param workgroupBytes the device's workgroup storage
 * @returns keys per tile, or 0 when even one key does not fit
 * @example
 * ```ts
 * import { selectTileK } from "./select_attention.ts";
 * selectTileK({ group: 4, d4: 32, blockSize: 64 }, 16384); // 8
 * ```
 */
export function selectTileK(
  g: Pick<SelectGeometry, "group" | "d4" | "blockSize">,
  workgroupBytes: number,
): number {
  for (let tile = Math.min(32, g.blockSize); tile >= 1; tile = Math.floor(tile / 2)) {
    const bytes = 16 * (g.group * g.d4 + 2 * tile * g.d4) + 4 * (g.group * tile + 3 * g.group) +
      4 * 64;
    if (bytes <= workgroupBytes) return tile;
  }
  return 0;
}
