/**
 * The backward pass's kernel plan (DESIGN §6): FlashAttention-2's backward in each component's
 * own layouts and schedule, with no float atomics, so gradients are the same bits on every run.
 *
 * After the forward kernels: `gradClear` zeroes dQ and dK/dV; per branch, `gradStats` writes
 * each row's LSE, gate g and `Δ = g dO·O_i` (O_i the branch's normalised output); per component,
 * `gradQuery` walks the component's BlockMask rows (each query tile its key tiles) and adds the
 * tile's share of dQ, and `gradKey` walks the same mask transposed (each key tile the query
 * tiles that see it, for every query head of its key/value head) and adds dK and dV. A
 * component's tiles cover each position once, and dispatches run in order, so each adds into
 * the buffers with a plain read and write. A lowRank component's keys are pooled landmarks: its
 * `gradKey` writes the landmarks' dK and dV, and `gradUnpool` adds each landmark's share to the
 * rows it is the mean of. A bucket-ordered (hashBucket) component's tiles are read from the
 * codes at run time, as in the forward: each query tile walks the key tiles of its buckets and
 * each key tile the query tiles of its buckets (PARTIAL, the same-bucket mask choosing the
 * pairs), so its time follows the allowed pairs. `gradGates` writes the gates' gradient
 * `dO·O_i` (summed over positions for per-head gates); `gradConstants` sums the learnable
 * constants' gradients, which `gradQuery` writes per query row.
 *
 * Paged K and V: the tile kernels read K and V through the block table (`kvRow`, as the
 * forward does) and add dK and dV into contiguous rows as for contiguous K and V; last,
 * `gradPages` sums those rows into the pool's shape, one invocation per vec4 of the pool, over
 * the references to its page in the inverted table (`pageReferences`, core/paged_kv.ts), in
 * ascending order, so a page that several sequences share gets the same bits on every run and
 * a page no position names gets 0.
 *
 * The gradient schedule holds, per component, two slots in the forward schedule's format
 * (schedule_buffer.ts): its BlockMask's rows, and their transpose (none for bucket order).
 *
 * Where the call's queries are some of the key positions (query_tiles.ts), only what touches
 * them runs: `gradQuery` the query tiles that hold some (as the forward does), and `gradKey`,
 * over the mask transposed from those tiles alone, the key tiles they visit (for keys that are
 * positions; a bucket order's or landmarks' key tiles all run). Each kernel reads which tile a
 * workgroup owns from its list in aux, and its schedule slot keeps the listed tiles' rows only,
 * in list order. Query positions outside the call's are padding in both walks.
 * @module
 */
import { PlanError } from "../core/errors.ts";
import { type AttentionShape, type Dtype, sequenceSizes } from "../core/shape.ts";
import type { PagedKv } from "../core/paged_kv.ts";
import { gradientTiling } from "./gradient_tiling.ts";
import type { BlockMask } from "./block_mask.ts";
import { queryTiles } from "./query_tiles.ts";
import { elementwiseWorkgroups, MAX_WORKGROUPS_X, workgroupGrid } from "./dispatch_sizes.ts";
import type {
  AttentionKernel,
  BufferName,
  GradientKernel,
  Kernel,
  LinearKernel,
  SelectGradientKernel,
  SelectKernel,
} from "./kernel_plan.ts";
import { linearGradientKernels } from "./plan_linear.ts";
import { selectGradientKernels } from "./select_gradients.ts";
import type { Branch, Component, Plan } from "./plan.ts";
import { own, read, written } from "./support_kernels.ts";
import { readsHash } from "./component_reads.ts";
import { type LearnableConstant, scoreProgram } from "../dsl/expression_check.ts";
import { learnableReads } from "../dsl/expression.ts";

/** Invocations of the gradient kernels' row loops (gradStats, gradClear, per-position gradGates). */
export const GRADIENT_ROWS_WORKGROUP = 64;

/** Invocations summing one long vector: a per-head gate's gradient, a learnable constant's. */
export const SUM_WORKGROUP = 256;

/**
 * The backward kernels and their schedule, after the forward ones.
 * @param plan the plan
 * @param shape the call's shape
 * @param forward the forward kernels (their O buffers and offsets)
 * @param o whether the call is gated, and its gates per position
 * @returns the kernels and the gradient schedule's words
 * @throws {PlanError} past WebGPU's workgroups per dimension
 */
export function planGradients(
  plan: Plan,
  shape: AttentionShape,
  forward: readonly Kernel[],
  o: {
    gated: boolean;
    gatesPerPosition: boolean;
    learnable: ReadonlyMap<string, LearnableConstant>;
    /** The tile kernels' inputs' type and the device's workgroup memory (tiling). */
    dtype: Dtype;
    workgroupBytes?: number;
    /** Paged K and V: dK and dV are summed into the pool's shape last (`gradPages`). */
    paged?: PagedKv;
  },
): { kernels: (GradientKernel | LinearKernel | SelectGradientKernel)[]; schedule: Uint32Array } {
  const { nq, nk, d, dv } = sequenceSizes(shape);
  const rows = shape.batch * shape.headsQ * nq;
  const keys = shape.batch * shape.headsKV * nk;
  const walked = gradientWalks(plan);
  let slots = 0;
  // Learnable constants: every query row has a slot of all their entries (`dConstRows`).
  const learnable = [...o.learnable.values()].reduce((sum, c) => sum + c.size, 0);
  if (learnable > MAX_WORKGROUPS_X) {
    throw new PlanError(
      `Cannot compile the backward pass: the learnable constants have ${learnable} entries, ` +
        `over ${MAX_WORKGROUPS_X}`,
    );
  }
  const learns = new Set(plan.branches.flatMap((branch, b) => branchLearns(branch) ? [b] : []));
  const constantRows = learnable ? [written("dConstRows")] : [];
  const linear: LinearKernel[] = [];
  const kernels: (GradientKernel | LinearKernel | SelectGradientKernel)[] = [{
    kind: "gradClear",
    label: `gradients: clear dQ, dK, dV${learnable ? " and the constants' row shares" : ""}`,
    ...own,
    bindings: [written("dq"), written("dkv"), ...constantRows],
    workgroups: elementwiseWorkgroups(
      Math.max(rows * d / 4, keys * (d + dv) / 4, rows * learnable),
    ),
    branch: 0,
    component: 0,
    scheduleSlot: 0,
  }];
  plan.branches.forEach((branch, b) => {
    if (branch.linear) {
      const features = forward.find((k): k is LinearKernel =>
        k.kind === "linear" && k.branch === b
      )!.features;
      const oName = o.gated ? "branchO" : "o";
      linear.push(...linearGradientKernels(b, branch.linear, { shape, features, oName, ...o }));
      return;
    }
    const output = branchOutput(forward, b);
    kernels.push({
      kind: "gradStats",
      label: `gradients: branch ${b} row statistics`,
      ...own,
      bindings: [
        read("dO"),
        read(output),
        read("lse"),
        ...(o.gated ? [read("gates")] : []),
        written("gradStats"),
      ],
      workgroups: rowWorkgroups(rows),
      branch: b,
      component: 0,
      scheduleSlot: 0,
    });
    // A select branch has no components: its own kernels walk the kept blocks.
    const select = forward.find((k): k is SelectKernel =>
      k.kind === "selectAttention" && k.branch === b
    );
    if (select) {
      kernels.push(...selectGradientKernels(select, { workgroupBytes: o.workgroupBytes }));
    }
    branch.components.forEach((c, j) => {
      // A landmark component's keys are the pooled landmarks: its dK and dV are theirs first.
      const landmarks = c.kLayout.kind === "landmarks" ? c.kLayout : undefined;
      const inputs = [
        read("q"),
        read(landmarks ? `landmarkK${landmarks.rank}` : "k"),
        read(landmarks ? `landmarkV${landmarks.rank}` : "v"),
        read("dO"),
        read("gradSchedule"),
        read("aux"),
      ];
      const walks = walked[b][j];
      // None of its query tiles holds a query (global rows elsewhere): it adds nothing.
      if (!walks) return;
      const qTiles = walks.queryTiles?.length ?? c.mask.qTiles;
      const kTiles = walks.keyTiles?.length ?? c.mask.kTiles;
      const dims = { headDim: d, valueDim: dv };
      const tiling = {
        query: gradientTiling(
          "gradQuery",
          plan.tiles,
          dims,
          o.dtype,
          o.workgroupBytes,
          plan.packed,
        ),
        key: gradientTiling("gradKey", plan.tiles, dims, o.dtype, o.workgroupBytes, plan.packed),
      };
      // Packed sequences: the tile kernels find each query row's sequence there.
      const sequences = plan.packed ? [read("sequences")] : [];
      for (const what of ["query", "key"] as const) {
        const groups = (what === "query" ? qTiles : kTiles) * tiling[what].split;
        if (groups > MAX_WORKGROUPS_X) {
          throw new PlanError(
            `Cannot compile the backward pass: branch ${b} component ${j} needs ${groups} ` +
              `workgroups for its ${what} tiles, over WebGPU's ${MAX_WORKGROUPS_X} per dimension`,
          );
        }
      }
      // Its two slots, in gradientSchedule's order: its rows, then their transpose.
      const qSlot = slots++, kSlot = slots++;
      const hash = readsHash(c) ? [read("hash")] : [];
      kernels.push({
        kind: "gradQuery",
        label: `gradients: branch ${b} component ${j}, dQ (query-major)`,
        ...own,
        bindings: [
          ...inputs,
          read("gradStats"),
          written("dq"),
          ...hash,
          ...(learns.has(b) ? [...constantRows, read("learned")] : []),
          ...sequences,
        ],
        workgroups: [qTiles * tiling.query.split, shape.batch * shape.headsQ],
        branch: b,
        component: j,
        scheduleSlot: qSlot,
        tiling: tiling.query,
        ...(walks.queryTiles ? { ownTiles: walks.queryTiles } : {}),
      }, {
        kind: "gradKey",
        label: `gradients: branch ${b} component ${j}, dK and dV (key-major)`,
        ...own,
        bindings: [
          ...inputs,
          read("gradStats"),
          written(landmarks ? `dLandmark${landmarks.rank}` : "dkv"),
          ...hash,
          ...(learns.has(b) ? [read("learned")] : []),
          ...sequences,
        ],
        workgroups: [kTiles * tiling.key.split, shape.batch * shape.headsKV],
        branch: b,
        component: j,
        scheduleSlot: kSlot,
        tiling: tiling.key,
        ...(walks.keyTiles ? { ownTiles: walks.keyTiles } : {}),
      });
      if (landmarks) {
        kernels.push({
          kind: "gradUnpool",
          label: `gradients: branch ${b} component ${j}, landmarks' dK and dV to their rows`,
          ...own,
          bindings: [read(`dLandmark${landmarks.rank}`), written("dkv")],
          workgroups: rowWorkgroups(keys),
          branch: b,
          component: j,
          scheduleSlot: 0,
        });
      }
    });
  });
  // Linear branches after the softmax ones: each adds into dQ, dK and dV.
  kernels.push(...linear);
  if (o.gated) {
    // One gate per (row, branch) or per (head, branch).
    const gates = (o.gatesPerPosition ? rows : shape.batch * shape.headsQ) * plan.branches.length;
    kernels.push({
      kind: "gradGates",
      label: `gradients: gates (${o.gatesPerPosition ? "per position" : "per head"})`,
      ...own,
      bindings: [read("dO"), read("branchO"), written("dgates")],
      // Per position, an invocation per (row, branch); per head, a workgroup per (head, branch).
      workgroups: o.gatesPerPosition ? rowWorkgroups(gates) : workgroupGrid(gates),
      branch: 0,
      component: 0,
      scheduleSlot: 0,
    });
  }
  if (learnable) {
    kernels.push({
      kind: "gradConstants",
      label: `gradients: learnable constants (${[...o.learnable.keys()].join(", ")})`,
      ...own,
      bindings: [read("dConstRows"), written("dConstants")],
      workgroups: [learnable, 1],
      branch: 0,
      component: 0,
      scheduleSlot: 0,
    });
  }
  if (o.paged) {
    const poolRows = o.paged.pages * shape.headsKV * o.paged.pageSize;
    kernels.push({
      kind: "gradPages",
      label: `gradients: dK and dV summed into ${o.paged.pages} pages of ${o.paged.pageSize}`,
      ...own,
      bindings: [read("dkv"), read("pageRefs"), written("dkvPages")],
      workgroups: elementwiseWorkgroups(poolRows * (d + dv) / 4),
      branch: 0,
      component: 0,
      scheduleSlot: 0,
    });
  }
  return { kernels, schedule: gradientSchedule(plan) };
}

/**
 * Where a branch's forward writes its normalised O (`o`, `branchO` or `o16`): its first
 * attention kernel's or its select attention kernel's output binding.
 * @param forward the forward kernels
 * @param b the branch
 * @returns the output buffer's name
 */
export function branchOutput(forward: readonly Kernel[], b: number): BufferName {
  const first = branchFirstKernel(forward, b);
  return first.bindings[first.kind === "attention" ? 5 : 4].buffer;
}

/**
 * A branch's first kernel that writes its O: an attention kernel, or its select attention.
 * @param forward the forward kernels
 * @param b the branch
 * @returns the kernel, whose `oBase` is the branch's slice of O
 */
export function branchFirstKernel(
  forward: readonly Kernel[],
  b: number,
): AttentionKernel | SelectKernel {
  return forward.find((k): k is AttentionKernel | SelectKernel =>
    (k.kind === "attention" || k.kind === "selectAttention") && k.branch === b
  )!;
}

/**
 * The gradient schedule's words: per component that runs, in branch order, its gradQuery rows,
 * then its gradKey rows (componentWalks; no rows for a bucket-ordered component, whose tiles
 * come from its codes). Packed sequences rebuild it for each call's masks (packed_call.ts),
 * into the same slots.
 * @param plan the plan, its components' BlockMasks the ones the kernels walk
 * @returns the words of the `gradSchedule` buffer
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * import { gradientSchedule } from "./plan_gradients.ts";
 * const plan = planPattern({ kind: "causal" }, 16, { tileQ: 8, tileK: 8 });
 * gradientSchedule(plan).length; // 20
 * ```
 */
export function gradientSchedule(plan: Plan): Uint32Array {
  return packRows(
    gradientWalks(plan).flat().flatMap((w) => w ? [w.queryRows, w.keyRows] : []),
  );
}

/**
 * Every component's gradient walks, per branch; undefined for a component none of whose query
 * tiles holds a query (it runs no gradient kernels and takes no slots).
 */
function gradientWalks(plan: Plan): (ComponentWalks | undefined)[][] {
  return plan.branches.map((b) =>
    b.components.map((c) => {
      const walks = componentWalks(c, plan);
      return walks.queryTiles?.length === 0 ? undefined : walks;
    })
  );
}

/** Workgroups of GRADIENT_ROWS_WORKGROUP invocations covering `count` items (x, then y). */
function rowWorkgroups(count: number): [number, number] {
  return workgroupGrid(Math.ceil(count / GRADIENT_ROWS_WORKGROUP));
}

/** Rows of runs: per row, runs of consecutive tiles of one kind (FULL or PARTIAL). */
interface RowMask {
  rows: number;
  /** Per row, its runs: first tile, length, partial. */
  runs: [number, number, boolean][][];
}

/** A slot with no rows (a bucket-ordered component's tiles come from its codes). */
const NO_ROWS: RowMask = { rows: 0, runs: [] };

/** What a component's two gradient walks run: their schedule rows and, where listed, tiles. */
interface ComponentWalks {
  /** gradQuery's rows: one per query tile it runs, in order. */
  queryRows: RowMask;
  /** gradKey's rows: one per key tile it runs, the query tiles that visit it. */
  keyRows: RowMask;
  /** Where the queries are some of the positions: the query tiles that hold some, ascending. */
  queryTiles?: number[];
  /** With `queryTiles`, for keys that are positions: the key tiles those query tiles visit. */
  keyTiles?: number[];
}

/**
 * The tiles and schedule rows of a component's gradQuery and gradKey. A square call runs every
 * tile. Where the queries are some of the positions, gradQuery runs the query tiles that hold
 * some, and gradKey walks the mask transposed from those tiles alone: a bucket order's key
 * tiles all run (their query ranges come from the codes, over the sorted queries only), and a
 * landmark component's too (gradKey writes every landmark's dK and dV, which gradUnpool reads);
 * other key tiles run where some listed query tile visits them.
 */
function componentWalks(c: Component, plan: Plan): ComponentWalks {
  // A bucket-ordered component's tiles come from the codes at run time: its backward reads its
  // bucket ranges there (gradient_tile_wgsl.ts, `bucketWalk`) and has no schedule rows.
  const sorted = c.qLayout.kind === "sorted";
  if (!plan.queries) {
    return {
      queryRows: sorted ? NO_ROWS : maskRows(c.mask),
      keyRows: sorted ? NO_ROWS : transposeMask(c.mask),
    };
  }
  const listed = queryTiles(c.qLayout, plan.n, c.mask.tileQ, plan.queries);
  if (sorted) return { queryRows: NO_ROWS, keyRows: NO_ROWS, queryTiles: listed };
  const transposed = transposeMask(c.mask, listed);
  if (c.kLayout.kind === "landmarks") {
    return { queryRows: maskRows(c.mask, listed), keyRows: transposed, queryTiles: listed };
  }
  const keyTiles = transposed.runs.flatMap((row, t) => row.length ? [t] : []);
  return {
    queryRows: maskRows(c.mask, listed),
    keyRows: { rows: keyTiles.length, runs: keyTiles.map((t) => transposed.runs[t]) },
    queryTiles: listed,
    keyTiles,
  };
}

/**
 * A BlockMask's rows of runs, of every query tile or of the listed ones in list order.
 * @param mask a component's BlockMask
 * @param tiles the query tiles whose rows to keep (default: all)
 * @returns rows of runs
 */
function maskRows(mask: BlockMask, tiles?: readonly number[]): RowMask {
  const runs: [number, number, boolean][][] = [];
  for (const t of tiles ?? Array.from({ length: mask.qTiles }, (_, t) => t)) {
    const row: [number, number, boolean][] = [];
    for (let r = mask.offsets[t]; r < mask.offsets[t + 1]; r++) {
      row.push([mask.kvStart[r], mask.kvLength[r], mask.partial[r] === 1]);
    }
    runs.push(row);
  }
  return { rows: runs.length, runs };
}

/**
 * The BlockMask transposed: per key tile, the query tiles that visit it, in order, as runs of
 * consecutive tiles of one kind.
 * @param mask a component's BlockMask
 * @param tiles the query tiles whose visits count (default: all)
 * @returns rows of runs, one row per key tile
 */
export function transposeMask(mask: BlockMask, tiles?: readonly number[]): RowMask {
  const visits: [number, boolean][][] = Array.from({ length: mask.kTiles }, () => []);
  for (const t of tiles ?? Array.from({ length: mask.qTiles }, (_, t) => t)) {
    for (let r = mask.offsets[t]; r < mask.offsets[t + 1]; r++) {
      for (let kt = mask.kvStart[r]; kt < mask.kvStart[r] + mask.kvLength[r]; kt++) {
        visits[kt].push([t, mask.partial[r] === 1]);
      }
    }
  }
  const runs = visits.map((row) => {
    const out: [number, number, boolean][] = [];
    for (const [t, partial] of row) {
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === t && last[2] === partial) last[1]++;
      else out.push([t, 1, partial]);
    }
    return out;
  });
  return { rows: mask.kTiles, runs };
}

/**
 * Packs rows of runs in the forward schedule's format: a header of `[rowsOffset, runsOffset]`
 * per slot (after two unused words, as there), then per slot its row pointers and its runs
 * (`start << 1 | partial`, `length`).
 */
function packRows(slots: RowMask[]): Uint32Array {
  const words: number[] = [0, 0, ...slots.flatMap(() => [0, 0])];
  slots.forEach((slot, i) => {
    const rowsAt = words.length;
    let count = 0;
    for (const row of slot.runs) {
      words.push(count);
      count += row.length;
    }
    words.push(count);
    const runsAt = words.length;
    for (const row of slot.runs) {
      for (const [start, length, partial] of row) words.push(start * 2 + (partial ? 1 : 0), length);
    }
    words[2 + 2 * i] = rowsAt;
    words[3 + 2 * i] = runsAt;
  });
  return Uint32Array.from(words);
}

/**
 * Whether a branch's score modifier reads a learnable constant (a uniform branch scores
 * nothing, so it has no such gradient).
 * @param branch a plan branch
 * @returns true when its gradQuery adds into the constants' row shares
 */
export function branchLearns(branch: Branch): boolean {
  return !!branch.score && !branch.uniform && learnableReads(scoreProgram(branch.score)).length > 0;
}
