/**
 * The host: the little Weft needs from the program it runs in besides WebGPU, so that `dsl/`,
 * `compiler/` and `runtime/` run unchanged under Deno and in a browser (page or worker).
 *
 * | need                   | Deno                                   | browser                       |
 * | ---------------------- | -------------------------------------- | ----------------------------- |
 * | `name`                 | `deno 2.9.6`                           | e.g. `Chrome 150`             |
 * | `env(name)`            | the environment (unset without access) | nothing is set                |
 * | `require(specifier)`   | Node's `require`, synchronous          | none: `loadExpressionParser()`|
 *
 * With no environment, a browser has no backend variable (`navigator.gpu` it is) and no
 * autotune file (tuned shapes stay in memory). Without `require`, ts-morph, which predicates
 * and score modifiers are parsed with, loads by a dynamic import that a page awaits first.
 * The command-line tools, `.npy` files and the autotune file's reads and writes stay Deno-only:
 * nothing in a browser reaches them.
 * @module
 */

/** What Weft asks of the program it runs in. */
export interface Host {
  /** `deno` under Deno, `browser` in a page or a web worker. */
  readonly kind: "deno" | "browser";
  /** The runtime and its version, e.g. `deno 2.9.6` or `Chrome 150`. */
  readonly name: string;
  /**
   * An environment variable's value, or undefined where it is unset or cannot be read.
   * @param name the variable
   * @returns its value, or undefined
   */
  env(name: string): string | undefined;
  /**
   * Loads a CommonJS package synchronously (Deno: Node's `require`); absent in a browser.
   * @param specifier the package
   * @returns its exports
   */
  readonly require?: (specifier: string) => unknown;
}

type DenoLike = {
  version: { deno: string };
  env: { get(name: string): string | undefined };
};
type NodeModule = { createRequire(from: string): (specifier: string) => unknown };
type ProcessLike = { getBuiltinModule?(name: string): unknown };

/**
 * The host this program runs in, decided once.
 * @returns the Deno host where `Deno` exists, else the browser's
 * @example
 * ```ts
 * import { currentHost } from "./host.ts";
 * currentHost().kind; // "deno"
 * ```
 */
export function currentHost(): Host {
  return cached ??= detect();
}
let cached: Host | undefined;

function detect(): Host {
  const deno = (globalThis as { Deno?: DenoLike }).Deno;
  if (!deno) {
    return { kind: "browser", name: browserName(navigator.userAgent), env: () => undefined };
  }
  // Node's `require` without importing node:module, which a browser bundle could not resolve.
  const process = (globalThis as { process?: ProcessLike }).process;
  const nodeModule = process?.getBuiltinModule?.("node:module") as NodeModule | undefined;
  return {
    kind: "deno",
    name: `deno ${deno.version.deno}`,
    env: (name) => {
      try {
        return deno.env.get(name);
      } catch {
        return undefined; // no --allow-env: behave as if unset
      }
    },
    ...(nodeModule ? { require: nodeModule.createRequire(import.meta.url) } : {}),
  };
}

/**
 * A browser's name and major version from its user agent.
 * @param userAgent `navigator.userAgent`
 * @returns e.g. `Chrome 150`, `Firefox 141`, `Safari 26`, else `browser`
 * @example
 * ```ts
 * import { browserName } from "./host.ts";
 * browserName("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/150.0.7871.100 Safari/537.36");
 * // "HeadlessChrome 150"
 * ```
 */
export function browserName(userAgent: string): string {
  for (const [pattern, name] of BROWSERS) {
    const m = pattern.exec(userAgent);
    if (m) return `${name ?? m[1]} ${m[2]}`;
  }
  return "browser";
}

const BROWSERS: [RegExp, string | undefined][] = [
  [/(Edg)\/(\d+)/, "Edge"],
  [/(HeadlessChrome|Chrome|Chromium|Firefox)\/(\d+)/, undefined],
  [/(Version)\/(\d+)[^ ]* (?:Mobile\/\S+ )?Safari/, "Safari"],
];
