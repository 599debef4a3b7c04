/**
 * Waiting on the GPU without hanging. Dawn's Node-API binding settles its promises
 * (`mapAsync`, `onSubmittedWorkDone`) from events it processes on `setImmediate` ticks, and
 * under Deno test files on Dawn have stopped part-way without a word. On Dawn a wait here
 * keeps a timer turning the event loop, and ends with a DeviceError after a limit
 * (`WEFT_GPU_WAIT_S`, default 300 s) instead of hanging its caller; a wait past 30 s says so on
 * stderr, and again when it ends. Deno's own WebGPU polls its device itself and is waited on
 * plainly.
 * @module
 */
import { DeviceError } from "../core/errors.ts";
import { currentHost } from "../core/host.ts";

/** Devices opened on Dawn (runtime/device.ts registers them). */
const dawnDevices = new WeakSet<GPUDevice>();

/**
 * Marks a device as Dawn's, so that waits on it are guarded.
 * @param device a device from the Dawn backend
 */
export function guardWaits(device: GPUDevice): void {
  dawnDevices.add(device);
}

/** Default limit of one guarded wait, in seconds. */
export const GPU_WAIT_LIMIT_S = 300;

/**
 * A guarded wait still pending after this many seconds says so on stderr, and says how long it
 * took when it ends: a long wait then reads as a slow build or a slow call, not as a hang.
 */
export const SLOW_WAIT_NOTICE_S = 30;

/** When a guarded wait speaks up, and where its lines go. */
export interface SlowWaitNotice {
  /** Seconds before the first line (default SLOW_WAIT_NOTICE_S). */
  afterS: number;
  /** Where the lines go (default `console.error`). */
  say: (line: string) => void;
}

/**
 * The limit of one guarded wait: `WEFT_GPU_WAIT_S` when set, else GPU_WAIT_LIMIT_S.
 * @returns seconds
 * @throws {DeviceError} when WEFT_GPU_WAIT_S is not a positive number
 */
export function gpuWaitLimit(): number {
  const raw = currentHost().env("WEFT_GPU_WAIT_S");
  if (raw === undefined || raw === "") return GPU_WAIT_LIMIT_S;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) {
    throw new DeviceError(`WEFT_GPU_WAIT_S must be a positive number of seconds, got "${raw}"`);
  }
  return s;
}

/**
 * Awaits a GPU promise; on a Dawn device, with the event loop kept turning and a time limit.
 * @param device the device the promise belongs to
 * @param what what is awaited, for the error (e.g. "a timing read-back")
 * @param pending the promise
 * @param limitS the limit in seconds (default: gpuWaitLimit())
 * @param notice when a slow wait says so, and where (default: after SLOW_WAIT_NOTICE_S, on stderr)
 * @returns the promise's value
 * @throws {DeviceError} when a guarded wait passes its limit
 * @example
 * ```ts ignore
 * await gpuWait(device, "the queue", device.queue.onSubmittedWorkDone());
 * ```
 */
export async function gpuWait<T>(
  device: GPUDevice,
  what: string,
  pending: Promise<T>,
  limitS?: number,
  notice: SlowWaitNotice = { afterS: SLOW_WAIT_NOTICE_S, say: console.error },
): Promise<T> {
  if (!dawnDevices.has(device)) return await pending;
  const limit = limitS ?? gpuWaitLimit();
  const tick = setInterval(() => {}, 1);
  const started = performance.now();
  let slow = false;
  const slowTimer = setTimeout(() => {
    slow = true;
    notice.say(
      `weft: ${what} is still waiting after ${notice.afterS} s (backend dawn; it fails after ` +
        `${limit} s, WEFT_GPU_WAIT_S)`,
    );
  }, notice.afterS * 1000);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new DeviceError(
            `Backend dawn: ${what} did not finish within ${limit} s; the GPU work may be stuck ` +
              "or Dawn's events stopped. Set WEFT_GPU_WAIT_S to wait longer for long calls",
          ),
        ),
      limit * 1000,
    );
  });
  try {
    return await Promise.race([pending, expired]);
  } finally {
    clearInterval(tick);
    clearTimeout(timer);
    clearTimeout(slowTimer);
    if (slow) {
      notice.say(
        `weft: ${what} ended after ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
    }
  }
}
