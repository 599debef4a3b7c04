/**
 * `deno task test`: runs `deno test -A --parallel` (on `tests/` or the paths given), passes its
 * output through as it comes, and returns its exit status, except for the one crash at exit
 * that `suite_exit.ts` describes, which it names on stderr and does not count as a failure.
 *
 * While it runs, lines starting with "suite: " on stderr say which test file started or
 * finished and how many of how many are done, and after 30 s without one (WEFT_SUITE_HEARTBEAT_S
 * sets it), which files are still running and for how long (`suite_progress.ts`). They are
 * written only between whole lines of Deno's output, so Deno's summary line stays intact.
 *
 * ```sh
 * deno task test                    # the whole suite
 * deno task test tests/gpu/         # one folder; any `deno test` flags pass through too
 * ```
 */

import { fileURLToPath } from "node:url";
import { suiteVerdict } from "./suite_exit.ts";
import { countTestFiles, parseEvents, SuiteProgress, testPaths } from "./suite_progress.ts";

/** Enough of the output's end to hold Deno's summary line, whatever comes after it. */
const TAIL_CHARS = 16_384;
/** How often the events file is read and the heartbeat considered. */
const POLL_MS = 1000;

const given = [...Deno.args];
if (testPaths(given).length === 0) given.push("tests/");
const heartbeatS = Number(Deno.env.get("WEFT_SUITE_HEARTBEAT_S") ?? 30);
const startedAt = Date.now();
const progress = new SuiteProgress(
  countTestFiles(testPaths(given)),
  startedAt,
  (Number.isFinite(heartbeatS) && heartbeatS > 0 ? heartbeatS : 30) * 1000,
);
const jobs = Number(Deno.env.get("DENO_JOBS")) || navigator.hardwareConcurrency;
console.error(
  `suite: ${progress.total} test files in ${testPaths(given).join(", ")}, ${jobs} at a time; ` +
    `"suite:" lines report progress, and name what is still running after ` +
    `${heartbeatS}s without news`,
);

const eventsDir = await Deno.makeTempDir({ prefix: "weft_suite_" });
const eventsPath = `${eventsDir}/events.tsv`;
await Deno.writeTextFile(eventsPath, "");
const child = new Deno.Command(Deno.execPath(), {
  args: [
    "test",
    "-A",
    "--parallel",
    "--preload",
    fileURLToPath(new URL("./progress_preload.ts", import.meta.url)),
    ...given,
  ],
  env: { WEFT_SUITE_EVENTS: eventsPath },
  stdin: "inherit",
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Progress lines wait while Deno's output is in the middle of a line: written between its
// chunks they would split a line (the summary among them) when stdout and stderr share a file.
const pending: string[] = [];
let midLine = false;
const say = (line: string | undefined) => {
  if (line !== undefined) pending.push(line);
  if (midLine) return;
  for (const l of pending.splice(0)) console.error(l);
};
let eventsRead = 0;
const poll = (heartbeat: boolean) => {
  let text: string;
  try {
    text = Deno.readTextFileSync(eventsPath).slice(eventsRead);
  } catch {
    return;
  }
  const { events, used } = parseEvents(text, Deno.cwd());
  eventsRead += used;
  for (const e of events) say(progress.onEvent(e));
  if (heartbeat) say(progress.heartbeat(Date.now()));
};
const timer = setInterval(() => poll(true), POLL_MS);

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  // Files that ended before this output are named before it (the last before the summary).
  poll(false);
  // A pipe may take part of a chunk; write the rest before reading on.
  for (let done = 0; done < chunk.length;) done += await Deno.stdout.write(chunk.subarray(done));
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-TAIL_CHARS);
  if (chunk.length > 0) midLine = chunk[chunk.length - 1] !== 0x0a;
  say(undefined);
}
const status = await child.status;
clearInterval(timer);
midLine = false;
poll(false);
say(progress.finish(Date.now()));
await Deno.remove(eventsDir, { recursive: true }).catch(() => {});
const verdict = suiteVerdict(status, tail);
if (verdict.warning) console.error(verdict.warning);
Deno.exit(verdict.code);
