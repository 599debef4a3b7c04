/**
 * `deno task test`: runs `deno test -A --parallel` (on `tests/` or the paths given), passes its
 * output through as it comes, and returns its exit status, except for the one crash at exit
 * that `suite_exit.ts` describes, which it names on stderr and does not count as a failure.
 *
 * ```sh
 * deno task test                    # the whole suite
 * deno task test tests/gpu/         # one folder; any `deno test` flags pass through too
 * ```
 */

import { suiteVerdict } from "./suite_exit.ts";

/** Enough of the output's end to hold Deno's summary line, whatever comes after it. */
const TAIL_CHARS = 16_384;

const args = Deno.args.length > 0 ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--parallel", ...args],
  stdin: "inherit",
  stdout: "piped",
  stderr: "inherit",
}).spawn();

let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  // A pipe may take part of a chunk; write the rest before reading on.
  for (let done = 0; done < chunk.length;) done += await Deno.stdout.write(chunk.subarray(done));
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-TAIL_CHARS);
}
const status = await child.status;
const verdict = suiteVerdict(status, tail);
if (verdict.warning) console.error(verdict.warning);
Deno.exit(verdict.code);
