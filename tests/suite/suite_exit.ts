/**
 * How `deno task test` judges the test process's exit.
 *
 * On Mesa's software drivers (llvmpipe through GL on the CPU-only machines, and lavapipe,
 * llvmpipe through Vulkan) `deno test` sometimes aborts while the process exits, after it has
 * printed its final summary: glibc reports "double free or corruption", "corrupted size vs.
 * prev_size" or "malloc_consolidate(): invalid chunk size" from a worker thread's thread-local
 * destructors while the main thread runs the libraries' exit handlers. Twenty lines of plain
 * WebGPU with no Weft code reproduce it (docs/TESTING.md); `deno run` and terminated Workers
 * never do. Every result has been reported by then, so a run whose summary says nothing failed
 * is a pass, said out loud. Anything else keeps its status: a crash before the summary, a failed
 * test, an exit code that is not a signal.
 */

/** Deno's last line: "ok | 201 passed (173 steps) | 0 failed | 1 ignored (31s)". */
export interface TestSummary {
  ok: boolean;
  passed: number;
  failed: number;
}

/** The signals the exit race ends with: glibc's abort on a corrupt heap, or a stray segfault. */
const EXIT_RACE_SIGNALS: ReadonlySet<string> = new Set(["SIGABRT", "SIGSEGV"]);

// deno test colours its output when it thinks it talks to a terminal.
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** The last summary line in `output`, or undefined when the run ended before printing one. */
export function lastSummary(output: string): TestSummary | undefined {
  let found: TestSummary | undefined;
  for (const line of output.replace(ANSI, "").split("\n")) {
    const m = /^(ok|FAILED) \| (\d+) passed.*\| (\d+) failed/.exec(line.trim());
    if (m) found = { ok: m[1] === "ok", passed: Number(m[2]), failed: Number(m[3]) };
  }
  return found;
}

/** What the test task reports: the exit code to return and, for an excused crash, why. */
export interface SuiteVerdict {
  code: number;
  warning?: string;
}

/**
 * The task's exit code from the child's status and the tail of its standard output.
 * A signal is excused only when a complete summary with no failures came before it.
 */
export function suiteVerdict(
  status: { code: number; signal: string | null },
  outputTail: string,
): SuiteVerdict {
  if (status.signal === null || !EXIT_RACE_SIGNALS.has(status.signal)) return { code: status.code };
  const summary = lastSummary(outputTail);
  if (!summary || !summary.ok || summary.failed !== 0) return { code: status.code };
  return {
    code: 0,
    warning: `warning: deno test ended with ${status.signal} while exiting, after its summary ` +
      `(${summary.passed} passed, 0 failed): the results above are complete. This is the exit ` +
      `race of Mesa's software drivers in deno test's worker threads, not a test failure ` +
      `(docs/TESTING.md).`,
  };
}
