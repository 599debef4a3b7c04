/**
 * πAttention, from the πAttention paper (a periodic sparse Transformer): attention splits into
 * a ring-local neighbourhood, circular distance `<= r`, and deterministic π-steps,
 * `(i - j) mod P == 0`, each with its own softmax, blended by a fusion gate:
 * `out = g * out_ring + (1 - g) * out_stride`. The paper learns `g = sigmoid(W [local; global])`;
 * here the JSON gates are a fixed `[g, 1 - g]`, and a runtime gate tensor `[B, Hq, 2]` (as the
 * main block passes) overrides them per head.
 *
 * Run `deno run -A examples/pi_attention.ts` to check it on the GPU against the float64
 * reference.
 * @module
 */
import { gated, ring, stride } from "../dsl/builders.ts";
import { normals } from "../runtime/seeded_random.ts";
import { mainExample } from "./_verify.ts";

/** Ring radius r: each position sees `2r + 1` neighbours, wrapping at the ends. */
export const RADIUS = 128;
/** π-step period P: each position also sees every P-th position, ~N/P keys. */
export const PERIOD = 16;
/** Fixed fusion gate g of the ring branch (the stride branch gets 1 - g). */
export const GATE = 0.5;

/** One line: the paper and what the pattern keeps. */
export const description =
  `πAttention: gated(ring(${RADIUS}), stride(${PERIOD})) with gates [g, 1 - g], g = ${GATE}`;

/** `gated([ring(128), stride(16)], [g, 1 - g])`. */
export const pattern = gated([ring(RADIUS), stride(PERIOD)], [GATE, 1 - GATE]);

if (import.meta.main) {
  // N = 512 > 2r + 1, so the ring is a real band (at N <= 257 it would allow every key).
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 64 };
  // A learned gate per head, g = sigmoid(x): runtime gates [B, Hq, 2] = [g, 1 - g].
  const next = normals(42);
  const gates = new Float32Array(shape.batch * shape.headsQ * 2);
  for (let h = 0; h < shape.batch * shape.headsQ; h++) {
    const g = 1 / (1 + Math.exp(-next()));
    gates[2 * h] = g;
    gates[2 * h + 1] = 1 - g;
  }
  await mainExample({ name: "pi_attention", pattern, shape, gates });
}
