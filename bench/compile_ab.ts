/**
 * Two compiler trees, compared on what they hand the GPU: for every bench-suite pattern and
 * every example, at N = 4096 and 65536, in float32 and float16, each dispatch's WGSL, entry
 * point, bindings and workgroup counts, the schedule and aux buffers' words, and the size of
 * every buffer a dispatch binds. A refactor of the compiler proves with this script that it
 * changed no kernel (exit 0: identical), or names every difference it made (exit 1).
 *
 * ```sh
 * git worktree add /tmp/base <revision>        # the tree to compare against
 * deno run -A bench/compile_ab.ts --a /tmp/base
 * ```
 *
 * Both trees compile with the H200's limits (48 KiB of workgroup storage, 1024 invocations),
 * once with the tiles chosen from them and once with the float16 tuner's usual 64x32x2c4, so
 * the comparison needs no GPU.
 * @module
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { createHash } from "node:crypto";
import { SUITE } from "./suite.ts";
import { exampleNames, examplePattern } from "../examples/registry.ts";

const USAGE = `Usage: deno run -A bench/compile_ab.ts --a DIR [--b DIR] [--n LIST] [--verbose]

  --a DIR      checkout whose compiler is A (another revision of this repository)
  --b DIR      checkout whose compiler is B (default: this one)
  --n LIST     sequence lengths (default 4096,65536)
  --verbose    print every case, not only the differences
  --help       show this`;

/** What one dispatch hands the GPU, in a form both trees can produce. */
interface Dispatch {
  label: string;
  wgsl: string;
  entryPoint: string;
  bindings: string;
  workgroups: string;
}

/** A compile's result as data to compare: its dispatches and its buffers' initial words. */
interface Compiled {
  dispatches: Dispatch[];
  buffers: Record<string, string>;
  /** The error compile threw instead. */
  error?: string;
}

type CompileFn = (pattern: unknown, options: Record<string, unknown>) => Record<string, any>;

const H200_LIMITS = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxStorageBufferBindingSize: 2 ** 31,
};

const digest = (data: string | ArrayBufferView) =>
  createHash("sha256").update(
    typeof data === "string" ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  ).digest("hex").slice(0, 16);

/**
 * The dispatches of either form of compile's result: `passes` (each with its WGSL), and the
 * schedule and aux words and buffer sizes as fields (`schedule`, `aux`, `splitRows`,
 * `landmarks`: the runtime sized buffers from them) or in a buffer table (`buffers`).
 */
function dispatchesOf(c: Record<string, any>): Compiled {
  const table = (name: string) => c.buffers?.find((b: any) => b.name === name);
  const bound = [
    ...new Set<string>(c.passes.flatMap((p: any) => p.bindings.map((b: any) => b.buffer))),
  ];
  const sizes = c.buffers ? (name: string) => table(name).bytes : legacySizes(c);
  return {
    dispatches: c.passes.map((p: any) => ({
      label: p.label,
      wgsl: p.wgsl,
      entryPoint: p.entryPoint ?? "main",
      bindings: p.bindings.map((b: any) => `${b.buffer}${b.writable ? "+w" : ""}`).join(","),
      workgroups: p.workgroups.join("x"),
    })),
    buffers: {
      schedule: digest(c.schedule ?? table("schedule").data),
      aux: digest(c.aux ?? table("aux").data),
      ...Object.fromEntries(bound.map((name) => [`${name} bytes`, String(sizes(name))])),
    },
  };
}

/** Buffer sizes as the runtime computed them before compile returned a buffer table. */
function legacySizes(c: Record<string, any>): (name: string) => number {
  const { shape, branches, gated, gatesPerPosition } = c;
  const rows = shape.batch * shape.headsQ * shape.seqLen;
  const element = c.dtype === "f16" ? 2 : 4;
  const keys = shape.batch * shape.headsKV * shape.seqLen * shape.headDim * element;
  const sizes: Record<string, number> = {
    q: rows * shape.headDim * element,
    k: keys,
    v: keys,
    schedule: c.schedule.byteLength,
    aux: c.aux.byteLength,
    o: rows * shape.headDim * 4,
    lse: rows * branches * 4,
    branchO: rows * shape.headDim * 4 * branches,
    gates: gated
      ? shape.batch * shape.headsQ * (gatesPerPosition ? shape.seqLen : 1) *
        branches * 4
      : 4,
    o16: rows * shape.headDim * 2,
    hash: c.hash.words * 4,
    hashCounts: c.hash.countWords * 4,
    splitO: Math.max(16, c.splitRows * shape.headDim * 4),
    splitLse: Math.max(16, c.splitRows * 4),
  };
  for (const l of c.landmarks) {
    sizes[`landmarkK${l.rank}`] = sizes[`landmarkV${l.rank}`] = shape.batch * shape.headsKV *
      l.count * shape.headDim * element;
  }
  return (name) => sizes[name];
}

async function loadCompile(dir: string): Promise<CompileFn> {
  const url = pathToFileURL(resolve(dir, "compiler/mod.ts")).href;
  return (await import(url)).compile;
}

/** Every case: name, pattern, N, dtype and tiles (undefined: chosen from the limits). */
async function cases(ns: number[]) {
  const patterns = [
    ...SUITE.map((e) => ({ name: e.name, pattern: e.pattern as unknown, heads: 8 })),
    // Examples at 4 heads: custom_pattern's ALiBi slopes are given for 4.
    ...await Promise.all(
      exampleNames().map(async (name) => ({
        name: `example ${name}`,
        pattern: await examplePattern(name) as unknown,
        heads: 4,
      })),
    ),
  ];
  const out = [];
  for (const p of patterns) {
    for (const n of ns) {
      for (const dtype of ["f32", "f16"]) {
        for (const tiles of [undefined, { tileQ: 64, tileK: 32, threads: 256, rowsPerThread: 2 }]) {
          out.push({ ...p, n, dtype, tiles });
        }
      }
    }
  }
  return out;
}

/** A compile's result, or the error it threw (both trees must refuse alike). */
function attempt(f: () => Compiled): Compiled {
  try {
    return f();
  } catch (error) {
    return { dispatches: [], buffers: {}, error: `${error}` };
  }
}

function compare(a: Compiled, b: Compiled): string[] {
  const diffs: string[] = [];
  if (a.error !== b.error) diffs.push(`error: ${a.error ?? "none"} -> ${b.error ?? "none"}`);
  if (a.dispatches.length !== b.dispatches.length) {
    diffs.push(`dispatches: ${a.dispatches.length} -> ${b.dispatches.length}`);
  }
  const count = Math.min(a.dispatches.length, b.dispatches.length);
  for (let i = 0; i < count; i++) {
    const x = a.dispatches[i], y = b.dispatches[i];
    for (const field of ["label", "entryPoint", "bindings", "workgroups"] as const) {
      if (x[field] !== y[field]) diffs.push(`dispatch ${i} ${field}: ${x[field]} -> ${y[field]}`);
    }
    if (x.wgsl !== y.wgsl) {
      const la = x.wgsl.split("\n"), lb = y.wgsl.split("\n");
      const at = la.findIndex((line, j) => line !== lb[j]);
      diffs.push(
        `dispatch ${i} (${x.label}) WGSL differs from line ${at + 1}:\n` +
          `    A: ${la[at] ?? "(end)"}\n    B: ${lb[at] ?? "(end)"}`,
      );
    }
  }
  for (const name of new Set([...Object.keys(a.buffers), ...Object.keys(b.buffers)])) {
    if (a.buffers[name] !== b.buffers[name]) {
      diffs.push(`buffer ${name}: ${a.buffers[name]} -> ${b.buffers[name]}`);
    }
  }
  return diffs;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      a: { type: "string" },
      b: { type: "string" },
      n: { type: "string" },
      verbose: { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help || !values.a) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const ns = (values.n ?? "4096,65536").split(",").map(Number);
  const compileA = await loadCompile(values.a);
  const compileB = await loadCompile(values.b ?? new URL("..", import.meta.url).pathname);
  let same = 0, different = 0, dispatches = 0;
  for (const c of await cases(ns)) {
    const options = {
      shape: { batch: 1, headsQ: c.heads, headsKV: c.heads, seqLen: c.n, headDim: 64 },
      dtype: c.dtype,
      limits: H200_LIMITS,
      ...(c.tiles ? { tiles: c.tiles } : {}),
    };
    const what = `${c.name} N=${c.n} ${c.dtype} ${c.tiles ? "64x32x2c4" : "default tiles"}`;
    const a = attempt(() => dispatchesOf(compileA(c.pattern, options)));
    const b = attempt(() => dispatchesOf(compileB(c.pattern, options)));
    const diffs = compare(a, b);
    dispatches += b.dispatches.length;
    if (diffs.length === 0) {
      same++;
      if (values.verbose) console.log(`same  ${what} (${b.dispatches.length} dispatches)`);
    } else {
      different++;
      console.log(`DIFF  ${what}\n  ${diffs.join("\n  ")}`);
    }
  }
  console.log(
    `${same} compiles identical (${dispatches} dispatches), ${different} differ`,
  );
  Deno.exit(different === 0 ? 0 : 1);
}
