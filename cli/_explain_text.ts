/**
 * What `explain` writes about a compiled pattern, shared with the playground page: each
 * branch's density line, the legend of the mask picture, every pass's WGSL in order. Plain
 * TypeScript (no Deno or Node APIs), so the browser bundle uses the same text.
 * @module
 */
import type { CompiledAttention } from "../compiler/mod.ts";
import { describe } from "../compiler/normalize.ts";
import { atomLabel } from "../compiler/atoms.ts";
import type { BranchMask } from "./_mask_picture.ts";
import type { HashBucketPattern } from "../dsl/schema.ts";

/**
 * A branch's density: allowed pairs of N², keys per query, and how much of the visited tile
 * area is allowed.
 * @param m the branch's mask (`branchMasks`)
 * @param n the sequence length
 * @returns one line
 * @example
 * ```ts
 * import { planPattern } from "../compiler/plan.ts";
 * import { branchMasks } from "./_mask_picture.ts";
 * import { densityLine } from "./_explain_text.ts";
 * const [m] = branchMasks(planPattern({ kind: "causal" }, 8, { tileQ: 4, tileK: 4 }));
 * densityLine(m, 8); // "56.25% (36 pairs, 4.5 keys per query on average); 75.00% of ..."
 * ```
 */
export function densityLine(m: BranchMask, n: number): string {
  const total = n * n;
  const coverage = m.visitedArea === 0 ? 1 : m.allowed / m.visitedArea;
  return `${pct(m.allowed / total)} (${m.allowed} pairs, ${(m.allowed / n).toFixed(1)} keys per ` +
    `query on average); ${pct(coverage)} of the visited tile area is allowed`;
}

/**
 * A hashBucket's expected density, for independent, evenly spread codes: its allowed set
 * depends on Q and K, so nothing before a run may claim more.
 * @param h the hashBucket
 * @returns one line
 * @example
 * ```ts
 * import { hashDensityLine } from "./_explain_text.ts";
 * hashDensityLine({ kind: "hashBucket", buckets: 8, rounds: 1, seed: 0 });
 * // "hashBucket(8 buckets x 1 rounds): about 12.50% of pairs (real data collide more: ...)"
 * ```
 */
export function hashDensityLine(h: HashBucketPattern): string {
  const expected = 1 - (1 - 1 / h.buckets) ** h.rounds;
  return `hashBucket(${h.buckets} buckets x ${h.rounds} rounds): about ` +
    `${(100 * expected).toFixed(2)}% of pairs (real data collide more: the bench counts it ` +
    `from each run's codes)`;
}

/**
 * Every pass's WGSL in dispatch order, each under a header naming its workgroups, bindings and
 * entry point; a module that several passes share is printed once.
 * @param compiled a compiled pattern
 * @returns the text `explain --all-wgsl` prints
 * @example
 * ```ts
 * import { compile } from "../compiler/mod.ts";
 * import { allWgsl } from "./_explain_text.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 16 };
 * allWgsl(compile({ kind: "causal" }, { shape })).startsWith("// Weft: causal"); // true
 * ```
 */
export function allWgsl(compiled: CompiledAttention): string {
  const header = `// Weft: ${describe(compiled.plan.pattern)}, N=${compiled.shape.seqLen}, ` +
    `D=${compiled.shape.headDim}; ${compiled.passes.length} pass(es), run in this order\n`;
  // Passes sharing a module (compiler/kernel_groups.ts) print it once, each with its entry point.
  const firstWith = new Map<string, number>();
  return header +
    compiled.passes.map((p, i) => {
      const entry = p.entryPoint ? `; entry point ${p.entryPoint}` : "";
      const head = `\n// ===== pass ${i}: ${p.label}; workgroups ${p.workgroups.join(" x ")}; ` +
        `bindings ${p.bindings.map((b) => `${b.buffer}${b.writable ? " (rw)" : ""}`).join(", ")}` +
        `${entry} =====\n`;
      const earlier = firstWith.get(p.wgsl);
      if (earlier !== undefined) return `${head}// (the module of pass ${earlier})\n`;
      firstWith.set(p.wgsl, i);
      return `${head}\n${p.wgsl}`;
    }).join("\n");
}

/**
 * "branch b component j: atoms" per component, plan order: the mask picture's legend.
 * @param compiled a compiled pattern
 * @returns one label per component
 * @example
 * ```ts
 * import { compile } from "../compiler/mod.ts";
 * import { componentLabels } from "./_explain_text.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 64, headDim: 16 };
 * componentLabels(compile({ kind: "causal" }, { shape })); // ["branch 0 component 0: causal"]
 * ```
 */
export function componentLabels(compiled: CompiledAttention): string[] {
  return compiled.plan.branches.flatMap((b, i) =>
    b.components.map((c, j) =>
      `branch ${i} component ${j}: ${c.atoms.map(atomLabel).join(" & ")}` +
      (c.exclusions.length ? ` minus components 0..${c.exclusions.length - 1}` : "")
    )
  );
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.001 ? 4 : x < 0.01 ? 3 : 2)}%`;
}
