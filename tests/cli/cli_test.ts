/**
 * The command-line tools as a person runs them: `cli/run.ts` and `cli/explain.ts` in a
 * subprocess on generated `.npy` files, outputs checked against the float64 reference, bad input
 * checked for one line on stderr and exit status 2; and every example run as a script.
 * GPU runs use llvmpipe in CI, so N stays small (the first run of a shape is dominated by the
 * driver's shader compilation; Mesa's disk cache makes later runs fast).
 */
import assert from "node:assert/strict";
import { ROOT, runScript as deno } from "./_run_script.ts";
import { join } from "node:path";
import { maxAbsError } from "../../cli/_common.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { exampleNames } from "../../examples/registry.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { readNpyFile, writeNpyFile } from "../../cli/npy.ts";
import { reference } from "../../runtime/reference/mod.ts";

const TOLERANCE = 1e-4;

interface Inputs {
  dir: string;
  shape: { batch: number; headsQ: number; headsKV: number; seqLen: number; headDim: number };
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/** Writes q.npy, k.npy, v.npy (seeded normals) into a fresh temp dir. */
async function writeInputs(
  shape: Inputs["shape"],
  overrides: { kSeqLen?: number } = {},
): Promise<Inputs> {
  const dir = await Deno.makeTempDir({ prefix: "weft_cli_" });
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  const kN = overrides.kSeqLen ?? N;
  const q = normalTensor(B * Hq * N * D, 11);
  const k = normalTensor(B * Hkv * kN * D, 12);
  const v = normalTensor(B * Hkv * kN * D, 13);
  await writeNpyFile(join(dir, "q.npy"), { dtype: "f4", shape: [B, Hq, N, D], data: q });
  await writeNpyFile(join(dir, "k.npy"), { dtype: "f4", shape: [B, Hkv, kN, D], data: k });
  await writeNpyFile(join(dir, "v.npy"), { dtype: "f4", shape: [B, Hkv, kN, D], data: v });
  return { dir, shape, q, k, v };
}

function tensorArgs(dir: string): string[] {
  return ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy"].map((a) =>
    a.endsWith(".npy") ? join(dir, a) : a
  );
}

/** Runs cli/run.ts, then checks o.npy and lse.npy against the reference. */
async function runAndCompare(o: {
  pattern: Pattern;
  inputs: Inputs;
  gates?: { data: Float32Array; shape: number[] };
}): Promise<void> {
  const { dir, shape } = o.inputs;
  const args = ["--pattern", JSON.stringify(o.pattern), ...tensorArgs(dir)];
  if (o.gates) {
    await writeNpyFile(join(dir, "g.npy"), { dtype: "f4", ...o.gates });
    args.push("--gates", join(dir, "g.npy"));
  }
  args.push("--out", join(dir, "o.npy"), "--lse", join(dir, "lse.npy"), "--verify");
  const result = await deno("cli/run.ts", args);
  assert.equal(result.code, 0, `run.ts failed:\n${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /tiles visited/);
  assert.match(result.stdout, /adapter: /);
  assert.match(result.stdout, /verify .*: ok/);

  const expected = reference({ ...o.inputs, pattern: o.pattern, shape, gates: o.gates });
  const out = await readNpyFile(join(dir, "o.npy"));
  const lse = await readNpyFile(join(dir, "lse.npy"));
  const { batch: B, headsQ: Hq, seqLen: N, headDim: D } = shape;
  assert.deepEqual(out.shape, [B, Hq, N, D]);
  const branches = o.pattern.kind === "gated" ? [o.pattern.branches.length] : [];
  assert.deepEqual(lse.shape, [...branches, B, Hq, N]);
  const errorO = maxAbsError(out.data, expected.o);
  const errorLse = maxAbsError(lse.data, expected.lse);
  assert.ok(errorO <= TOLERANCE, `max |O - O_ref| = ${errorO}`);
  assert.ok(errorLse <= TOLERANCE, `max |LSE - LSE_ref| = ${errorLse}`);
  await Deno.remove(dir, { recursive: true });
}

const SHAPE = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 500, headDim: 32 };

Deno.test("run.ts: union(ring(8), stride(16)) at N=500 writes O and LSE matching the float64 reference", async () => {
  const pattern: Pattern = {
    kind: "union",
    of: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 16 }],
  };
  await runAndCompare({ pattern, inputs: await writeInputs(SHAPE) });
});

Deno.test("run.ts: gated(ring(8), stride(16)) with --gates [B, Hq, 2] matches the float64 reference", async () => {
  const pattern: Pattern = {
    kind: "gated",
    branches: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 16 }],
  };
  const { batch: B, headsQ: Hq } = SHAPE;
  // Per head [g, 1 - g] with a different g per head.
  const data = Float32Array.from({ length: B * Hq * 2 }, (_, i) => {
    const g = 0.2 + 0.5 * Math.floor(i / 2);
    return i % 2 === 0 ? g : 1 - g;
  });
  await runAndCompare({
    pattern,
    inputs: await writeInputs(SHAPE),
    gates: { data, shape: [B, Hq, 2] },
  });
});

Deno.test("run.ts: bad input exits 2 with one line naming the field and no stack", async (t) => {
  const small = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 32 };
  const good = await writeInputs(small);
  const gqa = await writeInputs({ ...small, headsQ: 3 });
  const mismatched = await writeInputs(small, { kSeqLen: 48 });
  const ring = '{"kind":"ring","radius":8}';
  const cases: { name: string; field: RegExp; inputs: Inputs; args: string[] }[] = [
    {
      name: "stride period 0",
      field: /period/,
      inputs: good,
      args: ["--pattern", '{"kind":"stride","period":0}'],
    },
    {
      name: "negative ring radius",
      field: /radius/,
      inputs: good,
      args: ["--pattern", '{"kind":"ring","radius":-3}'],
    },
    {
      name: "Hq not a multiple of Hkv",
      field: /headsQ.*headsKV/,
      inputs: gqa,
      args: ["--pattern", ring],
    },
    {
      name: "k with fewer rows than q",
      field: /seqLen \(64 query rows\) must not exceed kvSeqLen \(48 keys\)/,
      inputs: mismatched,
      args: ["--pattern", ring],
    },
    {
      name: "unknown kind",
      field: /kind.*"rings"/,
      inputs: good,
      args: ["--pattern", '{"kind":"rings","radius":8}'],
    },
    {
      name: "nested unknown kind",
      field: /of\[1\]\.kind/,
      inputs: good,
      args: ["--pattern", '{"kind":"union","of":[{"kind":"causal"},{"kind":"x"}]}'],
    },
    {
      name: "missing file",
      field: /--gates .*no such file/,
      inputs: good,
      args: ["--pattern", "pi_attention", "--gates", "/nonexistent/g.npy"],
    },
    { name: "unknown flag", field: /--bogus/, inputs: good, args: ["--pattern", ring, "--bogus"] },
    {
      name: "unknown dtype",
      field: /--dtype must be f32 or f16, got "bf16"/,
      inputs: good,
      args: ["--pattern", ring, "--dtype", "bf16"],
    },
    { name: "not a pattern", field: /--pattern "nope"/, inputs: good, args: ["--pattern", "nope"] },
    {
      name: "gates for an ungated pattern",
      field: /gates/,
      inputs: good,
      args: ["--pattern", ring, "--gates", join(good.dir, "q.npy")],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const args = [...c.args, ...tensorArgs(c.inputs.dir), "--out", join(c.inputs.dir, "o.npy")];
      const result = await deno("cli/run.ts", args);
      const lines = result.stderr.trimEnd().split("\n");
      assert.equal(result.code, 2, `exit ${result.code}; stderr:\n${result.stderr}`);
      assert.equal(lines.length, 1, `expected one line on stderr, got:\n${result.stderr}`);
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], c.field);
      assert.doesNotMatch(result.stderr, /^\s*at /m);
    });
  }
  for (const inputs of [good, gqa, mismatched]) await Deno.remove(inputs.dir, { recursive: true });
});

/** Reads `V of D tiles visited` and the tile shape from explain's plan summary. */
function tileCounts(stdout: string) {
  const m = /N=(\d+), tile (\d+)x(\d+): (\d+) of (\d+) tiles visited/.exec(stdout);
  assert.ok(m, `no plan summary in:\n${stdout.slice(0, 500)}`);
  const [n, tileQ, tileK, visited, dense] = m.slice(1).map(Number);
  return { n, tileQ, tileK, visited, dense };
}

Deno.test("explain.ts: stride(16) at N=4096 visits about 1/16 of the dense tiles", async () => {
  const result = await deno("cli/explain.ts", [
    '{"kind":"stride","period":16}',
    "--seq-len",
    "4096",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const { n, tileQ, tileK, visited, dense } = tileCounts(result.stdout);
  // Block-diagonal in residue order: dense / 16, plus at most one straddling tile per tile row
  // and column where a class boundary falls inside a tile.
  const overhead = Math.ceil(n / tileQ) + Math.ceil(n / tileK);
  assert.ok(visited <= dense / 16 + overhead, `visited ${visited} of ${dense}`);
  assert.match(result.stdout, /stride\(16\): 6\.25% \(1048576 pairs/);
  assert.match(result.stdout, /mask of stride\(16\) \(tile-level/);
  assert.match(result.stdout, /@compute/);
  // The kernel plan: one attention kernel in residue order, and the buffers it binds.
  assert.match(result.stdout, /kernel plan: 1 dispatch\(es\), 1 module\(s\); f32, tiles /);
  assert.match(result.stdout, /0\. attention: branch 0 component 0\n.*output write.*; module 0;/);
  assert.match(result.stdout, /binds q, k, v, schedule, aux, o \(w\), lse \(w\)/);
  assert.match(result.stdout, /\n {2}q: 1048576 bytes, from q\n/);
});

Deno.test("explain.ts: stride(16) and ring(128) at N=65536 stay fast (no N² work)", async () => {
  for (
    const [pattern, density] of [
      ['{"kind":"stride","period":16}', "6.25%"],
      ['{"kind":"ring","radius":128}', "0.392%"],
    ]
  ) {
    const started = performance.now();
    const result = await deno("cli/explain.ts", [
      pattern,
      "--seq-len",
      "65536",
      "--wgsl",
      "/dev/null",
    ]);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(result.code, 0, result.stderr);
    assert.ok(result.stdout.includes(`: ${density} (`), result.stdout.slice(0, 800));
    // N² = 4.3e9 pair tests would take minutes; the tile schedule takes well under a second.
    assert.ok(seconds < 60, `explain took ${seconds.toFixed(1)} s`);
  }
});

Deno.test("explain.ts: element-level picture at N=16 and one-line errors", async () => {
  const result = await deno("cli/explain.ts", [
    "--pattern",
    '{"kind":"causal"}',
    "--seq-len",
    "16",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /element-level/);
  assert.ok(result.stdout.includes("█░░░░░░░░░░░░░░░\n██░░░░░░░░░░░░░░\n"), result.stdout);
  for (
    const args of [["ring", "--seq-len", "16"], ['{"kind":"ring","radius":2}'], [
      '{"kind":"global","tokens":[20]}',
      "--seq-len",
      "16",
    ]]
  ) {
    const bad = await deno("cli/explain.ts", args);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
    assert.match(bad.stderr, /^error: /);
  }
});

for (const name of exampleNames()) {
  Deno.test(`example examples/${name}.ts runs on the GPU and matches the float64 reference (exit 0)`, async () => {
    const result = await deno(`examples/${name}.ts`, []);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /max abs error vs float64 reference: /);
  });
}

Deno.test("fuzz: bad flags exit 2 with one line naming the flag; --help shows the usage", async () => {
  const script = "tests/fuzz/main.ts";
  const cases: [string[], RegExp][] = [
    [["--bogus"], /^fuzz: unknown flag --bogus; expected one of --cases, .*\(see --help\)$/],
    [["--cases", "0"], /^fuzz: --cases must be a positive integer, got "0"$/],
    [["--tiles", "16x"], /^fuzz: --tiles must be QxK with positive integers, e\.g\. 16x16/],
    [["stray"], /^fuzz: unexpected argument stray/],
  ];
  for (const [args, says] of cases) {
    const r = await deno(script, args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr.trim(), says);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
  }
  const help = await deno(script, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task fuzz \[options\]/);
});

Deno.test("golden and bench: a stray argument or an unknown flag is refused, nothing is written", async () => {
  const manifest = `${ROOT}tests/golden/manifest.json`;
  const before = (await Deno.stat(manifest)).mtime?.getTime();
  const golden = await deno("tests/golden/generate.ts", ["--bogus"]);
  assert.equal(golden.code, 2);
  assert.equal((await Deno.stat(manifest)).mtime?.getTime(), before, "the goldens were rewritten");
  assert.match(golden.stderr.trim(), /^golden: unexpected argument --bogus; it takes none/);
  const help = await deno("tests/golden/generate.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task golden \(no arguments\)/);
  const bench = await deno("bench/main.ts", ["--bogus"]);
  assert.equal(bench.code, 2);
  assert.match(bench.stderr.trim(), /^bench: unknown flag --bogus; expected one of --n, /);
  assert.equal(bench.stderr.trim().split("\n").length, 1);
});
