/**
 * `deno task run`: runs a pattern on `.npy` inputs on the WebGPU adapter and writes O (and LSE).
 *
 * ```sh
 * deno task run --pattern P --q q.npy --k k.npy --v v.npy [--gates g.npy] [--scale s] \
 *   [--dtype f32] --out o.npy [--lse lse.npy] [--verify]
 * ```
 *
 * `P` is a JSON file, JSON text or an example's name (`pi_attention`, ...). The shape comes from
 * the tensors: Q `[B, Hq, N, D]`, K and V `[B, Hkv, N, D]`, gates `[B, Hq, branches]` or
 * `[B, Hq, N, branches]`. `--verify` checks O and LSE against the float64 reference and exits 1
 * above DESIGN §4's 1e-4. Bad input of any kind prints one line `error: ...` and exits 2.
 * @module
 */
import type { AttentionShape } from "../compiler/mod.ts";
import { checkAttentionShape, planSummary } from "../compiler/mod.ts";
import { ShapeError } from "../core/errors.ts";
import type { Pattern } from "../dsl/schema.ts";
import { reference } from "../runtime/reference/mod.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { checkShape } from "../core/input_shapes.ts";
import {
  adapterLine,
  EXIT_FAILURE,
  formatMs,
  loadPattern,
  maxAbsError,
  parseFlags,
  readTensor,
  required,
  runMain,
  type Tensor,
  UsageError,
  writeTensor,
} from "./_common.ts";

/** DESIGN §4: float32 tolerance against the float64 reference. */
const TOLERANCE = 1e-4;

const USAGE = `Usage: deno task run --pattern P --q q.npy --k k.npy --v v.npy [--gates g.npy]
       [--scale s] [--dtype f32] --out o.npy [--lse lse.npy] [--verify]

  --pattern P    a JSON file, JSON text, or an example's name (e.g. pi_attention)
  --q/--k/--v    float32 .npy tensors: q [B, Hq, N, D], k and v [B, Hkv, N, D]
  --gates g.npy  gated patterns: [B, Hq, branches] or [B, Hq, N, branches]
  --scale s      softmax scale (default 1/sqrt(D))
  --dtype f32    input dtype (f16 is not supported yet)
  --out o.npy    where to write O [B, Hq, N, D]
  --lse lse.npy  where to write LSE [B, Hq, N] ([branches, B, Hq, N] when gated)
  --verify       compare with the float64 CPU reference; exit 1 above ${TOLERANCE}`;

const FLAGS = {
  pattern: { type: "string" },
  q: { type: "string" },
  k: { type: "string" },
  v: { type: "string" },
  gates: { type: "string" },
  scale: { type: "string" },
  dtype: { type: "string" },
  out: { type: "string" },
  lse: { type: "string" },
  verify: { type: "boolean" },
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
  checkDtype(values.dtype);
  const scale = parseScale(values.scale);
  const pattern = await loadPattern(required(values.pattern, "pattern", "JSON, file or example"));
  const outPath = required(values.out, "out", "where to write O, a .npy file");
  const [q, k, v] = await Promise.all(
    (["q", "k", "v"] as const).map((f) =>
      readTensor(required(values[f], f, `the ${f} tensor, a float32 .npy file`), f)
    ),
  );
  const gates = values.gates === undefined ? undefined : await readTensor(values.gates, "gates");
  const shape = shapeOf(q, k, v);
  checkAttentionShape(shape);
  const branches = pattern.kind === "gated" ? pattern.branches.length : undefined;
  checkShape(shape, { q: q.data, k: k.data, v: v.data, gates, branches });

  const rt = await createRuntime();
  try {
    console.log(adapterLine(rt.info));
    const compiled = rt.compile(pattern, {
      shape,
      scale,
      gatesPerPosition: gates?.shape.length === 4,
    });
    console.log(planSummary(compiled.plan));
    console.log(`compile: ${formatMs(compiled.compileMs)}`);
    const call = await rt.prepare(compiled, {
      q: q.data,
      k: k.data,
      v: v.data,
      gates: gates?.data,
    });
    let out;
    try {
      // The first submission includes the driver's shader compilation; time the second.
      const started = performance.now();
      const firstMs = await call.submit();
      const firstWall = performance.now() - started;
      const secondMs = await call.submit();
      console.log(gpuLine(secondMs, firstMs ?? firstWall));
      const read = await call.read();
      // This command compiles float32 calls, so O comes back as float32.
      out = { o: read.o as Float32Array, lse: read.lse };
    } finally {
      call.destroy();
    }

    const { batch: B, headsQ: Hq, seqLen: N, headDim: D } = shape;
    await writeTensor(outPath, "out", { shape: [B, Hq, N, D], data: out.o });
    console.log(`wrote ${outPath} [${[B, Hq, N, D].join(", ")}] float32`);
    if (values.lse !== undefined) {
      const lseShape = compiled.gated ? [compiled.branches, B, Hq, N] : [B, Hq, N];
      await writeTensor(values.lse, "lse", { shape: lseShape, data: out.lse });
      console.log(`wrote ${values.lse} [${lseShape.join(", ")}] float32`);
    }
    if (!values.verify) return 0;
    return verify({ pattern, shape, q, k, v, gates, scale: compiled.scale, out });
  } finally {
    rt.destroy();
  }
}

function checkDtype(dtype: string | undefined): void {
  if (dtype === undefined || dtype === "f32" || dtype === "float32") return;
  if (dtype === "f16" || dtype === "float16") {
    throw new UsageError(
      "--dtype f16 is not supported yet on this adapter/version; use --dtype f32 with " +
        "float32 .npy inputs",
    );
  }
  throw new UsageError(
    `--dtype must be f32 (or f16, not supported yet), got ${JSON.stringify(dtype)}`,
  );
}

function parseScale(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const scale = Number(text);
  if (text.trim() === "" || !Number.isFinite(scale)) {
    throw new UsageError(`--scale must be a finite number, got ${JSON.stringify(text)}`);
  }
  return scale;
}

/** The shape the tensors agree on; every disagreement names the tensor and the dimension. */
function shapeOf(q: Tensor, k: Tensor, v: Tensor): AttentionShape {
  const dims = (t: Tensor) => `[${t.shape.join(", ")}]`;
  for (const [name, t, heads] of [["q", q, "Hq"], ["k", k, "Hkv"], ["v", v, "Hkv"]] as const) {
    if (t.shape.length !== 4) {
      throw new ShapeError(
        `Bad shape: ${name} must be 4-D [B, ${heads}, N, D], got ${dims(t)}`,
      );
    }
  }
  const [batch, headsQ, seqLen, headDim] = q.shape;
  const names = ["batch B", "heads", "seqLen N", "headDim D"];
  for (const [name, t] of [["k", k], ["v", v]] as const) {
    for (const axis of [0, 2, 3]) {
      if (t.shape[axis] !== q.shape[axis]) {
        throw new ShapeError(
          `Bad shape: ${name} ${names[axis]} is ${t.shape[axis]} but q's is ${q.shape[axis]} ` +
            `(q ${dims(q)}, ${name} ${dims(t)}; k and v must be [B, Hkv, N, D] with q's B, N, D)`,
        );
      }
    }
  }
  if (v.shape[1] !== k.shape[1]) {
    throw new ShapeError(
      `Bad shape: v has ${v.shape[1]} heads but k has ${k.shape[1]} (k ${dims(k)}, v ${dims(v)})`,
    );
  }
  return { batch, headsQ, headsKV: k.shape[1], seqLen, headDim };
}

function gpuLine(ms: number | undefined, firstMs: number): string {
  const first = `first submission ${formatMs(firstMs)}, including shader compilation`;
  return ms === undefined
    ? `gpu: n/a (the adapter has no timestamp-query); ${first}`
    : `gpu: ${formatMs(ms)} (${first})`;
}

function verify(o: {
  pattern: Pattern;
  shape: AttentionShape;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  gates?: Tensor;
  scale: number;
  out: { o: Float32Array; lse: Float32Array };
}): number {
  const started = performance.now();
  const expected = reference({
    pattern: o.pattern,
    shape: o.shape,
    q: o.q.data,
    k: o.k.data,
    v: o.v.data,
    gates: o.gates,
    scale: o.scale,
  });
  const errorO = maxAbsError(o.out.o, expected.o);
  const errorLse = maxAbsError(o.out.lse, expected.lse);
  const ok = errorO <= TOLERANCE && errorLse <= TOLERANCE;
  console.log(
    `verify (float64 reference, ${formatMs(performance.now() - started)}): ` +
      `max abs error O ${errorO.toExponential(2)}, LSE ${errorLse.toExponential(2)}; ` +
      `tolerance ${TOLERANCE}: ${ok ? "ok" : "FAILED"}`,
  );
  return ok ? 0 : EXIT_FAILURE;
}

if (import.meta.main) await runMain(() => main(Deno.args));
