/**
 * Timing short calls the way a GPU runs them in a loop. A GPU left idle between submissions
 * lowers its clocks: on the H100 one window(256) call timed alone, waiting for each result,
 * took 10-19 ms where back-to-back it takes about 3.5 ms. So benchmarks warm the GPU up with a
 * few hundred milliseconds of work, then time several repetitions of the call encoded back to
 * back (`AttentionCall.submit(repeat)`), as a CUDA-event loop over launches does.
 * @module
 */

/** GPU time per sample to aim for: long enough to keep the clocks up. */
export const SAMPLE_TARGET_MS = 40;
/** GPU time to spend warming up before the first sample. */
export const WARMUP_TARGET_MS = 250;
/** At most this many repetitions per sample, unless the caller allows more. */
export const MAX_REPEAT = 64;

/**
 * Repetitions per sample for a call that took `ms` once.
 * @param ms GPU milliseconds of one repetition (undefined: no GPU timer, time one at a time)
 * @param maxRepeat the most repetitions
 * @returns repetitions in [1, maxRepeat]
 * @example
 * ```ts
 * import { sustainedRepeat } from "./sustained_timing.ts";
 * sustainedRepeat(3.5); // 12
 * ```
 */
export function sustainedRepeat(ms: number | undefined, maxRepeat = MAX_REPEAT): number {
  if (ms === undefined || !(ms > 0)) return 1;
  return Math.min(maxRepeat, Math.max(1, Math.ceil(SAMPLE_TARGET_MS / ms)));
}

/** Anything submitted like an `AttentionCall`: GPU ms per repetition, or undefined. */
export interface Submittable {
  submit(repeat?: number): Promise<number | undefined>;
}

/**
 * Warms a call up: at least `minSubmissions` submissions and, while GPU times come back, until
 * the GPU has worked WARMUP_TARGET_MS (at most 100 submissions).
 * @param call the call to submit
 * @param minSubmissions submissions to make whatever the timer says
 * @param sustained false: only the `minSubmissions`, one repetition each (software adapters,
 *   whose timestamps mean nothing)
 * @param maxRepeat the most repetitions per submission (`sustainedRepeat`)
 * @returns repetitions per timed sample (1 without GPU times) and the first submission's wall ms
 * @example
 * ```ts
 * import { warmUp } from "./sustained_timing.ts";
 * const fake = { submit: (repeat = 1) => Promise.resolve(5 + 0 * repeat) };
 * (await warmUp(fake)).repeat; // 8: 40 ms samples of a 5 ms call
 * ```
 */
export async function warmUp(
  call: Submittable,
  minSubmissions = 0,
  sustained = true,
  maxRepeat = MAX_REPEAT,
): Promise<{ repeat: number; firstSubmitMs: number }> {
  let repeat = 1, warmMs = 0, firstSubmitMs = NaN, gpuTimes = sustained;
  for (let i = 0; i < minSubmissions || (gpuTimes && warmMs < WARMUP_TARGET_MS && i < 100); i++) {
    const t0 = performance.now();
    const ms = await call.submit(repeat);
    if (i === 0) firstSubmitMs = performance.now() - t0;
    if (ms === undefined || !gpuTimes) {
      gpuTimes = false;
      repeat = 1;
      continue;
    }
    warmMs += ms * repeat;
    repeat = sustainedRepeat(ms, maxRepeat);
  }
  return { repeat, firstSubmitMs };
}
