/**
 * A test module for `suite_progress_test.ts` (not collected by `deno test tests/`: no `_test` in
 * its name): two quick tests, one with a step.
 */

Deno.test("a quick test", () => {});

Deno.test("a quick test with a step", async (t) => {
  await t.step("its step", () => {});
});
