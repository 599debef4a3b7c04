/**
 * What `deno task test` says while `deno test --parallel` runs: which test file started or
 * finished, how many of how many are done, and every `heartbeat` ms without news, what is
 * still running and for how long. A cold run on llvmpipe takes ~11 minutes, much of it inside
 * a few GPU test files that print nothing until their tests end; these lines fill the silence.
 *
 * The events come from `progress_preload.ts` (one line per module start and end); the lines
 * here all start with "suite: ", so nothing matches the summary CI greps for
 * (`^(ok|FAILED) \| [0-9]+ passed`).
 * @module
 */
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** A test module began or its worker unloaded. */
export interface SuiteEvent {
  kind: "start" | "end";
  /** Epoch milliseconds. */
  at: number;
  /** The module's path as the user would type it (relative to the working directory). */
  file: string;
}

/**
 * Parses the complete lines of an events file (`kind \t epoch-ms \t module-URL`).
 *
 * @param text the file's text so far; a last line without its newline is left for later
 * @param cwd the directory paths are shown relative to
 * @returns the events, and how many characters of `text` they used
 * @example
 * ```ts
 * import { parseEvents } from "./suite_progress.ts";
 * parseEvents("start\t5\tfile:///w/tests/a_test.ts\nend\t9", "/w").events[0].file;
 * // "tests/a_test.ts"
 * ```
 */
export function parseEvents(text: string, cwd: string): { events: SuiteEvent[]; used: number } {
  const used = text.lastIndexOf("\n") + 1;
  const events: SuiteEvent[] = [];
  for (const line of text.slice(0, used).split("\n")) {
    const [kind, at, url] = line.split("\t");
    if ((kind !== "start" && kind !== "end") || url === undefined) continue;
    events.push({ kind, at: Number(at), file: displayPath(url, cwd) });
  }
  return { events, used };
}

function displayPath(url: string, cwd: string): string {
  if (!url.startsWith("file:")) return url;
  const path = relative(cwd, fileURLToPath(url));
  return path.startsWith("..") ? fileURLToPath(url) : path;
}

/**
 * Durations for people: "42s", "3m05s".
 *
 * @param ms milliseconds
 * @returns whole seconds, with minutes past 60 s
 * @example
 * ```ts
 * import { formatDuration } from "./suite_progress.ts";
 * formatDuration(185_000); // "3m05s"
 * ```
 */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/** Tracks the running files and words the progress lines. */
export class SuiteProgress {
  readonly #running = new Map<string, number>();
  readonly #took = new Map<string, number>();
  #total: number;
  #lastLine: number;

  /**
   * @param total test files expected (a floor: files that start beyond it raise it)
   * @param startedAt epoch ms when the run began
   * @param heartbeatMs quiet time after which `heartbeat` speaks
   */
  constructor(
    total: number,
    private readonly startedAt: number,
    private readonly heartbeatMs: number,
  ) {
    this.#total = total;
    this.#lastLine = startedAt;
  }

  /** Test files expected. */
  get total(): number {
    return this.#total;
  }

  /** Files finished so far. */
  get done(): number {
    return this.#took.size;
  }

  /**
   * The line for one event ("suite: [3/44] started tests/gpu/x_test.ts; running 2").
   *
   * @param e the event
   * @returns the line to print, or undefined for a repeated event
   */
  onEvent(e: SuiteEvent): string | undefined {
    if (e.kind === "start") {
      if (this.#running.has(e.file) || this.#took.has(e.file)) return undefined;
      this.#running.set(e.file, e.at);
      this.#total = Math.max(this.#total, this.#running.size + this.#took.size);
      return this.#said(
        e.at,
        `suite: [${this.done}/${this.total} done] started ${e.file} (${this.#running.size} running)`,
      );
    }
    const began = this.#running.get(e.file);
    if (began === undefined) return undefined;
    this.#running.delete(e.file);
    this.#took.set(e.file, e.at - began);
    return this.#said(
      e.at,
      `suite: [${this.done}/${this.total} done] finished ${e.file} in ` +
        formatDuration(e.at - began),
    );
  }

  /**
   * After `heartbeatMs` without a line: the elapsed time, files done, and each running file
   * with how long it has run (longest first).
   *
   * @param now epoch ms
   * @returns the line, or undefined when a line was printed less than `heartbeatMs` ago
   */
  heartbeat(now: number): string | undefined {
    if (now - this.#lastLine < this.heartbeatMs) return undefined;
    const running = [...this.#running].sort((a, b) => a[1] - b[1])
      .map(([file, began]) => `${file} (${formatDuration(now - began)})`);
    return this.#said(
      now,
      `suite: ${formatDuration(now - this.startedAt)} elapsed, ${this.done}/${this.total} ` +
        `files done; ` +
        (running.length
          ? `still running: ${running.join(", ")}`
          : this.done === 0
          ? "no test file has started yet (deno test type-checks them first)"
          : "between files"),
    );
  }

  /**
   * The closing line: files finished of the total, the wall time, the slowest files.
   *
   * @param now epoch ms
   * @returns one line
   */
  finish(now: number): string {
    const slowest = [...this.#took].sort((a, b) => b[1] - a[1]).slice(0, 3)
      .map(([file, ms]) => `${file} ${formatDuration(ms)}`);
    const unfinished = this.#running.size
      ? `; never finished: ${[...this.#running.keys()].join(", ")}`
      : "";
    return this.#said(
      now,
      `suite: ${this.done} of ${this.total} test files finished in ` +
        `${formatDuration(now - this.startedAt)}` +
        (slowest.length ? `; slowest: ${slowest.join(", ")}` : "") + unfinished,
    );
  }

  #said(at: number, line: string): string {
    this.#lastLine = Math.max(this.#lastLine, at);
    return line;
  }
}

/** `deno test` flags whose value may come as the next argument. */
const FLAGS_WITH_VALUE = new Set([
  "--filter",
  "--reporter",
  "--junit-path",
  "--seed",
  "--shard",
  "--related",
  "--retry",
  "--repeats",
  "--coverage-threshold",
  "--config",
  "-c",
  "--import-map",
  "--lock",
  "--preload",
  "--require",
  "--conditions",
  "--ext",
  "--location",
  "--cert",
  "--min-dep-age",
]);

/**
 * The paths among `deno test` arguments: every argument that is not a flag or a flag's value.
 *
 * @param args the arguments after `deno test`
 * @returns the paths, in order (empty when only flags were given)
 * @example
 * ```ts
 * import { testPaths } from "./suite_progress.ts";
 * testPaths(["--filter", "gpu", "tests/gpu/", "--fail-fast"]); // ["tests/gpu/"]
 * ```
 */
export function testPaths(args: readonly string[]): string[] {
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") continue;
    if (a.startsWith("-")) {
      if (FLAGS_WITH_VALUE.has(a)) i++;
      continue;
    }
    paths.push(a);
  }
  return paths;
}

/** Deno's test-module names: `*_test`, `*.test` or `test`, with a script extension. */
const TEST_MODULE = /(^|[._])test\.(ts|tsx|mts|js|jsx|mjs)$/;

/**
 * How many test modules `deno test` will find under `paths`: a named file counts whatever its
 * name, a directory counts its test modules (hidden folders and node_modules skipped).
 *
 * @param paths files and directories
 * @returns the count (a path that does not exist counts nothing)
 */
export function countTestFiles(paths: readonly string[]): number {
  let count = 0;
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isDirectory) {
        if (!entry.name.startsWith(".") && entry.name !== "node_modules") {
          walk(join(dir, entry.name));
        }
      } else if (TEST_MODULE.test(entry.name)) count++;
    }
  };
  for (const path of paths) {
    try {
      if (Deno.statSync(path).isDirectory) walk(path);
      else count++;
    } catch {
      // Deno will report the bad path itself.
    }
  }
  return count;
}
