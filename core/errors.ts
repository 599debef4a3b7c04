/**
 * One error class per pipeline stage, so a caller can tell bad input from a bug in Weft.
 * Messages are one line: what was expected, what came, how to fix it.
 * @module
 */

/** The pattern (JSON or builder arguments) is not a valid Weft pattern. */
export class PatternError extends Error {
  /** `"PatternError"`: what `error.name` and stack traces show for it. */
  override name = "PatternError";
}

/** The pattern is valid but cannot be planned for these shapes (e.g. a global token >= N). */
export class PlanError extends Error {
  /** `"PlanError"`: what `error.name` and stack traces show for it. */
  override name = "PlanError";
}

/** Generated WGSL failed to compile; the message quotes the offending line. */
export class ShaderError extends Error {
  /** `"ShaderError"`: what `error.name` and stack traces show for it. */
  override name = "ShaderError";
}

/** No adapter, a lost device, or inputs the device cannot hold. */
export class DeviceError extends Error {
  /** `"DeviceError"`: what `error.name` and stack traces show for it. */
  override name = "DeviceError";
}

/**
 * The device was lost (a driver reset, `device.destroy()`): the buffers and pipelines of calls
 * prepared on it are gone. `Runtime.run` opens a new device and runs again by itself.
 */
export class DeviceLostError extends DeviceError {
  /** `"DeviceLostError"`: what `error.name` and stack traces show for it. */
  override name = "DeviceLostError";
}

/** Input values the kernels cannot give a meaningful answer for (NaN or infinite entries). */
export class DataError extends Error {
  /** `"DataError"`: what `error.name` and stack traces show for it. */
  override name = "DataError";
}

/** Inputs (tensors, gates) disagree with each other or with the pattern. */
export class ShapeError extends Error {
  /** `"ShapeError"`: what `error.name` and stack traces show for it. */
  override name = "ShapeError";
}

/**
 * Internal invariant: a failure here is a bug in Weft, never bad input.
 *
 * @param condition what must hold
 * @param message what went wrong
 * @example
 * ```ts
 * import { assert } from "./errors.ts";
 * assert(1 + 1 === 2, "arithmetic");
 * ```
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`Weft internal error (a bug in Weft, please report): ${message}`);
}
