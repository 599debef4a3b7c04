/**
 * A select branch's backward pass (DESIGN §6) over the blocks its forward kept: no gradient
 * flows through the choice, so the kernels read `selection{b}` as the forward wrote it, as a
 * hashBucket backward reads the forward's codes.
 *
 * - `selectBits`: each position's kept blocks as a bitset `[B·Hkv, N, ceil(count / 32)]`, so a
 *   key block's kernel tests "did position q keep me" with one load.
 * - `selectGradQuery` (query-major): one workgroup per (position, key/value head), rows the
 *   group's query heads as in the forward; it walks the kept blocks in key tiles, recomputes
 *   `P = exp(s - LSE)` and `dS = P (g dO·V - Δ)`, and adds `scale dS K` into dQ.
 * - `selectGradKey` (key-major): one workgroup per (key block, key/value head); per key tile of
 *   the block it scans the positions (under causal, from the tile's first key on) in chunks of
 *   the workgroup, compacts those whose bitset holds the block by a prefix sum, and walks their
 *   (position, query head) rows in steps of `rows`, adding `P g dO` into dV and `scale dS Q`
 *   into dK.
 *
 * Each workgroup owns the rows it adds into (a position's dQ rows, a block's dK and dV rows),
 * and every sum runs in a fixed order: the same bits on every run, no float atomics.
 *
 * Tuning knobs: the key tile (`tileK`) of both walks and the rows per step of the key walk
 * (`rows`), both sized to the device's workgroup memory; the scan's chunk (the workgroup). A
 * block that every position keeps (an `initial` one) is one workgroup's whole scan; splitting
 * that scan over position ranges with a fixed-order sum of the parts would spread it.
 * @module
 */
import { MAX_WORKGROUPS_X } from "./dispatch_sizes.ts";
import { elementwiseWorkgroups } from "./dispatch_sizes.ts";
import { PlanError } from "../core/errors.ts";
import type { BufferName, SelectGradientKernel, SelectKernel } from "./kernel_plan.ts";
import type { SelectGeometry } from "./select_attention.ts";
import { own, read, written } from "./support_kernels.ts";
import { SELECT_WORKGROUP } from "./dispatch_sizes.ts";

/** WebGPU's guaranteed workgroup storage, where the call brings no device limits. */
const DEFAULT_WORKGROUP_BYTES = 16384;

/**
 * The backward kernels of one select branch, after its gradStats.
 * @param attention the branch's forward selectAttention kernel (its geometry)
 * @param o the device's workgroup storage
 * @returns selectBits, selectGradQuery and selectGradKey
 * @throws {PlanError} where no tile fits the device's workgroup memory
 * @example
 * ```ts ignore
 * selectGradientKernels(attention, {}).map((k) => k.kind);
 * // ["selectBits", "selectGradQuery", "selectGradKey"]
 * ```
 */
export function selectGradientKernels(
  attention: SelectKernel,
  o: { workgroupBytes?: number },
): SelectGradientKernel[] {
  const g = attention.geometry, b = attention.branch;
  const bytes = o.workgroupBytes ?? DEFAULT_WORKGROUP_BYTES;
  const query = selectGradQueryTileK(g, bytes);
  const key = selectGradKeyTiles(g, bytes);
  if (query === 0 || !key) {
    throw new PlanError(
      `Cannot compile the backward pass of branch ${b} (select): ${g.group} query heads of ` +
        `D = ${g.d4 * 4} per key/value head do not fit the device's ${bytes} bytes of ` +
        `workgroup memory`,
    );
  }
  const kept: BufferName = `selection${b}`, bits: BufferName = `selectBits${b}`;
  const inputs = [read("q"), read("k"), read("v"), read("dO")];
  const common = { ...own, branch: b, geometry: g };
  return [
    {
      kind: "selectBits",
      label: `gradients: branch ${b} (select), kept blocks as bitsets`,
      ...common,
      bindings: [read(kept), written(bits)],
      workgroups: elementwiseWorkgroups(g.heads * g.n * selectWords(g)),
      tileK: 0,
      rows: 0,
    },
    {
      kind: "selectGradQuery",
      label: `gradients: branch ${b} (select), dQ over each position's kept blocks`,
      ...common,
      bindings: [...inputs, read(kept), read("gradStats"), written("dq")],
      workgroups: [Math.min(g.n, MAX_WORKGROUPS_X), g.heads],
      tileK: query,
      rows: 0,
    },
    {
      kind: "selectGradKey",
      label: `gradients: branch ${b} (select), dK and dV over each block's positions`,
      ...common,
      bindings: [...inputs, read(bits), read("gradStats"), written("dkv")],
      workgroups: [Math.min(g.count, MAX_WORKGROUPS_X), g.heads],
      tileK: key.tileK,
      rows: key.rows,
    },
  ];
}

/**
 * The u32 words of one position's bitset: `ceil(count / 32)`.
 * @param g the geometry
 * @returns words per position
 * @example
 * ```ts
 * import { selectWords } from "./select_gradients.ts";
 * selectWords({ count: 1024 }); // 32
 * ```
 */
export function selectWords(g: Pick<SelectGeometry, "count">): number {
  return Math.ceil(g.count / 32);
}

/**
 * The size of a select branch's bitset buffer.
 * @param k the branch's selectBits kernel
 * @returns its name and bytes
 * @example
 * ```ts ignore
 * selectBitsBuffer(kernel); // ["selectBits0", ...]
 * ```
 */
export function selectBitsBuffer(k: SelectGradientKernel): [BufferName, number] {
  const g = k.geometry;
  return [`selectBits${k.branch}`, g.heads * g.n * selectWords(g) * 4];
}

/** Keys per tile of the query-major walk: Q, g dO, K and V tiles, dS, row statistics. */
function selectGradQueryTileK(g: SelectGeometry, bytes: number): number {
  for (let tile = Math.min(32, g.blockSize); tile >= 1; tile = Math.floor(tile / 2)) {
    const need = 16 * (2 * g.group * g.d4 + 2 * tile * g.d4) +
      4 * (g.group * tile + 2 * g.group + g.blocks);
    if (need <= bytes) return tile;
  }
  return 0;
}

/**
 * Keys per tile and rows per step of the key-major walk: K and V tiles, the rows' Q and g dO,
 * P and dS, row statistics and positions, the scan and its compacted hits.
 */
function selectGradKeyTiles(
  g: SelectGeometry,
  bytes: number,
): { tileK: number; rows: number } | undefined {
  const W = SELECT_WORKGROUP;
  for (
    const [tileK, rows] of [[32, 16], [16, 16], [16, 8], [8, 8], [8, 4], [4, 4], [2, 2], [1, 1]]
  ) {
    if (tileK > g.blockSize && tileK > 1) continue;
    const need = 16 * (2 * tileK * g.d4 + 2 * rows * g.d4) + 4 * (2 * rows * tileK + 3 * rows) +
      4 * (2 * W + 1);
    if (need <= bytes) return { tileK, rows };
  }
  return undefined;
}
