/**
 * The 32-bit integer hash behind `random` blocks (DESIGN §2). It lives in `dsl/` because it is
 * part of a pattern's meaning: the CPU reference, the tile scheduler and the WGSL kernels all
 * draw the same blocks from it.
 * @module
 */

/**
 * lowbias32 (Chris Wellons' hash-prospector): a cheap, well-mixed `u32 -> u32` hash that is
 * equally easy to write in WGSL, so kernels can recompute it.
 *
 * @param x any number; only its low 32 bits are used
 * @returns the hash as an unsigned 32-bit integer
 * @example
 * ```ts
 * import { lowbias32 } from "./hash.ts";
 * lowbias32(0); // 0
 * lowbias32(1); // 1753845952
 * ```
 */
export function lowbias32(x: number): number {
  // `>>>` and `Math.imul` keep every step in 32 bits, like `u32` arithmetic in WGSL.
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The key blocks a query block draws: `kb_j = h(seed + h(qb + h(j))) mod nkb` for
 * `j = 0..blocks-1`, additions wrapping at 2^32. Duplicates are kept (they just repeat a block).
 *
 * @param queryBlock the query block index `qb = floor(q / blockSize)`
 * @param blocks how many blocks to draw (`r`)
 * @param seed the pattern's seed (u32)
 * @param keyBlockCount `nkb = ceil(N / blockSize)`
 * @returns `blocks` key block indices in draw order, each in `[0, keyBlockCount)`
 * @example
 * ```ts
 * import { randomKeyBlocks } from "./hash.ts";
 * randomKeyBlocks(0, 3, 1, 8); // [0, 2, 7]
 * ```
 */
export function randomKeyBlocks(
  queryBlock: number,
  blocks: number,
  seed: number,
  keyBlockCount: number,
): number[] {
  const drawn: number[] = [];
  for (let j = 0; j < blocks; j++) {
    const inner = lowbias32((queryBlock + lowbias32(j)) >>> 0);
    drawn.push(lowbias32((seed + inner) >>> 0) % keyBlockCount);
  }
  return drawn;
}
