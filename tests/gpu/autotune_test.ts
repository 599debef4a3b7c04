/**
 * The autotuner on the test adapter (llvmpipe in CI): tuning is forced there, at N = 64 with two
 * small candidates, to exercise the whole path (compile, time, choose, store, reuse) while
 * the timings themselves mean nothing. Every test uses its own cache folder through
 * WEFT_CACHE_DIR (each test file runs in its own process).
 */
import assert from "node:assert/strict";
import { maxAbsError } from "../../cli/_common.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { AUTOTUNE_FILE_VERSION } from "../../runtime/autotune_cache.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 64, headDim: 16 };
const pattern: Pattern = {
  kind: "union",
  of: [{ kind: "ring", radius: 4 }, { kind: "stride", period: 8 }],
};
const candidates = [{ tileQ: 8, tileK: 8 }, { tileQ: 16, tileK: 8 }];
const names = ["8x8x2", "16x8x2"];
const cacheDir = await Deno.makeTempDir({ prefix: "weft_autotune_" });
Deno.env.set("WEFT_CACHE_DIR", cacheDir);
addEventListener("unload", () => Deno.removeSync(cacheDir, { recursive: true }));

/** The tuned choice of the first test, which the later ones read back. */
let tunedName: string | undefined;

Deno.test("forced tuning times both candidates, stores the key parts, and compiles correctly", async () => {
  const rt = await createRuntime();
  try {
    if (rt.info.isFallback) {
      const kept = await rt.tune(pattern, { shape });
      assert.equal(kept.source, "fallback");
      assert.equal(kept.name, "8x8x2");
      assert.match(kept.reason, /software adapter/);
      assert.equal(rt.autotuner.measuredCandidates, 0);
    }
    const r = await rt.tune(pattern, { shape, force: true, candidates });
    assert.equal(r.source, "tuned");
    assert.equal(rt.autotuner.measuredCandidates, 2);
    assert.ok(names.includes(r.name), r.name);
    tunedName = r.name;

    const file = JSON.parse(await Deno.readTextFile(`${cacheDir}/autotune.json`));
    assert.equal(file.version, AUTOTUNE_FILE_VERSION);
    assert.deepEqual(Object.keys(file.entries), [r.id]);
    const entry = file.entries[r.id];
    assert.deepEqual(entry.key, {
      adapter: {
        vendor: rt.info.vendor,
        architecture: rt.info.architecture,
        deviceId: rt.info.deviceId,
        description: rt.info.description,
        webgpu: rt.info.webgpu,
      },
      dtype: "f32",
      headDim: 16,
      group: 2,
      gridHeads: 2,
      seqLenClass: 64,
      structure: "union(ring,stride)",
    });
    assert.equal(entry.tiles, r.name);
    assert.deepEqual(entry.candidates.map((c: { tiles: string }) => c.tiles), names);
    for (const c of entry.candidates) {
      assert.ok(c.samples.length >= 1 && c.samples.length <= 3, `${c.tiles}: ${c.samples}`);
      assert.ok(c.ms > 0 && Number.isFinite(c.ms), `${c.tiles}: ${c.ms}`);
    }
    const fastest = entry.candidates.reduce((a: { ms: number }, b: { ms: number }) =>
      b.ms < a.ms ? b : a
    );
    assert.equal(fastest.tiles, r.name);

    // compile picks the tuned shape up, and the kernel still matches the float64 reference.
    const compiled = rt.compile(pattern, { shape });
    assert.deepEqual(compiled.kernel, r.tiles);
    const q = normalTensor(2 * 64 * 16, 11), k = normalTensor(64 * 16, 12);
    const v = normalTensor(64 * 16, 13);
    const out = await rt.run(compiled, { q, k, v });
    const expected = reference({ pattern, shape, q, k, v });
    assert.ok(maxAbsError(out.o, expected.o) <= 1e-4, `O error ${maxAbsError(out.o, expected.o)}`);
    assert.ok(maxAbsError(out.lse, expected.lse) <= 1e-4, "LSE error");
  } finally {
    rt.destroy();
  }
});

Deno.test("a second runtime reads the stored choice and times nothing", async () => {
  assert.ok(tunedName, "the first test tuned");
  const rt = await createRuntime();
  try {
    // Another N of the same size class and other numbers of the same structure share the key.
    const nearby = { ...shape, seqLen: 40 };
    const looser: Pattern = {
      kind: "union",
      of: [{ kind: "ring", radius: 2 }, { kind: "stride", period: 5 }],
    };
    const r = await rt.tune(looser, { shape: nearby, force: true, candidates });
    assert.equal(r.source, "cache");
    assert.equal(r.name, tunedName);
    assert.equal(rt.autotuner.measuredCandidates, 0);
    assert.equal(r.entry?.candidates.length, 2);
    assert.equal(rt.compile(pattern, { shape: nearby }).kernel.tileQ, r.tiles.tileQ);
    // Explicit tiles still win over the stored choice.
    const other = tunedName === "8x8x2" ? { tileQ: 16, tileK: 8 } : { tileQ: 8, tileK: 8 };
    assert.equal(rt.compile(pattern, { shape, tiles: other }).kernel.tileQ, other.tileQ);
    // Another size class, dtype grouping or structure has no stored choice.
    assert.equal(rt.autotuner.cached(pattern, { ...shape, seqLen: 65 }, "f32"), undefined);
    assert.equal(rt.autotuner.cached(pattern, { ...shape, headsKV: 2 }, "f32"), undefined);
    assert.equal(rt.autotuner.cached({ kind: "ring", radius: 4 }, shape, "f32"), undefined);
    assert.equal(rt.autotuner.cached(pattern, shape, "f16"), undefined);
  } finally {
    rt.destroy();
  }
});

Deno.test("a runtime with autotuning off ignores the stored choice and times nothing", async () => {
  assert.ok(tunedName, "the first test tuned");
  const rt = await createRuntime({ autotune: false });
  try {
    assert.equal(rt.autotuner.cached(pattern, shape, "f32"), undefined);
    const r = await rt.tune(pattern, { shape, force: true, candidates });
    assert.equal(r.source, "default");
    assert.match(r.reason, /autotuning is off/);
    assert.equal(rt.autotuner.measuredCandidates, 0);
    if (rt.info.isFallback) assert.equal(rt.compile(pattern, { shape }).kernel.tileQ, 8);
  } finally {
    rt.destroy();
  }
});

Deno.test("a corrupt cache file is ignored with one warning line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "weft_autotune_corrupt_" });
  await Deno.writeTextFile(`${dir}/autotune.json`, '{"version": 1, "entries": ');
  Deno.env.set("WEFT_CACHE_DIR", dir);
  const warnings: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => warnings.push(args.join(" "));
  const rt = await createRuntime();
  try {
    assert.equal(rt.autotuner.cached(pattern, shape, "f32"), undefined);
    const compiled = rt.compile(pattern, { shape });
    if (rt.info.isFallback) assert.equal(compiled.kernel.tileQ, 8);
    rt.compile({ kind: "dense" }, { shape }); // read once: no second warning
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0], /^weft: ignoring autotune cache .*autotune\.json: not JSON/);
  } finally {
    console.error = error;
    Deno.env.set("WEFT_CACHE_DIR", cacheDir);
    rt.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});
