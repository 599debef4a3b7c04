/**
 * Sparse Transformer, strided pattern (Child, Gray, Radford and Sutskever, 2019): with stride
 * `l ~ sqrt(N)`, position `i` attends causally to the previous `l` positions (`i - j < l`) and
 * to every `l`-th earlier position (`(i - j) mod l == 0`). The paper splits the two over heads
 * or layers; here they share one softmax (its "merged" form).
 *
 * Run `deno run -A examples/sparse_transformer.ts` to check it on the GPU against the float64
 * reference.
 * @module
 */
import { causal, intersect, stride, union, window } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** The stride l (sqrt(256) = 16 for the example's N). */
export const STRIDE = 16;

/** One line: the paper and what the pattern keeps. */
export const description = `Sparse Transformer (strided): window(${STRIDE - 1}, 0) + ` +
  `stride(${STRIDE}) & causal`;

/** `union(window(l - 1, 0), intersect(stride(l), causal()))`. */
export const pattern = union(window(STRIDE - 1, 0), intersect(stride(STRIDE), causal()));

if (import.meta.main) {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 256, headDim: 64 };
  await mainExample({ name: "sparse_transformer", pattern, shape });
}
