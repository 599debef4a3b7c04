/**
 * A test module for `suite_progress_test.ts` (not collected by `deno test tests/`: no `_test` in
 * its name): quiet for a few seconds, so the test task's heartbeat has something to report.
 */

Deno.test("a quiet test that takes a few seconds", async () => {
  await new Promise((resolve) => setTimeout(resolve, 3500));
});
