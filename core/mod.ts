/**
 * The ground floor: the vocabulary every stage shares. Errors (one class per stage), the
 * attention shape and dtype, the checks of a call's tensors, and the integer hash that random
 * blocks and hash planes are drawn from. dsl, compiler, runtime and the float64 reference all
 * import it; it imports nothing of theirs.
 * @module
 */
export * from "./errors.ts";
export * from "./shape.ts";
export * from "./input_shapes.ts";
export * from "./paged_kv.ts";
export * from "./hash.ts";
