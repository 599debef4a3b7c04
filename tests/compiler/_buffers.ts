/**
 * A compiled call's buffers by name, from its buffer table.
 * @module
 */
import type { BufferName, CompiledAttention } from "../../compiler/mod.ts";

/** The words the compiler wrote into a buffer (the schedule, aux). */
export function words(c: CompiledAttention, name: BufferName): Uint32Array {
  const data = c.buffers.find((b) => b.name === name)?.data;
  if (!data) throw new Error(`no compiler-written buffer ${name}`);
  return data;
}

/** A buffer's size in bytes. */
export function bytes(c: CompiledAttention, name: BufferName): number {
  const spec = c.buffers.find((b) => b.name === name);
  if (!spec) throw new Error(`no buffer ${name}`);
  return spec.bytes;
}
