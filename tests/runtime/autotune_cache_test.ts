/**
 * The autotuner's file: where it lives, how it is read (a bad file is an empty cache plus one
 * warning, never a crash) and written (atomic, merging). No adapter needed.
 */
import assert from "node:assert/strict";
import {
  AUTOTUNE_FILE_VERSION,
  autotuneCachePath,
  type AutotuneEntry,
  readAutotuneFile,
  writeAutotuneFile,
} from "../../runtime/autotune_cache.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

function entry(tiles: string, structure = "dense"): AutotuneEntry {
  return {
    key: {
      adapter: {
        vendor: "nvidia",
        architecture: "hopper",
        deviceId: "8960",
        description: "NVIDIA H100 80GB HBM3",
        webgpu: "deno 2.9.6",
      },
      dtype: "f32",
      headDim: 64,
      group: 1,
      gridHeads: 8,
      seqLenClass: 4096,
      structure,
    },
    tiles,
    timer: "gpu",
    shape: { batch: 1, headsQ: 8, headsKV: 8, seqLen: 4096, headDim: 64 },
    candidates: [{ tiles, ms: 1.5, samples: [1.4, 1.5, 1.6] }, { tiles: "8x8x2", error: "boom" }],
    tunedAt: "2026-01-01T00:00:00.000Z",
  };
}

Deno.test("the cache path: WEFT_CACHE_DIR, then XDG_CACHE_HOME/weft, then ~/.cache/weft", () => {
  const all = { WEFT_CACHE_DIR: "/w/", XDG_CACHE_HOME: "/x", HOME: "/h" };
  assert.equal(autotuneCachePath(env(all)), "/w/autotune.json");
  assert.equal(
    autotuneCachePath(env({ ...all, WEFT_CACHE_DIR: "" })),
    "/x/weft/autotune.json",
  );
  assert.equal(autotuneCachePath(env({ HOME: "/h" })), "/h/.cache/weft/autotune.json");
  assert.equal(autotuneCachePath(env({})), undefined);
});

Deno.test("a missing file is an empty cache without a warning", async () => {
  const dir = await Deno.makeTempDir();
  const warnings: string[] = [];
  assert.equal(readAutotuneFile(`${dir}/autotune.json`, (l) => warnings.push(l)).size, 0);
  assert.deepEqual(warnings, []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("unreadable, non-JSON or other-version files are ignored with one warning line", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/autotune.json`;
  const cases: [string, RegExp][] = [
    ["{ nope", /not JSON/],
    ['["a"]', /expected \{"version", "entries"\}/],
    [
      JSON.stringify({ version: 99, entries: {} }),
      new RegExp(`version 99, this Weft reads ${AUTOTUNE_FILE_VERSION}`),
    ],
    // A file of the version before (its choices were made without today's candidates).
    [JSON.stringify({ version: AUTOTUNE_FILE_VERSION - 1, entries: {} }), /version \d+, this Weft/],
  ];
  for (const [text, why] of cases) {
    await Deno.writeTextFile(path, text);
    const warnings: string[] = [];
    assert.equal(readAutotuneFile(path, (l) => warnings.push(l)).size, 0, text);
    assert.equal(warnings.length, 1, text);
    assert.ok(warnings[0].startsWith(`weft: ignoring autotune cache ${path}: `), warnings[0]);
    assert.match(warnings[0], why);
    assert.ok(!warnings[0].includes("\n"));
  }
  // A folder where the file should be cannot be read: still a warning, not a throw.
  await Deno.remove(path);
  await Deno.mkdir(path);
  const warnings: string[] = [];
  assert.equal(readAutotuneFile(path, (l) => warnings.push(l)).size, 0);
  assert.equal(warnings.length, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a malformed entry is skipped and the good ones kept", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/autotune.json`;
  const good = entry("64x32x2");
  await Deno.writeTextFile(
    path,
    JSON.stringify({ version: AUTOTUNE_FILE_VERSION, entries: { good, bad: { tiles: 3 } } }),
  );
  const warnings: string[] = [];
  const read = readAutotuneFile(path, (l) => warnings.push(l));
  assert.deepEqual([...read.keys()], ["good"]);
  assert.deepEqual(read.get("good"), good);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /1 malformed entry skipped/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writes are atomic, create the folder, keep others' entries and replace a bad file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/nested/weft/autotune.json`;
  const silent = (l: string) => assert.fail(`unexpected warning: ${l}`);
  assert.equal(await writeAutotuneFile(path, new Map([["a", entry("64x32x2")]]), silent), true);
  // Another process added "b" meanwhile; this one rewrites "a" and adds "c".
  const other = readAutotuneFile(path, silent);
  other.set("b", entry("32x32x4", "ring"));
  await writeAutotuneFile(path, other, silent);
  await writeAutotuneFile(
    path,
    new Map([["a", entry("64x64x2")], ["c", entry("16x16x4", "causal")]]),
    silent,
  );
  const read = readAutotuneFile(path, silent);
  assert.deepEqual([...read.keys()].sort(), ["a", "b", "c"]);
  assert.equal(read.get("a")!.tiles, "64x64x2");
  assert.equal(read.get("b")!.tiles, "32x32x4");
  // No temporary files are left beside it.
  const names = [...Deno.readDirSync(`${dir}/nested/weft`)].map((e) => e.name);
  assert.deepEqual(names, ["autotune.json"]);
  // A corrupt file is replaced, not merged.
  await Deno.writeTextFile(path, "garbage");
  await writeAutotuneFile(path, new Map([["c", entry("16x16x4", "causal")]]), silent);
  assert.deepEqual([...readAutotuneFile(path, silent).keys()], ["c"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an unwritable cache is one warning and false, never a throw", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/file`, "");
  const warnings: string[] = [];
  const ok = await writeAutotuneFile(
    `${dir}/file/autotune.json`, // a folder that is a file
    new Map([["a", entry("64x32x2")]]),
    (l) => warnings.push(l),
  );
  assert.equal(ok, false);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /^weft: cannot write autotune cache .*file\/autotune\.json: /);
  await Deno.remove(dir, { recursive: true });
});
