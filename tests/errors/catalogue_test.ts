/**
 * The error catalogue: bad inputs across patterns, shapes, options, data, device limits and the
 * command line, each refused with the right error class and a message naming the field. One
 * row per distinct mistake; the GPU rows (non-finite data) run on whatever adapter is here.
 */
import assert from "node:assert/strict";
import { main as explain } from "../../cli/explain.ts";
import { compile, packedCallData } from "../../compiler/mod.ts";
import { packedSequences } from "../../core/packed_sequences.ts";
import { DataError, DeviceError, PatternError, PlanError, ShapeError } from "../../core/errors.ts";
import { UsageError } from "../../cli/_common.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";

type ErrorClass = new (...args: never[]) => Error;
interface Case {
  name: string;
  run: () => unknown;
  error: ErrorClass;
  /** The message must match: it names the field (and usually the allowed range). */
  says: RegExp;
}

const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 16 };
const bad = (pattern: unknown) => () => compile(pattern, { shape });
const badShape = (changes: Record<string, number>) => () =>
  compile({ kind: "causal" }, { shape: { ...shape, ...changes } });

const PATTERNS: Case[] = [
  {
    name: "null pattern",
    run: bad(null),
    error: PatternError,
    says: /must be an object with a "kind"/,
  },
  { name: "no kind", run: bad({ radius: 3 }), error: PatternError, says: /"kind"/ },
  {
    name: "unknown kind",
    run: bad({ kind: "banded" }),
    error: PatternError,
    says: /unknown kind "banded"; expected one of/,
  },
  { name: "a string", run: bad("dense"), error: PatternError, says: /must be an object/ },
  {
    name: "linear feature map unknown",
    run: bad({ kind: "linear", featureMap: "relu" }),
    error: PatternError,
    says: /pattern\.featureMap: linear featureMap must be "elu1" or "favor", got "relu"/,
  },
  {
    name: "favor with 0 features",
    run: bad({ kind: "linear", featureMap: "favor", features: 0 }),
    error: PatternError,
    says: /pattern\.features: linear features must be an integer in \[1, 1024\], got 0/,
  },
  {
    name: "linear in a union",
    run: bad({
      kind: "union",
      of: [{ kind: "window", left: 4, right: 0 }, {
        kind: "linear",
        featureMap: "elu1",
      }],
    }),
    error: PatternError,
    says: /pattern\.of\[1\]: "linear" may only be the outermost pattern or a gated branch/,
  },
  {
    name: "elu1 with features other than D",
    run: bad({ kind: "linear", featureMap: "elu1", features: 8 }),
    error: PlanError,
    says: /pattern\.features: elu1 maps each row to its own D = 16 features, got 8/,
  },
  {
    name: "window left < 0",
    run: bad({ kind: "window", left: -1, right: 2 }),
    error: PatternError,
    says: /pattern\.left: .*\[0, /,
  },
  {
    name: "window left fractional",
    run: bad({ kind: "window", left: 1.5, right: 2 }),
    error: PatternError,
    says: /pattern\.left: .*integer.*1\.5/,
  },
  {
    name: "window right a string",
    run: bad({ kind: "window", left: 1, right: "2" }),
    error: PatternError,
    says: /pattern\.right: .*integer/,
  },
  {
    name: "window right missing",
    run: bad({ kind: "window", left: 1 }),
    error: PatternError,
    says: /pattern\.right/,
  },
  {
    name: "ring radius < 0",
    run: bad({ kind: "ring", radius: -3 }),
    error: PatternError,
    says: /pattern\.radius: .*\[0, /,
  },
  {
    name: "ring radius NaN",
    run: bad({ kind: "ring", radius: NaN }),
    error: PatternError,
    says: /pattern\.radius/,
  },
  {
    name: "stride period 0",
    run: bad({ kind: "stride", period: 0 }),
    error: PatternError,
    says: /pattern\.period: stride period must be an integer in \[1, /,
  },
  {
    name: "stride period 2^31",
    run: bad({ kind: "stride", period: 2 ** 31 }),
    error: PatternError,
    says: /pattern\.period: .*2147483648/,
  },
  {
    name: "global token < 0",
    run: bad({ kind: "global", tokens: [3, -1] }),
    error: PatternError,
    says: /pattern\.tokens\[1\]/,
  },
  {
    name: "global tokens not a list",
    run: bad({ kind: "global", tokens: 4 }),
    error: PatternError,
    says: /pattern\.tokens/,
  },
  {
    name: "global token >= N",
    run: bad({ kind: "global", tokens: [0, 64] }),
    error: PlanError,
    says: /pattern\.tokens\[1\]: global token must be < N \(64\), got 64/,
  },
  {
    name: "random blocks 0",
    run: bad({ kind: "random", blocks: 0, blockSize: 8, seed: 1 }),
    error: PatternError,
    says: /pattern\.blocks/,
  },
  {
    name: "random blockSize 0",
    run: bad({ kind: "random", blocks: 1, blockSize: 0, seed: 1 }),
    error: PatternError,
    says: /pattern\.blockSize/,
  },
  {
    name: "random seed < 0",
    run: bad({ kind: "random", blocks: 1, blockSize: 8, seed: -1 }),
    error: PatternError,
    says: /pattern\.seed/,
  },
  {
    name: "union of nothing",
    run: bad({ kind: "union", of: [] }),
    error: PatternError,
    says: /pattern\.of: .*at least one pattern/,
  },
  {
    name: "intersect of nothing",
    run: bad({ kind: "intersect", of: [] }),
    error: PatternError,
    says: /pattern\.of/,
  },
  {
    name: "union of a non-list",
    run: bad({ kind: "union", of: { kind: "dense" } }),
    error: PatternError,
    says: /pattern\.of/,
  },
  {
    name: "bad member deep inside",
    run: bad({
      kind: "union",
      of: [{ kind: "dense" }, { kind: "intersect", of: [{ kind: "stride", period: -2 }] }],
    }),
    error: PatternError,
    says: /pattern\.of\[1\]\.of\[0\]\.period/,
  },
  {
    name: "gated without branches",
    run: bad({ kind: "gated", branches: [] }),
    error: PatternError,
    says: /pattern\.branches/,
  },
  {
    name: "gates of the wrong count",
    run: bad({ kind: "gated", branches: [{ kind: "dense" }, { kind: "causal" }], gates: [1] }),
    error: PatternError,
    says: /gates/,
  },
  {
    name: "gated inside a union",
    run: bad({ kind: "union", of: [{ kind: "gated", branches: [{ kind: "dense" }] }] }),
    error: PatternError,
    says: /gated/,
  },
  {
    name: "unknown field",
    run: bad({ kind: "ring", radius: 2, wrap: true }),
    error: PatternError,
    says: /wrap/,
  },
  {
    name: "field of another kind",
    run: bad({ kind: "dense", radius: 2 }),
    error: PatternError,
    says: /radius/,
  },
];

const PREDICATES: Case[] = [
  {
    name: "predicate with a loop",
    run: bad({
      kind: "predicate",
      expr: "(q, k) => {\n  for (let i = 0; i < 3; i++) {}\n  return true;\n}",
    }),
    error: PatternError,
    says: /pattern\.expr: line 2: a for loop is not allowed/,
  },
  {
    name: "predicate with a string",
    run: bad({ kind: "predicate", expr: '(q, k) => "a".length > q' }),
    error: PatternError,
    says: /pattern\.expr: line 1: a string is not allowed/,
  },
  {
    name: "predicate calling Date.now()",
    run: bad({ kind: "predicate", expr: "(q, k) => Date.now() > k" }),
    error: PatternError,
    says: /pattern\.expr: line 1: the call Date\.now\(\) is not allowed/,
  },
  {
    name: "predicate expr not text",
    run: bad({ kind: "predicate", expr: 3 }),
    error: PatternError,
    says: /pattern\.expr: predicate expr must be TypeScript source text/,
  },
  {
    name: "lowRank rank 0",
    run: bad({ kind: "lowRank", rank: 0 }),
    error: PatternError,
    says: /pattern\.rank: lowRank rank must be an integer in \[1, /,
  },
  {
    name: "lowRank intersected with a window",
    run: bad({
      kind: "intersect",
      of: [{ kind: "window", left: 1, right: 1 }, { kind: "lowRank", rank: 4 }],
    }),
    error: PlanError,
    says: /pattern\.of\[0\]: window is intersected with pattern\.of\[1\] \(lowRank\)/,
  },
  {
    name: "select blocks past 64",
    run: bad({ kind: "select", blockSize: 16, blocks: 65 }),
    error: PatternError,
    says: /pattern\.blocks: select blocks must be an integer in \[1, 64\], got 65/,
  },
  {
    name: "select inside a union",
    run: bad({
      kind: "union",
      of: [{ kind: "causal" }, { kind: "select", blockSize: 16, blocks: 2 }],
    }),
    error: PlanError,
    says: /pattern\.of\[1\]: select inside union is not supported/,
  },
  {
    name: "select intersected with a window",
    run: bad({
      kind: "intersect",
      of: [{ kind: "window", left: 1, right: 1 }, { kind: "select", blockSize: 16, blocks: 2 }],
    }),
    error: PlanError,
    says: /pattern\.of\[0\]: window is intersected with pattern\.of\[1\] \(select\)/,
  },
  {
    name: "select on a decoding step",
    run: () =>
      compile({ kind: "select", blockSize: 16, blocks: 2 }, {
        shape: { ...shape, seqLen: 1, kvSeqLen: 64 },
      }),
    error: ShapeError,
    says: /pattern \(select\) runs on square calls only.*drop shape\.kvSeqLen/,
  },
  {
    name: "hashBucket buckets not a power of two",
    run: bad({ kind: "hashBucket", buckets: 12, rounds: 1, seed: 0 }),
    error: PatternError,
    says: /pattern\.buckets: hashBucket buckets must be a power of two in \[2, 1024\], got 12/,
  },
  {
    name: "hashBucket buckets over 1024",
    run: bad({ kind: "hashBucket", buckets: 2048, rounds: 1, seed: 0 }),
    error: PatternError,
    says: /pattern\.buckets: hashBucket buckets must be an integer in \[2, 1024\], got 2048/,
  },
  {
    name: "hashBucket rounds 0",
    run: bad({ kind: "hashBucket", buckets: 8, rounds: 0, seed: 0 }),
    error: PatternError,
    says: /pattern\.rounds: hashBucket rounds must be an integer in \[1, 8\], got 0/,
  },
  {
    name: "hashBucket seed negative",
    run: bad({ kind: "hashBucket", buckets: 8, rounds: 1, seed: -1 }),
    error: PatternError,
    says: /pattern\.seed: hashBucket seed must be an integer in \[0, 4294967295\], got -1/,
  },
  {
    name: "hashBucket weights unknown",
    run: bad({ kind: "hashBucket", buckets: 8, rounds: 1, seed: 0, weights: "mean" }),
    error: PatternError,
    says: /pattern\.weights: hashBucket weights must be "softmax" or "uniform", got "mean"/,
  },
  {
    name: "uniform hashBucket in a union with a window",
    run: bad({
      kind: "union",
      of: [{ kind: "window", left: 1, right: 1 }, {
        ...{ kind: "hashBucket", buckets: 8, rounds: 2, seed: 1 },
        weights: "uniform",
      }],
    }),
    error: PlanError,
    says:
      /pattern\.of\[1\]: weights "uniform" make every score of the softmax 0, but pattern also allows/,
  },
  {
    name: "score modifier over a uniform hashBucket",
    run: bad({
      kind: "scored",
      pattern: { ...{ kind: "hashBucket", buckets: 8, rounds: 2, seed: 1 }, weights: "uniform" },
      score: { expr: "(s) => s" },
    }),
    error: PlanError,
    says: /pattern: a score modifier over pattern\.pattern \(weights "uniform"\) has no effect/,
  },
  {
    name: "hashBucket sorts over one dispatch",
    run: () =>
      compile({ kind: "hashBucket", buckets: 8, rounds: 8, seed: 0 }, {
        shape: { batch: 4096, headsQ: 1, headsKV: 1, seqLen: 4, headDim: 4 },
      }),
    error: PlanError,
    says: /hashBucket seed 0, 8 buckets: 8 rounds x 8192 query and key\/value heads is 65536 sorts/,
  },
  {
    name: "reference given codes that lack the hashBucket's rounds",
    run: () =>
      reference({
        pattern: { kind: "hashBucket", buckets: 8, rounds: 2, seed: 1 },
        shape,
        q: new Float32Array(2 * 64 * 16),
        k: new Float32Array(2 * 64 * 16),
        v: new Float32Array(2 * 64 * 16),
        hashCodes: new Map(),
      }),
    error: ShapeError,
    says: /hashCodes has no 2 rounds for seed 1, 8 buckets; pass the codes Runtime\.run returned/,
  },
];

const SHAPES: Case[] = [
  {
    name: "batch 0",
    run: badShape({ batch: 0 }),
    error: ShapeError,
    says: /batch must be an integer >= 1, got 0/,
  },
  {
    name: "headsQ 0",
    run: badShape({ headsQ: 0 }),
    error: ShapeError,
    says: /headsQ must be an integer >= 1/,
  },
  {
    name: "headsKV 0",
    run: badShape({ headsKV: 0 }),
    error: ShapeError,
    says: /headsKV must be an integer >= 1/,
  },
  {
    name: "seqLen 0",
    run: badShape({ seqLen: 0 }),
    error: ShapeError,
    says: /seqLen must be an integer >= 1, got 0/,
  },
  {
    name: "seqLen fractional",
    run: badShape({ seqLen: 10.5 }),
    error: ShapeError,
    says: /seqLen .*10\.5/,
  },
  {
    name: "seqLen past i32",
    run: badShape({ seqLen: 2 ** 31 }),
    error: ShapeError,
    says: /seqLen/,
  },
  {
    name: "headDim 0",
    run: badShape({ headDim: 0 }),
    error: ShapeError,
    says: /headDim must be an integer >= 1/,
  },
  {
    name: "headDim not a multiple of 4",
    run: badShape({ headDim: 6 }),
    error: ShapeError,
    says: /headDim must be a multiple of 4 in \[4, 256\], got 6/,
  },
  {
    name: "headDim over 256",
    run: badShape({ headDim: 260 }),
    error: ShapeError,
    says: /headDim .*\[4, 256\], got 260/,
  },
  {
    name: "headsQ not a multiple of headsKV",
    run: badShape({ headsQ: 3, headsKV: 2 }),
    error: ShapeError,
    says: /headsQ \(3\) must be a multiple of headsKV \(2\)/,
  },
  {
    name: "dtype f64",
    run: () => compile({ kind: "dense" }, { shape, dtype: "f64" as never }),
    error: ShapeError,
    says: /dtype must be "f32" or "f16", got "f64"/,
  },
  {
    name: "scale NaN",
    run: () => compile({ kind: "dense" }, { shape, scale: NaN }),
    error: ShapeError,
    says: /scale must be a finite nonzero number, got NaN/,
  },
  {
    name: "keySplits 0",
    run: () => compile({ kind: "global", tokens: [0] }, { shape, keySplits: 0 }),
    error: ShapeError,
    says: /keySplits must be an integer from 1 to 4096, got 0/,
  },
  {
    name: "keySplits over the workgroup limit",
    run: () =>
      compile({ kind: "global", tokens: Array.from({ length: 64 }, (_, i) => i) }, {
        shape,
        tiles: { tileQ: 4, tileK: 4 },
        keySplits: 4096,
      }),
    error: PlanError,
    says: /16 query tiles x 4096 key chunks = 65536 workgroups, over WebGPU's 65535/,
  },
  {
    name: "query tiles over the workgroup limit",
    run: () =>
      compile({ kind: "window", left: 4, right: 4 }, {
        shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 300_000, headDim: 4 },
        tiles: { tileQ: 4, tileK: 4 },
      }),
    error: PlanError,
    says: /needs 75000 query tiles \(one workgroup each\), over WebGPU's 65535 .*shorter sequence/,
  },
  {
    name: "kvSeqLen below seqLen",
    run: badShape({ kvSeqLen: 32 }),
    error: ShapeError,
    says: /seqLen \(64 query rows\) must not exceed kvSeqLen \(32 keys\)/,
  },
  {
    name: "kvSeqLen 0",
    run: badShape({ kvSeqLen: 0 }),
    error: ShapeError,
    says: /kvSeqLen must be an integer >= 1 when given, got 0/,
  },
  {
    name: "valueDim not a multiple of 4",
    run: badShape({ valueDim: 6 }),
    error: ShapeError,
    says: /valueDim must be a multiple of 4 in \[4, 256\], got 6/,
  },
  {
    name: "valueDim over 256",
    run: badShape({ valueDim: 260 }),
    error: ShapeError,
    says: /valueDim .*\[4, 256\], got 260/,
  },
  {
    name: "queryOffset past Nk - Nq",
    run: () => compile({ kind: "causal" }, { shape: { ...shape, kvSeqLen: 100 }, queryOffset: 37 }),
    error: ShapeError,
    says: /queryOffset must be an integer in \[0, Nk - Nq\] = \[0, 36\] .*got 37/,
  },
  {
    name: "queryOffset negative",
    run: () => compile({ kind: "causal" }, { shape: { ...shape, kvSeqLen: 100 }, queryOffset: -1 }),
    error: ShapeError,
    says: /queryOffset must be an integer in \[0, Nk - Nq\] = \[0, 36\] .*got -1/,
  },
  {
    name: "queryOffset of a square call",
    run: () => compile({ kind: "causal" }, { shape, queryOffset: 1 }),
    error: ShapeError,
    says: /queryOffset must be an integer in \[0, Nk - Nq\] = \[0, 0\] .*got 1/,
  },
  {
    name: "subgroup matrices with a value head dim of its own",
    run: () =>
      compile({ kind: "causal" }, {
        shape: { ...shape, valueDim: 32 },
        dtype: "f16",
        tiles: {
          tileQ: 16,
          tileK: 16,
          threads: 32,
          rowsPerThread: 2,
          matrix: { input: "f16", result: "f32", m: 8, n: 8, k: 8, subgroupSize: 32 },
        },
      }),
    error: ShapeError,
    says: /tiles\.matrix \(subgroup matrices\) needs valueDim == headDim, got valueDim 32/,
  },
  {
    name: "prefetch with a value head dim of its own",
    run: () => compile({ kind: "causal" }, { shape: { ...shape, valueDim: 8 }, prefetch: true }),
    error: ShapeError,
    says: /prefetch needs valueDim == headDim/,
  },
  {
    name: "tile columns that do not divide valueDim / 4",
    run: () =>
      compile({ kind: "causal" }, {
        shape: { ...shape, valueDim: 8 },
        tiles: { tileQ: 16, tileK: 16, threads: 64, rowsPerThread: 2 },
      }),
    error: ShapeError,
    says:
      /8 columns; the columns must be a whole number dividing tileK \(16\) and valueDim \/ 4 \(2\)/,
  },
  {
    name: "paged K and V in pages of 12 positions",
    run: () => compile({ kind: "causal" }, { shape, paged: { pageSize: 12, pages: 8 } }),
    error: ShapeError,
    says: /paged\.pageSize must be a power of two from 1 to 65536 .*got 12/,
  },
  {
    name: "packed sequences with paged K and V",
    run: () =>
      compile({ kind: "causal" }, { shape, paged: { pageSize: 16, pages: 8 }, packed: true }),
    error: ShapeError,
    says: /paged K and V hold one sequence per batch; packed sequences .*compile without paged/,
  },
  {
    name: "linear attention with paged K and V",
    run: () =>
      compile({ kind: "linear", featureMap: "elu1" }, {
        shape,
        paged: { pageSize: 16, pages: 8 },
      }),
    error: ShapeError,
    says: /paged K and V: pattern is linear, whose kernels read contiguous K and V/,
  },
  {
    name: "scale infinite (reference)",
    run: () =>
      reference({
        pattern: { kind: "dense" },
        shape,
        q: new Float32Array(2048),
        k: new Float32Array(2048),
        v: new Float32Array(2048),
        scale: Infinity,
      }),
    error: ShapeError,
    says: /scale must be a finite number/,
  },
  {
    name: "reference q too short",
    run: () =>
      reference({
        pattern: { kind: "dense" },
        shape,
        q: new Float32Array(2047),
        k: new Float32Array(2048),
        v: new Float32Array(2048),
      }),
    error: ShapeError,
    says: /\bq has 2047 elements/,
  },
  {
    name: "reference k too long",
    run: () =>
      reference({
        pattern: { kind: "dense" },
        shape,
        q: new Float32Array(2048),
        k: new Float32Array(2049),
        v: new Float32Array(2048),
      }),
    error: ShapeError,
    says: /\bk has 2049 elements/,
  },
  {
    name: "reference gates for a plain pattern",
    run: () =>
      reference({
        pattern: { kind: "dense" },
        shape,
        q: new Float32Array(2048),
        k: new Float32Array(2048),
        v: new Float32Array(2048),
        gates: { data: [1, 1], shape: [1, 2, 1] },
      }),
    error: ShapeError,
    says: /gates/,
  },
  {
    name: "reference gates of the wrong shape",
    run: () =>
      reference({
        pattern: { kind: "gated", branches: [{ kind: "dense" }, { kind: "causal" }] },
        shape,
        q: new Float32Array(2048),
        k: new Float32Array(2048),
        v: new Float32Array(2048),
        gates: { data: [1, 1, 1, 1, 1, 1], shape: [1, 2, 3] },
      }),
    error: ShapeError,
    says: /gates shape is \[1, 2, 3\]/,
  },
  {
    name: "tile over workgroup memory",
    run: () =>
      compile({ kind: "dense" }, {
        shape: { ...shape, headDim: 256 },
        tiles: { tileQ: 128, tileK: 128 },
        limits: { maxComputeWorkgroupStorageSize: 16384 },
      }),
    error: PlanError,
    says: /tile 128x128 at D=256 .* needs \d+ bytes of workgroup memory; this device allows 16384/,
  },
  {
    name: "tensor over one storage binding",
    run: () =>
      compile({ kind: "dense" }, {
        shape: { batch: 4, headsQ: 32, headsKV: 32, seqLen: 65536, headDim: 128 },
        limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBufferBindingSize: 2 ** 31 - 1 },
      }),
    error: DeviceError,
    says: /tensor q needs 4294967296 bytes, over maxStorageBufferBindingSize \(2147483647\)/,
  },
  {
    name: "too many terms",
    run: bad({
      kind: "intersect",
      of: Array.from(
        { length: 4 },
        (_, i) => ({
          kind: "union",
          of: [{ kind: "ring", radius: i + 1 }, { kind: "stride", period: i + 2 }, {
            kind: "window",
            left: i,
            right: 1,
          }],
        }),
      ),
    }),
    error: PlanError,
    says: /pattern: expands to 81 disjoint components \(at most 64\)/,
  },
];

const packedShape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 12, headDim: 16 };
const packed = (pattern: unknown, changes: Record<string, unknown> = {}) => () =>
  compile(pattern, { shape: packedShape, packed: true, ...changes });
const lengths =
  (seqLens: number[], kvSeqLens?: number[], pattern: unknown = { kind: "causal" }) => () =>
    packedCallData(
      compile(pattern, { shape: packedShape, packed: true }),
      packedSequences(packedShape, seqLens, kvSeqLens),
    );

const PACKED: Case[] = [
  {
    name: "packed linear attention",
    run: packed({
      kind: "gated",
      branches: [{ kind: "causal" }, {
        kind: "linear",
        featureMap: "elu1",
        causal: true,
      }],
    }),
    error: PlanError,
    says: /pattern\.branches\[1\] is linear, whose chunked sums run over whole heads/,
  },
  {
    name: "packed with batch 2",
    run: packed({ kind: "causal" }, { shape: { ...packedShape, batch: 2 } }),
    error: ShapeError,
    says: /packed sequences need batch = 1, got 2; lay the sequences end to end in one batch/,
  },
  {
    name: "packed with a query offset",
    run: packed({ kind: "causal" }, { queryOffset: 0 }),
    error: ShapeError,
    says: /queryOffset does not apply to packed sequences .*leave it unset/,
  },
  {
    name: "packed backward with keys longer than queries",
    run: packed({ kind: "causal" }, { backward: true, shape: { ...packedShape, kvSeqLen: 20 } }),
    error: ShapeError,
    says:
      /backward pass \(backward: true\) of packed sequences \(packed: true\) needs kvSeqLen == seqLen \(so each call's seqLens == kvSeqLens\), got kvSeqLen 20 and seqLen 12; run the forward pass alone/,
  },

  {
    name: "packed random",
    run: packed({
      kind: "union",
      of: [{ kind: "causal" }, { kind: "random", blocks: 1, blockSize: 4, seed: 0 }],
    }),
    error: PlanError,
    says:
      /packed sequences: pattern\.of\[1\] is random, .*; packing runs dense, causal, window, ring, stride, global and predicate leaves/,
  },
  {
    name: "packed hashBucket",
    run: packed({ kind: "hashBucket", buckets: 4, rounds: 1, seed: 0 }),
    error: PlanError,
    says: /pattern is hashBucket, whose bucket order sorts whole heads/,
  },
  {
    name: "packed lowRank in a gated branch",
    run: packed({ kind: "gated", branches: [{ kind: "causal" }, { kind: "lowRank", rank: 2 }] }),
    error: PlanError,
    says: /pattern\.branches\[1\] is lowRank, whose landmarks are pooled over each sequence/,
  },
  {
    name: "packed lengths that do not sum to the shape",
    run: lengths([5, 6]),
    error: ShapeError,
    says: /seqLens sum to 11 and kvSeqLens to 11; the shape has seqLen 12 and kvSeqLen 12/,
  },
  {
    name: "packed lengths of two counts",
    run: lengths([6, 6], [12]),
    error: ShapeError,
    says: /seqLens and kvSeqLens must list the same sequences \(at least one\), got 2 and 1/,
  },
  {
    name: "packed sequence with more queries than keys",
    run: lengths([8, 4], [6, 6]),
    error: ShapeError,
    says: /sequence 0 has seqLens 8 and kvSeqLens 6; .*0 <= seqLens\[s\] <= kvSeqLens\[s\]/,
  },
  {
    name: "packed sequence of no keys",
    run: lengths([0, 12], [0, 12]),
    error: ShapeError,
    says: /sequence 0 has seqLens 0 and kvSeqLens 0; .*kvSeqLens\[s\] >= 1/,
  },
  {
    name: "packed global token past a sequence's keys",
    run: lengths([9, 3], undefined, { kind: "global", tokens: [4] }),
    error: PlanError,
    says: /pattern\.tokens\[0\]: global token must be < N \(3\), got 4: packed sequence 1/,
  },
];

const CLI: Case[] = [
  {
    name: "explain without --seq-len",
    run: () => explain(['{"kind":"dense"}']),
    error: UsageError,
    says: /seq-len/,
  },
  {
    name: "explain --seq-len 0",
    run: () => explain(['{"kind":"dense"}', "--seq-len", "0"]),
    error: UsageError,
    says: /--seq-len must be an integer/,
  },
  {
    name: "explain --tiles 0x8",
    run: () => explain(['{"kind":"dense"}', "--seq-len", "8", "--tiles", "0x8"]),
    error: UsageError,
    says: /--tiles must be QxK with Q and K in \[1, 256\]/,
  },
  {
    name: "explain --head-dim 1000",
    run: () => explain(['{"kind":"dense"}', "--seq-len", "8", "--head-dim", "1000"]),
    error: UsageError,
    says: /--head-dim/,
  },
  {
    name: "explain a missing file",
    run: () => explain(["no_such_pattern.json", "--seq-len", "8"]),
    error: UsageError,
    says: /no_such_pattern/,
  },
  {
    name: "explain unknown flag",
    run: () => explain(['{"kind":"dense"}', "--seq-len", "8", "--colour"]),
    error: UsageError,
    says: /colour/,
  },
];

for (
  const [group, cases] of [
    ["pattern", PATTERNS],
    ["TypeScript predicates and lowRank", PREDICATES],
    ["shape and options", SHAPES],
    ["packed sequences", PACKED],
    ["command line", CLI],
  ] as const
) {
  Deno.test(`error catalogue: ${group} (${cases.length} cases)`, async (t) => {
    for (const c of cases) {
      await t.step(c.name, async () => {
        let thrown: unknown;
        try {
          await c.run();
        } catch (e) {
          thrown = e;
        }
        assert.ok(thrown instanceof c.error, `expected ${c.error.name}, got ${thrown}`);
        assert.match((thrown as Error).message, c.says);
      });
    }
  });
}

Deno.test("error catalogue: non-finite data (GPU path)", async (t) => {
  const rt = await createRuntime({ autotune: false });
  try {
    const compiled = rt.compile({
      kind: "gated",
      branches: [{ kind: "ring", radius: 2 }, { kind: "causal" }],
    }, { shape });
    const ok = () => new Float32Array(2 * 64 * 16).fill(0.25);
    const gates = () => new Float32Array(2 * 2).fill(0.5);
    const poisoned = (tensor: "q" | "k" | "v" | "gates", value: number, at: number) => {
      const inputs = { q: ok(), k: ok(), v: ok(), gates: gates() };
      inputs[tensor][at] = value;
      return inputs;
    };
    const cases: [string, "q" | "k" | "v" | "gates", number, number][] = [
      ["NaN in q", "q", NaN, 17],
      ["+Infinity in k", "k", Infinity, 0],
      ["-Infinity in v", "v", -Infinity, 2047],
      ["NaN in gates", "gates", NaN, 3],
      ["Infinity in gates", "gates", Infinity, 1],
    ];
    for (const [name, tensor, value, at] of cases) {
      await t.step(name, async () => {
        await assert.rejects(
          () => rt.run(compiled, poisoned(tensor, value, at)),
          (e: Error) =>
            e instanceof DataError &&
            e.message.startsWith(
              `Bad input: ${tensor}[${at}] is ${value}; Q, K, V and gates must be finite`,
            ),
        );
      });
    }
  } finally {
    rt.destroy();
  }
});

Deno.test("error catalogue: a backend that is not one names the allowed values", async () => {
  await assert.rejects(
    () => createRuntime({ backend: "vulkan" }),
    (e: Error) =>
      e instanceof DeviceError &&
      e.message === 'Bad backend "vulkan": allowed values are native, dawn',
  );
  const saved = Deno.env.get("WEFT_BACKEND");
  Deno.env.set("WEFT_BACKEND", "wgpu");
  try {
    await assert.rejects(
      () => createRuntime(),
      (e: Error) =>
        e.message === 'Bad backend "wgpu" (from WEFT_BACKEND): allowed values are native, dawn',
    );
  } finally {
    if (saved === undefined) Deno.env.delete("WEFT_BACKEND");
    else Deno.env.set("WEFT_BACKEND", saved);
  }
});

Deno.test("error catalogue: no adapter says how to get one", async () => {
  const gpu = navigator.gpu;
  const original = gpu.requestAdapter;
  // deno-lint-ignore require-await
  gpu.requestAdapter = async () => null;
  try {
    await assert.rejects(
      () => createRuntime(),
      (e: Error) =>
        e instanceof DeviceError &&
        /No WebGPU adapter found \(backend native\): install a Vulkan driver/.test(e.message) &&
        /mesa-vulkan-drivers/.test(e.message),
    );
  } finally {
    gpu.requestAdapter = original;
  }
});
