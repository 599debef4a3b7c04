/**
 * A compiled call with its select choice in another form (SelectChoice): the branch's choice
 * kernels planned for that form (`choiceKernels`, so selectBlocks binds the kept blocks or the
 * importance buffer as the form writes, and selectPick comes or goes) and rendered as the
 * compiler renders them. The planner takes one form per device and geometry; the variants bench
 * times the others on the same call, and the tests check each against the reference where the
 * planner would not take it.
 * @module
 */
import type { CompiledAttention, Pass } from "./compile.ts";
import { renderChoiceKernel } from "./render.ts";
import { choiceKernels, selectBuffers, type SelectChoice } from "./select_attention.ts";

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
  const passes: Pass[] = [];
  const buffers = [...compiled.buffers];
  compiled.kernelPlan.kernels.forEach((k, i) => {
    if (k.kind === "selectPick") return; // planned again with its selectBlocks
    if (k.kind !== "selectBlocks") {
      passes.push(compiled.passes[i]);
      return;
    }
    const { kind: _kind, label: _label, bindings: _bindings, workgroups: _workgroups, ...shared } =
      k;
    for (const form of choiceKernels({ ...shared, choice })) {
      passes.push({
        label: form.label,
        prePass: true,
        wgsl: renderChoiceKernel(form, compiled.scale),
        bindings: form.bindings,
        workgroups: form.workgroups,
      });
      for (const [name, bytes] of selectBuffers(form)) {
        if (!buffers.some((b) => b.name === name)) buffers.push({ name, bytes });
      }
    }
  });
  return { ...compiled, passes, buffers };
}
