/**
 * `deno task run`: runs a pattern on `.npy` inputs on the WebGPU adapter and writes O (and LSE).
 *
 * ```sh
 * deno task run --pattern P --q q.npy --k k.npy --v v.npy [--gates g.npy] [--scale s] \
 *   [--dtype f32|f16] [--query-offset N | --seq-lens a,b,c [--kv-seq-lens a,b,c]] \
 *   [--block-table bt.npy --kv-seq-len Nk] \
 *   --out o.npy [--lse lse.npy] [--verify]
 * ```
 *
 * `P` is a JSON file, JSON text or an example's name (`pi_attention`, ...). The shape comes from
 * the tensors: Q `[B, Hq, Nq, D]`, K `[B, Hkv, Nk, D]` and V `[B, Hkv, Nk, Dv]` with `Nq <= Nk`
 * (query row `i` at key position `offset + i`, the offset `Nk - Nq` unless `--query-offset`
 * says), gates `[B, Hq, branches]` or `[B, Hq, Nq, branches]`; O is `[B, Hq, Nq, Dv]`. With
 * `--block-table`, K and V are pages `[pages, Hkv, pageSize, D]` read through the table (paged
 * K and V, `_paged.ts`), `--kv-seq-len` says Nk, and the backward pass's dk and dv are pages
 * too, each row summed over the positions the table puts there. With
 * `--seq-lens` (and `--kv-seq-lens` where keys are longer), batch 1 holds packed sequences laid
 * end to end, each attending only to its own keys (DESIGN §1). Tensors
 * are float32 or float16 `.npy` files; `--dtype f16` (which needs
 * an adapter with shader-f16, checked first) rounds float32 ones to float16 and writes O as
 * float16, `--dtype f32` (the default) widens float16 ones exactly; LSE is float32 either way.
 * `--verify` checks O and LSE against the float64 reference of the inputs the GPU got, paged K
 * and V gathered into the contiguous layout (DESIGN
 * §4: O within 1e-4 absolute in float32, 5e-3 in float16; LSE within that times
 * max(1, |LSE_ref|)) and exits 1 past it. Bad input of any kind, an output path that cannot be
 * written among it, prints one line `error: ...` and exits 2 before the GPU is touched.
 * @module
 */
import type { AttentionShape, CompiledAttention, Dtype } from "../compiler/mod.ts";
import { checkAttentionShape, packedPlan, planSummary } from "../compiler/mod.ts";
import { ShapeError } from "../core/errors.ts";
import { queryOffsetOf, sequenceSizes } from "../core/shape.ts";
import { packedSequences } from "../core/packed_sequences.ts";
import type { Pattern } from "../dsl/schema.ts";
import { hashCodeMismatches, reference, referenceGradients } from "../runtime/reference/mod.ts";
import type { DeviceInfo } from "../runtime/device.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import type { AttentionGradients } from "../runtime/attention_call.ts";
import { resolveBackend } from "../runtime/device.ts";
import type { HashCodes } from "../dsl/hash_bucket.ts";
import { learnableConstants } from "../dsl/expression_check.ts";
import { checkShape } from "../core/input_shapes.ts";
import { checkPagedFlags, gatheredKv, pagedLine, pagedShapeOf, readBlockTable } from "./_paged.ts";
import { type PagedKv, scatterPages } from "../core/paged_kv.ts";
import { resolve } from "node:path";
import {
  adapterLine,
  checkDtype,
  checkOutputPath,
  constantGradientError,
  EXIT_FAILURE,
  formatMs,
  gradientError,
  integerFlag,
  loadPattern,
  maxAbsError,
  maxLseError,
  parseFlags,
  readTensor,
  required,
  runMain,
  type Tensor,
  UsageError,
  writeTensor,
} from "./_common.ts";

/** DESIGN §4: tolerance against the float64 reference, per dtype (O absolute, LSE relative). */
const TOLERANCE: Record<Dtype, number> = { f32: 1e-4, f16: 5e-3 };

/** Gradients' tolerance relative to the largest reference gradient (DESIGN §4). */
const GRADIENT_TOLERANCE = { f32: 1e-4, f16: 1e-2 };

const USAGE = `Usage: deno task run --pattern P --q q.npy --k k.npy --v v.npy [--gates g.npy]
       [--scale s] [--dtype f32|f16] [--query-offset N | --seq-lens a,b,c [--kv-seq-lens a,b,c]]
       [--block-table bt.npy --kv-seq-len Nk] --out o.npy [--lse lse.npy] [--verify]
       [--backend B] [--grad-out dO.npy --dq dq.npy --dk dk.npy --dv dv.npy
       [--dgates dg.npy] [--dconstants dc.json]]

  --pattern P    a JSON file, JSON text, or an example's name (e.g. pi_attention)
  --q/--k/--v    float32 or float16 .npy tensors: q [B, Hq, Nq, D], k [B, Hkv, Nk, D] and
                 v [B, Hkv, Nk, Dv], with Nq <= Nk (Nq = Nk and Dv = D: plain attention)
  --gates g.npy  gated patterns: [B, Hq, branches] or [B, Hq, Nq, branches]; these gates
                 replace the pattern's JSON gates (default: those, else 1/branches)
  --scale s      softmax scale (default 1/sqrt(D))
  --dtype D      f32 (default; float16 inputs are widened exactly) or f16 (needs an adapter
                 with shader-f16; float32 inputs are rounded to float16; O is written float16)
  --query-offset N
                 query row i is key position N + i, N in [0, Nk - Nq] (default Nk - Nq: the
                 queries are the last positions, a prefill chunk or a decoding step)
  --block-table bt.npy
                 paged K and V: bt.npy is [B, maxPages] int32 or uint32 page indices, and
                 k and v are pages [pages, Hkv, pageSize, D] and [pages, Hkv, pageSize, Dv];
                 key position p of batch b is row p % pageSize of page bt[b, p / pageSize]
                 (pageSize a power of two); with --grad-out, dk and dv are in the
                 pages' shape, each row summed over the positions the table puts there
  --kv-seq-len Nk
                 with --block-table: the keys per sequence (Nq <= Nk <= maxPages * pageSize)
  --seq-lens a,b,c
                 packed sequences (batch 1): the query rows of each, laid end to end and summing
                 to Nq; each sequence attends only to its own keys, with positions from its start
  --kv-seq-lens a,b,c
                 the key rows of each packed sequence, summing to Nk (default --seq-lens); a
                 sequence's queries are its last positions
  --out o.npy    where to write O [B, Hq, Nq, Dv] (its directory must exist)
  --lse lse.npy  where to write LSE [B, Hq, Nq] ([branches, B, Hq, Nq] when gated), float32
  --verify       compare with the float64 CPU reference; exit 1 past the tolerance: O within
                 ${TOLERANCE.f32} (f32) or ${TOLERANCE.f16} (f16), LSE within that x max(1, |LSE|)
  --backend B    native (Deno's WebGPU) or dawn (npm webgpu: subgroup matrices where the GPU
                 has them); default: WEFT_BACKEND, else native
  --grad-out g   the backward pass: g.npy is ∂loss/∂O [B, Hq, Nq, Dv]; --dq, --dk, --dv (and
                 --dgates for runtime gates) say where to write the gradients, float32:
                 dq [B, Hq, Nq, D], dk [B, Hkv, Nk, D], dv [B, Hkv, Nk, Dv] (paged:
                 dk [pages, Hkv, pageSize, D], dv [pages, Hkv, pageSize, Dv]);
                 --dconstants writes the learnable score constants' gradients as JSON;
                 --verify checks them against the float64 reference: within ${GRADIENT_TOLERANCE.f32} (f32)
                 or ${GRADIENT_TOLERANCE.f16} (f16) of the largest gradient`;

const FLAGS = {
  pattern: { type: "string" },
  q: { type: "string" },
  k: { type: "string" },
  v: { type: "string" },
  gates: { type: "string" },
  scale: { type: "string" },
  dtype: { type: "string" },
  "query-offset": { type: "string" },
  "block-table": { type: "string" },
  "kv-seq-len": { type: "string" },
  "seq-lens": { type: "string" },
  "kv-seq-lens": { type: "string" },
  out: { type: "string" },
  lse: { type: "string" },
  verify: { type: "boolean" },
  backend: { type: "string" },
  "grad-out": { type: "string" },
  dq: { type: "string" },
  dk: { type: "string" },
  dv: { type: "string" },
  dgates: { type: "string" },
  dconstants: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * The tool: parse, load, run, write, optionally verify.
 *
 * @param args the command line
 * @returns the exit status (0, or 1 when `--verify` finds an error above tolerance)
 * @throws {UsageError|PatternError|ShapeError|PlanError|DeviceError|ShaderError} bad input
 * @example
 * ```ts ignore
 * import { main } from "./run.ts";
 * await main(["--pattern", "pi_attention", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
 *   "--out", "o.npy"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values } = parseFlags(args, FLAGS);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  // Every flag and output path first: a mistake costs no GPU time and leaves no file behind.
  const dtype = checkDtype(values.dtype);
  const backend = resolveBackend(values.backend);
  const scale = parseScale(values.scale);
  const offsetFlag = integerFlag(values["query-offset"], "query-offset", { min: 0 });
  const tablePath = values["block-table"];
  const kvSeqLen = checkPagedFlags(values, tablePath);
  const lengthFlags = packedFlags(values["seq-lens"], values["kv-seq-lens"], offsetFlag);
  if (tablePath !== undefined && lengthFlags) {
    throw new UsageError(
      "--block-table and --seq-lens do not go together: paged K and V hold one sequence per " +
        "batch; give packed sequences contiguous K and V",
    );
  }
  const spec = required(values.pattern, "pattern", "JSON, file or example");
  const paths = (["q", "k", "v"] as const).map((f) =>
    required(values[f], f, `the ${f} tensor, a float32 or float16 .npy file`)
  );
  const outPath = required(values.out, "out", "where to write O, a .npy file");
  await checkOutputPath(outPath, "out");
  if (values.lse !== undefined) {
    if (resolve(values.lse) === resolve(outPath)) {
      throw new UsageError(`--lse ${values.lse} is the --out file; give LSE a file of its own`);
    }
    await checkOutputPath(values.lse, "lse");
  }
  const gradientPaths = await checkGradientFlags(values, outPath);
  const pattern = await loadPattern(spec);

  let rt: Runtime | undefined;
  try {
    // float16 needs shader-f16: said before the inputs are read.
    if (dtype === "f16") {
      rt = await createRuntime({ backend });
      requireShaderF16(rt.info);
    }
    const read = await Promise.all(paths.map((path, i) => readTensor(path, "qkv"[i])));
    const [q, k, v] = read.map((t, i) => inDtype(t, dtype, "qkv"[i]));
    const converted = (["q", "k", "v"] as const).filter((_, i) =>
      read[i].data !== [q, k, v][i].data
    );
    const gatesRead = values.gates === undefined
      ? undefined
      : await readTensor(values.gates, "gates");
    // Gates are float32 in both dtypes (float16 ones widen exactly).
    const gates = gatesRead && inDtype(gatesRead, "f32", "gates");
    const table = tablePath === undefined ? undefined : await readBlockTable(tablePath);
    const { shape, paged } = table
      ? pagedShapeOf(q, k, v, table, kvSeqLen!)
      : { shape: shapeOf(q, k, v), paged: undefined };
    checkAttentionShape(shape);
    const lengths = lengthFlags && checkLengths(shape, lengthFlags);
    const queryOffset = lengths ? 0 : offsetOf(shape, offsetFlag);
    const { nq: N, nk: Nk, dv: Dv } = sequenceSizes(shape);
    const { batch: B, headsQ: Hq } = shape;
    const oShape = [B, Hq, N, Dv];
    const dO = gradientPaths &&
      inDtype(await readTensor(gradientPaths.dO, "grad-out"), dtype, "grad-out");
    if (dO && dO.shape.join(",") !== oShape.join(",")) {
      throw new UsageError(
        `--grad-out ${gradientPaths!.dO} has shape [${dO.shape.join(", ")}]; ∂loss/∂O has O's ` +
          `shape, [${oShape.join(", ")}]`,
      );
    }
    if (gradientPaths?.dgates && !gates) {
      throw new UsageError("--dgates needs --gates: JSON and default gates are constants");
    }
    if (gradientPaths?.dconstants && learnableConstants(pattern).size === 0) {
      throw new UsageError(
        "--dconstants needs learnable constants: no score modifier of the pattern lists any " +
          "in score.learnable",
      );
    }
    const branches = pattern.kind === "gated" ? pattern.branches.length : undefined;
    checkShape(shape, {
      q: q.data,
      k: k.data,
      v: v.data,
      gates,
      branches,
      paged,
      blockTable: table?.data,
    });

    rt ??= await createRuntime({ backend });
    console.log(adapterLine(rt.info));
    if (converted.length > 0) {
      const how = dtype === "f16" ? "float32, rounded to float16" : "float16, widened to float32";
      console.log(`inputs: ${converted.join(", ")} ${how} for --dtype ${dtype}`);
    }
    const compiled = rt.compile(pattern, {
      shape,
      ...(lengths ? { packed: true } : { queryOffset }),
      scale,
      dtype,
      gatesPerPosition: gates?.shape.length === 4,
      backward: dO !== undefined,
      paged,
    });
    // The plan's branch lines would show the JSON gates even where --gates replaces them: the
    // gates line below says which gates the call uses. Packed sequences: the tiles of these
    // lengths, which the call runs.
    const plan = lengths
      ? packedPlan(
        compiled.plan,
        packedSequences(shape, lengths.seqLens, lengths.kvSeqLens),
        shape,
      )
      : compiled.plan;
    console.log(planSummary({ ...plan, gates: undefined }));
    const gatesText = gatesLine(compiled, gates && { path: values.gates!, tensor: gates });
    if (gatesText) console.log(gatesText);
    if (paged) console.log(pagedLine(paged, tablePath!, table!));
    console.log(`compile: ${formatMs(compiled.compileMs)} (${dtype})`);
    if (lengths) console.log(packedLine(lengths));
    const out = await runOnGpu(
      rt,
      compiled,
      { q, k, v, gates, dO, blockTable: table?.data },
      lengths,
    );

    await writeTensor(outPath, "out", { shape: oShape, data: out.o });
    console.log(`wrote ${outPath} [${oShape.join(", ")}] ${dtypeName(out.o)}`);
    if (values.lse !== undefined) {
      const lseShape = compiled.gated ? [compiled.branches, B, Hq, N] : [B, Hq, N];
      await writeTensor(values.lse, "lse", { shape: lseShape, data: out.lse });
      console.log(`wrote ${values.lse} [${lseShape.join(", ")}] float32`);
    }
    if (gradientPaths && out.gradients) {
      // Each gradient has its input's shape: paged K's and V's are pools of pages.
      const g = out.gradients, D = shape.headDim;
      const keyDims = paged ? [paged.pages, shape.headsKV, paged.pageSize] : [B, shape.headsKV, Nk];
      for (
        const [flag, path, data, dims] of [
          ["dq", gradientPaths.dq, g.dq, [B, Hq, N, D]],
          ["dk", gradientPaths.dk, g.dk, [...keyDims, D]],
          ["dv", gradientPaths.dv, g.dv, [...keyDims, Dv]],
          ["dgates", gradientPaths.dgates, g.dgates, gates?.shape],
        ] as const
      ) {
        if (!path || !data || !dims) continue;
        await writeTensor(path, flag, { shape: [...dims], data });
        console.log(`wrote ${path} [${dims.join(", ")}] float32`);
      }
      if (gradientPaths.dconstants && g.dConstants) {
        // Numbers as numbers, arrays as arrays: the constants' own shapes.
        const json = Object.fromEntries(
          Object.entries(g.dConstants).map((
            [name, x],
          ) => [name, typeof x === "number" ? x : [...x]]),
        );
        await Deno.writeTextFile(gradientPaths.dconstants, JSON.stringify(json, null, 2) + "\n");
        console.log(`wrote ${gradientPaths.dconstants} (${Object.keys(json).join(", ")})`);
      }
    }
    if (!values.verify) return 0;
    // The reference takes contiguous K and V: paged ones gathered out of their pages.
    const keys = paged ? gatheredKv(shape, paged, table!, k, v) : { k, v };
    const status = verify({
      pattern,
      shape,
      ...(lengths ? lengths : { queryOffset }),
      q,
      ...keys,
      gates,
      scale: compiled.scale,
      dtype,
      out,
    });
    if (!dO || !out.gradients) return status;
    return Math.max(
      status,
      verifyGradients({
        pattern,
        shape,
        ...(lengths ? lengths : { queryOffset }),
        q,
        ...keys,
        gates,
        dO,
        scale: compiled.scale,
        dtype,
        out,
        ...(paged ? { pool: { paged, blockTable: table!.data } } : {}),
      }),
    );
  } finally {
    rt?.destroy();
  }
}

/** Submits twice (the first pays the driver's shader compile), prints the time, reads back. */
async function runOnGpu(
  rt: Runtime,
  compiled: CompiledAttention,
  inputs: {
    q: Tensor;
    k: Tensor;
    v: Tensor;
    gates?: Tensor;
    dO?: Tensor;
    blockTable?: Int32Array | Uint32Array;
  },
  lengths?: PackedLengths,
): Promise<
  {
    o: Float32Array | Float16Array;
    lse: Float32Array;
    hashCodes?: HashCodes;
    gradients?: AttentionGradients;
  }
> {
  const tensors = {
    q: inputs.q.data,
    k: inputs.k.data,
    v: inputs.v.data,
    gates: inputs.gates?.data as Float32Array | undefined,
    dO: inputs.dO?.data,
    blockTable: inputs.blockTable,
    ...lengths,
  };
  if (compiled.split) {
    // Past one storage binding the runtime runs the call in parts of whole heads, once.
    const started = performance.now();
    const out = await rt.run(compiled, tensors);
    console.log(
      `runs in parts of ${compiled.split.part.batch} batch(es) x ${compiled.split.kvHeads} ` +
        `key/value head(s): ${gpuLine(out.gpuMs, performance.now() - started)}`,
    );
    return { o: out.o, lse: out.lse, hashCodes: out.hashCodes };
  }
  const call = await rt.prepare(compiled, tensors);
  try {
    const started = performance.now();
    await call.submit();
    const firstWall = performance.now() - started;
    const secondMs = await call.submit();
    console.log(gpuLine(secondMs, firstWall));
    const read = await call.read();
    // O in the call's dtype: float16 for a float16 call, else float32.
    return { o: read.o, lse: read.lse, hashCodes: read.hashCodes, gradients: read.gradients };
  } finally {
    call.destroy();
  }
}

function requireShaderF16(info: DeviceInfo): void {
  if (info.shaderF16) return;
  throw new UsageError(
    `--dtype f16 needs an adapter with shader-f16, and ${info.description} has none; ` +
      `use --dtype f32 (float16 .npy inputs are widened to float32 exactly)`,
  );
}

/**
 * The tensor as the call's element type: float16 widens exactly, float32 rounds to float16,
 * which refuses finite values past float16's range (65504) rather than make them infinite.
 */
function inDtype(t: Tensor, dtype: Dtype, flag: string): Tensor {
  if (dtype === "f32") {
    return t.data instanceof Float32Array ? t : { ...t, data: Float32Array.from(t.data) };
  }
  if (t.data instanceof Float16Array) return t;
  const data = Float16Array.from(t.data);
  const i = data.findIndex((x, i) => !Number.isFinite(x) && Number.isFinite(t.data[i]));
  if (i >= 0) {
    throw new UsageError(
      `--${flag}: entry ${i} is ${t.data[i]}, past float16's range (65504) for --dtype f16; ` +
        `scale the tensor down or use --dtype f32`,
    );
  }
  return { ...t, data };
}

function dtypeName(data: Float32Array | Float16Array): string {
  return data instanceof Float16Array ? "float16" : "float32";
}

/**
 * Which gates the call blends with: the --gates tensor (each branch's range over heads and
 * positions), else the pattern's JSON gates, else 1/branches. Undefined for ungated patterns.
 */
function gatesLine(
  compiled: CompiledAttention,
  given: { path: string; tensor: Tensor } | undefined,
): string | undefined {
  if (!compiled.gated) return undefined;
  const n = compiled.branches;
  const json = compiled.plan.gates;
  const show = (x: number) => String(Number(x.toPrecision(4)));
  if (given) {
    const { shape, data } = given.tensor;
    const ranges = Array.from({ length: n }, (_, b) => {
      let lo = Infinity, hi = -Infinity;
      for (let i = b; i < data.length; i += n) {
        lo = Math.min(lo, data[i]);
        hi = Math.max(hi, data[i]);
      }
      return `branch ${b} ${lo === hi ? show(lo) : `${show(lo)} to ${show(hi)}`}`;
    });
    const per = shape.length === 4 ? "per position" : "per head";
    const replaced = json ? `; the pattern's gates ${json.map(show).join(", ")} are not used` : "";
    return `gates: from --gates ${given.path} [${shape.join(", ")}], ${per}: ` +
      `${ranges.join(", ")}${replaced}`;
  }
  if (json) {
    return `gates: the pattern's: ${json.map((g, b) => `branch ${b} ${show(g)}`).join(", ")}`;
  }
  return `gates: 1/${n} per branch (no --gates, and the pattern gives none)`;
}

function parseScale(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const scale = Number(text);
  if (text.trim() === "" || !Number.isFinite(scale)) {
    throw new UsageError(`--scale must be a finite number, got ${JSON.stringify(text)}`);
  }
  return scale;
}

/**
 * The shape the tensors agree on: Q `[B, Hq, Nq, D]`, K `[B, Hkv, Nk, D]`, V `[B, Hkv, Nk, Dv]`
 * (kvSeqLen and valueDim only where they differ from Nq and D). Every disagreement names the
 * tensor and the dimension.
 */
function shapeOf(q: Tensor, k: Tensor, v: Tensor): AttentionShape {
  const dims = (t: Tensor) => `[${t.shape.join(", ")}]`;
  const layouts = { q: "[B, Hq, Nq, D]", k: "[B, Hkv, Nk, D]", v: "[B, Hkv, Nk, Dv]" };
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    if (t.shape.length !== 4) {
      throw new ShapeError(`Bad shape: ${name} must be 4-D ${layouts[name]}, got ${dims(t)}`);
    }
  }
  const expected = `(q ${layouts.q}, k ${layouts.k}, v ${layouts.v})`;
  const same = (
    a: [string, Tensor],
    b: [string, Tensor],
    axis: number,
    what: string,
  ) => {
    if (a[1].shape[axis] === b[1].shape[axis]) return;
    throw new ShapeError(
      `Bad shape: ${b[0]} ${what} is ${b[1].shape[axis]} but ${a[0]}'s is ${a[1].shape[axis]} ` +
        `(${a[0]} ${dims(a[1])}, ${b[0]} ${dims(b[1])}; ${expected})`,
    );
  };
  same(["q", q], ["k", k], 0, "batch B");
  same(["q", q], ["k", k], 3, "headDim D");
  same(["q", q], ["v", v], 0, "batch B");
  same(["k", k], ["v", v], 1, "heads Hkv");
  same(["k", k], ["v", v], 2, "kvSeqLen Nk");
  const [batch, headsQ, seqLen, headDim] = q.shape;
  const [kvSeqLen, valueDim] = [k.shape[2], v.shape[3]];
  return {
    batch,
    headsQ,
    headsKV: k.shape[1],
    seqLen,
    headDim,
    ...(kvSeqLen === seqLen ? {} : { kvSeqLen }),
    ...(valueDim === headDim ? {} : { valueDim }),
  };
}

/** Packed sequences' lengths from `--seq-lens` and `--kv-seq-lens`. */
interface PackedLengths {
  seqLens: number[];
  kvSeqLens?: number[];
}

/**
 * `--seq-lens` and `--kv-seq-lens` as lists of integers, before any file is read: the key
 * lengths need the query lengths, and packed sequences take no `--query-offset` (each one's
 * queries are its last positions).
 */
function packedFlags(
  seqLens: string | undefined,
  kvSeqLens: string | undefined,
  offset: number | undefined,
): PackedLengths | undefined {
  if (seqLens === undefined) {
    if (kvSeqLens !== undefined) {
      throw new UsageError("--kv-seq-lens needs --seq-lens: the packed sequences' query rows");
    }
    return undefined;
  }
  if (offset !== undefined) {
    throw new UsageError(
      "--query-offset does not apply with --seq-lens: each packed sequence's queries are its " +
        "last positions",
    );
  }
  const list = (text: string, flag: string, min: number) => {
    const items = text.split(",").map((x) => x.trim());
    if (items.some((x) => x === "" || !Number.isInteger(Number(x)) || Number(x) < min)) {
      throw new UsageError(
        `--${flag} must be comma-separated integers >= ${min} (e.g. 5,1,13), got ` +
          JSON.stringify(text),
      );
    }
    return items.map(Number);
  };
  return {
    seqLens: list(seqLens, "seq-lens", 0),
    ...(kvSeqLens === undefined ? {} : { kvSeqLens: list(kvSeqLens, "kv-seq-lens", 1) }),
  };
}

/** The lengths checked against the tensors: batch 1, one key length per query length, sums. */
function checkLengths(shape: AttentionShape, lengths: PackedLengths): PackedLengths {
  try {
    packedSequences(shape, lengths.seqLens, lengths.kvSeqLens);
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    const { nq, nk } = sequenceSizes(shape);
    throw new UsageError(
      `--seq-lens ${lengths.seqLens.join(",")}` +
        (lengths.kvSeqLens ? ` --kv-seq-lens ${lengths.kvSeqLens.join(",")}` : "") +
        ` do not fit these tensors (batch ${shape.batch}, Nq ${nq}, Nk ${nk}): ` +
        e.message.replace(/^Bad (input|shape): /, ""),
    );
  }
  return lengths;
}

/** What the call's packed sequences are, for the report. */
function packedLine(lengths: PackedLengths): string {
  const keys = lengths.kvSeqLens ?? lengths.seqLens;
  return `packed: ${lengths.seqLens.length} sequence(s), query rows ` +
    `${lengths.seqLens.join(", ")}; key rows ${keys.join(", ")}`;
}

/** `--query-offset`, checked against the shape (default Nk - Nq). */
function offsetOf(shape: AttentionShape, flag: number | undefined): number {
  try {
    return queryOffsetOf(shape, flag);
  } catch (e) {
    if (!(e instanceof ShapeError) || flag === undefined) throw e;
    const { nq, nk } = sequenceSizes(shape);
    throw new UsageError(
      `--query-offset must be in [0, Nk - Nq] = [0, ${nk - nq}] for these tensors (Nq ${nq} ` +
        `query rows, Nk ${nk} keys), got ${flag}`,
    );
  }
}

/**
 * The second submission's GPU time, and the first's wall time: a driver that compiles shaders
 * at their first dispatch (llvmpipe) pays it there, which its GPU time would not show.
 */
function gpuLine(ms: number | undefined, firstWallMs: number): string {
  const first = `first submission ${formatMs(firstWallMs)} wall clock, with any shader ` +
    `compilation the driver defers to it`;
  return ms === undefined
    ? `gpu: n/a (the adapter has no timestamp-query); ${first}`
    : `gpu: ${formatMs(ms)} (${first})`;
}

function verify(o: {
  pattern: Pattern;
  shape: AttentionShape;
  queryOffset?: number;
  seqLens?: number[];
  kvSeqLens?: number[];
  q: Tensor;
  k: Tensor;
  v: Tensor;
  gates?: Tensor;
  scale: number;
  dtype: Dtype;
  out: { o: Float32Array | Float16Array; lse: Float32Array; hashCodes?: HashCodes };
}): number {
  const started = performance.now();
  // The reference of the values the GPU got (float16-rounded for --dtype f16), in float64.
  const expected = reference({
    pattern: o.pattern,
    shape: o.shape,
    q: o.q.data,
    k: o.k.data,
    v: o.v.data,
    gates: o.gates,
    scale: o.scale,
    queryOffset: o.queryOffset,
    seqLens: o.seqLens,
    kvSeqLens: o.kvSeqLens,
    // hashBucket: the allowed set the kernels used (a projection within rounding of a plane
    // may fall on the other side in float32 or float16 than in float64).
    hashCodes: o.out.hashCodes,
  });
  // Those codes must agree with float64 wherever a projection is clearly signed.
  const contradicted = o.out.hashCodes
    ? hashCodeMismatches(o.pattern, o.shape, o.q.data, o.k.data, o.out.hashCodes)
      .reduce((n, m) => n + m.queries + m.keys, 0)
    : 0;
  if (contradicted > 0) {
    console.log(
      `verify: ${contradicted} hashBucket codes of the GPU contradict clearly signed ` +
        `projections: FAILED`,
    );
    return EXIT_FAILURE;
  }
  const tolerance = TOLERANCE[o.dtype];
  const errorO = maxAbsError(o.out.o, expected.o);
  const errorLse = maxLseError(o.out.lse, expected.lse);
  const ok = errorO <= tolerance && errorLse <= tolerance;
  console.log(
    `verify (float64 reference, ${formatMs(performance.now() - started)}): ` +
      `max abs error O ${errorO.toExponential(2)}, ` +
      `max LSE error relative to max(1, |LSE_ref|) ${errorLse.toExponential(2)}; ` +
      `tolerance ${tolerance} (${o.dtype}; O absolute, LSE |Δ| <= ${tolerance} x ` +
      `max(1, |LSE_ref|)): ${ok ? "ok" : "FAILED"}`,
  );
  return ok ? 0 : EXIT_FAILURE;
}

/** The backward flags: all or none, and output paths checked before any GPU work. */
async function checkGradientFlags(
  values: Record<string, unknown>,
  outPath: string,
): Promise<
  | { dO: string; dq?: string; dk?: string; dv?: string; dgates?: string; dconstants?: string }
  | undefined
> {
  const outputs = (["dq", "dk", "dv", "dgates", "dconstants"] as const)
    .filter((f) => values[f] !== undefined);
  const dO = values["grad-out"] as string | undefined;
  if (dO === undefined) {
    if (outputs.length) {
      throw new UsageError(`--${outputs[0]} needs --grad-out: the backward pass starts from dO`);
    }
    return undefined;
  }
  const paths: Record<string, string> = {};
  for (const f of outputs) {
    const path = values[f] as string;
    if ([outPath, ...Object.values(paths)].some((p) => resolve(p) === resolve(path))) {
      throw new UsageError(`--${f} ${path} is already another output; give it a file of its own`);
    }
    await checkOutputPath(path, f);
    paths[f] = path;
  }
  return { dO, ...paths };
}

function verifyGradients(o: {
  pattern: Pattern;
  shape: AttentionShape;
  queryOffset?: number;
  seqLens?: number[];
  kvSeqLens?: number[];
  q: Tensor;
  k: Tensor;
  v: Tensor;
  gates?: Tensor;
  dO: Tensor;
  scale: number;
  dtype: Dtype;
  out: { gradients?: AttentionGradients; hashCodes?: HashCodes };
  /** Paged K and V: the GPU's dK and dV are pools, the reference's summed into them. */
  pool?: { paged: PagedKv; blockTable: ArrayLike<number> };
}): number {
  const started = performance.now();
  // At the call's scale, on the codes the kernels used (checked by `verify` before this).
  const gradients = referenceGradients({
    pattern: o.pattern,
    shape: o.shape,
    queryOffset: o.queryOffset,
    q: o.q.data,
    k: o.k.data,
    v: o.v.data,
    gates: o.gates,
    dO: o.dO.data,
    scale: o.scale,
    seqLens: o.seqLens,
    kvSeqLens: o.kvSeqLens,
    hashCodes: o.out.hashCodes,
  });
  const want = o.pool ? pooledGradients(gradients, o.shape, o.pool) : gradients;
  const { worst, largest } = gradientError(o.out.gradients!, want);
  const relative = worst / Math.max(largest, Number.MIN_VALUE);
  const tolerance = GRADIENT_TOLERANCE[o.dtype];
  let ok = relative <= tolerance;
  console.log(
    `verify gradients (float64 reference, ${formatMs(performance.now() - started)}): ` +
      `max abs error ${worst.toExponential(2)}, ${relative.toExponential(2)} of the largest ` +
      `gradient; tolerance ${tolerance} (${o.dtype}): ${ok ? "ok" : "FAILED"}`,
  );
  if (want.dConstants) {
    // They sum over every row: relative to their own largest, or their terms' where those cancel.
    const c = constantGradientError(
      o.out.gradients!.dConstants,
      want.dConstants,
      want.dConstantsScale,
    );
    const constantRelative = c.worst / Math.max(c.largest, Number.MIN_VALUE);
    const constantsOk = constantRelative <= tolerance;
    ok &&= constantsOk;
    console.log(
      `verify learnable constants' gradients: max abs error ${c.worst.toExponential(2)}, ` +
        `${constantRelative.toExponential(2)} of the largest; tolerance ${tolerance}: ` +
        `${constantsOk ? "ok" : "FAILED"}`,
    );
  }
  return ok ? 0 : EXIT_FAILURE;
}

/** The reference's dK and dV of the gathered K and V, summed into the pool's pages. */
function pooledGradients<T extends { dk: ArrayLike<number>; dv: ArrayLike<number> }>(
  want: T,
  shape: AttentionShape,
  pool: { paged: PagedKv; blockTable: ArrayLike<number> },
): T {
  const { d, dv } = sequenceSizes(shape);
  const o = { shape, ...pool.paged };
  return {
    ...want,
    dk: scatterPages(want.dk, pool.blockTable, { ...o, width: d }),
    dv: scatterPages(want.dv, pool.blockTable, { ...o, width: dv }),
  };
}

if (import.meta.main) await runMain(() => main(Deno.args));
