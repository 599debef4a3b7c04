/**
 * `deno task golden`: regenerates the golden files from the float64 CPU reference (never from
 * the GPU, DESIGN §4). For each case in `cases.json` it draws q, k, v (and runtime gates) from
 * a seeded PRNG, rounds them to float32, runs `reference` on exactly those float32 values, and
 * writes `<name>.{q,k,v,gates,o,lse}.npy` plus `manifest.json`; cases of at most
 * GRADIENT_ELEMENTS query elements also get a seeded dO and the reference's gradients,
 * `<name>.{do,dq,dk,dv,dgates}.npy`; select cases keep the reference's kept blocks,
 * `<name>.sel{i}.npy`. Serving cases (DESIGN §1) have keys past the queries
 * (`kvSeqLen`, `queryOffset`), a value head dim of their own (`valueDim`) or packed sequences
 * (`seqLens`, `kvSeqLens`); `paged` asks the golden test to run the case's K and V from pages
 * as well. Reruns give identical bytes.
 * @module
 */
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { writeNpy } from "../../cli/npy.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import { type AttentionShape, sequenceSizes } from "../../core/shape.ts";
import { mulberry32, normals } from "../../runtime/seeded_random.ts";

/**
 * Where a gated case's gates come from: a runtime tensor `[B, Hq, branches]` ("runtime") or
 * `[B, Hq, Nq, branches]` ("runtime_position"), the pattern's JSON gates, or `1 / branches`.
 */
export type GateSource = "runtime" | "runtime_position" | "json" | "default";

/** One line of `cases.json`. */
export interface GoldenCase extends AttentionShape {
  name: string;
  pattern: Pattern;
  gates?: GateSource;
  seed: number;
  /** q and k are unit normals times this (fuzz regressions with large scores); default 1. */
  magnitude?: number;
  /** Query row 0's key position; default `Nk - Nq` (the queries are the last positions). */
  queryOffset?: number;
  /** Packed sequences (batch 1): each sequence's query rows, summing to `seqLen`. */
  seqLens?: number[];
  /** Packed sequences' key rows, summing to `kvSeqLen` (default `seqLens`). */
  kvSeqLens?: number[];
  /**
   * The golden test also runs the case with K and V cut into pages of this size under a
   * shuffled block table (DESIGN §1): the goldens are the contiguous call's.
   */
  paged?: { pageSize: number };
}

/** The golden files hold only so much: they live in git. */
const MAX_TOTAL_BYTES = 9_500_000;

/** Cases with at most this many query elements (B·Hq·Nq·D) get gradient goldens too. */
export const GRADIENT_ELEMENTS = 4096;

const dir = new URL("./", import.meta.url);

/**
 * Builds every case's files in memory and writes them, after removing the old `.npy` files so
 * a renamed case leaves nothing behind.
 *
 * @returns when all files are written
 * @example
 * ```ts ignore
 * await generate(); // same as `deno task golden`
 * ```
 */
export async function generate(): Promise<void> {
  const cases: GoldenCase[] = JSON.parse(await Deno.readTextFile(new URL("cases.json", dir)));
  const names = new Set<string>();
  const files = new Map<string, Uint8Array>();
  const manifest = [];
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`cases.json: duplicate case name "${c.name}"`);
    names.add(c.name);
    const { entry, npy } = buildCase(c);
    manifest.push(entry);
    for (const [file, bytes] of npy) files.set(file, bytes);
  }
  const total = [...files.values()].reduce((a, b) => a + b.length, 0);
  if (total > MAX_TOTAL_BYTES) {
    throw new Error(`golden files total ${total} bytes, over the ${MAX_TOTAL_BYTES} budget`);
  }

  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".npy")) await Deno.remove(new URL(e.name, dir));
  }
  for (const [file, bytes] of files) await Deno.writeFile(new URL(file, dir), bytes);
  const text = JSON.stringify(
    {
      generator: "tests/golden/generate.ts (deno task golden) from the float64 CPU reference",
      layout: "q [B,Hq,Nq,D], k [B,Hkv,Nk,D], v [B,Hkv,Nk,Dv], o [B,Hq,Nq,Dv], lse " +
        "[B,Hq,Nq] or [branches,B,Hq,Nq] when gated; do [B,Hq,Nq,Dv], dq [B,Hq,Nq,D], dk " +
        "[B,Hkv,Nk,D], dv [B,Hkv,Nk,Dv], dgates as gates (small cases); Nq = shape.seqLen, " +
        "Nk = shape.kvSeqLen, Dv = shape.valueDim (defaults seqLen and headDim); all " +
        "float32, little-endian, C order",
      cases: manifest,
    },
    null,
    2,
  );
  await Deno.writeTextFile(new URL("manifest.json", dir), text + "\n");
  console.log(`wrote ${files.size} .npy files for ${manifest.length} cases, ${total} bytes`);
}

function buildCase(c: GoldenCase) {
  const pattern = parsePattern(c.pattern);
  const shape: AttentionShape = {
    batch: c.batch,
    headsQ: c.headsQ,
    headsKV: c.headsKV,
    seqLen: c.seqLen,
    headDim: c.headDim,
    ...(c.kvSeqLen !== undefined ? { kvSeqLen: c.kvSeqLen } : {}),
    ...(c.valueDim !== undefined ? { valueDim: c.valueDim } : {}),
  };
  const { batch: B, headsQ: Hq, headsKV: Hkv } = shape;
  const { nq: Nq, nk: Nk, d: D, dv: Dv } = sequenceSizes(shape);
  // Where the queries sit: an offset, or packed sequences' lengths (each its own offset).
  const serving = {
    ...(c.queryOffset !== undefined ? { queryOffset: c.queryOffset } : {}),
    ...(c.seqLens ? { seqLens: c.seqLens } : {}),
    ...(c.kvSeqLens ? { kvSeqLens: c.kvSeqLens } : {}),
  };
  if (c.paged && c.seqLens) {
    throw new Error(
      `cases.json: case "${c.name}": "paged" holds one sequence per batch, not seqLens`,
    );
  }
  const gateSource = c.gates ?? (pattern.kind === "gated" ? "json" : undefined);
  if ((pattern.kind === "gated") !== (gateSource !== undefined)) {
    throw new Error(`cases.json: case "${c.name}": "gates" is for gated patterns only`);
  }
  if (gateSource === "json" && pattern.kind === "gated" && !pattern.gates) {
    throw new Error(`cases.json: case "${c.name}": gates "json" needs pattern.gates`);
  }

  // Inputs are rounded to float32 first: the kernels see float32, so the oracle must too.
  const next = normals(c.seed);
  const m = c.magnitude ?? 1;
  const q = Float32Array.from({ length: B * Hq * Nq * D }, () => m * next());
  const k = Float32Array.from({ length: B * Hkv * Nk * D }, () => m * next());
  const v = Float32Array.from({ length: B * Hkv * Nk * Dv }, next);
  const branches = pattern.kind === "gated" ? pattern.branches.length : 0;
  const gateShape = gateSource === "runtime"
    ? [B, Hq, branches]
    : gateSource === "runtime_position"
    ? [B, Hq, Nq, branches]
    : undefined;
  const gates = gateShape && {
    data: Float32Array.from({ length: gateShape.reduce((a, b) => a * b, 1) }, mulberry32(~c.seed)),
    shape: gateShape,
  };

  const { o, lse, hashCodes, selectedBlocks } = reference({
    pattern,
    shape,
    ...serving,
    q,
    k,
    v,
    gates,
  });
  // hashBucket cases keep the reference's own codes: [rounds, B, H, N] per code key.
  const hashKeys = [...hashCodes.keys()];

  const file = (part: string) => `${c.name}.${part}.npy`;
  const npy = new Map<string, Uint8Array>([
    [file("q"), writeNpy({ dtype: "f4", shape: [B, Hq, Nq, D], data: q })],
    [file("k"), writeNpy({ dtype: "f4", shape: [B, Hkv, Nk, D], data: k })],
    [file("v"), writeNpy({ dtype: "f4", shape: [B, Hkv, Nk, Dv], data: v })],
    [file("o"), writeNpy({ dtype: "f4", shape: [B, Hq, Nq, Dv], data: Float32Array.from(o) })],
    [
      file("lse"),
      writeNpy({
        dtype: "f4",
        shape: branches ? [branches, B, Hq, Nq] : [B, Hq, Nq],
        data: Float32Array.from(lse), // -Infinity (empty rows) survives the rounding
      }),
    ],
  ]);
  if (gates) {
    npy.set(file("gates"), writeNpy({ dtype: "f4", shape: gates.shape, data: gates.data }));
  }
  const hashFiles: Record<string, string> = {};
  hashKeys.forEach((key, i) => {
    const codes = hashCodes.get(key)!;
    npy.set(
      file(`hashq${i}`),
      writeNpy({ dtype: "u4", shape: [codes.rounds, B, Hq, Nq], data: codes.q }),
    );
    npy.set(
      file(`hashk${i}`),
      writeNpy({ dtype: "u4", shape: [codes.rounds, B, Hkv, Nk], data: codes.k }),
    );
    hashFiles[`hashq${i}`] = file(`hashq${i}`);
    hashFiles[`hashk${i}`] = file(`hashk${i}`);
  });

  // select cases keep the reference's own kept blocks: [B, Hkv, N, blocks] per select branch,
  // ascending, -1 past the kept.
  const selectFiles: Record<string, string> = {};
  selectedBlocks.forEach((s, i) => {
    npy.set(
      file(`sel${i}`),
      writeNpy({ dtype: "i4", shape: [B, Hkv, Nk, s.blocks], data: s.chosen }),
    );
    selectFiles[`sel${i}`] = file(`sel${i}`);
  });

  // Gradients of the small cases: dO drawn after the inputs, the reference's own codes. The
  // kernels' backward pass takes packed sequences only where each one's queries are all its
  // positions (DESIGN §5), so packed cases with longer keys get none.
  const gradientFiles: Record<string, string> = {};
  const backward = !c.kvSeqLens || c.kvSeqLens.every((n, i) => n === c.seqLens?.[i]);
  if (B * Hq * Nq * D <= GRADIENT_ELEMENTS && backward) {
    const dO = Float32Array.from({ length: B * Hq * Nq * Dv }, next);
    const g = referenceGradients({ pattern, shape, ...serving, q, k, v, gates, dO, hashCodes });
    const parts: [string, number[], ArrayLike<number> | undefined][] = [
      ["do", [B, Hq, Nq, Dv], dO],
      ["dq", [B, Hq, Nq, D], g.dq],
      ["dk", [B, Hkv, Nk, D], g.dk],
      ["dv", [B, Hkv, Nk, Dv], g.dv],
      ["dgates", gates?.shape ?? [], g.dgates],
    ];
    for (const [part, dims, data] of parts) {
      if (!data) continue;
      npy.set(file(part), writeNpy({ dtype: "f4", shape: dims, data: Float32Array.from(data) }));
      gradientFiles[part] = file(part);
    }
  }

  let maxAbsO = 0;
  for (const x of o) maxAbsO = Math.max(maxAbsO, Math.abs(x));
  const emptyRows = lse.filter((x) => x === -Infinity).length;
  const entry = {
    name: c.name,
    pattern,
    shape,
    ...serving,
    ...(c.paged ? { paged: { pageSize: c.paged.pageSize } } : {}),
    gates: gateSource ?? null,
    ...(c.magnitude ? { magnitude: c.magnitude } : {}),
    seed: c.seed,
    files: {
      q: file("q"),
      k: file("k"),
      v: file("v"),
      ...(gates ? { gates: file("gates") } : {}),
      o: file("o"),
      lse: file("lse"),
      ...hashFiles,
      ...selectFiles,
      ...gradientFiles,
    },
    ...(hashKeys.length ? { hashKeys } : {}),
    ...(selectedBlocks.length ? { selectBranches: selectedBlocks.map((s) => s.branch) } : {}),
    maxAbsO,
    emptyRows,
  };
  return { entry, npy };
}

if (import.meta.main) {
  // It takes no arguments: anything given is a mistake, not a request to rewrite the files.
  if (Deno.args.length > 0) {
    const help = Deno.args.length === 1 && ["--help", "-h"].includes(Deno.args[0]);
    const usage = "Usage: deno task golden (no arguments): rewrites tests/golden/*.npy and " +
      "manifest.json from cases.json with the float64 reference";
    if (help) console.log(usage);
    else console.error(`golden: unexpected argument ${Deno.args[0]}; it takes none (see --help)`);
    Deno.exit(help ? 0 : 2);
  }
  await generate();
}
