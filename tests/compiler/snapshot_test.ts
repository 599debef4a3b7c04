/**
 * Snapshots of what the compiler hands the GPU, for every bench-suite pattern and every example
 * at N = 4096 in float32 and float16 (the H200's limits): the kernel plan with its buffer table
 * (`tests/snapshots/NAME.DTYPE.plan.json`) and the WGSL of its modules (`NAME.DTYPE.wgsl`).
 * A change that alters one updates it on purpose and says why in its commit:
 *
 * ```sh
 * deno task snapshots          # rewrites tests/snapshots/ from the compiler as it is
 * ```
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { compile, type CompiledAttention } from "../../compiler/mod.ts";
import { SUITE } from "../../bench/suite.ts";
import { exampleNames, examplePattern } from "../../examples/registry.ts";

const DIR = new URL("../snapshots/", import.meta.url);
const UPDATE = Deno.args.includes("--update");
const LIMITS = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxStorageBufferBindingSize: 2 ** 31,
};

/** The kernel plan and buffer table as JSON; written words by count and digest. */
function planJson(c: CompiledAttention): string {
  const buffers = c.buffers.map(({ data, ...rest }) => ({
    ...rest,
    ...(data
      ? {
        words: data.length,
        sha256: createHash("sha256").update(new Uint8Array(data.buffer)).digest("hex").slice(0, 16),
      }
      : {}),
  }));
  return JSON.stringify({ kernelPlan: c.kernelPlan, buffers }, null, 1) + "\n";
}

function wgslText(c: CompiledAttention): string {
  return c.modules.map((m, i) => `// ==== module ${i} ====\n${m}\n`).join("\n");
}

/** The first line where two texts differ, for a failure message a person can act on. */
function firstDifference(want: string, got: string): string {
  const a = want.split("\n"), b = got.split("\n");
  const at = a.findIndex((line, i) => line !== b[i]);
  const line = at < 0 ? a.length : at;
  return `line ${line + 1}:\n  snapshot: ${a[line] ?? "(end)"}\n  compiler: ${b[line] ?? "(end)"}`;
}

async function check(file: string, got: string): Promise<void> {
  const url = new URL(file, DIR);
  if (UPDATE) {
    await Deno.writeTextFile(url, got);
    return;
  }
  let want: string;
  try {
    want = await Deno.readTextFile(url);
  } catch {
    assert.fail(`no snapshot ${file}: run \`deno task snapshots\``);
  }
  if (want !== got) {
    assert.fail(
      `${file} differs from the compiler's output at ${firstDifference(want, got)}\n` +
        "If the change is meant, run `deno task snapshots` and say why in the commit.",
    );
  }
}

const cases = [
  ...SUITE.map((e) => ({ name: e.name, pattern: e.pattern as unknown, heads: 8 })),
  // Examples at 4 heads: custom_pattern's ALiBi slopes are given for 4.
  ...await Promise.all(
    exampleNames().map(async (name) => ({
      name: `example_${name}`,
      pattern: await examplePattern(name) as unknown,
      heads: 4,
    })),
  ),
];

if (UPDATE) await Deno.mkdir(DIR, { recursive: true });

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`snapshots: kernel plans and WGSL of the suite and examples (${dtype})`, async (t) => {
    for (const c of cases) {
      await t.step(c.name, async () => {
        const compiled = compile(c.pattern, {
          shape: { batch: 1, headsQ: c.heads, headsKV: c.heads, seqLen: 4096, headDim: 64 },
          dtype,
          limits: LIMITS,
        });
        const base = c.name.replace(/[^A-Za-z0-9_-]/g, "_");
        await check(`${base}.${dtype}.plan.json`, planJson(compiled));
        await check(`${base}.${dtype}.wgsl`, wgslText(compiled));
      });
    }
  });
}
