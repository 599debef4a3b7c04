/**
 * Preloaded by `run_suite.ts` into every test module's worker (`deno test --preload`): appends
 * "start" when the module begins and "end" when its worker unloads, with the time and the
 * module's URL, to the file named by WEFT_SUITE_EVENTS, so the task can say which files are
 * running and for how long. Synchronous appends of one short line: no async op is left behind
 * for the test sanitizers, and lines from parallel workers do not interleave (O_APPEND).
 * Without WEFT_SUITE_EVENTS (a plain `deno test`) it does nothing. Not a test module itself.
 * @module
 */

const events = Deno.env.get("WEFT_SUITE_EVENTS");
if (events) {
  const note = (kind: "start" | "end") => {
    try {
      Deno.writeTextFileSync(events, `${kind}\t${Date.now()}\t${Deno.mainModule}\n`, {
        append: true,
      });
    } catch {
      // Progress is a courtesy: never fail a test module over it.
    }
  };
  note("start");
  globalThis.addEventListener("unload", () => note("end"));
}
