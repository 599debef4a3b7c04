/**
 * `deno task bench` on a software adapter (llvmpipe, lavapipe, SwiftShader, or any WebGPU
 * fallback adapter): it says once that its timings are not performance figures and leaves
 * TFLOP/s and efficiency blank in its table, markdown and JSON.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { isSoftwareAdapter, type Measurement } from "../../bench/measure.ts";
import { type BenchRow, buildRow, formatMarkdown, formatTable } from "../../bench/report.ts";
import { adapterFacts } from "../cli/_adapter_facts.ts";

Deno.test("isSoftwareAdapter: the fallback flag, or a software rasteriser's name", () => {
  for (
    const description of [
      "llvmpipe (LLVM 15.0.6, 256 bits)",
      "lavapipe",
      "Google SwiftShader",
      "Microsoft Basic Render Driver",
    ]
  ) {
    assert.ok(isSoftwareAdapter({ description, isFallback: false }), description);
  }
  assert.ok(isSoftwareAdapter({ description: "unknown adapter", isFallback: true }));
  for (const description of ["NVIDIA H200", "AMD Radeon RX 7900 XTX", "Apple M2", "Intel Arc"]) {
    assert.ok(!isSoftwareAdapter({ description, isFallback: false }), description);
  }
});

const measurement: Measurement = {
  ms: 2,
  samples: [2],
  timer: "wall",
  compileMs: 1,
  pipelineMs: 4,
  pipelinesCached: 0,
  passes: 1,
  prepareMs: 1,
  firstSubmitMs: 9,
  repeat: 1,
  tiles: { visited: 10, partial: 2, dense: 40 },
  density: 0.25,
  densityExact: true,
  kernel: { tileQ: 64, tileK: 32, threads: 256, rowsPerThread: 2 },
};
const shape = { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 };

Deno.test("a software adapter's rows keep their times and leave TFLOP/s and efficiency blank", () => {
  const gpu = buildRow(measurement, { pattern: "ring", shape, device: "GPU", denseMs: 4 });
  assert.ok(gpu.tflops_dense_equiv! > 0 && gpu.tflops_allowed! > 0);
  assert.equal(gpu.efficiency, 0.5);
  assert.equal(gpu.software_adapter, undefined);

  const cpu = buildRow(measurement, {
    pattern: "ring",
    shape,
    device: "llvmpipe",
    backend: "native",
    denseMs: 4,
    software: true,
  });
  assert.equal(cpu.ms, 2);
  assert.equal(cpu.density, 0.25);
  assert.equal(cpu.tflops_dense_equiv, null);
  assert.equal(cpu.tflops_allowed, null);
  assert.equal(cpu.efficiency, null);
  assert.equal(cpu.software_adapter, true);

  // The table's TFLOP/s and efficiency cells are empty; ms and density stay.
  const [header, , line] = formatTable([cpu]).split("\n");
  const cells = line.split(/\s{2,}/);
  const columns = header.split(/\s{2,}/);
  assert.equal(cells.length, columns.length - 3, `three blank cells in: ${line}`);
  assert.match(line, /^ring\s+4096\s+native\s+2\.00\s+wall\s+0\.2500\s+5\s/);

  const md = formatMarkdown([cpu], {
    device: "llvmpipe",
    fallback: true,
    date: new Date(0),
    shape: "B=1",
  });
  assert.equal(md.match(/not performance figures/g)?.length, 1);
  assert.ok(md.includes("| ring | 4096 | native | 2.00 | wall |  |  | 0.2500 |  | 5 |"), md);
});

const facts = await adapterFacts();
const software = facts.found && isSoftwareAdapter(facts);

Deno.test({
  name: "bench/main.ts on this software adapter: the note once, blank figures in table and JSON",
  ignore: !software,
  fn: async () => {
    const json = await Deno.makeTempFile({ suffix: ".json" });
    try {
      const main = fileURLToPath(new URL("../../bench/main.ts", import.meta.url));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", main, "--n", "64", "--patterns", "dense,ring", "--heads", "1"]
          .concat(["--head-dim", "16", "--reps", "1", "--json", json]),
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.equal(
        stderr.match(
          /is a software adapter \(it runs on the CPU\): its timings are not performance figures/g,
        )
          ?.length,
        1,
        stderr,
      );
      const rows: BenchRow[] = JSON.parse(await Deno.readTextFile(json));
      assert.equal(rows.length, 2);
      for (const r of rows) {
        assert.ok(Number.isFinite(r.ms) && r.ms! > 0, `${r.pattern}: ms ${r.ms}`);
        assert.equal(r.tflops_dense_equiv, null);
        assert.equal(r.tflops_allowed, null);
        assert.equal(r.efficiency, null);
        assert.equal(r.software_adapter, true);
      }
      // The table: a header, a rule, two rows; the TFLOP/s and efficiency columns are blank.
      const table = stdout.trimEnd().split("\n");
      assert.equal(table.length, 4, stdout);
      for (const line of table.slice(2)) assert.match(line, /\s(wall|gpu)\s+1\.0000\s+\d/);
    } finally {
      await Deno.remove(json);
    }
  },
});

Deno.test("--backward rows add the backward columns to the table and the markdown", () => {
  const row = {
    ...buildRow(measurement, { pattern: "ring", shape, device: "GPU", denseMs: 4 }),
    backward_ms: 5,
    backward_ratio: 2.5,
    backward_efficiency: 0.8,
  };
  const uncovered = { ...row, pattern: "hash", backward_ms: null, backward_ratio: null };
  const [header, , line, none] = formatTable([row, { ...uncovered, backward_efficiency: null }])
    .split("\n");
  assert.match(header, /bwd ms\s+bwd \/ fwd\s+bwd efficiency$/);
  assert.match(line, /\s5\.00\s+2\.50\s+0\.800$/);
  assert.match(none, /^hash .*64x32x2$/); // an uncovered pattern leaves the backward cells blank
  // Without --backward nothing changes.
  assert.doesNotMatch(
    formatTable([buildRow(measurement, { pattern: "ring", shape, device: "GPU" })]),
    /bwd/,
  );
  const md = formatMarkdown([row], {
    device: "GPU",
    fallback: false,
    date: new Date(0),
    shape: "B=1",
  });
  assert.match(md, /\| bwd ms \| bwd \/ fwd \| bwd efficiency \|/);
  assert.match(md, /\| 5\.00 \| 2\.50 \| 0\.800 \|/);
});
