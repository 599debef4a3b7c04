/**
 * Training through Weft's kernels: recover πAttention's fusion gates by gradient descent. A
 * hidden gate per head, `g = sigmoid(x)`, blends the ring and π-step branches
 * (`out = g out_ring + (1 - g) out_stride`); the target is the output at hidden logits. Starting
 * from x = 0, each step runs the forward and backward pass on the GPU (`backward: true`), takes
 * the gates' gradient for the loss `mean((O - target)²)`, and moves x by Adam. The loss falls and
 * the recovered gates approach the hidden ones.
 *
 * Run `deno run -A examples/train_pi_gates.ts` (any adapter, llvmpipe included: about a minute).
 * @module
 */
import { gated, ring, stride } from "../dsl/builders.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** What one training run reports. */
export interface TrainingResult {
  /** The loss before each step. */
  losses: number[];
  /** The gates found, g per head. */
  gates: number[];
  /** The hidden gates, g per head. */
  target: number[];
}

/**
 * Recovers per-head πAttention gates by gradient descent through the GPU's backward pass.
 * @param rt the runtime
 * @param o sizes and steps
 * @returns the loss per step, the gates found and the hidden ones
 */
export async function trainGates(
  rt: Runtime,
  o: { seqLen: number; headDim: number; heads: number; steps: number; rate?: number },
): Promise<TrainingResult> {
  const shape = {
    batch: 1,
    headsQ: o.heads,
    headsKV: o.heads,
    seqLen: o.seqLen,
    headDim: o.headDim,
  };
  const pattern = gated([ring(4), stride(5)]);
  const compiled = rt.compile(pattern, { shape, backward: true });
  const count = o.heads * o.seqLen * o.headDim;
  const q = normalTensor(count, 1), k = normalTensor(count, 2), v = normalTensor(count, 3);
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
  const gatesOf = (logits: number[]) =>
    Float32Array.from(logits.flatMap((x) => [sigmoid(x), 1 - sigmoid(x)]));
  const hidden = Array.from({ length: o.heads }, (_, h) => 1.5 * Math.sin(1 + 2 * h));
  const zeros = new Float32Array(count);
  const target = (await rt.run(compiled, { q, k, v, dO: zeros, gates: gatesOf(hidden) })).o;

  // Adam on the logits.
  const x = new Array(o.heads).fill(0), m = new Array(o.heads).fill(0);
  const s = new Array(o.heads).fill(0);
  const rate = o.rate ?? 0.1, beta1 = 0.9, beta2 = 0.999;
  const losses: number[] = [];
  for (let step = 1; step <= o.steps; step++) {
    const gates = gatesOf(x);
    // dO of the forward's O for this loss needs O first: one forward to measure, then both.
    const { o: out } = await rt.run(compiled, { q, k, v, dO: zeros, gates });
    const dO = new Float32Array(count);
    let loss = 0;
    for (let i = 0; i < count; i++) {
      const e = out[i] - target[i];
      loss += e * e / count;
      dO[i] = 2 * e / count;
    }
    losses.push(loss);
    const { dgates } = (await rt.run(compiled, { q, k, v, dO, gates })).gradients!;
    for (let h = 0; h < o.heads; h++) {
      // ∂loss/∂x = (∂loss/∂g_ring - ∂loss/∂g_stride) g (1 - g), with g_stride = 1 - g_ring.
      const g = sigmoid(x[h]);
      const grad = (dgates![2 * h] - dgates![2 * h + 1]) * g * (1 - g);
      m[h] = beta1 * m[h] + (1 - beta1) * grad;
      s[h] = beta2 * s[h] + (1 - beta2) * grad * grad;
      const mHat = m[h] / (1 - beta1 ** step), sHat = s[h] / (1 - beta2 ** step);
      x[h] -= rate * mHat / (Math.sqrt(sHat) + 1e-12);
    }
  }
  return { losses, gates: x.map(sigmoid), target: hidden.map(sigmoid) };
}

if (import.meta.main) {
  const rt = await createRuntime({ autotune: false });
  try {
    console.log(`training on ${rt.info.description}`);
    const result = await trainGates(rt, {
      seqLen: 96,
      headDim: 16,
      heads: 4,
      steps: 120,
      rate: 0.05,
    });
    result.losses.forEach((loss, i) => {
      if (i % 20 === 0 || i === result.losses.length - 1) {
        console.log(`step ${String(i + 1).padStart(3)}: loss ${loss.toExponential(3)}`);
      }
    });
    const show = (g: number[]) => g.map((x) => x.toFixed(4)).join(", ");
    console.log(`recovered gates: ${show(result.gates)}`);
    console.log(`hidden gates:    ${show(result.target)}`);
  } finally {
    rt.destroy();
  }
}
