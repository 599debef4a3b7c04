/**
 * hashBucket codes in an attention kernel: which rounds' codes a kernel stages per row and per
 * key tile, and whether it binds the hash buffer at all.
 * @module
 */
import { assert } from "../../core/errors.ts";
import { codeSetOf } from "../hash_layout.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";
import { stagedCodes } from "../component_reads.ts";
import { codeRef } from "../component_reads.ts";

/**
 * Staged codes: \`queryCodes(q)\` once per row, \`keyCodes(k)\` into \`kCodeTile\` with each
 * key tile, so the mask of a PARTIAL tile compares registers instead of loading two codes per
 * pair and round. A shared module declares each member's pair under its index (\`queryCodes1\`).
 * @returns the two functions' names, or undefined where the kernel stages no codes
 */
export function declareCodeStaging(
  m: ShaderModule,
  o: ComponentKernelOptions,
  suffix = "",
): { queryCodes: string; keyCodes: string } | undefined {
  const refs = stagedCodes(o.component);
  if (refs.length === 0) return undefined;
  const n = o.n;
  const word = (side: "q" | "k", ref: string) => {
    const atom = [o.component.atoms, ...o.component.exclusions].flat()
      .find((a) => a.kind === "hashRound" && codeRef(a) === ref)!;
    assert(atom.kind === "hashRound", "staged code of no round");
    const set = codeSetOf(o.hash!, atom);
    const first = set.codes +
      (atom.round * (set.rowsQ + set.rowsK) + (side === "k" ? set.rowsQ : 0)) * n;
    return `hash[${first}u + ${side === "q" ? "queryRow" : "keyRow"} * N + u32(p)]`;
  };
  const codes = (side: "q" | "k") =>
    [0, 1, 2, 3].map((i) => i < refs.length ? word(side, refs[i]) : "0u").join(",\n    ");
  m.declare(
    "kCodeTile",
    `var<workgroup> kCodeTile: array<vec4<u32>, ${o.component.mask.tileK}>; // staged key codes`,
  );
  const names = { queryCodes: `queryCodes${suffix}`, keyCodes: `keyCodes${suffix}` };
  m.declare(
    `stagedCodes${suffix}`,
    `
// Codes of ${refs.join("; ")} (unused lanes 0), at a position >= 0.
fn ${names.queryCodes}(p: i32) -> vec4<u32> {
  return vec4<u32>(
    ${codes("q")});
}
fn ${names.keyCodes}(p: i32) -> vec4<u32> {
  return vec4<u32>(
    ${codes("k")});
}`,
  );
  return names;
}
