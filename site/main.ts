/**
 * The playground page: a pattern (JSON, or a builder form) compiled as the page is edited, its
 * plan, mask and WGSL shown, then run on this browser's WebGPU with seeded inputs and checked
 * against the float64 reference in a worker.
 *
 * For scripts and tests the page keeps its state in the DOM: `#pattern-status` and `#result`
 * carry `data-state` (`ok`/`error`; `running`/`passed`/`failed`/`error`), and `#result` the
 * numbers it shows (`data-error-o`, `data-error-lse`, `data-tolerance`, `data-gpu-ms`). The
 * last run's inputs' seed and outputs are `globalThis.weftPlayground.lastRun`.
 * @module
 */
/// <reference lib="dom" />
import { compile, type CompiledAttention, type Dtype } from "../compiler/mod.ts";
import { parsePattern, type Pattern } from "../dsl/schema.ts";
import { loadExpressionParser } from "../dsl/expression_syntax.ts";
import type { AttentionShape } from "../core/shape.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import type { AttentionInputs } from "../runtime/attention_call.ts";
import { normalTensor } from "../runtime/seeded_random.ts";
import { adapterLine, formatMs } from "../cli/_report.ts";
import { holdsSource, type Seed, SEEDS } from "./seeds.ts";
import { paint, viewOf } from "./views.ts";
import type { VerifyReply, VerifyRequest } from "./verify_worker.ts";

/** DESIGN §4: float32 kernels match the float64 reference within this; float16 within 5e-3. */
const TOLERANCE: Record<Dtype, number> = { f32: 1e-4, f16: 5e-3 };

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  adapter: element<HTMLParagraphElement>("adapter"),
  seeds: element<HTMLDivElement>("seeds"),
  form: element<HTMLFormElement>("seed-form"),
  pattern: element<HTMLTextAreaElement>("pattern"),
  status: element<HTMLParagraphElement>("pattern-status"),
  n: element<HTMLInputElement>("seq-len"),
  d: element<HTMLInputElement>("head-dim"),
  hq: element<HTMLInputElement>("heads-q"),
  hkv: element<HTMLInputElement>("heads-kv"),
  dtype: element<HTMLSelectElement>("dtype"),
  seed: element<HTMLInputElement>("seed"),
  run: element<HTMLButtonElement>("run"),
  result: element<HTMLDivElement>("result"),
  mask: element<HTMLCanvasElement>("mask"),
  legend: element<HTMLUListElement>("legend"),
  density: element<HTMLPreElement>("density"),
  plan: element<HTMLPreElement>("plan"),
  kernelPlan: element<HTMLPreElement>("kernel-plan"),
  wgsl: element<HTMLPreElement>("wgsl"),
};

let runtime: Runtime | undefined;
/** The pattern the views show, once it compiled. */
let current: { pattern: Pattern; source: boolean } | undefined;
/** Bumped by every edit, so a slow compile does not overwrite a newer one. */
let edits = 0;
const worker = new Worker(new URL("./verify_worker.js", import.meta.url), { type: "module" });
const lastRun: { value?: Record<string, unknown> } = {};
(globalThis as Record<string, unknown>).weftPlayground = {
  get lastRun() {
    return lastRun.value;
  },
};

function shape(): AttentionShape {
  return {
    batch: 1,
    headsQ: ui.hq.valueAsNumber,
    headsKV: ui.hkv.valueAsNumber,
    seqLen: ui.n.valueAsNumber,
    headDim: ui.d.valueAsNumber,
  };
}

function compileHere(pattern: Pattern): CompiledAttention {
  const options = { shape: shape(), dtype: ui.dtype.value as Dtype };
  return runtime ? runtime.compile(pattern, options) : compile(pattern, options);
}

function say(el: HTMLElement, state: string, text: string): void {
  el.dataset.state = state;
  el.textContent = text;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Parses, checks and compiles the editor's pattern, and redraws the views. */
async function refresh(): Promise<void> {
  const edit = ++edits;
  let json: unknown;
  try {
    json = JSON.parse(ui.pattern.value);
  } catch (e) {
    say(ui.status, "error", `Not JSON: ${(e as Error).message}`);
    return;
  }
  const source = holdsSource(json);
  if (source) {
    say(ui.status, "loading", "Loading the TypeScript parser (ts-morph) for the predicate...");
    await loadExpressionParser();
    if (edit !== edits) return;
  }
  let compiled: CompiledAttention;
  try {
    const pattern = parsePattern(json);
    compiled = compileHere(pattern);
    current = { pattern, source };
  } catch (e) {
    say(ui.status, "error", errorText(e));
    ui.run.disabled = true;
    return;
  }
  const view = viewOf(compiled);
  ui.plan.textContent = view.plan;
  ui.kernelPlan.textContent = view.kernelPlan;
  ui.wgsl.textContent = view.wgsl;
  ui.density.textContent = view.density.join("\n");
  ui.legend.replaceChildren(
    ...(view.image?.legend ?? []).map(({ label, colour }) => {
      const li = document.createElement("li");
      li.style.setProperty("--swatch", colour);
      li.textContent = label;
      return li;
    }),
  );
  ui.mask.hidden = !view.image;
  if (view.image) paint(ui.mask, view.image);
  const { tileQ, tileK } = compiled.plan.tiles;
  say(
    ui.status,
    "ok",
    `Compiled in ${formatMs(compiled.compileMs)}: ${compiled.passes.length} pass(es), ` +
      `tiles ${tileQ}x${tileK}${compiled.kernel.matrix ? ", on subgroup matrices" : ""}`,
  );
  ui.run.disabled = !runtime;
}

function verify(request: VerifyRequest): Promise<VerifyReply> {
  return new Promise((resolve) => {
    worker.onmessage = (e: MessageEvent<VerifyReply>) => resolve(e.data);
    worker.postMessage(request);
  });
}

/** The median GPU time of a few submissions (wall-clock time where there are no timestamps). */
async function timeIt(
  rt: Runtime,
  compiled: CompiledAttention,
  inputs: AttentionInputs,
): Promise<{ ms: number; timestamps: boolean } | undefined> {
  if (compiled.split) return undefined; // runs in parts: no single call to time
  const call = await rt.prepare(compiled, inputs);
  try {
    await call.submit();
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      samples.push((await call.submit()) ?? performance.now() - started);
    }
    samples.sort((a, b) => a - b);
    return { ms: samples[2], timestamps: rt.info.timestamps };
  } finally {
    call.destroy();
  }
}

/** Runs the current pattern on the GPU, then verifies it in the worker. */
async function run(): Promise<void> {
  if (!runtime || !current) return;
  const { pattern, source } = current;
  const s = shape(), dtype = ui.dtype.value as Dtype, seed = ui.seed.valueAsNumber;
  ui.run.disabled = true;
  say(ui.result, "running", "Running on the GPU (the first run compiles the kernels)...");
  try {
    const compiled = runtime.compile(pattern, { shape: s, dtype });
    const qLength = s.batch * s.headsQ * s.seqLen * s.headDim;
    const kvLength = s.batch * s.headsKV * s.seqLen * s.headDim;
    const [q, k, v] = [
      normalTensor(qLength, seed),
      normalTensor(kvLength, seed + 1),
      normalTensor(kvLength, seed + 2),
    ].map((t) => dtype === "f16" ? Float16Array.from(t) : t);
    const started = performance.now();
    const out = await runtime.run(compiled, { q, k, v });
    const firstMs = performance.now() - started;
    const timing = await timeIt(runtime, compiled, { q, k, v });
    say(ui.result, "running", "Verifying against the float64 reference (in a worker)...");
    const o = Float32Array.from(out.o);
    const reply = await verify({
      pattern,
      shape: s,
      source,
      q: Float32Array.from(q),
      k: Float32Array.from(k),
      v: Float32Array.from(v),
      scale: compiled.scale,
      o,
      lse: out.lse,
      hashCodes: out.hashCodes,
    });
    lastRun.value = {
      pattern,
      shape: s,
      dtype,
      seed,
      scale: compiled.scale,
      o,
      lse: out.lse,
      hashCodes: out.hashCodes,
      reply,
    };
    if (!reply.ok) throw new Error(reply.error);
    const tolerance = TOLERANCE[dtype];
    const passed = reply.errorO <= tolerance && reply.errorLse <= tolerance &&
      reply.badCodes === 0;
    Object.assign(ui.result.dataset, {
      errorO: String(reply.errorO),
      errorLse: String(reply.errorLse),
      tolerance: String(tolerance),
      gpuMs: String(timing?.ms ?? ""),
    });
    const lines = [
      `${passed ? "Verified" : "FAILED"}: max |O - O_ref| = ${reply.errorO.toExponential(2)}, ` +
      `LSE error ${reply.errorLse.toExponential(2)} (tolerance ${tolerance}, float64 ` +
      `reference in ${formatMs(reply.ms)})`,
      ...(out.hashCodes
        ? [`hashBucket codes off a clearly signed projection: ${reply.badCodes}`]
        : []),
      timing
        ? `${timing.timestamps ? "GPU time" : "wall time"}: ${formatMs(timing.ms)} per call ` +
          `(median of 5); first run with kernel compilation ${formatMs(firstMs)}`
        : `first run with kernel compilation: ${formatMs(firstMs)}`,
      adapterLine(runtime.info),
    ];
    say(ui.result, passed ? "passed" : "failed", lines.join("\n"));
  } catch (e) {
    say(ui.result, "error", errorText(e));
  } finally {
    ui.run.disabled = false;
  }
}

/** The seed whose form is shown, and the text it last wrote (a re-fill must not undo edits). */
let shown: { seed: Seed; text: string; fill(): void } | undefined;

function showSeed(seed: Seed): void {
  ui.form.replaceChildren(
    Object.assign(document.createElement("p"), { textContent: seed.description }),
    ...seed.fields.map((f) => {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"), {
        type: "number",
        name: f.key,
        value: String(f.value),
        min: String(f.min),
        step: String(f.step ?? 1),
      });
      label.append(f.label, input);
      return label;
    }),
  );
  const fill = () => {
    const values = Object.fromEntries(seed.fields.map((f) => {
      const input = ui.form.elements.namedItem(f.key) as HTMLInputElement;
      return [f.key, input.valueAsNumber];
    }));
    try {
      ui.pattern.value = JSON.stringify(seed.build(values, ui.n.valueAsNumber), null, 2);
      shown = { seed, text: ui.pattern.value, fill };
      void refresh();
    } catch (e) {
      say(ui.status, "error", errorText(e));
    }
  };
  ui.form.oninput = fill;
  ui.form.dataset.seed = seed.id;
  fill();
}

async function openGpu(): Promise<void> {
  if (!navigator.gpu) {
    say(
      ui.adapter,
      "error",
      "This browser has no WebGPU (navigator.gpu): the plan, mask and WGSL still show, but " +
        "nothing can run. Chrome and Edge ship WebGPU; pages need https or localhost.",
    );
    return;
  }
  try {
    runtime = await createRuntime({ autotune: false });
    say(ui.adapter, "ready", adapterLine(runtime.info));
    if (!runtime.info.shaderF16) {
      (ui.dtype.querySelector('option[value="f16"]') as HTMLOptionElement).disabled = true;
    }
  } catch (e) {
    say(ui.adapter, "error", errorText(e));
  }
}

let timer: ReturnType<typeof setTimeout> | undefined;
const later = () => {
  clearTimeout(timer);
  timer = setTimeout(() => void refresh(), 250);
};
ui.pattern.addEventListener("input", later);
// A seed may depend on N (NSA's compressed branch has N / block landmarks).
ui.n.addEventListener("change", () => {
  if (shown && shown.text === ui.pattern.value) shown.fill();
});
for (const input of [ui.n, ui.d, ui.hq, ui.hkv, ui.dtype]) input.addEventListener("change", later);
ui.run.addEventListener("click", () => void run());
ui.seeds.replaceChildren(
  ...SEEDS.map((seed) => {
    const button = Object.assign(document.createElement("button"), {
      type: "button",
      textContent: seed.title,
      title: seed.description,
    });
    button.dataset.seed = seed.id;
    button.addEventListener("click", () => showSeed(seed));
    return button;
  }),
);
await openGpu();
showSeed(SEEDS[0]);
