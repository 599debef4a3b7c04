/**
 * The examples by name, so `deno task run --pattern pi_attention` and `deno task explain
 * bigbird` find them. Each module exports `pattern` (a `Pattern`) and `description`; the
 * imports are lazy so naming one example loads only that file.
 * @module
 */
import type { Pattern } from "../dsl/schema.ts";

/** What every example module exports. */
export interface ExampleModule {
  /** The published pattern, as the DSL builds it. */
  pattern: Pattern;
  /** One line: the paper and what the pattern keeps. */
  description: string;
}

const EXAMPLES: Record<string, () => Promise<ExampleModule>> = {
  pi_attention: () => import("./pi_attention.ts"),
  longformer: () => import("./longformer.ts"),
  bigbird: () => import("./bigbird.ts"),
  sparse_transformer: () => import("./sparse_transformer.ts"),
  linformer_like: () => import("./linformer_like.ts"),
  nsa_like: () => import("./nsa_like.ts"),
  nsa: () => import("./nsa.ts"),
  pi_attention_flash: () => import("./pi_attention_flash.ts"),
  custom_pattern: () => import("./custom_pattern.ts"),
  reformer: () => import("./reformer.ts"),
  anna: () => import("./anna.ts"),
  performer: () => import("./performer.ts"),
};

/**
 * The names of the examples, in a stable order.
 *
 * @returns e.g. `["pi_attention", "longformer", ...]`
 * @example
 * ```ts
 * import { exampleNames } from "./registry.ts";
 * exampleNames().includes("pi_attention"); // true
 * ```
 */
export function exampleNames(): string[] {
  return Object.keys(EXAMPLES);
}

/**
 * Loads an example's module by name.
 *
 * @param name an example's file name without `.ts` (e.g. `"longformer"`)
 * @returns its module, or undefined when there is no such example
 * @example
 * ```ts
 * import { exampleModule } from "./registry.ts";
 * const m = await exampleModule("longformer");
 * console.log(m?.description);
 * ```
 */
export async function exampleModule(name: string): Promise<ExampleModule | undefined> {
  return Object.hasOwn(EXAMPLES, name) ? await EXAMPLES[name]() : undefined;
}

/**
 * An example's pattern by name.
 *
 * @param name an example's file name without `.ts`
 * @returns the pattern, or undefined when there is no such example
 * @example
 * ```ts
 * import { examplePattern } from "./registry.ts";
 * (await examplePattern("pi_attention"))?.kind; // "gated"
 * ```
 */
export async function examplePattern(name: string): Promise<Pattern | undefined> {
  return (await exampleModule(name))?.pattern;
}
