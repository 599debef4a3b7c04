/**
 * What this machine's WebGPU adapter is, asked in a subprocess: a test module that opens an
 * adapter itself can crash at exit on Mesa's GL driver (docs/TESTING.md), and tests that only
 * spawn the tools need to know which of their cases apply here.
 * @module
 */

/** The adapter `requestAdapter({ powerPreference: "high-performance" })` returns, if any. */
export interface AdapterFacts {
  found: boolean;
  description: string;
  isFallback: boolean;
  shaderF16: boolean;
}

const PROBE = `
const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
console.log(JSON.stringify(a ? {
  found: true,
  description: a.info.description || a.info.device || "",
  isFallback: a.isFallbackAdapter ?? a.info.isFallbackAdapter ?? false,
  shaderF16: a.features.has("shader-f16"),
} : { found: false, description: "", isFallback: false, shaderF16: false }));
`;

/**
 * Asks a fresh Deno process for the adapter's description, fallback flag and shader-f16.
 *
 * @returns the facts (`found: false` when there is no WebGPU adapter)
 * @example
 * ```ts ignore
 * import { adapterFacts } from "./_adapter_facts.ts";
 * const { shaderF16 } = await adapterFacts();
 * ```
 */
export async function adapterFacts(): Promise<AdapterFacts> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", PROBE],
    stdout: "piped",
    stderr: "null",
  }).output();
  // The probe may still crash as it exits, after its line: read the line, not the status.
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(line);
  } catch {
    return { found: false, description: "", isFallback: false, shaderF16: false };
  }
}
