/**
 * A decode loop over a growing paged key/value cache with a sparse pattern. Two sequences share
 * one pool of pages; a prompt fills each one's cache, then every step appends one key and value
 * per sequence (taking a fresh page from the pool when the last one is full, so the sequences'
 * pages interleave), and decodes the new token: one query row per head against every cached key,
 * under a sliding window ∪ a stride (the recent keys, and every 16th one back to the start). Each
 * step's output is checked against the float64 reference on the cache gathered into contiguous
 * K and V.
 *
 * Run `deno run -A examples/decode_loop.ts [steps]` (any adapter; each new cache length compiles
 * its kernels, since N is a constant of the WGSL, so a step costs a few seconds on llvmpipe).
 * @module
 */
import { stride, union, window } from "../dsl/builders.ts";
import { gatherPages } from "../core/paged_kv.ts";
import { reference } from "../runtime/reference/mod.ts";
import { createRuntime, type Runtime } from "../runtime/runtime.ts";
import { normalTensor } from "../runtime/seeded_random.ts";

/** What a decode loop reports per step. */
export interface DecodeStep {
  /** Keys in each sequence's cache at this step. */
  keys: number;
  /** Pages of the pool in use. */
  pagesUsed: number;
  /** max |O - reference| over the step's rows. */
  error: number;
}

const BATCH = 2, HEADS_Q = 4, HEADS_KV = 2, HEAD_DIM = 16, PAGE_SIZE = 8, POOL = 64;

/** The pattern each step decodes under. */
export const pattern = union(window(24, 0), stride(16));

/**
 * Runs a decode loop: a prompt of `prompt` keys per sequence, then `steps` decoding steps.
 * @param rt the runtime
 * @param o the prompt length and the steps
 * @returns one entry per step
 */
export async function decodeLoop(
  rt: Runtime,
  o: { prompt: number; steps: number },
): Promise<DecodeStep[]> {
  const row = HEADS_KV * PAGE_SIZE * HEAD_DIM; // one page's values
  const kPool = new Float32Array(POOL * row), vPool = new Float32Array(POOL * row);
  const pages: number[][] = Array.from({ length: BATCH }, () => []);
  let nextPage = 0, seed = 10;
  // Appends one key and value row per key/value head to sequence b's cache at position p.
  const append = (b: number, p: number) => {
    if (p % PAGE_SIZE === 0) pages[b].push(nextPage++);
    const page = pages[b][Math.floor(p / PAGE_SIZE)];
    const k = normalTensor(HEADS_KV * HEAD_DIM, seed++),
      v = normalTensor(HEADS_KV * HEAD_DIM, seed++);
    for (let h = 0; h < HEADS_KV; h++) {
      const at = ((page * HEADS_KV + h) * PAGE_SIZE + p % PAGE_SIZE) * HEAD_DIM;
      kPool.set(k.subarray(h * HEAD_DIM, (h + 1) * HEAD_DIM), at);
      vPool.set(v.subarray(h * HEAD_DIM, (h + 1) * HEAD_DIM), at);
    }
  };
  // The prompt, the two sequences' pages interleaved as a server would allocate them.
  for (let p = 0; p < o.prompt; p++) for (let b = 0; b < BATCH; b++) append(b, p);
  const out: DecodeStep[] = [];
  for (let step = 0; step < o.steps; step++) {
    const position = o.prompt + step;
    for (let b = 0; b < BATCH; b++) append(b, position);
    const keys = position + 1;
    const shape = {
      batch: BATCH,
      headsQ: HEADS_Q,
      headsKV: HEADS_KV,
      seqLen: 1,
      kvSeqLen: keys,
      headDim: HEAD_DIM,
    };
    const columns = Math.max(...pages.map((p) => p.length));
    const blockTable = Int32Array.from(
      pages.flatMap((p) => [...p, ...new Array(columns - p.length).fill(0)]),
    );
    const q = normalTensor(BATCH * HEADS_Q * HEAD_DIM, 1000 + step);
    const compiled = rt.compile(pattern, { shape, paged: { pageSize: PAGE_SIZE, pages: POOL } });
    const got = await rt.run(compiled, { q, k: kPool, v: vPool, blockTable });
    const gather = (pool: Float32Array) =>
      gatherPages(pool, blockTable, { shape, pageSize: PAGE_SIZE, width: HEAD_DIM });
    const want = reference({ pattern, shape, q, k: gather(kPool), v: gather(vPool) });
    let error = 0;
    got.o.forEach((x, i) => error = Math.max(error, Math.abs(x - want.o[i])));
    out.push({ keys, pagesUsed: nextPage, error });
  }
  return out;
}

if (import.meta.main) {
  const steps = Number(Deno.args[0] ?? 6);
  const rt = await createRuntime({ autotune: false });
  try {
    console.log(
      `decode loop: ${BATCH} sequences, pool of ${POOL} pages of ${PAGE_SIZE} keys, ` +
        `Hq=${HEADS_Q} Hkv=${HEADS_KV} D=${HEAD_DIM}, window(24, 0) ∪ stride(16), on ` +
        rt.info.description,
    );
    let worst = 0;
    for (const s of await decodeLoop(rt, { prompt: 37, steps })) {
      console.log(`  ${s.keys} keys, ${s.pagesUsed} pages in use: max |O - ref| ${s.error}`);
      worst = Math.max(worst, s.error);
    }
    console.log(`max abs error vs float64 reference: ${worst}`);
    if (!(worst <= 1e-4)) Deno.exit(1);
  } finally {
    rt.destroy();
  }
}
