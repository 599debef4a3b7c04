import assert from "node:assert/strict";
import { lastSummary, suiteVerdict } from "./suite_exit.ts";

const passing = "./tests/npy_test.ts => round trip ... ok (1ms)\n\n" +
  "ok | 201 passed (173 steps) | 0 failed | 1 ignored (31s)\n\n";
const failing = "ERRORS\n\nFAILED | 199 passed (170 steps) | 2 failed | 1 ignored (33s)\n";

Deno.test("lastSummary reads Deno's summary line, coloured or not", () => {
  assert.deepEqual(lastSummary(passing), { ok: true, passed: 201, failed: 0 });
  assert.deepEqual(lastSummary(failing), { ok: false, passed: 199, failed: 2 });
  const coloured = "\x1b[0m\x1b[32mok\x1b[0m | 33 passed (87 steps) | 0 failed | 1 ignored " +
    "\x1b[0m\x1b[38;5;245m(6s)\x1b[0m\n";
  assert.deepEqual(lastSummary(coloured), { ok: true, passed: 33, failed: 0 });
  assert.equal(lastSummary("./tests/a_test.ts => x ... ok (1ms)\n"), undefined);
});

Deno.test("an abort after a summary with no failures is a pass with a warning", () => {
  for (const signal of ["SIGABRT", "SIGSEGV"]) {
    const v = suiteVerdict({ code: 128 + (signal === "SIGABRT" ? 6 : 11), signal }, passing);
    assert.equal(v.code, 0);
    assert.match(v.warning ?? "", new RegExp(`${signal}.*201 passed, 0 failed`));
  }
});

Deno.test("every other ending keeps its status", () => {
  // Test failures, with or without a crash after them.
  assert.deepEqual(suiteVerdict({ code: 1, signal: null }, failing), { code: 1 });
  assert.deepEqual(suiteVerdict({ code: 134, signal: "SIGABRT" }, failing), { code: 134 });
  // A crash before the summary: some results never came.
  assert.deepEqual(suiteVerdict({ code: 134, signal: "SIGABRT" }, "running 3 tests\n"), {
    code: 134,
  });
  // Killed from outside, or a plain exit code after a passing summary.
  assert.deepEqual(suiteVerdict({ code: 137, signal: "SIGKILL" }, passing), { code: 137 });
  assert.deepEqual(suiteVerdict({ code: 1, signal: null }, passing), { code: 1 });
  assert.deepEqual(suiteVerdict({ code: 0, signal: null }, passing), { code: 0 });
});

/** `deno task test` on the fixture that aborts in exit(), as a child process. */
async function runSuiteOnFixture(fail: boolean) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tests/suite/run_suite.ts", "tests/suite/abort_at_exit.ts"],
    env: { NO_COLOR: "1", ...(fail ? { WEFT_FIXTURE_FAIL: "1" } : {}) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

const glibc = Deno.build.os === "linux" && Deno.build.env === "gnu";

Deno.test({
  name: "the test task passes a run that aborts after a clean summary, and says so",
  ignore: !glibc,
  fn: async () => {
    const run = await runSuiteOnFixture(false);
    assert.match(run.stdout, /ok \| 1 passed \| 0 failed/);
    assert.match(run.stderr, /deno test ended with SIGABRT while exiting.*1 passed, 0 failed/);
    assert.equal(run.code, 0);
  },
});

Deno.test({
  name: "the test task fails a run whose test failed, abort or not",
  ignore: !glibc,
  fn: async () => {
    const run = await runSuiteOnFixture(true);
    assert.match(run.stdout, /FAILED \| 0 passed \| 1 failed/);
    assert.doesNotMatch(run.stderr, /deno test ended with/);
    assert.notEqual(run.code, 0);
  },
});
