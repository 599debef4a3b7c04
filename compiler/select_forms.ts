/**
 * A compiled call with its select choice in another form (SelectChoice): the selectBlocks pass
 * rendered anew, bound to the kept blocks or the importance buffer as the form writes, and the
 * selectPick pass added or dropped. The planner takes one form per device and geometry; the
 * variants bench times the others on the same call, and the tests check each against the
 * reference where the planner would not take it.
 * @module
 */
import type { CompiledAttention, Pass } from "./compile.ts";
import { MAX_WORKGROUPS_X } from "./dispatch_sizes.ts";
import type { BufferName } from "./kernel_plan.ts";
import { SELECT_PICK_WORKGROUP, type SelectChoice } from "./select_attention.ts";
import { selectPickKernel } from "./wgsl/select_pick_wgsl.ts";
import { selectBlocksKernel } from "./wgsl/select_wgsl.ts";

/**
 * The call with every select branch's choice in the given form.
 * @param compiled a compiled call
 * @param choice the form
 * @returns the call, its other passes and buffers as they were (plus the importance buffer
 *   where the form writes one)
 * @example
 * ```ts ignore
 * const fused = withSelectChoice(compiled, { ...choice, importance: "workgroup" });
 * ```
 */
export function withSelectChoice(
  compiled: CompiledAttention,
  choice: SelectChoice,
): CompiledAttention {
  const buffered = choice.importance === "buffer";
  if (buffered && choice.pick.kind !== "lanes") {
    throw new Error("Weft internal error: importances in a buffer are picked by subgroup lanes");
  }
  const passes: Pass[] = [];
  const buffers = [...compiled.buffers];
  compiled.kernelPlan.kernels.forEach((k, i) => {
    const pass = compiled.passes[i];
    if (k.kind === "selectPick") return; // added after its selectBlocks where the form has one
    if (k.kind !== "selectBlocks") {
      passes.push(pass);
      return;
    }
    const g = k.geometry;
    const importance: BufferName = `selectImportance${k.branch}`;
    const kept: BufferName = `selection${k.branch}`;
    const groupsX = Math.min(Math.ceil(g.n / choice.positions), MAX_WORKGROUPS_X);
    passes.push({
      ...pass,
      wgsl: selectBlocksKernel(g, { scale: compiled.scale, groupsX, ...choice }),
      bindings: [
        pass.bindings[0],
        pass.bindings[1],
        { buffer: buffered ? importance : kept, writable: true },
      ],
      workgroups: [groupsX, k.workgroups[1]],
    });
    if (!buffered || choice.pick.kind !== "lanes") return;
    if (!buffers.some((b) => b.name === importance)) {
      buffers.push({ name: importance, bytes: g.heads * g.n * g.count * 4 });
    }
    const positions = SELECT_PICK_WORKGROUP / choice.pick.lanes;
    const pickX = Math.min(Math.ceil(g.n / positions), MAX_WORKGROUPS_X);
    passes.push({
      label: `branch ${k.branch}: select, pick from the importances`,
      prePass: true,
      wgsl: selectPickKernel(g, {
        groupsX: pickX,
        invocations: SELECT_PICK_WORKGROUP,
        pick: choice.pick,
      }),
      bindings: [{ buffer: importance, writable: true }, { buffer: kept, writable: true }],
      workgroups: [pickX, k.workgroups[1]],
    });
  });
  return { ...compiled, passes, buffers };
}
