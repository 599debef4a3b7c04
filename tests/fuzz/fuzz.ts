/**
 * The fuzz run: `cases` random cases from `seed`, drawn from a pool of skeletons and shapes
 * (so compiled pipelines are reused), each checked on the GPU against the float64 reference.
 * Mismatches are shrunk; `onFailure` receives the small case (the CLI saves it as a golden).
 * With `valueDims`, V and O take a head dim of their own (DESIGN §1), as in multi-head latent
 * attention (`--head-dims 192 --value-dims 128`, one key/value head among the drawn shapes).
 * @module
 */
import type { AttentionShape } from "../../compiler/mod.ts";
import { MAX_HEAD_DIM } from "../../core/shape.ts";
import type { Runtime } from "../../runtime/runtime.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";
import {
  type CaseResult,
  checkCase,
  type FuzzCase,
  shrinkCase,
  withValueDim,
} from "./fuzz_case.ts";
import {
  fillPattern,
  randomSkeleton,
  type Rng,
  selectSkeleton,
  type Skeleton,
} from "./random_pattern.ts";

export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Distinct pattern structures in the pool. */
  skeletons: number;
  /** Distinct shapes in the pool. */
  shapes: number;
  /** Sequence lengths and head dims to draw shapes from. */
  seqLens: number[];
  headDims: number[];
  /**
   * Value head dims (Dv) to draw from, multiples of 4 in [4, 256] as the kernels need; each
   * shape takes one, from a stream of its own (default: Dv = D, every shape square in D).
   */
  valueDims?: number[];
  /** Tile shape to compile with (default: the runtime's choice for the device). */
  tiles?: { tileQ: number; tileK: number };
  /** Element type of every case (default f32). */
  dtype?: "f32" | "f16";
  /** Check every case's backward pass too. */
  grad?: boolean;
  /** Called after every case (progress). */
  onCase?: (i: number, c: FuzzCase, r: CaseResult) => void;
  /** Called with each shrunk failure. */
  onFailure?: (original: FuzzCase, shrunk: FuzzCase, r: CaseResult) => Promise<void> | void;
}

/** What a run found. */
export interface FuzzSummary {
  ok: number;
  mismatches: { case: FuzzCase; shrunk: FuzzCase; result: CaseResult }[];
  refused: number;
  /** Distinct kinds of leaf that appeared. */
  kinds: string[];
  /** Cases whose V had a head dim of its own (Dv != D). */
  ownValueDim: number;
}

/** N values that include 1 and primes, and a few multiples of the tile sizes. */
export const SEQ_LENS = [1, 2, 3, 7, 16, 31, 64, 97, 131, 200];

/**
 * Runs the fuzzer.
 * @param rt the runtime (any adapter)
 * @param o sizes and callbacks
 * @returns counts and the shrunk mismatches
 */
export async function fuzz(rt: Runtime, o: FuzzOptions): Promise<FuzzSummary> {
  checkValueDims(o.valueDims);
  const rng: Rng = mulberry32(o.seed);
  const skeletons = Array.from({ length: o.skeletons }, () => randomSkeleton(rng, 3));
  // One select skeleton more, from a stream of its own so that the others stay as they were.
  skeletons.push(selectSkeleton(mulberry32(o.seed ^ 0x5e1ec7)));
  const shapes = Array.from({ length: o.shapes }, () => randomShape(rng, o));
  // Value head dims likewise from a stream of their own: without them the pool is the seed's.
  if (o.valueDims) {
    const dvRng = mulberry32(o.seed ^ 0xd1a7e5);
    for (const [i, s] of shapes.entries()) shapes[i] = withValueDim(s, pick(dvRng, o.valueDims));
  }
  const summary: FuzzSummary = { ok: 0, mismatches: [], refused: 0, kinds: [], ownValueDim: 0 };
  const kinds = new Set<string>();
  for (let i = 0; i < o.cases; i++) {
    const drawn = shapes[Math.floor(rng() * shapes.length)];
    const skeleton = skeletons[Math.floor(rng() * skeletons.length)];
    // select runs on square calls only (Dv == D): its cases take the shape's square form.
    const shape = hasSelect(skeleton) ? withValueDim(drawn, drawn.headDim) : drawn;
    if (shape.valueDim !== undefined) summary.ownValueDim++;
    const pattern = fillPattern(skeleton, shape.seqLen, rng);
    JSON.stringify(pattern, (_, v) => {
      if (v && typeof v === "object" && "kind" in v) kinds.add(v.kind);
      return v;
    });
    const c: FuzzCase = {
      pattern,
      shape,
      magnitude: [1, 1, 1, 4, 16][Math.floor(rng() * 5)],
      seed: Math.floor(rng() * 0x7fffffff),
      runtimeGates: rng() < 0.5,
      ...(o.dtype === "f16" ? { dtype: "f16" as const } : {}),
      ...(o.grad ? { grad: true } : {}),
    };
    const result = await checkCase(rt, c, o.tiles);
    o.onCase?.(i, c, result);
    if (result.status === "ok") summary.ok++;
    else if (result.status === "refused") summary.refused++;
    else {
      const shrunk = await shrinkCase(rt, c, o.tiles);
      const shrunkResult = await checkCase(rt, shrunk, o.tiles);
      summary.mismatches.push({ case: c, shrunk, result: shrunkResult });
      await o.onFailure?.(c, shrunk, shrunkResult);
    }
  }
  summary.kinds = [...kinds].sort();
  return summary;
}

/** Value head dims the kernels take: multiples of 4 in [4, MAX_HEAD_DIM] (core/shape.ts). */
function checkValueDims(dims: number[] | undefined): void {
  const bad = dims?.find((d) => !Number.isInteger(d) || d < 4 || d > MAX_HEAD_DIM || d % 4 !== 0);
  if (dims?.length === 0 || bad !== undefined) {
    throw new RangeError(
      `Cannot fuzz: valueDims must be multiples of 4 in [4, ${MAX_HEAD_DIM}], got ` +
        JSON.stringify(dims),
    );
  }
}

function hasSelect(s: Skeleton): boolean {
  switch (s.kind) {
    case "select":
    case "selectCausal":
      return true;
    case "scored":
      return hasSelect(s.pattern);
    case "union":
    case "intersect":
      return s.of.some(hasSelect);
    case "gated":
      return s.branches.some(hasSelect);
    default:
      return false;
  }
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];

function randomShape(rng: Rng, o: FuzzOptions): AttentionShape {
  const headsKV = 1 + Math.floor(rng() * 2);
  const group = 1 + Math.floor(rng() * 3);
  return {
    batch: 1 + Math.floor(rng() * 2),
    headsQ: headsKV * group,
    headsKV,
    seqLen: o.seqLens[Math.floor(rng() * o.seqLens.length)],
    headDim: o.headDims[Math.floor(rng() * o.headDims.length)],
  };
}
