/**
 * Compile-time type equality. Types the documentation shows are written out rather than
 * inferred from their zod schemas (zod's types are not part of Weft's API), and each is tied to
 * its schema with `type _Check = Expect<SameType<Written, z.infer<typeof Schema>>>`, which stops
 * compiling as soon as either drifts.
 * @module
 */

/** `true` when `A` and `B` are identical, optional and readonly modifiers included; else `false`. */
export type SameType<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2)
  ? true
  : false;

/** Accepts only `true`: `Expect<SameType<A, B>>` is a compile error unless `A` and `B` are the same. */
export type Expect<T extends true> = T;
