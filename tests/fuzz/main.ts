/**
 * `deno task fuzz --cases N --seed S`: random patterns (every kind; union, intersect and gated
 * nested to depth 3), shapes (N including 1 and primes, GQA and MQA, several batches), edge
 * parameters and large inputs, each run on the GPU and compared with the float64 reference.
 * `--value-dims` gives V and O a head dim of their own (multi-head latent attention's shapes:
 * `--head-dims 192 --value-dims 128`, with one key/value head among the drawn shapes).
 * A mismatch is shrunk and saved as a regression golden (tests/golden/cases.json, then
 * `deno task golden` rewrites the .npy files); the exit status is 1 when any case mismatched.
 *
 * ```sh
 * deno task fuzz --cases 10000 --seed 1 [--skeletons 60] [--shapes 8] [--head-dims 4,8,16,32,64]
 *   [--value-dims 4,12] [--tiles 16x16] [--no-save]
 * ```
 * @module
 */
import { EXIT_USER_ERROR, parseFlags, UsageError } from "../../cli/_common.ts";
import { MAX_HEAD_DIM } from "../../core/shape.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { fuzz, SEQ_LENS } from "./fuzz.ts";
import type { FuzzCase } from "./fuzz_case.ts";

const USAGE = `Usage: deno task fuzz [options]

  --cases N          random cases to run (default 500)
  --seed S           seed of the case generator (default 1)
  --skeletons K      pattern trees drawn, each reused with new numbers (default 40)
  --shapes M         shapes per skeleton (default 6)
  --head-dims LIST   head dims to draw from, multiples of 4 in [4, 256] (default 4,8,16,32,64)
  --value-dims LIST  value head dims (Dv of V and O) to draw from, multiples of 4 in [4, 256]
                     (default: Dv = the head dim)
  --tiles QxK        force a tile shape (default: the runtime's choice)
  --dtype T          f32 (default) or f16 (needs shader-f16; subgroup matrices on dawn)
  --grad             also check the backward pass's gradients (dQ, dK, dV, dgates)
  --workers W        processes sharing the cases (default 1)
  --no-save          do not save shrunk mismatches as goldens
  --help             show this`;

const { values } = (() => {
  try {
    return parseFlags(Deno.args, {
      cases: { type: "string", default: "500" },
      seed: { type: "string", default: "1" },
      skeletons: { type: "string", default: "40" },
      shapes: { type: "string", default: "6" },
      "head-dims": { type: "string", default: "4,8,16,32,64" },
      "value-dims": { type: "string" },
      "no-save": { type: "boolean", default: false },
      tiles: { type: "string" },
      dtype: { type: "string", default: "f32" },
      grad: { type: "boolean", default: false },
      workers: { type: "string", default: "1" },
      help: { type: "boolean", default: false },
    });
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`fuzz: ${e.message}`);
    Deno.exit(EXIT_USER_ERROR);
  }
})();
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const count = (name: string, text: string) => {
  const x = Number(text);
  if (!Number.isInteger(x) || x < 1) {
    console.error(`fuzz: --${name} must be a positive integer, got ${JSON.stringify(text)}`);
    Deno.exit(EXIT_USER_ERROR);
  }
  return x;
};
const started = performance.now();
// Every flag is checked before any work starts.
const cases = count("cases", values.cases);
const seed = count("seed", values.seed);
const workers = count("workers", values.workers);
const skeletons = count("skeletons", values.skeletons);
const shapes = count("shapes", values.shapes);
const headDims = values["head-dims"].split(",").map((d) => headDimFlag("head-dims", d));
const valueDims = values["value-dims"]?.split(",").map((d) => headDimFlag("value-dims", d));
const tiles = values.tiles === undefined ? undefined : tileFlag(values.tiles);
if (values.dtype !== "f32" && values.dtype !== "f16") {
  console.error(`fuzz: --dtype must be f32 or f16, got ${JSON.stringify(values.dtype)}`);
  Deno.exit(EXIT_USER_ERROR);
}
const dtype: "f32" | "f16" = values.dtype;
if (workers > 1) Deno.exit(await shard());
const rt = await createRuntime();
console.error(
  `fuzz: ${cases} cases, seed ${seed}, ${dtype} on ${rt.info.description} [${rt.info.webgpu}]`,
);
const summary = await fuzz(rt, {
  cases,
  seed,
  skeletons,
  shapes,
  seqLens: SEQ_LENS,
  headDims,
  valueDims,
  tiles,
  dtype,
  grad: values.grad,
  onCase: (i, c, r) => {
    if ((i + 1) % 250 === 0 || r.status === "mismatch") {
      console.error(
        `  ${i + 1}/${cases} ${(performance.now() - started) / 1000 | 0} s` +
          (r.status === "mismatch" ? ` MISMATCH ${JSON.stringify(c.pattern)}: ${r.detail}` : ""),
      );
    }
  },
  onFailure: values["no-save"] ? undefined : (_, shrunk) => saveGolden(shrunk),
});
console.error(`pipelines: ${rt.pipelines.hits} hits, ${rt.pipelines.misses} misses`);
rt.destroy();
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(JSON.stringify({
  cases,
  seed,
  ok: summary.ok,
  refused: summary.refused,
  mismatches: summary.mismatches.length,
  kinds: summary.kinds,
  ...(valueDims ? { ownValueDim: summary.ownValueDim } : {}),
  seconds: Number(seconds),
  dtype,
  device: rt.info.description,
  backend: rt.info.backend,
}));
for (const m of summary.mismatches) {
  console.log(`shrunk: ${JSON.stringify(m.shrunk)} -> ${m.result.detail}`);
}
Deno.exit(summary.mismatches.length ? 1 : 0);

/**
 * One entry of `--head-dims` or `--value-dims`: what the compiler takes (core/shape.ts), since
 * the kernels read rows as vec4s and keep them in registers.
 */
function headDimFlag(name: string, text: string): number {
  const x = Number(text);
  if (!Number.isInteger(x) || x < 4 || x > MAX_HEAD_DIM || x % 4 !== 0) {
    console.error(
      `fuzz: --${name} must list multiples of 4 in [4, ${MAX_HEAD_DIM}], e.g. 128 or 4,12, ` +
        `got ${JSON.stringify(text)}`,
    );
    Deno.exit(EXIT_USER_ERROR);
  }
  return x;
}

/** `--tiles QxK`: two positive integers. */
function tileFlag(text: string): { tileQ: number; tileK: number } {
  const m = /^(\d+)x(\d+)$/.exec(text);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) {
    console.error(`fuzz: --tiles must be QxK with positive integers, e.g. 16x16, got "${text}"`);
    Deno.exit(EXIT_USER_ERROR);
  }
  return { tileQ: Number(m[1]), tileK: Number(m[2]) };
}

async function saveGolden(c: FuzzCase): Promise<void> {
  const file = new URL("../golden/cases.json", import.meta.url);
  const list = JSON.parse(await Deno.readTextFile(file));
  const name = `fuzz_${seed}_${list.length}`;
  list.push({
    name,
    pattern: c.pattern,
    ...c.shape,
    ...(c.pattern.kind === "gated"
      ? { gates: c.runtimeGates ? "runtime" : c.pattern.gates ? "json" : "default" }
      : {}),
    seed: c.seed,
    ...(c.magnitude !== 1 ? { magnitude: c.magnitude } : {}),
  });
  await Deno.writeTextFile(file, JSON.stringify(list, null, 2) + "\n");
  console.error(
    `  saved the shrunk case as golden "${name}" in tests/golden/cases.json; run deno task golden`,
  );
}

/**
 * `--workers W`: W processes share the cases (the reference runs on the CPU, one core each),
 * worker i with seed `seed * 1000 + i`; the summary adds theirs up.
 */
async function shard(): Promise<number> {
  const per = Math.ceil(cases / workers);
  const args = Deno.args.filter((a, i, all) =>
    !["--cases", "--seed", "--workers"].includes(a) &&
    !["--cases", "--seed", "--workers"].includes(all[i - 1]) &&
    !/^--(cases|seed|workers)=/.test(a)
  );
  console.error(`fuzz: ${per * workers} cases over ${workers} workers, seeds ${seed}*1000+i`);
  const runs = await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL(import.meta.url).pathname,
          ...args,
          "--cases",
          String(per),
          "--seed",
          String(seed * 1000 + i),
        ],
        stderr: "inherit",
      }).output()),
  );
  const lines = runs.map((r) => new TextDecoder().decode(r.stdout).trim().split("\n"));
  const summaries = lines.map((l) => JSON.parse(l[0]));
  const total = {
    cases: summaries.reduce((s, x) => s + x.cases, 0),
    seeds: summaries.map((x) => x.seed),
    ok: summaries.reduce((s, x) => s + x.ok, 0),
    refused: summaries.reduce((s, x) => s + x.refused, 0),
    mismatches: summaries.reduce((s, x) => s + x.mismatches, 0),
    kinds: [...new Set(summaries.flatMap((x) => x.kinds))].sort(),
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    dtype: summaries[0].dtype,
    device: summaries[0].device,
    backend: summaries[0].backend,
    workers,
  };
  console.log(JSON.stringify(total));
  for (const l of lines) for (const line of l.slice(1)) console.log(line);
  return runs.every((r) => r.code === 0) ? 0 : 1;
}
