/**
 * BigBird (Zaheer et al., 2020), ITC form, in blocks of 64 positions: a sliding window of three
 * blocks (here its element form, 64 keys either side), one global block (the first 64
 * positions attend everywhere and are attended by all), and 3 random key blocks per query
 * block. One softmax over the union; needs N >= 64 (the global block's tokens must exist).
 *
 * Run `deno run -A examples/bigbird.ts` to check it on the GPU against the float64 reference.
 * @module
 */
import { global, random, union, window } from "../dsl/builders.ts";
import { mainExample } from "./_verify.ts";

/** BigBird's block size b. */
export const BLOCK_SIZE = 64;
/** Random key blocks drawn per query block r. */
export const RANDOM_BLOCKS = 3;
/** Seed of the random blocks (DESIGN §2's lowbias32 draw). */
export const SEED = 0;

/** One line: the paper and what the pattern keeps. */
export const description = `BigBird: window(${BLOCK_SIZE}, ${BLOCK_SIZE}) + global block ` +
  `[0, ${BLOCK_SIZE}) + random(${RANDOM_BLOCKS} blocks of ${BLOCK_SIZE})`;

/** `union(window(64, 64), global(0..63), random({blocks: 3, blockSize: 64}))`. */
export const pattern = union(
  window(BLOCK_SIZE, BLOCK_SIZE),
  global(Array.from({ length: BLOCK_SIZE }, (_, i) => i)),
  random({ blocks: RANDOM_BLOCKS, blockSize: BLOCK_SIZE, seed: SEED }),
);

if (import.meta.main) {
  // 8 blocks of 64, so 3 random blocks are a real choice.
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 512, headDim: 64 };
  await mainExample({ name: "bigbird", pattern, shape });
}
