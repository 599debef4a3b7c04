/**
 * `deno task run --block-table` as a person runs it, in a subprocess: paged K and V `.npy`
 * files with an int32 block table, a decoding step verified against the float64 reference of
 * the gathered pages and bit for bit the O of the same call on contiguous files; its backward
 * pass with dk and dv written in the pages' shape and verified against the reference's summed
 * into the pages; the flags' and the table's mistakes in one line with exit status 2, before
 * the GPU starts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readNpyFile, writeNpyFile } from "../../cli/npy.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { runScript } from "./_run_script.ts";
import { adapterFacts } from "./_adapter_facts.ts";
import { shuffledLayout, toPages } from "../gpu/_paged_inputs.ts";

const adapter = (await adapterFacts()).found;

/** One decoding step of 2 sequences of 45 keys, GQA, in pages of 8. */
const SHAPE = { batch: 2, headsQ: 4, headsKV: 2, seqLen: 1, headDim: 16, kvSeqLen: 45 };
const PATTERN = JSON.stringify({ kind: "window", left: 20, right: 0 });

function assertOneLineError(r: { code: number; stderr: string }, says: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^error: /);
  assert.match(lines[0], says);
}

/** q, contiguous k and v, their pages and the table, as .npy files in a fresh folder. */
async function pagedFiles() {
  const dir = await Deno.makeTempDir({ prefix: "weft_paged_" });
  const layout = shuffledLayout(SHAPE, { pageSize: 8, spare: 3, padding: 2, seed: 7 });
  const k = normalTensor(2 * 2 * 45 * 16, 2), v = normalTensor(2 * 2 * 45 * 16, 3);
  const pool = [layout.pages, 2, 8, 16];
  const path = (name: string) => join(dir, `${name}.npy`);
  await writeNpyFile(path("q"), { dtype: "f4", shape: [2, 4, 1, 16], data: normalTensor(128, 1) });
  await writeNpyFile(path("k"), { dtype: "f4", shape: [2, 2, 45, 16], data: k });
  await writeNpyFile(path("v"), { dtype: "f4", shape: [2, 2, 45, 16], data: v });
  await writeNpyFile(path("kp"), { dtype: "f4", shape: pool, data: toPages(k, SHAPE, layout, 16) });
  await writeNpyFile(path("vp"), { dtype: "f4", shape: pool, data: toPages(v, SHAPE, layout, 16) });
  const maxPages = layout.blockTable.length / 2;
  await writeNpyFile(path("bt"), { dtype: "i4", shape: [2, maxPages], data: layout.blockTable });
  return { dir, path, layout, maxPages };
}

function run(args: string[]) {
  return runScript("cli/run.ts", args);
}

Deno.test({
  name: "run.ts --block-table: paged K and V verified, and bit for bit the contiguous call",
  ignore: !adapter,
  fn: async () => {
    const f = await pagedFiles();
    try {
      const paged = await run([
        ...["--pattern", PATTERN, "--q", f.path("q"), "--k", f.path("kp"), "--v", f.path("vp")],
        ...["--block-table", f.path("bt"), "--kv-seq-len", "45"],
        ...["--out", f.path("o_paged"), "--lse", f.path("lse_paged"), "--verify"],
      ]);
      assert.equal(paged.code, 0, `${paged.stdout}\n${paged.stderr}`);
      assert.match(
        paged.stdout,
        new RegExp(`K and V: ${f.layout.pages} pages of 8 positions, read through --block-table`),
      );
      assert.match(paged.stdout, /verify \(float64 reference.*: ok/);
      const plain = await run([
        ...["--pattern", PATTERN, "--q", f.path("q"), "--k", f.path("k"), "--v", f.path("v")],
        ...["--out", f.path("o"), "--lse", f.path("lse")],
      ]);
      assert.equal(plain.code, 0, `${plain.stdout}\n${plain.stderr}`);
      for (const name of ["o", "lse"]) {
        assert.deepEqual(
          await Deno.readFile(f.path(`${name}_paged`)),
          await Deno.readFile(f.path(name)),
          `${name}: the same bytes`,
        );
      }
      assert.deepEqual((await readNpyFile(f.path("o_paged"))).shape, [2, 4, 1, 16]);
    } finally {
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "run.ts --block-table --grad-out: dk and dv in the pages' shape, verified",
  ignore: !adapter,
  fn: async () => {
    const f = await pagedFiles();
    try {
      await writeNpyFile(f.path("do"), {
        dtype: "f4",
        shape: [2, 4, 1, 16],
        data: normalTensor(128, 4),
      });
      const r = await run([
        ...["--pattern", PATTERN, "--q", f.path("q"), "--k", f.path("kp"), "--v", f.path("vp")],
        ...["--block-table", f.path("bt"), "--kv-seq-len", "45", "--out", f.path("o")],
        ...["--grad-out", f.path("do"), "--dq", f.path("dq"), "--dk", f.path("dk")],
        ...["--dv", f.path("dv"), "--verify"],
      ]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /verify gradients \(float64 reference.*: ok/);
      assert.deepEqual((await readNpyFile(f.path("dq"))).shape, [2, 4, 1, 16]);
      for (const name of ["dk", "dv"]) {
        const pool = await readNpyFile(f.path(name));
        assert.deepEqual(pool.shape, [f.layout.pages, 2, 8, 16], `${name}: the pages' shape`);
        // The spare pages (named by no sequence; their K and V are NaN) are 0.
        const named = new Set(f.layout.blockTable.filter((page) => page >= 0));
        const page = 2 * 8 * 16;
        assert.ok(pool.data.some((x) => x !== 0), `${name} is not all 0`);
        for (let g = 0; g < f.layout.pages; g++) {
          if (named.has(g)) continue;
          const rows = pool.data.subarray(g * page, (g + 1) * page) as Float32Array;
          assert.ok(rows.every((x) => Object.is(x, 0)), `${name} page ${g}`);
        }
      }
    } finally {
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test("run.ts --block-table: mistakes in one line, exit 2, before the GPU starts", async () => {
  const f = await pagedFiles();
  try {
    const base = [
      ...["--pattern", PATTERN, "--q", f.path("q"), "--k", f.path("kp"), "--v", f.path("vp")],
      ...["--out", f.path("o")],
    ];
    const table = ["--block-table", f.path("bt")];
    assertOneLineError(await run([...base, ...table]), /--block-table needs --kv-seq-len/);
    assertOneLineError(
      await run([...base, "--kv-seq-len", "45"]),
      /--kv-seq-len goes with --block-table/,
    );
    assertOneLineError(
      await run([...base, ...table, "--kv-seq-len", "100"]),
      /--kv-seq-len 100 spans ceil\(100 \/ 8\) = 13 pages, but the block table has 8/,
    );
    // A table of float32, and one naming a page past the pool.
    const floats = join(f.dir, "bt_f4.npy");
    await writeNpyFile(floats, {
      dtype: "f4",
      shape: [2, f.maxPages],
      data: Float32Array.from(f.layout.blockTable),
    });
    assertOneLineError(
      await run([...base, "--block-table", floats, "--kv-seq-len", "45"]),
      /--block-table .* has dtype <f4, expected int32 \(<i4\) or uint32 \(<u4\)/,
    );
    const past = f.layout.blockTable.slice();
    past[f.maxPages + 3] = f.layout.pages;
    const pastPath = join(f.dir, "bt_past.npy");
    await writeNpyFile(pastPath, { dtype: "i4", shape: [2, f.maxPages], data: past });
    assertOneLineError(
      await run([...base, "--block-table", pastPath, "--kv-seq-len", "45"]),
      new RegExp(`blockTable\\[1, 3\\] is ${f.layout.pages}; .*\\[0, ${f.layout.pages}\\)`),
    );
    // Pages of 12 positions: not a power of two.
    const odd = join(f.dir, "k12.npy");
    await writeNpyFile(odd, { dtype: "f4", shape: [4, 2, 12, 16], data: new Float32Array(1536) });
    assertOneLineError(
      await run([
        ...["--pattern", PATTERN, "--q", f.path("q"), "--k", odd, "--v", odd],
        ...["--out", f.path("o"), ...table, "--kv-seq-len", "45"],
      ]),
      /paged\.pageSize must be a power of two from 1 to 65536 .*got 12/,
    );
  } finally {
    await Deno.remove(f.dir, { recursive: true });
  }
});
