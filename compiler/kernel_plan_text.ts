/**
 * The kernel plan as text a person reads (`deno task explain`): one line per dispatch with its
 * kind, variants, module and workgroups, its bindings below it, then the buffer table.
 * @module
 */
import type { BufferSpec } from "./buffer_table.ts";
import type { Kernel, KernelPlan } from "./kernel_plan.ts";
import { kernelShapeName } from "./tiles.ts";

/**
 * Describes a kernel plan and its buffers.
 * @param kernels the kernel plan
 * @param buffers the buffer table
 * @param headDim D (names the kernel shape)
 * @returns lines of text, without a trailing newline
 * @example
 * ```ts
 * import { compile } from "./compile.ts";
 * import { kernelPlanText } from "./kernel_plan_text.ts";
 * const c = compile({ kind: "causal" }, {
 *   shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 256, headDim: 64 },
 * });
 * kernelPlanText(c.kernelPlan, c.buffers, 64).split("\n")[0];
 * // "kernel plan: 1 dispatch(es), 1 module(s); f32, tiles 32x16x4, unrolled, numbers from aux"
 * ```
 */
export function kernelPlanText(
  kernels: KernelPlan,
  buffers: readonly BufferSpec[],
  headDim: number,
): string {
  const lines = [
    `kernel plan: ${kernels.kernels.length} dispatch(es), ${kernels.modules.length} module(s); ` +
    `${kernels.dtype}, tiles ${kernelShapeName(kernels.kernel, headDim)}, ` +
    `${kernels.unroll ? "unrolled" : "loop bounds from the schedule"}, ` +
    `numbers ${kernels.constantParams ? "baked in" : "from aux"}` +
    (kernels.paged ? `, K and V in pages of ${kernels.paged.pageSize} positions` : ""),
  ];
  kernels.kernels.forEach((k, i) => {
    const module = kernels.modules[k.module];
    const entry = module.kernels.length > 1 || module.shared
      ? `module ${k.module} @${k.entryPoint}`
      : `module ${k.module}`;
    lines.push(
      `  ${i}. ${k.kind}: ${k.label}`,
      `     ${variants(k)}${variants(k) ? "; " : ""}${entry}; ` +
        `workgroups ${k.workgroups.join(" x ")}`,
      `     binds ${k.bindings.map((b) => `${b.buffer}${b.writable ? " (w)" : ""}`).join(", ")}`,
    );
  });
  lines.push("buffers:");
  for (const b of buffers) {
    const from = b.input ? `, from ${b.input}` : b.data ? `, ${b.data.length} words written` : "";
    lines.push(`  ${b.name}: ${b.bytes} bytes${from}`);
  }
  return lines.join("\n");
}

/** A kernel's variant fields, in words. */
function variants(k: Kernel): string {
  switch (k.kind) {
    case "attention":
      return [
        `members ${k.members.join("+")} of branch ${k.branch}`,
        `query ${k.querySource === "memory" ? "rows from memory" : "tile staged"}`,
        `${k.keyLoop} key loop`,
        ...(k.edgePairs === "none" ? [] : [`edge pairs ${k.edgePairs}`]),
        `output ${k.output}`,
        ...(k.split ? [`${k.split.chunks} key chunks`] : []),
        ...(k.queryTiles ? [`${k.queryTiles.length} query tile(s) holding the queries`] : []),
        ...(k.packed ? ["packed sequences"] : []),
        `schedule slot ${k.scheduleSlot}`,
      ].join(", ");
    case "combine":
    case "decodeCombine":
      return `${k.chunks} chunks of branch ${k.branch} component ${k.component}`;
    case "decode":
      return [
        `component ${k.component} of branch ${k.branch}`,
        `${k.geometry.tiles.length} query tile(s) holding the queries`,
        `${k.geometry.rows} rows per workgroup in ${k.geometry.rowBlocks} block(s)`,
        `${k.geometry.chunks} key chunks`,
        k.lanes
          ? `groups of ${k.lanes.lanes} subgroup lanes taking ${k.lanes.keys} key(s) at a time`
          : `steps of ${k.stepKeys} keys`,
        `schedule slot ${k.scheduleSlot}`,
      ].join(", ");
    case "pool":
      return `${k.count} landmarks of ${k.segment} rows`;
    case "blend":
      return `${k.branches} branches, gates per ${k.perPosition ? "position" : "head"}`;
    case "clear":
      return `${k.rows} rows`;
    case "gradQuery":
    case "gradKey":
      if (!k.ownTiles) return "";
      return `${k.ownTiles.length} ` +
        (k.kind === "gradQuery"
          ? "query tile(s) holding the queries"
          : "key tile(s) the queries visit");
    default:
      return "";
  }
}
