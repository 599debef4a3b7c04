/**
 * What the command-line tools share: flag parsing, resolving `--pattern` (a JSON file, JSON
 * text or an example's name), reading float32 and float16 `.npy` tensors, checking where
 * outputs go, comparing against the float64 reference, and turning every user error into one
 * line on stderr with exit status 2.
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs, type ParseArgsOptionsConfig, styleText } from "node:util";
import {
  DataError,
  DeviceError,
  PatternError,
  PlanError,
  ShaderError,
  ShapeError,
} from "../core/errors.ts";
import { parsePattern, type Pattern } from "../dsl/schema.ts";
import { readNpy, writeNpy } from "./npy.ts";
import { exampleNames, examplePattern } from "../examples/registry.ts";
// The reports the playground page shares with the tools (no Deno or Node APIs there).
export { adapterLine, formatMs, maxAbsError, maxLseError } from "./_report.ts";

/** Bad flags, missing or unreadable files: the person running the tool can fix it. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Exit status for input a person can fix (bad flags, patterns, shapes, files). */
export const EXIT_USER_ERROR = 2;
/** Exit status for a result outside tolerance, or a bug in Weft. */
export const EXIT_FAILURE = 1;

const USER_ERRORS = [
  UsageError,
  PatternError,
  PlanError,
  ShapeError,
  ShaderError,
  DeviceError,
  DataError,
];

/**
 * Whether an error is the user's to fix (exit 2) rather than a bug in Weft (exit 1).
 *
 * @param error anything thrown
 * @returns true for Weft's stage errors and `UsageError`
 * @example
 * ```ts
 * import { isUserError, UsageError } from "./_common.ts";
 * isUserError(new UsageError("missing --q")); // true
 * isUserError(new TypeError("x is undefined")); // false
 * ```
 */
export function isUserError(error: unknown): boolean {
  return USER_ERRORS.some((kind) => error instanceof kind);
}

/**
 * The one line printed for an error: its message with any line breaks folded, so a WGSL
 * compiler message quoting a line still prints as one line.
 *
 * @param error anything thrown
 * @returns `error: <message>`, one line
 * @example
 * ```ts
 * import { errorLine } from "./_common.ts";
 * errorLine(new Error("a\nb")); // "error: a | b"
 * ```
 */
export function errorLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const folded = message.split(/\r?\n/).map((s) => s.trim()).filter((s) => s).join(" | ");
  return isUserError(error) || !(error instanceof Error)
    ? `error: ${folded}`
    : `error: internal error (a bug in Weft, please report; WEFT_DEBUG=1 shows the stack): ` +
      `${error.name}: ${folded}`;
}

/**
 * Runs a tool's `main` and exits: with its status, with 2 and one line on stderr for a user
 * error, with 1 and one line for anything else (the stack only when `WEFT_DEBUG` is set).
 *
 * @param main the tool; resolves to its exit status (0 when it returns nothing)
 * @returns never: the process exits
 * @example
 * ```ts ignore
 * import { runMain } from "./_common.ts";
 * await runMain(async () => 0);
 * ```
 */
export async function runMain(main: () => Promise<number | void>): Promise<never> {
  let status: number;
  try {
    status = (await main()) ?? 0;
  } catch (error) {
    const label = Deno.stderr.isTerminal() && !Deno.env.get("NO_COLOR")
      ? styleText("red", "error:")
      : "error:";
    console.error(errorLine(error).replace(/^error:/, label));
    if (!isUserError(error) && Deno.env.get("WEFT_DEBUG") && error instanceof Error) {
      console.error(error.stack);
    }
    status = isUserError(error) ? EXIT_USER_ERROR : EXIT_FAILURE;
  }
  Deno.exit(status);
}

/**
 * `node:util` `parseArgs` in strict mode, with its errors turned into one-line `UsageError`s
 * that list the flags the tool knows.
 *
 * @param args the command line (usually `Deno.args`)
 * @param options the flags, as for `parseArgs`
 * @param allowPositionals whether bare arguments are accepted
 * @returns the parsed values and positionals
 * @throws {UsageError} an unknown flag, a missing value, a stray argument
 * @example
 * ```ts
 * import { parseFlags } from "./_common.ts";
 * const { values } = parseFlags(["--seq-len", "64"], { "seq-len": { type: "string" } });
 * values["seq-len"]; // "64"
 * ```
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  allowPositionals = false,
): ReturnType<typeof parseArgs<{ options: T; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    const known = Object.keys(options).map((f) => `--${f}`).join(", ");
    const code = (error as { code?: string }).code;
    const quoted = /'([^']+)'/.exec((error as Error).message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new UsageError(`unknown flag ${quoted}; expected one of ${known} (see --help)`);
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new UsageError(
        `unexpected argument ${quoted}; every input needs its flag (see --help)`,
      );
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new UsageError(`${(error as Error).message.split("\n")[0]} (see --help)`);
    }
    throw error;
  }
}

/**
 * A required string flag.
 *
 * @param value the parsed value
 * @param flag the flag's name without dashes
 * @param what what the flag holds, for the message
 * @returns the value
 * @throws {UsageError} when it is missing or empty
 * @example
 * ```ts
 * import { required } from "./_common.ts";
 * required("q.npy", "q", "the query tensor"); // "q.npy"
 * ```
 */
export function required(value: string | undefined, flag: string, what: string): string {
  if (value === undefined || value === "") {
    throw new UsageError(`missing --${flag} (${what})`);
  }
  return value;
}

/**
 * A flag holding an integer in a range.
 *
 * @param value the parsed text (undefined when the flag was not given)
 * @param flag the flag's name without dashes
 * @param options `min`, optional `max` and `fallback` (used when the flag is absent)
 * @returns the integer, or the fallback (undefined when there is none)
 * @throws {UsageError} when the text is not such an integer
 * @example
 * ```ts
 * import { integerFlag } from "./_common.ts";
 * integerFlag("4096", "seq-len", { min: 1 }); // 4096
 * integerFlag(undefined, "head-dim", { min: 4, fallback: 64 }); // 64
 * ```
 */
export function integerFlag(
  value: string | undefined,
  flag: string,
  options: { min: number; max?: number; fallback?: number },
): number | undefined {
  if (value === undefined) return options.fallback;
  const x = Number(value);
  const max = options.max ?? 0x7fffffff;
  if (value.trim() === "" || !Number.isInteger(x) || x < options.min || x > max) {
    throw new UsageError(
      `--${flag} must be an integer in [${options.min}, ${max}], got ${JSON.stringify(value)}`,
    );
  }
  return x;
}

/**
 * Resolves `--pattern`: JSON text (starts with `{`), a JSON file, a `.ts` module exporting
 * `pattern`, or the name of an example in `examples/` (e.g. `pi_attention`).
 *
 * @param spec the flag's value
 * @returns the checked pattern
 * @throws {UsageError} when it is none of those; {PatternError} when the JSON is not a pattern
 * @example
 * ```ts
 * import { loadPattern } from "./_common.ts";
 * const p = await loadPattern('{"kind":"stride","period":16}');
 * p.kind; // "stride"
 * ```
 */
export async function loadPattern(spec: string): Promise<Pattern> {
  const text = spec.trim();
  if (text.startsWith("{") || text.startsWith("[")) {
    return parsePattern(parseJson(text, "--pattern"));
  }
  const fromExample = await examplePattern(text);
  if (fromExample) return parsePattern(fromExample);
  let source: string;
  try {
    source = await Deno.readTextFile(text);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `--pattern ${JSON.stringify(text)} is not JSON text, a file, or an example name ` +
          `(${exampleNames().join(", ")})`,
      );
    }
    throw new UsageError(`--pattern ${text}: cannot read: ${(error as Error).message}`);
  }
  if (/\.[mc]?ts$/.test(text)) {
    const module = await import(pathToFileURL(resolve(text)).href);
    if (!("pattern" in module)) {
      throw new UsageError(`--pattern ${text}: the module must export \`pattern\``);
    }
    return parsePattern(module.pattern);
  }
  return parsePattern(parseJson(source, `--pattern ${text}`));
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${where}: not valid JSON (${(error as Error).message})`);
  }
}

/** A float32 or float16 tensor, as read from or written to a `.npy` file. */
export interface Tensor {
  shape: number[];
  data: Float32Array | Float16Array;
}

/**
 * The bytes of a file a flag names.
 * @param path the file
 * @param flag the flag, for the message
 * @returns its bytes
 * @throws {UsageError} `--flag path: cannot read: why`, one line
 */
export async function readFlagFile(path: string, flag: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : (error as Error).message.split("\n")[0];
    throw new UsageError(`--${flag} ${path}: cannot read: ${why}`);
  }
}

/**
 * Reads a float32 (`<f4`) or float16 (`<f2`) `.npy` file for a flag.
 *
 * @param path the file
 * @param flag the flag that named it, for messages
 * @returns its shape and data (a Float32Array or a Float16Array, as the file holds)
 * @throws {UsageError} missing or unreadable file, not a .npy file, or another dtype
 * @example
 * ```ts ignore
 * import { readTensor } from "./_common.ts";
 * const q = await readTensor("q.npy", "q");
 * ```
 */
export async function readTensor(path: string, flag: string): Promise<Tensor> {
  const bytes = await readFlagFile(path, flag);
  let array;
  try {
    array = readNpy(bytes);
  } catch (error) {
    throw new UsageError(`--${flag} ${path}: ${(error as Error).message}`);
  }
  if (array.dtype !== "f4" && array.dtype !== "f2") {
    throw new UsageError(
      `--${flag} ${path} has dtype <${array.dtype}, expected float32 (<f4) or float16 (<f2); ` +
        `convert with .astype(np.float32)`,
    );
  }
  return { shape: array.shape, data: array.data as Float32Array | Float16Array };
}

/**
 * Checks, before any work, that an output can be written: its directory exists, it is not a
 * directory itself, and it opens for writing. Nothing is truncated, and a file this check had
 * to create is removed again, so a run that fails later leaves no empty file behind.
 *
 * @param path the output file
 * @param flag the flag that named it, for messages
 * @returns when the path is writable
 * @throws {UsageError} one line naming the flag, the path and what is wrong
 * @example
 * ```ts ignore
 * import { checkOutputPath } from "./_common.ts";
 * await checkOutputPath("/nonexistent/o.npy", "out"); // UsageError: no such directory
 * ```
 */
export async function checkOutputPath(path: string, flag: string): Promise<void> {
  const refuse = (why: string) => new UsageError(`--${flag} ${path}: ${why}`);
  const firstLine = (error: unknown) => (error as Error).message.split("\n")[0];
  let existing: Deno.FileInfo | undefined;
  try {
    existing = await Deno.stat(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
      throw refuse(`cannot write: ${firstLine(error)}`);
    }
  }
  if (existing?.isDirectory) {
    const example = join(path, `${flag === "out" ? "o" : flag}.npy`);
    throw refuse(`is a directory; give a file in it, e.g. ${example}`);
  }
  if (!existing) {
    const dir = dirname(resolve(path));
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(dir);
    } catch {
      throw refuse(`no such directory ${dir}`);
    }
    if (!info.isDirectory) throw refuse(`${dir} is not a directory`);
  }
  try {
    (await Deno.open(path, { write: true, create: true })).close();
  } catch (error) {
    throw refuse(`cannot write: ${firstLine(error)}`);
  }
  if (!existing) await Deno.remove(path).catch(() => {});
}

/**
 * Writes a `.npy` file for a flag: float32 (`<f4`) for a Float32Array, float16 (`<f2`) for a
 * Float16Array.
 *
 * @param path the file
 * @param flag the flag that named it, for messages
 * @param tensor shape and data
 * @returns when written
 * @throws {UsageError} when the file cannot be written
 * @example
 * ```ts ignore
 * import { writeTensor } from "./_common.ts";
 * await writeTensor("o.npy", "out", { shape: [1], data: new Float32Array([0]) });
 * ```
 */
export async function writeTensor(path: string, flag: string, tensor: Tensor): Promise<void> {
  try {
    const dtype = tensor.data instanceof Float16Array ? "f2" : "f4";
    await Deno.writeFile(path, writeNpy({ dtype, ...tensor }));
  } catch (error) {
    throw new UsageError(
      `--${flag} ${path}: cannot write: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

/** Gradients as the GPU returns them or the reference computes them. */
export interface GradientSet {
  dq: ArrayLike<number>;
  dk: ArrayLike<number>;
  dv: ArrayLike<number>;
  dgates?: ArrayLike<number>;
}

/**
 * The largest |actual - expected| over every gradient the expected set holds, and the largest
 * expected magnitude, which gradient tolerances are relative to (DESIGN §4).
 *
 * @param actual the GPU's gradients
 * @param expected the reference's
 * @returns the worst absolute error (Infinity on a NaN, a missing gradient or a length
 *   mismatch) and the largest |expected|
 * @example
 * ```ts
 * import { gradientError } from "./_common.ts";
 * gradientError({ dq: [1, 2], dk: [0], dv: [3] }, { dq: [1, 2.5], dk: [0], dv: [3] });
 * // { worst: 0.5, largest: 3 }
 * ```
 */
export function gradientError(
  actual: GradientSet,
  expected: GradientSet,
): { worst: number; largest: number } {
  let worst = 0, largest = 0;
  for (const name of ["dq", "dk", "dv", "dgates"] as const) {
    const a = actual[name], e = expected[name];
    if (!e) continue;
    if (!a || a.length !== e.length) return { worst: Infinity, largest };
    for (let i = 0; i < e.length; i++) {
      const d = Math.abs(a[i] - e[i]);
      worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
      largest = Math.max(largest, Math.abs(e[i]));
    }
  }
  return { worst, largest };
}

/** Learnable constants' gradients by name: a number for a number, else one per entry. */
export type ConstantGradients = Record<string, number | ArrayLike<number>>;

/**
 * The learnable constants' gradients against the reference's: the largest |actual - expected|
 * and the scale to judge it by, apart from dQ, dK and dV since they sum over every row and have
 * a scale of their own: the largest |expected|, or where the reference gives it, the largest of
 * that and the rounding scale (`dConstantsScale`: a sum whose terms cancel is only as exact as
 * the terms' magnitudes allow).
 * @param actual the GPU's `dConstants`
 * @param expected the reference's
 * @param scale the reference's `dConstantsScale`, if any
 * @returns the worst absolute error (Infinity on a NaN, a missing name or a length mismatch)
 *   and the scale; both 0 when nothing is learnable
 * @example
 * ```ts
 * import { constantGradientError } from "./_common.ts";
 * constantGradientError({ c: 2, m: [1, 3] }, { c: 2.5, m: [1, 3] }); // { worst: 0.5, largest: 3 }
 * constantGradientError({ c: 1e-7 }, { c: 0 }, { c: 2 }); // { worst: 1e-7, largest: 2 }
 * ```
 */
export function constantGradientError(
  actual: ConstantGradients | undefined,
  expected: ConstantGradients | undefined,
  scale?: ConstantGradients,
): { worst: number; largest: number } {
  const entries = (x: number | ArrayLike<number>): ArrayLike<number> =>
    typeof x === "number" ? [x] : x;
  let worst = 0, largest = 0;
  for (const [name, e] of Object.entries(expected ?? {})) {
    const a = actual?.[name];
    const es = entries(e);
    const as = a === undefined ? undefined : entries(a);
    if (!as || as.length !== es.length || (typeof a === "number") !== (typeof e === "number")) {
      return { worst: Infinity, largest };
    }
    for (let i = 0; i < es.length; i++) {
      const d = Math.abs(as[i] - es[i]);
      worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
      largest = Math.max(largest, Math.abs(es[i]));
    }
    const s = scale?.[name];
    if (s !== undefined) { for (const x of Array.from(entries(s))) largest = Math.max(largest, x); }
  }
  return { worst, largest };
}

/**
 * The `--dtype` flag: f32 (default) or f16 (`float32`, `float16` also read).
 * @param dtype the flag's text
 * @returns the dtype
 * @throws {UsageError} naming the allowed values
 * @example
 * ```ts
 * import { checkDtype } from "./_common.ts";
 * checkDtype("float16"); // "f16"
 * ```
 */
export function checkDtype(dtype: string | undefined): "f32" | "f16" {
  if (dtype === undefined || dtype === "f32" || dtype === "float32") return "f32";
  if (dtype === "f16" || dtype === "float16") return "f16";
  throw new UsageError(`--dtype must be f32 or f16, got ${JSON.stringify(dtype)}`);
}
