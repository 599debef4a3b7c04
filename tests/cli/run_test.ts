/**
 * `deno task run`'s options as a person meets them, in a subprocess: --dtype f16 (refused in one
 * line where the adapter lacks shader-f16, run and verified where it has it), float16 inputs
 * for float32 calls, output paths checked before the GPU starts, the gates the plan says it
 * uses, and --verify judging LSE relative to its size. N stays small for llvmpipe.
 */
import assert from "node:assert/strict";
import { runScript } from "./_run_script.ts";
import { join } from "node:path";
import { maxAbsError } from "../../cli/_common.ts";
import { readNpyFile, writeNpyFile } from "../../cli/npy.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference, referenceGradients } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { adapterFacts } from "./_adapter_facts.ts";

const SHAPE = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 32 };
const DIMS = [1, 2, 64, 32];
const RING: Pattern = { kind: "ring", radius: 8 };

function assertOneLineError(r: { code: number; stderr: string }, says: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], says);
  assert.doesNotMatch(r.stderr, /^\s*at /m);
}

/** q, k, v in a fresh folder, as float32 (`dtype` "f4") or float16 ("f2") files. */
async function inputs(o: { dtype?: "f4" | "f2"; scaleQK?: number; seeds?: number[] } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "weft_run_" });
  const count = DIMS.reduce((a, b) => a * b);
  const [sq, sk, sv] = o.seeds ?? [11, 12, 13];
  const f = o.scaleQK ?? 1;
  const q = normalTensor(count, sq).map((x) => x * f);
  const k = normalTensor(count, sk).map((x) => x * f);
  const v = normalTensor(count, sv);
  for (const [name, data] of [["q", q], ["k", k], ["v", v]] as const) {
    await writeNpyFile(
      join(dir, `${name}.npy`),
      o.dtype === "f2"
        ? { dtype: "f2", shape: DIMS, data: Float16Array.from(data) }
        : { dtype: "f4", shape: DIMS, data },
    );
  }
  const args = ["--q", "q", "--k", "k", "--v", "v"].map((a, i) =>
    i % 2 ? join(dir, `${a}.npy`) : a
  );
  return { dir, q, k, v, args };
}

const facts = await adapterFacts();
const adapter = facts.found;
const shaderF16 = facts.shaderF16;

Deno.test({
  name: "run.ts --dtype f16 without shader-f16: one line, exit 2, before the inputs are read",
  ignore: !adapter || shaderF16,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "weft_run_" });
    try {
      const r = await run([
        "--pattern",
        JSON.stringify(RING),
        ...["--q", "--k", "--v"].flatMap((f) => [f, join(dir, "missing.npy")]),
        "--out",
        join(dir, "o.npy"),
        "--dtype",
        "f16",
      ]);
      // The inputs do not exist: the adapter is refused before they are opened.
      assertOneLineError(
        r,
        /^error: --dtype f16 needs an adapter with shader-f16, and .+ has none;/,
      );
      assert.equal(r.stdout, "");
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no output file was left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts --dtype f16: float16 (and rounded float32) inputs, float16 O, verified",
  ignore: !shaderF16,
  fn: async () => {
    for (const dtype of ["f2", "f4"] as const) {
      const i = await inputs({ dtype });
      try {
        const o = join(i.dir, "o.npy"), lse = join(i.dir, "lse.npy");
        const args = ["--pattern", JSON.stringify(RING), ...i.args, "--out", o, "--lse", lse];
        const r = await run([...args, "--dtype", "f16", "--verify"]);
        assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
        assert.match(r.stdout, /compile: .* \(f16\)/);
        if (dtype === "f4") assert.match(r.stdout, /inputs: q, k, v float32, rounded to float16/);
        assert.match(r.stdout, /wrote .*o\.npy \[1, 2, 64, 32\] float16/);
        assert.match(r.stdout, /verify .*tolerance 0\.005 \(f16;.*: ok/);
        const out = await readNpyFile(o);
        assert.equal(out.dtype, "f2");
        assert.equal((await readNpyFile(lse)).dtype, "f4");
        // Against the reference of the float16-rounded inputs, in float64.
        const round = (x: Float32Array) => Float32Array.from(Float16Array.from(x));
        const expected = reference({
          pattern: RING,
          shape: SHAPE,
          q: round(i.q),
          k: round(i.k),
          v: round(i.v),
        });
        assert.ok(maxAbsError(out.data, expected.o) <= 5e-3);
      } finally {
        await Deno.remove(i.dir, { recursive: true });
      }
    }
    // float32 values past float16's range are refused, not turned into infinities.
    const big = await inputs({ scaleQK: 1e5 });
    try {
      const o = join(big.dir, "o.npy");
      const r = await run(["--pattern", JSON.stringify(RING), ...big.args, "--out", o]
        .concat(["--dtype", "f16"]));
      assertOneLineError(r, /--q: entry \d+ is .*, past float16's range \(65504\)/);
    } finally {
      await Deno.remove(big.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts: float16 inputs run as float32 (widened exactly) and verify",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs({ dtype: "f2" });
    try {
      const o = join(i.dir, "o.npy");
      const r = await run(["--pattern", JSON.stringify(RING), ...i.args, "--out", o, "--verify"]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /inputs: q, k, v float16, widened to float32 for --dtype f32/);
      assert.match(r.stdout, /wrote .*o\.npy \[1, 2, 64, 32\] float32/);
      assert.match(r.stdout, /verify .*: ok/);
      assert.equal((await readNpyFile(o)).dtype, "f4");
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

Deno.test("run.ts: --out and --lse are checked before the GPU starts; no file is left or cut", async () => {
  const i = await inputs();
  try {
    const base = ["--pattern", JSON.stringify(RING), ...i.args];
    const o = join(i.dir, "o.npy");
    const cases: [string[], RegExp][] = [
      [["--out", join(i.dir, "no", "such", "o.npy")], /--out .*: no such directory .*no\/such$/],
      [["--out", i.dir], /--out .*: is a directory; give a file in it, e\.g\. .*o\.npy$/],
      [["--out", join(i.dir, "q.npy", "o.npy")], /--out .*: .*q\.npy is not a directory$/],
      [["--out", o, "--lse", join(i.dir, "none", "lse.npy")], /--lse .*: no such directory/],
      [["--out", o, "--lse", o], /--lse .* is the --out file/],
    ];
    // A folder this user cannot write to: as root, /sys refuses new files.
    if (Deno.uid() === 0) {
      if (Deno.statSync("/sys").isDirectory) {
        cases.push([["--out", "/sys/weft_o.npy"], /--out \/sys\/weft_o\.npy: cannot write: /]);
      }
    } else {
      const locked = join(i.dir, "locked");
      Deno.mkdirSync(locked, { mode: 0o555 });
      cases.push([["--out", join(locked, "o.npy")], /--out .*locked\/o\.npy: cannot write: /]);
    }
    for (const [args, says] of cases) {
      const r = await run([...base, ...args]);
      assertOneLineError(r, says);
      assert.doesNotMatch(r.stdout, /adapter:/, "the GPU was not opened");
    }
    assert.ok(!Deno.readDirSync(i.dir).some((e) => e.name === "o.npy"), "no o.npy was left");
    // Writable paths pass the check untouched: an existing file is not cut, and a new one is
    // not left behind, when the run then fails on its input.
    await Deno.writeTextFile(o, "keep me");
    const lse = join(i.dir, "lse.npy");
    const bad = await run(["--pattern", '{"kind":"ring","radius":-1}', ...i.args, "--out", o]
      .concat(["--lse", lse]));
    assertOneLineError(bad, /radius/);
    assert.equal(await Deno.readTextFile(o), "keep me");
    assert.ok(!Deno.readDirSync(i.dir).some((e) => e.name === "lse.npy"), "no lse.npy was left");
  } finally {
    await Deno.remove(i.dir, { recursive: true });
  }
});

Deno.test({
  name: "run.ts: the plan shows the gates used: --gates over the JSON gates, else those, else 1/n",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs();
    try {
      const branches: Pattern[] = [RING, { kind: "stride", period: 16 }];
      const withJson = JSON.stringify({ kind: "gated", branches, gates: [0.9, 0.1] });
      const g = join(i.dir, "g.npy");
      await writeNpyFile(g, {
        dtype: "f4",
        shape: [1, 2, 2],
        data: new Float32Array([0.2, 0.8, 0.7, 0.3]),
      });
      const o = join(i.dir, "o.npy");
      const tensor = await run(["--pattern", withJson, ...i.args, "--gates", g, "--out", o]
        .concat(["--verify"]));
      assert.equal(tensor.code, 0, `${tensor.stdout}\n${tensor.stderr}`);
      assert.match(
        tensor.stdout,
        /^gates: from --gates .*g\.npy \[1, 2, 2\], per head: branch 0 0\.2 to 0\.7, branch 1 0\.3 to 0\.8; the pattern's gates 0\.9, 0\.1 are not used$/m,
      );
      assert.doesNotMatch(tensor.stdout, /gate 0\.9/);
      assert.match(tensor.stdout, /verify .*: ok/);

      const json = await run(["--pattern", withJson, ...i.args, "--out", o]);
      assert.equal(json.code, 0, json.stderr);
      assert.match(json.stdout, /^gates: the pattern's: branch 0 0\.9, branch 1 0\.1$/m);

      const none = await run(["--pattern", JSON.stringify({ kind: "gated", branches }), ...i.args]
        .concat(["--out", o]));
      assert.equal(none.code, 0, none.stderr);
      assert.match(
        none.stdout,
        /^gates: 1\/2 per branch \(no --gates, and the pattern gives none\)$/m,
      );

      const plain = await run(["--pattern", JSON.stringify(RING), ...i.args, "--out", o]);
      assert.doesNotMatch(plain.stdout, /^gates:/m);
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts --verify: LSE near 1e4 is judged relative to its size (an absolute 1e-4 failed it)",
  ignore: !adapter,
  fn: async () => {
    // Q and K times 100: scores of order 1e4 (LSE from ~4e3 to ~4e4). These seeds leave every
    // row's best key ahead of the next by more than 100, so softmax is one-hot in float32 and O
    // is exact: only LSE's rounding is at stake.
    const i = await inputs({ scaleQK: 100, seeds: [14, 1014, 13] });
    try {
      const expected = reference({ pattern: RING, shape: SHAPE, q: i.q, k: i.k, v: i.v });
      assert.ok(Math.max(...expected.lse) > 1e4, "scores of order 1e4");
      const o = join(i.dir, "o.npy"), lse = join(i.dir, "lse.npy");
      const r = await run(["--pattern", JSON.stringify(RING), ...i.args, "--out", o, "--lse", lse]
        .concat(["--verify"]));
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        r.stdout,
        /verify .*max abs error O .*, max LSE error relative to max\(1, \|LSE_ref\|\) .*; tolerance 0\.0001 \(f32; O absolute, LSE \|Δ\| <= 0\.0001 x max\(1, \|LSE_ref\|\)\): ok$/m,
      );
      // The case this is about: float32 LSE is off by more than 1e-4 in absolute terms.
      const absolute = maxAbsError((await readNpyFile(lse)).data, expected.lse);
      assert.ok(absolute > 1e-4, `absolute LSE error ${absolute}`);
      assert.ok(maxAbsError((await readNpyFile(o)).data, expected.o) <= 1e-4);
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

/** `deno task run` with these arguments. */
function run(args: string[]) {
  return runScript("cli/run.ts", args);
}

Deno.test({
  name: "run.ts --verify of a hashBucket judges O on the codes the GPU used, checked first",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs({ seeds: [21, 22, 23] });
    try {
      const pattern = { kind: "hashBucket", buckets: 8, rounds: 2, seed: 5 };
      const r = await run([
        "--pattern",
        JSON.stringify(pattern),
        ...i.args,
        "--out",
        join(i.dir, "o.npy"),
        "--verify",
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /verify .*: ok/);
      assert.doesNotMatch(r.stdout, /contradict/);
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts --grad-out: the backward pass writes dq, dk, dv, dConstants; --verify checks them",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs();
    try {
      const dO = join(i.dir, "do.npy");
      const grad = normalTensor(DIMS.reduce((a, b) => a * b), 14);
      await writeNpyFile(dO, { dtype: "f4", shape: DIMS, data: grad });
      const out = (name: string) => join(i.dir, `${name}.npy`);
      const base = ["--pattern", JSON.stringify(RING), ...i.args, "--out", out("o")];
      const r = await run([
        ...base,
        ...["--grad-out", dO, "--dq", out("dq"), "--dk", out("dk"), "--dv", out("dv")],
        "--verify",
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /wrote .*dk\.npy \[1, 2, 64, 32\] float32/);
      assert.match(r.stdout, /verify gradients .*tolerance 0\.0001 \(f32\): ok/);
      const dv = await readNpyFile(out("dv"));
      const want = referenceGradients({
        pattern: RING,
        shape: SHAPE,
        q: i.q,
        k: i.k,
        v: i.v,
        dO: grad,
      });
      assert.ok(maxAbsError(dv.data as Float32Array, want.dv) < 1e-4);
      // The flags go together, and a runtime gate tensor is what --dgates differentiates.
      assertOneLineError(await run([...base, "--dq", out("dq2")]), /--dq needs --grad-out/);
      assertOneLineError(
        await run([...base, "--grad-out", dO, "--dgates", out("dg")]),
        /--dgates needs --gates/,
      );
      assertOneLineError(
        await run([...base, "--grad-out", dO, "--dconstants", join(i.dir, "dc.json")]),
        /--dconstants needs learnable constants/,
      );
      // A modifier's learnable slopes: --dconstants writes their gradients, --verify checks them.
      const alibi: Pattern = {
        kind: "scored",
        pattern: RING,
        score: {
          expr: "(s, q, k, h) => s - slopes[h] * Math.abs(q - k)",
          constants: { slopes: [0.25, 0.0625] },
          learnable: ["slopes"],
        },
      };
      const dc = join(i.dir, "dc.json");
      const learnt = await run([
        ...["--pattern", JSON.stringify(alibi), ...i.args, "--out", out("o2")],
        ...["--grad-out", dO, "--dconstants", dc, "--verify"],
      ]);
      assert.equal(learnt.code, 0, `${learnt.stdout}\n${learnt.stderr}`);
      assert.match(learnt.stdout, /verify learnable constants' gradients: .*: ok/);
      const written = JSON.parse(await Deno.readTextFile(dc));
      const slopes = referenceGradients({
        pattern: alibi,
        shape: SHAPE,
        q: i.q,
        k: i.k,
        v: i.v,
        dO: grad,
      }).dConstants!.slopes as Float64Array;
      assert.equal(written.slopes.length, 2);
      assert.ok(
        maxAbsError(Float32Array.from(written.slopes), slopes) <
          1e-4 * Math.max(...slopes.map(Math.abs)),
      );
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts: queries against a longer key sequence with a value head dim of their own, " +
    "forward and backward",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs();
    try {
      // Three query rows at positions 40..42 of the 64 keys; V (and O) 16 wide, Q and K 32.
      const q = normalTensor(2 * 3 * 32, 5), v = normalTensor(2 * 64 * 16, 6);
      const grad = normalTensor(2 * 3 * 16, 7);
      const [qPath, vPath, dOPath] = ["q3", "v16", "do"].map((f) => join(i.dir, `${f}.npy`));
      await writeNpyFile(qPath, { dtype: "f4", shape: [1, 2, 3, 32], data: q });
      await writeNpyFile(vPath, { dtype: "f4", shape: [1, 2, 64, 16], data: v });
      await writeNpyFile(dOPath, { dtype: "f4", shape: [1, 2, 3, 16], data: grad });
      const args = ["--q", qPath, "--k", i.args[3], "--v", vPath];
      const out = join(i.dir, "o.npy"), lse = join(i.dir, "lse.npy");
      const gradOut = (name: string) => join(i.dir, `${name}.npy`);
      const r = await run([
        ...["--pattern", JSON.stringify(RING), ...args, "--query-offset", "40"],
        ...["--out", out, "--lse", lse, "--verify", "--grad-out", dOPath],
        ...["--dq", gradOut("dq"), "--dk", gradOut("dk"), "--dv", gradOut("dv")],
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /queries: 3 row\(s\) at positions 40\.\.42 of the 64 keys/);
      assert.match(r.stdout, /wrote .*o\.npy \[1, 2, 3, 16\] float32/);
      assert.match(r.stdout, /wrote .*lse\.npy \[1, 2, 3\] float32/);
      assert.match(r.stdout, /verify \(float64 reference.*: ok/);
      // Each gradient has its input's shape: dq [B, Hq, Nq, D], dk [.., Nk, D], dv [.., Nk, Dv].
      assert.match(r.stdout, /wrote .*dq\.npy \[1, 2, 3, 32\] float32/);
      assert.match(r.stdout, /wrote .*dk\.npy \[1, 2, 64, 32\] float32/);
      assert.match(r.stdout, /wrote .*dv\.npy \[1, 2, 64, 16\] float32/);
      assert.match(r.stdout, /verify gradients .*tolerance 0\.0001 \(f32\): ok/);
      const shape = { ...SHAPE, seqLen: 3, kvSeqLen: 64, valueDim: 16 };
      const want = reference({ pattern: RING, shape, q, k: i.k, v, queryOffset: 40 });
      const got = await readNpyFile(out);
      assert.deepEqual(got.shape, [1, 2, 3, 16]);
      assert.ok(maxAbsError(got.data, want.o) < 1e-4, "O against the reference at offset 40");
      const wantDv = referenceGradients({
        pattern: RING,
        shape,
        q,
        k: i.k,
        v,
        dO: grad,
        queryOffset: 40,
      }).dv;
      const dv = await readNpyFile(gradOut("dv"));
      assert.ok(maxAbsError(dv.data, wantDv) < 1e-4, "dV against the reference at offset 40");
      // An offset past Nk - Nq: one line naming the range, before the GPU starts.
      const bad = await run([
        ...["--pattern", JSON.stringify(RING), ...args, "--query-offset", "62"],
        ...["--out", join(i.dir, "o2.npy")],
      ]);
      assertOneLineError(bad, /--query-offset must be in \[0, Nk - Nq\] = \[0, 61\] .*got 62/);
      // V's rows must be K's.
      const short = join(i.dir, "v63.npy");
      await writeNpyFile(short, { dtype: "f4", shape: [1, 2, 63, 16], data: v.slice(0, 2016) });
      const mismatch = await run([
        ...["--pattern", JSON.stringify(RING), "--q", qPath, "--k", i.args[3], "--v", short],
        ...["--out", join(i.dir, "o3.npy")],
      ]);
      assertOneLineError(mismatch, /v kvSeqLen Nk is 63 but k's is 64/);
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts --seq-lens: packed sequences run and verify; bad lengths are one line",
  ignore: !adapter,
  fn: async () => {
    const i = await inputs();
    try {
      const out = join(i.dir, "o.npy");
      const pattern: Pattern = { kind: "causal" };
      const r = await run([
        ...["--pattern", JSON.stringify(pattern), ...i.args, "--out", out],
        ...["--seq-lens", "20,1,30,13", "--verify"],
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /packed sequences: 64 query rows and 64 key rows/);
      assert.match(r.stdout, /packed: 4 sequence\(s\), query rows 20, 1, 30, 13/);
      assert.match(r.stdout, /verify \(float64 reference.*: ok/);
      const want = reference({
        pattern,
        shape: SHAPE,
        q: i.q,
        k: i.k,
        v: i.v,
        seqLens: [20, 1, 30, 13],
      });
      assert.ok(maxAbsError((await readNpyFile(out)).data, want.o) < 1e-4, "O per sequence");
      const base = ["--pattern", JSON.stringify(pattern), ...i.args, "--out", out];
      assertOneLineError(
        await run([...base, "--seq-lens", "20,1,30"]),
        /--seq-lens 20,1,30 do not fit these tensors \(batch 1, Nq 64, Nk 64\): seqLens sum to 51/,
      );
      assertOneLineError(
        await run([...base, "--kv-seq-lens", "64"]),
        /--kv-seq-lens needs --seq-lens/,
      );
      assertOneLineError(
        await run([...base, "--seq-lens", "32,x"]),
        /--seq-lens must be comma-separated integers >= 0 \(e\.g\. 5,1,13\), got "32,x"/,
      );
    } finally {
      await Deno.remove(i.dir, { recursive: true });
    }
  },
});
