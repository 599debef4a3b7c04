/**
 * What a shared module's entry point passes its kernel body (compiler/wgsl/attention_wgsl.ts
 * `sharedKernel`): the body's parameter names, read from `fn attention(`, paired with the
 * literals of the pass's entry point, read from its call. Tests check the text the driver gets.
 */
import type { Pass } from "../../compiler/compile.ts";

/** A pass's member settings, by name; undefined for a pass with its own module. */
export function memberSettings(pass: Pass): Record<string, number | boolean> | undefined {
  if (!pass.entryPoint) return undefined;
  const signature = /fn attention\(wg: vec3<u32>, lid: u32,\n([\s\S]*?)\n\) \{/.exec(pass.wgsl);
  const entry = new RegExp(
    `fn ${pass.entryPoint}\\(.*\\) \\{\\s*attention\\(wg, lid, ([^)]*)\\);`,
  )
    .exec(pass.wgsl);
  if (!signature || !entry) throw new Error(`no body or entry point ${pass.entryPoint}`);
  // One parameter per line: `  NAME: type, // note`.
  const names = signature[1].split("\n").map((line) => /^\s*(\w+): \w+,/.exec(line)![1]);
  const literal = (v: string) =>
    v === "true" ? true : v === "false" ? false : Number(v.replace(/u$/, ""));
  const values = entry[1].split(", ").map(literal);
  if (names.length !== values.length) {
    throw new Error(`${names.length} parameters, ${values.length} arguments`);
  }
  return Object.fromEntries(names.map((n, i) => [n, values[i]]));
}
