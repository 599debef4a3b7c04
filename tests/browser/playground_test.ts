/**
 * The playground in a real browser: builds the site with esbuild, serves it on 127.0.0.1 and
 * drives headless Chromium (WebGPU on SwiftShader) through the page as a person would: a bad
 * pattern, then a hashBucket (Reformer), a TypeScript predicate and a gated pattern
 * (πAttention), each run on the browser's GPU and verified by the page's worker against the
 * float64 reference. The page's numbers are then recomputed here from its outputs: its
 * verdict must be the reference's. ts-morph must not be fetched before the predicate is typed.
 * The last screen is saved as a PNG (`WEFT_SCREENSHOT`, default out/playground.png).
 *
 * Needs Chromium (`apt-get install chromium`, or WEFT_CHROMIUM=path); without it the test is
 * ignored, except under CI (CI set), where it fails.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSite, bundleTable, serveSite } from "../../site/build.ts";
import { findChromium, launchChromium, type Page } from "./_chromium.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";
import { maxAbsError, maxLseError } from "../../cli/_report.ts";
import type { Pattern } from "../../dsl/schema.ts";
import type { AttentionShape } from "../../core/shape.ts";
import type { HashCodes } from "../../dsl/hash_bucket.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const chromium = findChromium();
const TOLERANCE = 1e-4;
/** Small enough for SwiftShader, large enough for many tiles: N = 128, D = 32, two heads. */
const SHAPE = { n: 128, d: 32, heads: 2 };

interface LastRun {
  pattern: Pattern;
  shape: AttentionShape;
  seed: number;
  scale: number;
  o: number[];
  lse: number[];
  hashCodes?: [string, { rounds: number; q: number[]; k: number[] }][];
}

/** The page's last run as JSON: typed arrays and Maps as arrays, infinities as strings. */
async function lastRun(page: Page): Promise<LastRun> {
  const text = await page.evaluate<string>(`JSON.stringify(globalThis.weftPlayground.lastRun,
    (key, v) => v instanceof Map ? [...v] : ArrayBuffer.isView(v)
      ? [...v].map((x) => Number.isFinite(x) ? x : String(x)) : v)`);
  const special = ["Infinity", "-Infinity", "NaN"];
  return JSON.parse(text, (_, v) => special.includes(v) ? Number(v) : v);
}

/** Sets the editor's text as typing would, and waits for the page's verdict on it. */
async function typePattern(page: Page, json: string): Promise<string> {
  await page.evaluate(`(() => {
    const editor = document.getElementById("pattern");
    editor.value = ${JSON.stringify(json)};
    editor.dispatchEvent(new Event("input"));
    document.getElementById("pattern-status").dataset.state = "typing";
  })()`);
  return await page.waitFor<string>(
    `["ok", "error"].includes(document.getElementById("pattern-status").dataset.state) &&
      document.getElementById("pattern-status").dataset.state`,
    60_000,
  );
}

/** Clicks a seed's button and waits until its pattern compiled. */
async function chooseSeed(page: Page, id: string): Promise<void> {
  await page.evaluate(`(() => {
    document.getElementById("pattern-status").dataset.state = "typing";
    document.querySelector('[data-seed="${id}"]').click();
  })()`);
  await page.waitFor(`document.getElementById("pattern-status").dataset.state === "ok"`, 60_000);
}

/** Runs on the GPU, waits for the verdict, and checks it against a reference computed here. */
async function runAndCheck(page: Page, what: string): Promise<{ errorO: number; ms: number }> {
  const started = performance.now();
  await page.evaluate(`document.getElementById("run").click()`);
  const state = await page.waitFor<string>(
    `["passed", "failed", "error"].includes(document.getElementById("result").dataset.state) &&
      document.getElementById("result").dataset.state`,
    240_000,
  );
  const text = await page.evaluate<string>(`document.getElementById("result").textContent`);
  assert.equal(state, "passed", `${what}: ${text}\n${page.console.join("\n")}`);
  const shown = await page.evaluate<Record<string, string>>(
    `({ ...document.getElementById("result").dataset })`,
  );
  const errorO = Number(shown.errorO), errorLse = Number(shown.errorLse);
  assert.ok(errorO <= TOLERANCE && errorLse <= TOLERANCE, `${what}: ${text}`);

  // The page's verdict, recomputed from its outputs with the reference here.
  const run = await lastRun(page);
  const { batch, headsQ, headsKV, seqLen, headDim } = run.shape;
  const q = normalTensor(batch * headsQ * seqLen * headDim, run.seed);
  const k = normalTensor(batch * headsKV * seqLen * headDim, run.seed + 1);
  const v = normalTensor(batch * headsKV * seqLen * headDim, run.seed + 2);
  const hashCodes: HashCodes = new Map(
    (run.hashCodes ?? []).map(([key, c]) => [key, {
      rounds: c.rounds,
      q: Uint32Array.from(c.q),
      k: Uint32Array.from(c.k),
    }]),
  );
  const expected = reference({
    pattern: run.pattern,
    shape: run.shape,
    q,
    k,
    v,
    scale: run.scale,
    ...(hashCodes.size ? { hashCodes } : {}),
  });
  const mine = maxAbsError(run.o, expected.o);
  assert.ok(mine <= TOLERANCE, `${what}: max |O - O_ref| recomputed here is ${mine}`);
  assert.ok(maxLseError(run.lse, expected.lse) <= TOLERANCE, `${what}: LSE off the reference`);
  assert.ok(Math.abs(mine - errorO) <= 1e-9, `${what}: page says ${errorO}, here ${mine}`);
  return { errorO, ms: performance.now() - started };
}

Deno.test({
  name: "playground: three patterns verified in headless Chromium on WebGPU",
  ignore: !chromium && !Deno.env.get("CI"),
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  assert.ok(chromium, "no Chromium: apt-get install chromium, or set WEFT_CHROMIUM to a binary");
  const started = performance.now();
  const outDir = await Deno.makeTempDir({ prefix: "weft_site_test_" });
  const bundle = await buildSite(outDir);
  console.log(bundleTable(bundle));
  const morphChunk = bundle.files.find((f) => f.role === "ts-morph")?.path;
  assert.ok(morphChunk, "ts-morph is not a chunk of its own");

  const fetched: string[] = [];
  const server = serveSite(outDir, 0, (path) => fetched.push(path));
  const browser = await launchChromium(chromium!, `http://127.0.0.1:${server.addr.port}/`);
  const { page } = browser;
  const timings: string[] = [];
  try {
    const adapter = await page.waitFor<string>(
      `document.getElementById("adapter").dataset.state !== "opening" &&
        document.getElementById("adapter").textContent`,
      60_000,
    );
    assert.match(adapter, /^adapter: /, `no WebGPU adapter in Chromium:\n${browser.log()}`);
    await page.evaluate(`(() => {
      for (const [id, value] of [["seq-len", ${SHAPE.n}], ["head-dim", ${SHAPE.d}],
        ["heads-q", ${SHAPE.heads}], ["heads-kv", ${SHAPE.heads}]]) {
        document.getElementById(id).value = value;
      }
    })()`);

    await t.step("a bad pattern gets the schema's message", async () => {
      assert.equal(await typePattern(page, `{"kind": "stride", "period": 0}`), "error");
      const message = await page.evaluate<string>(
        `document.getElementById("pattern-status").textContent`,
      );
      assert.match(
        message,
        /PatternError: .*stride period must be an integer in \[1, \d+\], got 0/,
      );
    });

    await t.step("hashBucket: Reformer", async () => {
      await chooseSeed(page, "reformer");
      const r = await runAndCheck(page, "reformer");
      timings.push(`reformer ${r.errorO.toExponential(2)} in ${(r.ms / 1000).toFixed(1)} s`);
    });

    await t.step("ts-morph is not fetched before a predicate", () => {
      assert.ok(
        fetched.includes("/main.js") && fetched.includes("/verify_worker.js"),
        `${fetched}`,
      );
      assert.ok(!fetched.some((p) => p.endsWith(morphChunk!)), `${fetched}`);
    });

    await t.step("a TypeScript predicate, typed", async () => {
      const predicate = {
        kind: "predicate",
        expr: "(q, k) => Math.abs(q - k) <= W || (q - k) % P == 0",
        constants: { W: 5, P: 24 },
      };
      assert.equal(await typePattern(page, JSON.stringify(predicate, null, 2)), "ok");
      assert.ok(fetched.some((p) => p.endsWith(morphChunk!)), "ts-morph was not loaded");
      const r = await runAndCheck(page, "predicate");
      timings.push(`predicate ${r.errorO.toExponential(2)} in ${(r.ms / 1000).toFixed(1)} s`);
    });

    await t.step("gated: πAttention", async () => {
      await chooseSeed(page, "pi_attention");
      const r = await runAndCheck(page, "pi_attention");
      timings.push(`πAttention ${r.errorO.toExponential(2)} in ${(r.ms / 1000).toFixed(1)} s`);
      const path = Deno.env.get("WEFT_SCREENSHOT") ?? join(ROOT, "out", "playground.png");
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.writeFile(path, await page.screenshot());
    });
  } finally {
    await browser.close();
    await server.shutdown();
    await Deno.remove(outDir, { recursive: true });
  }
  console.log(
    `max |O - O_ref| and time per run: ${timings.join(", ")}; ` +
      `${((performance.now() - started) / 1000).toFixed(1)} s in all`,
  );
});
