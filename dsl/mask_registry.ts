/**
 * Registered masks: named predicates that other predicates and score modifiers call by name.
 * A pattern never depends on this registry once built: the builders copy the source of every
 * registered mask a function calls (and those they call) into the pattern's `masks`, so its
 * JSON is self-contained and compiles the same anywhere.
 * @module
 */
import { PatternError } from "../core/errors.ts";
import type { Constants } from "./expression.ts";
import { calledNames, compileMask, type MaskSource } from "./expression_parse.ts";

const registry = new Map<string, MaskSource>();

/**
 * Registers a mask under `name`. The function is checked like a predicate (the same subset)
 * but takes any number of integer parameters, bound to a call's arguments in order, and sees
 * nothing else except its own `constants` and masks registered before it. Keep the variable
 * you assign it to named like the mask, so the calling source reads the same in TypeScript.
 *
 * @param name the name calls use (an identifier)
 * @param fn the mask, `(...positions) => boolean`; its source is what counts, it is never called
 * @param options `constants` the source refers to by name (Weft cannot read closures)
 * @returns `fn` itself, so `const near = registerMask("near", ...)` type-checks callers
 * @throws {PatternError} an invalid name, source outside the subset, or another mask already
 *   registered under `name`
 * @example
 * ```ts
 * import { registerMask } from "./mask_registry.ts";
 * const near = registerMask("near", (a: number, b: number) => Math.abs(a - b) <= 2);
 * near(3, 4); // true (plain TypeScript; Weft reads the source)
 * ```
 */
export function registerMask<F extends (...positions: number[]) => boolean>(
  name: string,
  fn: F,
  options: { constants?: Constants } = {},
): F {
  if (!/^[A-Za-z_$][\w$]*$/.test(name) || name === "Math") {
    throw new PatternError(`Cannot register mask: name must be an identifier, got "${name}"`);
  }
  const source: MaskSource = {
    expr: functionSource(fn),
    ...(options.constants ? { constants: options.constants } : {}),
  };
  const existing = registry.get(name);
  if (existing && JSON.stringify(existing) !== JSON.stringify(source)) {
    throw new PatternError(
      `Cannot register mask: "${name}" is already registered with another definition; ` +
        `choose another name`,
    );
  }
  try {
    compileMask(name, source, masksCalledBy(source.expr) ?? {});
  } catch (e) {
    if (e instanceof PatternError) throw new PatternError(`Cannot register mask: ${e.message}`);
    throw e;
  }
  registry.set(name, source);
  return fn;
}

/**
 * The registered masks `expr` calls, and those they call, by name: what a pattern embeds.
 * Names that are not registered are left out (the checker reports them where they are called).
 * @param expr a function's or expression's source
 * @returns the masks, or undefined when it calls none
 * @example
 * ```ts
 * import { masksCalledBy, registerMask } from "./mask_registry.ts";
 * registerMask("diagonal", (a: number, b: number) => a == b);
 * Object.keys(masksCalledBy("(q, k) => diagonal(q, k) || q == 0") ?? {}); // ["diagonal"]
 * ```
 */
export function masksCalledBy(expr: string): Record<string, MaskSource> | undefined {
  const found: Record<string, MaskSource> = {};
  const visit = (source: string) => {
    for (const name of calledNames(source)) {
      const mask = registry.get(name);
      if (mask && !Object.hasOwn(found, name)) {
        found[name] = mask;
        visit(mask.expr);
      }
    }
  };
  visit(expr);
  return Object.keys(found).length ? found : undefined;
}

/**
 * The source text of a function, as JavaScript sees it (`fn.toString()`: Deno may reflow the
 * TypeScript, so line numbers in messages count lines of this text).
 * @param fn an arrow function or function expression
 * @returns its source
 * @throws {PatternError} for built-in or bound functions, which have no source
 * @example
 * ```ts
 * import { functionSource } from "./mask_registry.ts";
 * functionSource((q: number, k: number) => k <= q); // "(q, k)=>k <= q" (as transpiled)
 * ```
 */
export function functionSource(fn: (...args: never[]) => unknown): string {
  if (typeof fn !== "function") {
    throw new PatternError(`Cannot compile pattern: expected a function, got ${typeof fn}`);
  }
  const text = fn.toString();
  if (/\{\s*\[native code\]\s*\}\s*$/.test(text)) {
    throw new PatternError(
      `Cannot compile pattern: ${fn.name || "this function"} is built in or bound and has no ` +
        `source; pass an arrow function such as (q, k) => k <= q`,
    );
  }
  return text;
}
