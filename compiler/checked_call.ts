/**
 * The door: a compile's input checked once. The pattern is parsed (zod), the shape and options
 * are checked, TypeScript predicates and score modifiers are proven to stay in i32 at this
 * shape, and the caller's tensors are checked against the device's binding limit. Later stages
 * take a `CheckedCall` and check nothing of the caller's again.
 * @module
 */
import { ShapeError } from "../core/errors.ts";
import {
  type AttentionShape,
  checkAttentionShape,
  type Dtype,
  queryOffsetOf,
  sequenceSizes,
} from "../core/shape.ts";
import { checkPagedKv, type PagedKv } from "../core/paged_kv.ts";
import { checkExpressionDomain } from "../dsl/expression_domain.ts";
import { parsePattern, type Pattern } from "../dsl/schema.ts";
import { checkBufferSizes } from "./device_checks.ts";
import type { EdgePairForm } from "./edge_pairs.ts";
import { MAX_KEY_SPLITS } from "./key_split.ts";
import { checkPackable } from "./packed_patterns.ts";
import { linearBranches } from "../dsl/linear.ts";
import { checkSelectCall } from "./select_attention.ts";
import type { TileShape } from "./plan.ts";
import { type DeviceLimits, type KernelShape, matrixShape } from "./tiles.ts";

/** How to compile: the shape, and options that pick or override kernel variants. */
export interface CompileOptions {
  /** The sizes of the call: B, Hq, Hkv, Nq and D (and Nk, Dv where they differ). */
  shape: AttentionShape;
  /**
   * Where query row 0 sits among the keys: query row `i` is key position `queryOffset + i`, an
   * integer in `[0, Nk - Nq]`; default `Nk - Nq` (the queries are the last positions: a prefill
   * chunk or a decoding step). Patterns are evaluated on positions, with n = Nk.
   */
  queryOffset?: number;
  /** Element type of the inputs and O (default f32); f16 needs the adapter's `shader-f16`. */
  dtype?: Dtype;
  /** Softmax scale; defaults to 1 / sqrt(D). */
  scale?: number;
  /** The adapter's limits; tiles are sized from them (WebGPU defaults otherwise). */
  limits?: DeviceLimits;
  /** Override the tile shape (tests use small tiles to exercise many tiles at small N). */
  tiles?: TileShape & Partial<KernelShape>;
  /**
   * Constant inner loop bounds, which GPU compilers unroll (default). Software adapters want
   * false: llvmpipe spent 30-60 s compiling each unrolled kernel, about 5 s otherwise.
   */
  unroll?: boolean;
  /**
   * Load the next K/V tile into registers while the current one is computed (default: when the
   * tile needs at most 4 vec4s of K per invocation).
   */
  prefetch?: boolean;
  /** Gated patterns: gates given per position `[B, Hq, N, branches]` rather than `[B, Hq, branches]`. */
  gatesPerPosition?: boolean;
  /**
   * Bake the pattern's numbers (windows, radii, periods, residue geometry, aux offsets) into
   * the WGSL as constants. By default (false) kernels read them from the aux buffer, so a
   * pattern of the same structure with other numbers reuses the compiled pipelines; constants
   * let a GPU compiler turn the residue layout's divisions into multiplications, at the price
   * of a new pipeline for every new number.
   */
  constantParams?: boolean;
  /**
   * Chunks to split the key tiles of every gathered-query component into (split-K,
   * key_split.ts). Default: chosen per component, so that global rows fill the GPU. A runtime
   * value: it changes no kernel.
   */
  keySplits?: number;
  /**
   * Read each query row from global memory at every key tile instead of staging the query tile
   * in workgroup memory. Default: `queryFromMemoryPays` (kernel_rules.ts).
   */
  globalQuery?: boolean;
  /**
   * Walk each band's two corner key tiles that only half of a query tile's rows see as one
   * step (edge_pairs.ts): ring(128) in 9 steps of 64x32 instead of 10. Only for bands (window,
   * ring) in natural order on a complete grid, and where the larger V tile fits. true picks
   * the form by dtype (`edgePairForm`); default: `pairsPay` (kernel_rules.ts).
   */
  edgePairs?: boolean | EdgePairForm;
  /**
   * Also compile the backward pass (DESIGN §6): a call then takes dO and returns dQ, dK, dV (and
   * the runtime gates' gradient) after O.
   */
  backward?: boolean;
  /**
   * Decoding calls (at most 64 queries among longer keys, forward) run their components whose
   * keys are positions of K on the decode kernel (DESIGN §7). true: always; false: never (the
   * attention kernel); default: where loops are unrolled (`unroll`, so not on software adapters,
   * whose JIT takes about a minute over a decode kernel against a second for the attention
   * kernel).
   */
  decode?: boolean;
  /**
   * K and V in pages, read through a block table given with each call (DESIGN §1): K
   * `[pages, Hkv, pageSize, D]`, V `[pages, Hkv, pageSize, Dv]`. The page size is compiled in;
   * the table and the pool's contents are data, and the page count changes no WGSL. With
   * `backward`, dK and dV come in the pool's shape, summed over the positions that name each
   * page (DESIGN §6). Not with `packed`.
   */
  paged?: PagedKv;
  /**
   * The rows are packed sequences (DESIGN §1; batch 1): each call gives their lengths
   * (`AttentionInputs.seqLens`, `kvSeqLens`), and new lengths run on the same pipelines, the
   * schedules rebuilt for them (packed_mask.ts), forward and backward. Every component walks
   * natural order; random, hashBucket and lowRank leaves are refused (packed_patterns.ts).
   */
  packed?: boolean;
}

/** A compile's input after the door: the parsed pattern and every option checked. */
export interface CheckedCall {
  pattern: Pattern;
  shape: AttentionShape;
  /** Query row 0's position among the keys (0 for a square call). */
  queryOffset: number;
  dtype: Dtype;
  scale: number;
  limits?: DeviceLimits;
  tiles?: TileShape & Partial<KernelShape>;
  unroll: boolean;
  prefetch?: boolean;
  gatesPerPosition: boolean;
  constantParams: boolean;
  keySplits?: number;
  globalQuery?: boolean;
  edgePairs?: boolean | EdgePairForm;
  backward: boolean;
  /** K and V in pages: the page size and the pool's page count. */
  paged?: PagedKv;
  /** The rows are packed sequences whose lengths come with each call. */
  packed: boolean;
  /** Whether decoding calls use the decode kernel. */
  decode: boolean;
}

/**
 * Checks a compile's input once.
 * @param pattern a pattern object or JSON value
 * @param options shape and options
 * @returns the checked call
 * @throws {PatternError} bad pattern; {ShapeError} bad shape, query offset or option (among
 *   them `paged`);
 *   {PlanError} an expression that leaves i32 at this shape; {DeviceError} tensors past the
 *   binding limit
 * @example
 * ```ts
 * import { checkCall } from "./checked_call.ts";
 * const call = checkCall({ kind: "stride", period: 16 }, {
 *   shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 },
 * });
 * call.scale; // 0.125
 * ```
 */
export function checkCall(pattern: unknown, options: CompileOptions): CheckedCall {
  const parsed = parsePattern(pattern);
  const shape = options.shape;
  checkAttentionShape(shape);
  const packed = options.packed ?? false;
  checkSelectCall(parsed, options);
  if (packed) checkPacked(parsed, options);
  // Packed rows' queries are rows 0 .. Nq - 1 of the plan; their positions come per sequence.
  const queryOffset = queryOffsetOf(shape, packed ? 0 : options.queryOffset);
  // TypeScript predicates and scores must stay in i32 and never divide by 0 at this shape, with
  // n the key count (for packed rows, at each call's sequences' key counts instead).
  const n = sequenceSizes(shape).nk;
  if (!packed) checkExpressionDomain(parsed, { n, batch: shape.batch, headsQ: shape.headsQ });
  const scale = options.scale ?? 1 / Math.sqrt(shape.headDim);
  if (!Number.isFinite(scale) || scale === 0) {
    throw new ShapeError(`Bad options: scale must be a finite nonzero number, got ${scale}`);
  }
  const splits = options.keySplits;
  if (
    splits !== undefined &&
    !(Number.isInteger(splits) && splits >= 1 && splits <= MAX_KEY_SPLITS)
  ) {
    throw new ShapeError(
      `Bad options: keySplits must be an integer from 1 to ${MAX_KEY_SPLITS}, got ${splits}`,
    );
  }
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new ShapeError(`Bad options: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  for (const field of ["queryParts", "bandSplit"] as const) {
    if (options.tiles?.[field] !== undefined && !options.tiles.matrix) {
      throw new ShapeError(
        `Bad options: tiles.${field} applies to subgroup-matrix tiles only (tiles.matrix); ` +
          "leave it unset",
      );
    }
  }
  if (options.tiles?.matrix) checkMatrixTiles(options.tiles, { ...options, dtype });
  else if (options.tiles?.threads !== undefined) checkTileColumns(options.tiles, shape);
  if (options.prefetch && sequenceSizes(shape).dv !== shape.headDim) {
    throw new ShapeError(
      `Bad options: prefetch needs valueDim == headDim (each prefetch register holds a vec4 of K ` +
        `and the same vec4 of V), got valueDim ${sequenceSizes(shape).dv} and headDim ` +
        `${shape.headDim}; leave prefetch unset`,
    );
  }
  const backward = options.backward ?? false;
  // Packed gradients walk each sequence's keys from its queries' own positions: a packed
  // backward pass needs each sequence's queries to be all its positions.
  if (backward && packed && sequenceSizes(shape).nk !== shape.seqLen) {
    throw new ShapeError(
      "Bad options: the backward pass (backward: true) of packed sequences (packed: true) needs " +
        `kvSeqLen == seqLen (so each call's seqLens == kvSeqLens), got kvSeqLen ` +
        `${sequenceSizes(shape).nk} and seqLen ${shape.seqLen}; run the forward pass alone for ` +
        "packed queries against longer keys, or compile without packed (a queryOffset per " +
        "sequence)",
    );
  }
  const paged = options.paged;
  if (paged) {
    checkPagedKv(paged);
    if (packed) {
      throw new ShapeError(
        "Bad options: paged K and V hold one sequence per batch; packed sequences (packed: " +
          "true) take contiguous K and V: compile without paged",
      );
    }
    const [linear] = linearBranches(parsed);
    if (linear) {
      const where = parsed.kind === "gated" ? `pattern.branches[${linear[0]}]` : "pattern";
      throw new ShapeError(
        `Bad options: paged K and V: ${where} is linear, whose kernels read contiguous K and V; ` +
          "gather the pages (gatherPages) and compile without paged",
      );
    }
  }
  const branches = parsed.kind === "gated" ? parsed.branches.length : 1;
  if (options.limits) checkBufferSizes(shape, dtype, branches, options.limits, paged);
  const gated = parsed.kind === "gated";
  return {
    pattern: parsed,
    shape,
    queryOffset,
    dtype,
    scale,
    limits: options.limits,
    tiles: options.tiles,
    unroll: options.unroll ?? true,
    prefetch: options.prefetch,
    gatesPerPosition: gated && (options.gatesPerPosition ?? false),
    constantParams: options.constantParams ?? false,
    keySplits: splits,
    globalQuery: options.globalQuery,
    edgePairs: options.edgePairs,
    backward,
    decode: options.decode ?? (options.unroll ?? true),
    ...(paged ? { paged: { pageSize: paged.pageSize, pages: paged.pages } } : {}),
    packed,
  };
}

/**
 * Packed sequences: batch 1, no query offset (each sequence's queries are its last positions),
 * register tiles, and a pattern packing runs. The backward pass needs seqLens == kvSeqLens
 * (checkCall); V may have a head dim of its own.
 */
function checkPacked(pattern: Pattern, options: CompileOptions): void {
  const fix = "lay the sequences end to end in one batch and give their lengths with each call";
  if (options.shape.batch !== 1) {
    throw new ShapeError(
      `Bad options: packed sequences need batch = 1, got ${options.shape.batch}; ${fix}`,
    );
  }
  if (options.queryOffset !== undefined) {
    throw new ShapeError(
      "Bad options: queryOffset does not apply to packed sequences (sequence s's queries are " +
        "its last seqLens[s] positions); leave it unset",
    );
  }
  if (options.tiles?.matrix) {
    throw new ShapeError(
      "Bad options: tiles.matrix (subgroup matrices) runs unpacked calls only; leave tiles.matrix " +
        "unset for packed sequences",
    );
  }
  checkPackable(pattern);
}

/**
 * What runs only on square calls, `kvSeqLen == seqLen` and `valueDim == headDim`, refuses
 * others by the field.
 * @param shape the call's sizes
 * @param what the thing that needs a square call, for the message
 */
function checkSquare(shape: AttentionShape, what: string): void {
  const { nq, nk, d, dv } = sequenceSizes(shape);
  if (nk !== nq) {
    throw new ShapeError(
      `Bad options: ${what} needs kvSeqLen == seqLen, got kvSeqLen ${nk} and seqLen ${nq}; ` +
        "leave it unset: register tiles run queries against a longer key sequence",
    );
  }
  if (dv !== d) {
    throw new ShapeError(
      `Bad options: ${what} needs valueDim == headDim, got valueDim ${dv} and headDim ${d}; ` +
        "leave it unset: register tiles run a value head dim of its own",
    );
  }
}

/** A caller's invocation split: its columns own whole vec4s of each output row. */
function checkTileColumns(tiles: TileShape & Partial<KernelShape>, shape: AttentionShape): void {
  const rows = tiles.rowsPerThread ?? 0;
  const cols = rows > 0 ? tiles.threads! / (tiles.tileQ / rows) : 0;
  const dv4 = sequenceSizes(shape).dv / 4;
  if (!Number.isInteger(cols) || cols < 1 || tiles.tileK % cols !== 0 || dv4 % cols !== 0) {
    throw new ShapeError(
      `Bad options: tiles ${tiles.tileQ}x${tiles.tileK} with ${tiles.threads} threads and ` +
        `${tiles.rowsPerThread} rows per thread split rows into ${cols} columns; the columns ` +
        `must be a whole number dividing tileK (${tiles.tileK}) and valueDim / 4 (${dv4})`,
    );
  }
}

/** Subgroup-matrix tiles the caller named: float16, a staged query tile, and shapes that tile. */
function checkMatrixTiles(
  tiles: TileShape & Partial<KernelShape>,
  o: CompileOptions & { dtype: Dtype },
): void {
  const m = tiles.matrix!;
  checkSquare(o.shape, "tiles.matrix (subgroup matrices)");
  if (o.dtype !== "f16") {
    throw new ShapeError(`Bad options: tiles.matrix needs dtype "f16", got "${o.dtype}"`);
  }
  if (o.globalQuery) {
    throw new ShapeError(
      "Bad options: tiles.matrix stages the query tile; globalQuery must not be true with it",
    );
  }
  const threads = tiles.threads ?? 0, rows = tiles.rowsPerThread ?? 0;
  const subgroups = threads / m.subgroupSize;
  const parts = tiles.queryParts ?? 1, split = tiles.bandSplit ?? 1;
  const tiled = (queryParts: number, bandSplit: number) =>
    Number.isInteger(subgroups) && rows > 0 &&
    matrixShape(
        tiles.tileQ,
        tiles.tileK,
        subgroups,
        rows,
        o.shape.headDim,
        m,
        queryParts,
        bandSplit,
      ) !== undefined;
  if (!tiled(1, 1) && !tiled(1, split)) {
    throw new ShapeError(
      `Bad options: tiles ${tiles.tileQ}x${tiles.tileK} with ${threads} threads and ` +
        `${rows} rows per thread do not tile into ${m.m}x${m.n}x${m.k} subgroup matrices ` +
        `(subgroup size ${m.subgroupSize}) at D = ${o.shape.headDim}: threads must be a ` +
        `multiple of the subgroup size, each subgroup's rows (each pair's, with bandSplit 2) a ` +
        `multiple of ${m.m}, tileK and D multiples of ${m.n} and ${m.k}`,
    );
  }
  if (!tiled(1, split)) {
    throw new ShapeError(
      `Bad options: tiles.bandSplit must be 1 or 2, and 2 needs an even number of subgroups and ` +
        `the key tile's and D's ${m.n}-wide blocks in two equal halves (tileK ${tiles.tileK}, ` +
        `D = ${o.shape.headDim}, ${subgroups} subgroups), got ${split}`,
    );
  }
  if (!tiled(parts, split)) {
    throw new ShapeError(
      `Bad options: tiles.queryParts must be 1, 2 or 4 and split D = ${o.shape.headDim} into ` +
        `parts that are multiples of ${m.k} (the matrices' K) and of 4, got ${parts}`,
    );
  }
}
