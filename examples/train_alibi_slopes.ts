/**
 * Learning a score modifier's constants through Weft's kernels: recover ALiBi's per-head slopes
 * by gradient descent. The modifier `s - slopes[h] * (q - k)` on a causal mask marks `slopes`
 * learnable, so a backward call returns `gradients.dConstants.slopes`, summed in a fixed order
 * (the same bits on every run). The target is the output at hidden slopes; starting from 0.1 on
 * every head, each step runs the forward and backward pass on the GPU for the loss
 * `mean((O - target)²)` and moves the slopes by Adam. The constants live in a buffer, so a new
 * value compiles no new pipeline: only the first step builds any.
 *
 * Run `deno run -A examples/train_alibi_slopes.ts` (any adapter, llvmpipe included).
 * @module
 */
import { causal, score, scored } from "../dsl/builders.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** What one training run reports. */
export interface SlopesResult {
  /** The loss before each step. */
  losses: number[];
  /** The slopes found, per head. */
  slopes: number[];
  /** The hidden slopes, per head. */
  target: number[];
  /** Pipelines built after the first step (0: new values reused every kernel). */
  laterPipelines: number;
}

/** ALiBi on a causal mask, its slopes learnable. */
function alibi(slopes: number[]) {
  return scored(
    causal(),
    score((s, q, k, h) => s - slopes[h] * (q - k), {
      constants: { slopes },
      learnable: ["slopes"],
    }),
  );
}

/**
 * Recovers per-head ALiBi slopes by gradient descent through the GPU's backward pass.
 * @param rt the runtime
 * @param o sizes and steps
 * @returns the loss per step, the slopes found and the hidden ones
 */
export async function trainSlopes(
  rt: Runtime,
  o: { seqLen: number; headDim: number; heads: number; steps: number; rate?: number },
): Promise<SlopesResult> {
  const shape = {
    batch: 1,
    headsQ: o.heads,
    headsKV: o.heads,
    seqLen: o.seqLen,
    headDim: o.headDim,
  };
  const count = o.heads * o.seqLen * o.headDim;
  const q = normalTensor(count, 1), k = normalTensor(count, 2), v = normalTensor(count, 3);
  // ALiBi's geometric slopes: 1/2, 1/4, ... per head.
  const hidden = Array.from({ length: o.heads }, (_, h) => 2 ** -(h + 1));
  const zeros = new Float32Array(count);
  const run = (slopes: number[], dO: Float32Array) =>
    rt.run(rt.compile(alibi(slopes), { shape, backward: true }), { q, k, v, dO });
  const target = (await run(hidden, zeros)).o;

  // Adam on the slopes.
  const x = new Array(o.heads).fill(0.1), m = new Array(o.heads).fill(0);
  const s = new Array(o.heads).fill(0);
  const rate = o.rate ?? 0.02, beta1 = 0.9, beta2 = 0.999;
  const losses: number[] = [];
  let afterFirst = 0;
  for (let step = 1; step <= o.steps; step++) {
    // dO of this loss needs O first: one call to measure, then the one whose gradients count.
    const { o: out } = await run(x, zeros);
    const dO = new Float32Array(count);
    let loss = 0;
    for (let i = 0; i < count; i++) {
      const e = out[i] - target[i];
      loss += e * e / count;
      dO[i] = 2 * e / count;
    }
    losses.push(loss);
    const grad = (await run(x, dO)).gradients!.dConstants!.slopes as Float32Array;
    if (step === 1) afterFirst = rt.pipelines.misses;
    for (let h = 0; h < o.heads; h++) {
      m[h] = beta1 * m[h] + (1 - beta1) * grad[h];
      s[h] = beta2 * s[h] + (1 - beta2) * grad[h] * grad[h];
      const mHat = m[h] / (1 - beta1 ** step), sHat = s[h] / (1 - beta2 ** step);
      x[h] -= rate * mHat / (Math.sqrt(sHat) + 1e-12);
    }
  }
  return { losses, slopes: x, target: hidden, laterPipelines: rt.pipelines.misses - afterFirst };
}

if (import.meta.main) {
  const rt = await createRuntime({ autotune: false });
  try {
    console.log(`training on ${rt.info.description}`);
    const result = await trainSlopes(rt, { seqLen: 96, headDim: 16, heads: 4, steps: 150 });
    result.losses.forEach((loss, i) => {
      if (i % 25 === 0 || i === result.losses.length - 1) {
        console.log(`step ${String(i + 1).padStart(3)}: loss ${loss.toExponential(3)}`);
      }
    });
    const show = (x: number[]) => x.map((v) => v.toFixed(4)).join(", ");
    console.log(`recovered slopes: ${show(result.slopes)}`);
    console.log(`hidden slopes:    ${show(result.target)}`);
    console.log(`pipelines built after the first step: ${result.laterPipelines}`);
  } finally {
    rt.destroy();
  }
}
