/**
 * Runs one of the repository's scripts as a person would (`deno run -A SCRIPT ARGS` at the root,
 * no colours) and returns what it printed and how long it took.
 * @module
 */
import { fileURLToPath } from "node:url";

/** The repository root, where the tasks run. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What a script printed, its exit status and its wall time. */
export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs `deno run -A script ...args` at the repository root. */
export async function runScript(script: string, args: string[]): Promise<ScriptResult> {
  const started = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
}
