import assert from "node:assert/strict";
import { join } from "node:path";
import {
  countTestFiles,
  formatDuration,
  parseEvents,
  SuiteProgress,
  testPaths,
} from "./suite_progress.ts";

Deno.test("parseEvents reads whole lines and leaves a partial one for later", () => {
  const text = "start\t1000\tfile:///w/tests/a_test.ts\nend\t4000\tfile:///w/tests/a_test.ts\nst";
  const { events, used } = parseEvents(text, "/w");
  assert.deepEqual(events, [
    { kind: "start", at: 1000, file: "tests/a_test.ts" },
    { kind: "end", at: 4000, file: "tests/a_test.ts" },
  ]);
  assert.equal(text.slice(used), "st");
});

Deno.test("SuiteProgress: started, finished, done of total, heartbeat only after quiet", () => {
  const t0 = 1_000_000;
  const p = new SuiteProgress(3, t0, 30_000);
  assert.equal(p.heartbeat(t0 + 29_000), undefined);
  assert.match(p.heartbeat(t0 + 30_000)!, /no test file has started yet/);
  assert.equal(
    p.onEvent({ kind: "start", at: t0 + 31_000, file: "tests/gpu/a_test.ts" }),
    "suite: [0/3 done] started tests/gpu/a_test.ts (1 running)",
  );
  p.onEvent({ kind: "start", at: t0 + 32_000, file: "tests/cli/b_test.ts" });
  assert.equal(
    p.onEvent({ kind: "start", at: t0 + 32_000, file: "tests/cli/b_test.ts" }),
    undefined,
  );
  // Quiet for 30 s after the last line: the running files, longest first, with their times.
  assert.equal(p.heartbeat(t0 + 61_000), undefined);
  assert.equal(
    p.heartbeat(t0 + 212_000),
    "suite: 3m32s elapsed, 0/3 files done; still running: tests/gpu/a_test.ts (3m01s), " +
      "tests/cli/b_test.ts (3m00s)",
  );
  assert.equal(p.heartbeat(t0 + 230_000), undefined, "a heartbeat restarts the quiet time");
  assert.equal(
    p.onEvent({ kind: "end", at: t0 + 240_000, file: "tests/cli/b_test.ts" }),
    "suite: [1/3 done] finished tests/cli/b_test.ts in 3m28s",
  );
  // A file past the expected count raises the total.
  p.onEvent({ kind: "start", at: t0 + 241_000, file: "c_test.ts" });
  p.onEvent({ kind: "start", at: t0 + 241_000, file: "d_test.ts" });
  assert.equal(p.total, 4);
  p.onEvent({ kind: "end", at: t0 + 242_000, file: "c_test.ts" });
  p.onEvent({ kind: "end", at: t0 + 250_000, file: "tests/gpu/a_test.ts" });
  assert.equal(
    p.finish(t0 + 260_000),
    "suite: 3 of 4 test files finished in 4m20s; slowest: tests/gpu/a_test.ts 3m39s, " +
      "tests/cli/b_test.ts 3m28s, c_test.ts 1s; never finished: d_test.ts",
  );
  assert.equal(formatDuration(59_400), "59s");
});

Deno.test("testPaths and countTestFiles find what deno test will run", async () => {
  assert.deepEqual(testPaths(["--filter", "gpu", "tests/gpu/", "--fail-fast", "x.ts"]), [
    "tests/gpu/",
    "x.ts",
  ]);
  assert.deepEqual(testPaths(["--filter=gpu", "--reporter", "dot"]), []);
  const dir = await Deno.makeTempDir({ prefix: "weft_count_" });
  try {
    for (const f of ["a_test.ts", "b.test.mjs", "test.ts", "helper.ts", "x/c_test.ts"]) {
      await Deno.mkdir(join(dir, f, ".."), { recursive: true });
      await Deno.writeTextFile(join(dir, f), "");
    }
    await Deno.mkdir(join(dir, ".hidden"));
    await Deno.writeTextFile(join(dir, ".hidden", "d_test.ts"), "");
    assert.equal(countTestFiles([dir]), 4);
    assert.equal(countTestFiles([dir, join(dir, "helper.ts"), join(dir, "missing")]), 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The summary line .ci/run greps for. */
const CI_SUMMARY = /^(ok|FAILED) \| [0-9]+ passed/;

Deno.test("the test task reports progress and a heartbeat, and the summary line stays whole", async () => {
  // stdout and stderr into one pipe, as .ci/run's `deno task test 2>&1 | tee` has them.
  const command = `"${Deno.execPath()}" run -A tests/suite/run_suite.ts ` +
    "tests/suite/progress_fixture_slow.ts tests/suite/progress_fixture_fast.ts 2>&1";
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    env: { NO_COLOR: "1", WEFT_SUITE_HEARTBEAT_S: "1" },
    stdout: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text);
  const lines = text.split("\n");
  const summaries = lines.filter((l) => CI_SUMMARY.test(l));
  assert.equal(summaries.length, 1, text);
  assert.match(summaries[0], /^ok \| 3 passed \(1 step\) \| 0 failed/);
  assert.match(text, /^suite: 2 test files in tests\/suite\/progress_fixture_slow\.ts, /m);
  for (const f of ["slow", "fast"]) {
    const file = `tests/suite/progress_fixture_${f}.ts`;
    assert.match(text, new RegExp(`^suite: \\[[01]/2 done\\] started ${file}`, "m"));
    assert.match(text, new RegExp(`^suite: \\[[12]/2 done\\] finished ${file} in \\d+s$`, "m"));
  }
  assert.match(
    text,
    /^suite: \d+s elapsed, [01]\/2 files done; still running: tests\/suite\/progress_fixture_slow\.ts \(\d+s\)/m,
  );
  assert.match(text, /^suite: 2 of 2 test files finished in \d+s; slowest: /m);
  // Every line is Deno's or a whole progress line: none was cut into another.
  for (const line of lines) {
    assert.ok(!/.suite: /.test(line), `a progress line inside another: ${line}`);
  }
  // The summary comes after every per-file line; only the closing line follows it.
  const at = lines.indexOf(summaries[0]);
  const after = lines.slice(at + 1).filter((l) => l.trim() !== "");
  assert.equal(after.length, 1, after.join("\n"));
  assert.match(after[0], /^suite: 2 of 2 test files finished/);
});
