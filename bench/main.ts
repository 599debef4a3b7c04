/**
 * `deno task bench`: times the pattern suite on this machine's WebGPU adapter.
 *
 * On a software adapter (a WebGPU fallback adapter, or llvmpipe, lavapipe, SwiftShader by name:
 * `isSoftwareAdapter`) it runs a small matrix (B=1, H=2, D=32, N in {256, 1024}) timed by the
 * wall clock, says once that those timings are not performance figures, and leaves TFLOP/s and
 * efficiency blank in the table, the markdown and the JSON (null); on a GPU, B=1, H=8, D=64, N in {4096, 16384, 65536} timed with
 * timestamp queries. On a GPU each row's kernel shape is autotuned first (runtime/autotune.ts;
 * stored, so a second run reuses it, and not counted in compile_ms); `--no-tune` keeps the
 * untuned default shape. Progress goes to stderr, the table to stdout.
 *
 * ```sh
 * deno task bench
 * deno task bench --n 4096,16384 --patterns dense,ring --reps 20 --json out.json --markdown out.md
 * ```
 * @module
 */
import { styleText } from "node:util";
import { parseFlags } from "../cli/_common.ts";
import type { AttentionShape } from "../compiler/mod.ts";
import type { TuneResult } from "../runtime/autotune.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { resolveBackend } from "../runtime/device.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { isSoftwareAdapter, measureForwardBackward, measurePattern } from "./measure.ts";
import { PlanError } from "../core/errors.ts";
import type { Pattern } from "../dsl/schema.ts";
import {
  type BenchRow,
  buildRow,
  failedRow,
  formatJson,
  formatMarkdown,
  formatTable,
  type RowContext,
  softwareNote,
} from "./report.ts";
import { timeChart } from "./chart.ts";
import { joinPeer, peerMarkdown, type PeerRow } from "./peer.ts";
import { selectPatterns, SUITE, type SuiteEntry } from "./suite.ts";
import { DECODE_HEADER, formatDecodeRow, runDecodeBench } from "./decode.ts";
import { formatPackedRow, packedBatchRow } from "./packed_batch.ts";
import { formatLinearRow, LINEAR_HEADER, type LinearRow, runLinearBench } from "./linear.ts";
import { runNsaBench } from "./nsa.ts";

const USAGE = `Usage: deno task bench [options]

  --n LIST          sequence lengths, e.g. 4096,16384
  --patterns LIST   suite names (${SUITE.map((e) => e.name).join(", ")})
  --heads H         query (and key/value) heads
  --head-dim D      head dim
  --dtype LIST      f32, f16 (default: both where the adapter has shader-f16)
  --reps R          timed submissions per row (median reported)
  --warmup W        untimed submissions first
  --backend LIST    WebGPU implementations, one table: native (Deno's own), dawn (npm webgpu,
                    subgroup matrices where the GPU has them); default: WEFT_BACKEND, else native
  --decode          time one decoding step against a KV cache instead (B=4, Hq=32, Hkv=8,
                    D=128, f16; MLA's cache: Hkv=1, D=192, Dv=128; --nk, --patterns from
                    dense, window4096, ring+stride64, mla, mla+window4096; --peer takes
                    bench/peers/decode_peer.py's JSON), then the packed-batch row: 8 causal
                    sequences summing to 65536 packed, one by one, and dense
  --nk LIST         with --decode: key counts (default 16384,131072,1048576)
  --linear          time linear attention against N instead: time and ns per position (B=1,
                    --heads (8), --head-dim (64), --n (16384,65536,262144), --dtype (f16 where
                    the adapter has it), --feature-map elu1 or favor:M (elu1), causal unless
                    --not-causal)
  --nsa             time NSA (examples/nsa.ts) instead: B=1 Hq=8 Hkv=1 (one selection per
                    GQA group) D=64, f16 (f32 without shader-f16), --n one length (default
                    65536); the total, the selection passes and their share, the selected
                    branch's attention; then the FlexAttention peer (bench/peers/nsa_peer.py)
                    on Weft's kept blocks, skipped with a note without python3, torch or CUDA
  --no-peer         with --nsa: do not run the peer
  --python P        with --nsa: the peer's interpreter (default python3)
  --out-dir DIR     with --nsa: where the kept blocks and the peer's JSON go (default: a
                    temporary folder)
  --backward        also time the backward pass (backward ms, backward / forward, and the
                    backward's efficiency against dense's) where it covers the pattern
  --no-tune         use the untuned default tile shapes (no timing of candidates, and
                    ignore shapes tuned earlier); software adapters are never tuned
  --json FILE       write the rows as a JSON array (rewritten after every row)
  --markdown FILE   write a markdown table
  --peer LIST       peer JSON files (bench/peers/flex_attention.py): adds FlexAttention and
                    SDPA times and the Flex/Weft ratio to every row
  --from FILE       re-report the rows of an earlier --json run instead of measuring
  --svg FILE        write a chart of time against N per pattern (one panel per dtype)
  --help            show this`;

/** The sizes and repetitions of one run. */
interface Matrix {
  /** Also time the backward pass. */
  backward?: boolean;
  ns: number[];
  dtypes: ("f32" | "f16")[];
  heads: number;
  headDim: number;
  reps: number;
  warmup: number;
}

/**
 * Real sizes on a GPU. On a software adapter, small enough for a 2-core llvmpipe machine in
 * well under two minutes from a cold shader cache: llvmpipe compiles each kernel at its first
 * dispatch, and N and D are baked into the WGSL, so every (pattern structure, N) pays a compile
 * that grows with D (a pattern's numbers are not: stride64 reuses stride16's kernel). Measured cold (2 cores, 18 rows): D=64 145 s (108 s of it compiling), D=32 55 s,
 * D=16 27 s.
 */
function defaultMatrix(fallback: boolean): Matrix {
  return fallback
    ? { ns: [256, 1024], dtypes: ["f32"], heads: 2, headDim: 32, reps: 3, warmup: 1 }
    : {
      ns: [4096, 16384, 65536],
      dtypes: ["f32", "f16"],
      heads: 8,
      headDim: 64,
      reps: 10,
      warmup: 2,
    };
}

function dtypeList(text: string, shaderF16: boolean): ("f32" | "f16")[] {
  const list = text.split(",").map((s) => s.trim());
  for (const d of list) {
    if (d !== "f32" && d !== "f16") throw new Error(`--dtype must list f32 or f16, got "${d}"`);
    if (d === "f16" && !shaderF16) {
      throw new Error("--dtype f16 needs an adapter with shader-f16; this one has none");
    }
  }
  return list as ("f32" | "f16")[];
}

function positiveInts(flag: string, text: string): number[] {
  const xs = text.split(",").map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
    throw new Error(`--${flag} must be positive integers separated by commas, got "${text}"`);
  }
  return xs;
}

function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  return text === undefined ? fallback : positiveInts(flag, text)[0];
}

function parse(args: string[]) {
  // Strict: an unknown flag or a stray argument is one line listing the flags (cli/_common.ts).
  const { values } = parseFlags(args, {
    n: { type: "string" },
    patterns: { type: "string" },
    heads: { type: "string" },
    "head-dim": { type: "string" },
    dtype: { type: "string" },
    reps: { type: "string" },
    warmup: { type: "string" },
    json: { type: "string" },
    markdown: { type: "string" },
    peer: { type: "string" },
    from: { type: "string" },
    svg: { type: "string" },
    "no-tune": { type: "boolean" },
    backend: { type: "string" },
    backward: { type: "boolean" },
    decode: { type: "boolean" },
    nk: { type: "string" },
    linear: { type: "boolean" },
    "feature-map": { type: "string" },
    "not-causal": { type: "boolean" },
    nsa: { type: "boolean" },
    "no-peer": { type: "boolean" },
    python: { type: "string" },
    "out-dir": { type: "string" },
    help: { type: "boolean" },
  });
  return values;
}

/** Runs every pattern at one N, dense first so the others' efficiency can refer to it. */
async function benchShape(
  rt: Runtime,
  shape: AttentionShape,
  entries: readonly SuiteEntry[],
  matrix: Matrix & { dtype: "f32" | "f16" },
  progress: (row: BenchRow, extra: string) => void,
): Promise<BenchRow[]> {
  const count = shape.batch * shape.headsQ * shape.seqLen * shape.headDim;
  // One set of inputs per shape, shared by its patterns; distinct seeds for q, k and v.
  // Converted to the call's dtype once here rather than on every upload.
  const make = (seed: number) => {
    const x = normalTensor(count, seed);
    return matrix.dtype === "f16" ? Float16Array.from(x) : x;
  };
  const inputs = { q: make(1), k: make(2), v: make(3) };
  const rows: BenchRow[] = [];
  let denseMs: number | undefined, denseBackwardMs: number | undefined;
  for (const entry of entries) {
    const ctx: RowContext = {
      pattern: entry.name,
      shape,
      device: rt.info.description,
      backend: rt.info.backend,
      dtype: matrix.dtype,
      denseMs,
      software: isSoftwareAdapter(rt.info),
    };
    try {
      // Tuning first, on its own: compile_ms below then counts only the chosen kernel.
      // (A runtime opened with autotune off answers at once with the default shape.)
      const tuned = await rt.tune(entry.pattern, { shape, dtype: matrix.dtype, inputs });
      ctx.tune = { source: tuned.source, ms: tuned.ms };
      const m = await measurePattern(rt, entry.pattern, { shape, inputs, ...matrix });
      if (entry.name === "dense") denseMs = m.ms;
      const row = buildRow(m, { ...ctx, denseMs });
      if (matrix.backward) {
        const backwardMs = await backwardTime(
          rt,
          entry.pattern,
          { shape, inputs, ...matrix },
          m.ms,
        );
        if (entry.name === "dense") denseBackwardMs = backwardMs ?? undefined;
        Object.assign(row, {
          backward_ms: backwardMs,
          backward_ratio: backwardMs === null ? null : backwardMs / m.ms,
          backward_efficiency: backwardMs === null || denseBackwardMs === undefined || ctx.software
            ? null
            : (denseBackwardMs / backwardMs) * m.density,
        });
      }
      rows.push(row);
      progress(
        row,
        (row.backward_ms != null ? `backward ${row.backward_ms.toFixed(3)} ms, ` : "") +
          `tiles ${tuningNote(tuned)}, ` +
          `pipelines ${m.pipelineMs.toFixed(0)} ms (${m.pipelinesCached} of ${m.passes} cached), ` +
          `prepare ${m.prepareMs.toFixed(0)} ms, ` +
          `first submit ${m.firstSubmitMs.toFixed(0)} ms, ` +
          (m.prePassMs === undefined ? "" : `pre-passes ${m.prePassMs.toFixed(3)} ms, `) +
          `samples ${m.samples.map((s) => s.toFixed(2)).join(" ")}`,
      );
    } catch (e) {
      const row = failedRow(ctx, e);
      rows.push(row);
      progress(row, "");
    }
  }
  return rows;
}

/**
 * The backward pass's time at a row: a forward and backward call's median less the forward's;
 * null where the backward pass does not cover the pattern (it says so once per pattern).
 */
async function backwardTime(
  rt: Runtime,
  pattern: Pattern,
  options: Parameters<typeof measureForwardBackward>[2],
  forwardMs: number,
): Promise<number | null> {
  try {
    return (await measureForwardBackward(rt, pattern, options)) - forwardMs;
  } catch (e) {
    if (!(e instanceof PlanError)) throw e;
    console.error(styleText("dim", `  backward: ${e.message}`));
    return null;
  }
}

/** "64x32x2 (tuned in 812 ms: 64x32x2 1.20 ms; 32x32x4 1.45 ms)", or the source alone. */
function tuningNote(t: TuneResult): string {
  if (t.source !== "tuned" && t.source !== "cache") return `${t.name} (${t.source})`;
  const times = t.entry!.candidates.map((c) =>
    `${c.tiles} ${c.ms === undefined ? "failed" : `${c.ms.toFixed(2)} ms`}`
  ).join("; ");
  const how = t.source === "tuned" ? `tuned in ${t.ms.toFixed(0)} ms` : "cached";
  return `${t.name} (${how}: ${times})`;
}

async function main(args: string[]): Promise<number> {
  const flags = parse(args);
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  if (flags.from) return await report(JSON.parse(await Deno.readTextFile(flags.from)), flags);
  if (flags.decode) return await decodeBench(flags);
  if (flags.linear) return await linearBench(flags);
  if (flags.nsa) return await nsaBench(flags);
  const entries = selectPatterns(flags.patterns?.split(",").map((s) => s.trim()));
  const backends = (flags.backend ?? resolveBackend()).split(",").map((b) =>
    resolveBackend(b.trim())
  );
  const rows: BenchRow[] = [];
  let status = 0;
  for (const backend of backends) {
    const result = await benchBackend(backend, entries, flags, backends.length, rows);
    rows.push(...result.rows);
    status = Math.max(status, result.status);
  }
  if (flags.peer) return await report(rows, flags);
  if (backends.length > 1) {
    console.log("\n" + formatTable(rows));
    if (flags.json) await Deno.writeTextFile(flags.json, formatJson(rows));
  }
  return status;
}

/** The bench on one backend: its runtime, its table (and files where it is the only one). */
async function benchBackend(
  backend: string,
  entries: SuiteEntry[],
  flags: ReturnType<typeof parse>,
  backendCount: number,
  earlier: readonly BenchRow[],
): Promise<{ rows: BenchRow[]; status: number }> {
  const only = backendCount === 1;
  let rt = await createRuntime({ autotune: !flags["no-tune"], backend });
  const { description } = rt.info;
  // A software adapter that WebGPU does not call a fallback (llvmpipe on wgpu's GL backend may
  // not be) is treated as one here too: small sizes, the wall clock, no tuning, no figures.
  const software = isSoftwareAdapter(rt.info);
  if (software && !rt.info.isFallback && !flags["no-tune"]) {
    rt.destroy();
    rt = await createRuntime({ autotune: false, backend });
  }
  const defaults = defaultMatrix(software);
  const matrix: Matrix = {
    ns: flags.n === undefined ? defaults.ns : positiveInts("n", flags.n),
    dtypes: flags.dtype === undefined
      ? defaults.dtypes.filter((d) => d === "f32" || rt.info.shaderF16)
      : dtypeList(flags.dtype, rt.info.shaderF16),
    heads: positiveInt("heads", flags.heads, defaults.heads),
    headDim: positiveInt("head-dim", flags["head-dim"], defaults.headDim),
    reps: positiveInt("reps", flags.reps, defaults.reps),
    warmup: flags.warmup === "0" ? 0 : positiveInt("warmup", flags.warmup, defaults.warmup),
    backward: flags.backward ?? false,
  };
  const tuning = !flags["no-tune"] && !software;
  const tilesText = tuning
    ? "tiles autotuned per row"
    : software
    ? `${rt.info.isFallback ? "fallback" : "default"} tiles (software adapter: not tuned)`
    : "default tiles (--no-tune)";
  const shapeText = `B=1 H=${matrix.heads} D=${matrix.headDim}, ${matrix.dtypes.join(" and ")}, ` +
    `median of ${matrix.reps} after ${matrix.warmup} warm-up, ${tilesText}`;
  const timerText = rt.info.timestamps && !software
    ? "GPU timestamps"
    : "wall clock (submit awaits completion)";
  console.error(
    styleText(
      "bold",
      `Weft bench on ${description}${software ? " (software adapter)" : ""} ` +
        `[${rt.info.webgpu}${rt.info.matrices.length ? ", subgroup matrices" : ""}]: ` +
        `${shapeText}; timer: ${timerText}`,
    ),
  );
  if (tuning) console.error(`autotune cache: ${rt.autotuner.cachePath ?? "none (memory only)"}`);
  if (software) console.error(styleText("yellow", `note: ${softwareNote(description)}`));

  const total = matrix.ns.length * matrix.dtypes.length * entries.length;
  let done = 0;
  const finished: BenchRow[] = [...earlier];
  const progress = (row: BenchRow, extra: string) => {
    done++;
    // The rows so far are on disk after every row: a time-out or a crash later keeps them.
    finished.push(row);
    if (flags.json) Deno.writeTextFileSync(flags.json, formatJson(finished));
    const head = `[${done}/${total}] ${row.pattern} N=${row.n} ${row.dtype} ${backend}`;
    if (row.error !== undefined) {
      console.error(styleText("red", `${head}: failed: ${row.error}`));
    } else {
      console.error(
        `${head}: ${row.ms!.toFixed(3)} ms (${row.timer}), density ${row.density!.toFixed(4)}, ` +
          styleText("dim", extra),
      );
    }
  };
  const started = performance.now();
  const rows: BenchRow[] = [];
  for (const n of matrix.ns) {
    const shape = {
      batch: 1,
      headsQ: matrix.heads,
      headsKV: matrix.heads,
      seqLen: n,
      headDim: matrix.headDim,
    };
    for (const dtype of matrix.dtypes) {
      rows.push(...await benchShape(rt, shape, entries, { ...matrix, dtype }, progress));
    }
  }
  console.error(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const status = rows.some((r) => r.error !== undefined) ? 1 : 0;
  if (flags.peer || !only) {
    rt.destroy();
    return { rows, status };
  }
  console.log(formatTable(rows));
  if (flags.json) await Deno.writeTextFile(flags.json, formatJson(rows));
  if (flags.markdown) {
    await Deno.writeTextFile(
      flags.markdown,
      formatMarkdown(rows, {
        device: description,
        fallback: software,
        date: new Date(),
        shape: `${shapeText}, timer: ${timerText}`,
      }),
    );
  }
  await writeChart(rows, flags);
  rt.destroy();
  return { rows, status };
}

/** `--decode`: the decode table, and its rows as JSON with --json. */
async function decodeBench(flags: ReturnType<typeof parse>): Promise<number> {
  const rt = await createRuntime({ autotune: false, backend: flags.backend });
  try {
    console.error(
      styleText(
        "bold",
        `Weft decode bench on ${rt.info.description} [${rt.info.webgpu}]: B=4 Hq=32 Hkv=8 ` +
          "D=128 f16 (mla rows: Hkv=1 D=192 Dv=128), one query row per head at the last " +
          "position; GPU timestamps",
      ),
    );
    console.error(DECODE_HEADER);
    const rows = await runDecodeBench(rt, {
      nks: flags.nk === undefined ? [16384, 131072, 1048576] : positiveInts("nk", flags.nk),
      patterns: flags.patterns?.split(",").map((s) => s.trim()),
      reps: positiveInt("reps", flags.reps, 10),
      warmup: positiveInt("warmup", flags.warmup, 3),
      peer: flags.peer,
    });
    const packed = flags.patterns === undefined
      ? await packedBatchRow(rt, { reps: positiveInt("reps", flags.reps, 10), warmup: 2 })
      : undefined;
    console.log([DECODE_HEADER, ...rows.map(formatDecodeRow)].join("\n"));
    if (packed) console.log(formatPackedRow(packed));
    if (flags.json) {
      const device = rt.info.description, backend = rt.info.webgpu;
      await Deno.writeTextFile(
        flags.json,
        JSON.stringify(
          {
            decode: rows.map((r) => ({ device, backend, ...r })),
            ...(packed ? { packed: { device, backend, ...packed } } : {}),
          },
          null,
          2,
        ) + "\n",
      );
    }
    return 0;
  } finally {
    rt.destroy();
  }
}

/** `--linear`: linear attention's time and time per position against N. */
async function linearBench(flags: ReturnType<typeof parse>): Promise<number> {
  const rt = await createRuntime({ autotune: false, backend: flags.backend });
  try {
    const software = isSoftwareAdapter(rt.info);
    const dtypes = flags.dtype === undefined
      ? [rt.info.shaderF16 ? "f16" as const : "f32" as const]
      : dtypeList(flags.dtype, rt.info.shaderF16);
    const heads = positiveInt("heads", flags.heads, software ? 2 : 8);
    console.error(
      styleText(
        "bold",
        `Weft linear bench on ${rt.info.description} [${rt.info.webgpu}]: B=1 H=${heads} ` +
          `D=${positiveInt("head-dim", flags["head-dim"], 64)}, forward pass`,
      ),
    );
    if (software) console.error(styleText("yellow", `note: ${softwareNote(rt.info.description)}`));
    const rows: LinearRow[] = [];
    for (const dtype of dtypes) {
      rows.push(
        ...await runLinearBench(rt, {
          ns: flags.n === undefined
            ? (software ? [1024, 4096] : [16384, 65536, 262144])
            : positiveInts("n", flags.n),
          heads,
          headDim: positiveInt("head-dim", flags["head-dim"], 64),
          dtype,
          featureMap: flags["feature-map"] ?? "elu1",
          causal: !flags["not-causal"],
          reps: positiveInt("reps", flags.reps, software ? 3 : 10),
          warmup: positiveInt("warmup", flags.warmup, software ? 1 : 3),
        }),
      );
    }
    console.log([LINEAR_HEADER, ...rows.map(formatLinearRow)].join("\n"));
    if (flags.json) {
      const device = rt.info.description, backend = rt.info.webgpu;
      await Deno.writeTextFile(
        flags.json,
        JSON.stringify({ linear: rows.map((r) => ({ device, backend, ...r })) }, null, 2) + "\n",
      );
    }
    return 0;
  } finally {
    rt.destroy();
  }
}

/** `--nsa`: NSA's account at one N, and the FlexAttention peer on the same kept blocks. */
async function nsaBench(flags: ReturnType<typeof parse>): Promise<number> {
  const rt = await createRuntime({ autotune: false, backend: flags.backend });
  try {
    await runNsaBench(rt, {
      n: positiveInt("n", flags.n, 65536),
      reps: positiveInt("reps", flags.reps, 10),
      warmup: positiveInt("warmup", flags.warmup, 2),
      peer: !flags["no-peer"],
      python: flags.python ?? "python3",
      dir: flags["out-dir"],
      json: flags.json,
    });
    return 0;
  } finally {
    rt.destroy();
  }
}

async function writeChart(rows: readonly BenchRow[], flags: ReturnType<typeof parse>) {
  if (!flags.svg) return;
  const device = rows.find((r) => r.device)?.device ?? "unknown device";
  await Deno.writeTextFile(flags.svg, timeChart(rows, `Weft bench: ${device}`));
}

/** Joins rows with the peer's and writes the table, JSON and markdown with peer columns. */
async function report(rows: BenchRow[], flags: ReturnType<typeof parse>): Promise<number> {
  const peer: PeerRow[] = [];
  for (const file of flags.peer?.split(",") ?? []) {
    peer.push(...JSON.parse(await Deno.readTextFile(file.trim())));
  }
  const joined = joinPeer(rows, peer);
  // Rows re-read with --from say it here; a run that just measured said it at its start.
  if (flags.from && rows.some((r) => r.software_adapter)) {
    console.error(styleText("yellow", `note: ${softwareNote(rows[0].device)}`));
  }
  console.log(formatTable(rows));
  if (peer.length) console.log("\n" + peerMarkdown(joined));
  if (flags.json) await Deno.writeTextFile(flags.json, JSON.stringify(joined, null, 2) + "\n");
  if (flags.markdown) await Deno.writeTextFile(flags.markdown, peerMarkdown(joined));
  await writeChart(rows, flags);
  return rows.some((r) => r.error !== undefined) ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(styleText("red", `bench: ${e instanceof Error ? e.message : e}`));
    Deno.exit(2);
  }
}
