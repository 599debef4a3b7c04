/**
 * A linear branch's kernels (DESIGN §2, §6). Linear attention is sums, not a softmax, so it
 * needs no tiles or BlockMask: per (batch, key/value head) the keys are cut into chunks of
 * `linearChunk` positions; each chunk's `Σ φ(K) Vᵀ` and `Σ φ(K)` are summed in parallel, a scan
 * over chunks leaves each chunk the sums of the chunks before it and the total after the last,
 * and each query row reads its chunk's prefix and adds the keys of its own chunk up to its
 * position directly (causal), or reads the total. Time and memory are linear in N.
 *
 * The backward is the same scan reversed: with `a = g dO / den` and `β = -g dO·O / den` per
 * query row, a key's φ gradient and dV read the sums of `φ(Q) aᵀ` and `β φ(Q)` over the query
 * rows that see it, the chunks after its own by a suffix scan and its own chunk directly; a
 * query's φ gradient reads the forward's prefixes (still in `linearState`) the same way. Each
 * gradient row has one owning invocation, which adds into dQ or dK/dV once.
 * @module
 */
import { type AttentionShape, sequenceSizes } from "../core/shape.ts";
import { favorProjection, linearFeatureCount } from "../dsl/linear.ts";
import type { LinearPattern } from "../dsl/schema.ts";
import { elementwiseWorkgroups } from "./dispatch_sizes.ts";
import type { BufferName, KernelPlanResult, LinearKernel } from "./kernel_plan.ts";
import { linearChunk } from "./kernel_rules.ts";
import type { Plan } from "./plan.ts";
import { own, read, written } from "./support_kernels.ts";

/** Invocations of a linear chunk-sum or scan workgroup (`LINEAR_WORKGROUP` in their WGSL). */
export const LINEAR_WORKGROUP = 64;

/**
 * Every linear branch's feature count, chunks and favor projection (float32).
 * @param plan the plan
 * @param shape the call's shape
 * @returns one entry per linear branch
 */
export function linearSets(plan: Plan, shape: AttentionShape): KernelPlanResult["linear"] {
  return plan.branches.flatMap((b, branch) => {
    if (!b.linear) return [];
    const where = plan.pattern.kind === "gated" ? `pattern.branches[${branch}]` : "pattern";
    const features = linearFeatureCount(b.linear, shape.headDim, where);
    const projection = b.linear.featureMap === "favor"
      ? Float32Array.from(favorProjection(b.linear.seed ?? 0, features, shape.headDim))
      : new Float32Array(0);
    const { chunks } = geometry(shape);
    return [{ branch, features, chunks, projection }];
  });
}

function geometry(shape: AttentionShape) {
  const chunk = linearChunk(shape.headsQ / shape.headsKV);
  return { chunk, chunks: Math.ceil(sequenceSizes(shape).nk / chunk) };
}

/** What the linear kernels of one branch share. */
function base(b: number, p: LinearPattern, shape: AttentionShape, features: number) {
  const { nq, dv } = sequenceSizes(shape);
  const rows = shape.batch * shape.headsQ * nq;
  return {
    ...own,
    branch: b,
    featureMap: p.featureMap,
    features,
    causal: p.causal ?? false,
    ...geometry(shape),
    oBase: b * rows * (dv / 4),
    lseBase: b * rows,
  };
}

/**
 * A linear branch's forward kernels: φ of every row, chunk sums, their scan, each query's O
 * and LSE.
 * @param b the branch
 * @param p its pattern
 * @param o the shape, its feature count, and the O buffer it writes (`o` or `branchO`)
 * @returns the kernels, in order
 */
export function linearKernels(
  b: number,
  p: LinearPattern,
  o: { shape: AttentionShape; features: number; oName: BufferName },
): LinearKernel[] {
  const { shape, features } = o;
  const { nq, nk, dv } = sequenceSizes(shape);
  const common = base(b, p, shape, features);
  const kv = shape.batch * shape.headsKV;
  const rowsQ = shape.batch * shape.headsQ * nq;
  const w = p.featureMap === "favor" ? [read(`linearW${b}`)] : [];
  const state = features * (dv + 1);
  const label = `branch ${b}: linear ${p.featureMap}`;
  return [{
    ...common,
    kind: "linear",
    step: "features",
    label: `${label}: φ of Q and K rows (${features} features)`,
    bindings: [read("q"), read("k"), ...w, written(`linearPhi${b}`)],
    workgroups: elementwiseWorkgroups((rowsQ + kv * nk) * features),
  }, {
    ...common,
    kind: "linear",
    step: "chunkSums",
    label: `${label}: Σ φ(K) Vᵀ and Σ φ(K) per chunk of ${common.chunk} keys`,
    bindings: [read("v"), read(`linearPhi${b}`), written(`linearState${b}`)],
    workgroups: [common.chunks, kv],
  }, {
    ...common,
    kind: "linear",
    step: "scan",
    label: `${label}: prefix over ${common.chunks} chunks`,
    bindings: [written(`linearState${b}`)],
    workgroups: [Math.ceil(state / LINEAR_WORKGROUP), kv],
  }, {
    ...common,
    kind: "linear",
    step: "output",
    label: `${label}: O and LSE per query row`,
    bindings: [
      read("v"),
      read(`linearPhi${b}`),
      read(`linearState${b}`),
      written(o.oName),
      written("lse"),
    ],
    workgroups: elementwiseWorkgroups(rowsQ),
  }];
}

/**
 * A linear branch's backward kernels, after the forward's and the gradient clear.
 * @param b the branch
 * @param p its pattern
 * @param o the shape, its feature count, the O buffer it wrote, and whether gated
 * @returns the kernels, in order
 */
export function linearGradientKernels(
  b: number,
  p: LinearPattern,
  o: { shape: AttentionShape; features: number; oName: BufferName; gated: boolean },
): LinearKernel[] {
  const { shape, features } = o;
  const { nq, nk, dv } = sequenceSizes(shape);
  const common = base(b, p, shape, features);
  const kv = shape.batch * shape.headsKV;
  const rowsQ = shape.batch * shape.headsQ * nq;
  const w = p.featureMap === "favor" ? [read(`linearW${b}`)] : [];
  const state = features * (dv + 1);
  const label = `gradients: branch ${b} linear ${p.featureMap}`;
  return [{
    ...common,
    kind: "linear",
    step: "gradRows",
    label: `${label}: g / den and -g dO·O / den per query row`,
    bindings: [
      read("dO"),
      read(o.oName),
      read("lse"),
      ...(o.gated ? [read("gates")] : []),
      written(`linearRows${b}`),
    ],
    workgroups: elementwiseWorkgroups(rowsQ),
  }, {
    ...common,
    kind: "linear",
    step: "gradChunkSums",
    label: `${label}: Σ φ(Q) aᵀ and Σ β φ(Q) per chunk of ${common.chunk} positions`,
    bindings: [
      read("dO"),
      read(`linearPhi${b}`),
      read(`linearRows${b}`),
      written(`linearGradState${b}`),
    ],
    workgroups: [common.chunks, kv],
  }, {
    ...common,
    kind: "linear",
    step: "gradScan",
    label: `${label}: suffix over ${common.chunks} chunks`,
    bindings: [written(`linearGradState${b}`)],
    workgroups: [Math.ceil(state / LINEAR_WORKGROUP), kv],
  }, {
    ...common,
    kind: "linear",
    step: "gradQuery",
    label: `${label}: dQ per query row`,
    bindings: [
      read("q"),
      read("v"),
      read("dO"),
      ...w,
      read(`linearPhi${b}`),
      read(`linearState${b}`),
      read(`linearRows${b}`),
      written("dq"),
    ],
    workgroups: elementwiseWorkgroups(rowsQ),
  }, {
    ...common,
    kind: "linear",
    step: "gradKey",
    label: `${label}: dK and dV per key row`,
    bindings: [
      read("k"),
      read("v"),
      read("dO"),
      ...w,
      read(`linearPhi${b}`),
      read(`linearGradState${b}`),
      read(`linearRows${b}`),
      written("dkv"),
    ],
    workgroups: elementwiseWorkgroups(kv * nk),
  }];
}
