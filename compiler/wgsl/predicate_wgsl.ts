/**
 * WGSL for allowed-set predicates: each atom becomes a boolean expression over the positions
 * `q` and `k` (i32). A component's predicate is its atoms' AND, minus each earlier component's.
 * Only PARTIAL tiles evaluate it.
 * @module
 */
import type { Atom } from "../atoms.ts";
import type { AuxData } from "../aux_data.ts";
import type { ShaderModule } from "./shader_module.ts";

/**
 * The WGSL expression for one atom, declaring any helper it calls.
 * @param m the module being built
 * @param atom the atom
 * @param n N
 * @param aux aux data for bitsets and random tables
 * @returns a boolean WGSL expression in `q` and `k`
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { atomExpression } from "./predicate_wgsl.ts";
 * atomExpression(new ShaderModule(), { kind: "causal" }, 128, undefined as never); // "k <= q"
 * ```
 */
export function atomExpression(m: ShaderModule, atom: Atom, n: number, aux: AuxData): string {
  switch (atom.kind) {
    case "dense":
      return "true";
    case "causal":
      return "k <= q";
    case "window":
      return `(k >= q - ${atom.left} && k <= q + ${atom.right})`;
    case "ring":
      m.declare(
        "ringDistance",
        `
// Distance on a circle of N positions (the ring wraps at both ends).
fn ringDistance(q: i32, k: i32) -> i32 {
  let d = abs(q - k);
  return min(d, ${n} - d);
}`,
      );
      return `ringDistance(q, k) <= ${atom.radius}`;
    case "stride":
      // Unsigned remainder of |q - k|: signed % on negative operands was miscompiled on
      // llvmpipe (it behaved as unsigned), and divisibility does not depend on the sign.
      return `u32(abs(q - k)) % ${atom.period}u == 0u`;
    case "globalRows":
      declareBitset(m);
      return `inBitset(${aux.bitset(atom.tokens)}u, q)`;
    case "globalCols":
      declareBitset(m);
      return `inBitset(${aux.bitset(atom.tokens)}u, k)`;
    case "random":
      m.declare(
        "randomAllows",
        `
// Is key block k / size among the blocks drawn for query block q / size (table in aux)?
fn randomAllows(table: u32, blocks: u32, size: i32, q: i32, k: i32) -> bool {
  let row = table + u32(q / size) * blocks;
  let kb = u32(k / size);
  for (var j = 0u; j < blocks; j++) {
    if (aux[row + j] == kb) { return true; }
  }
  return false;
}`,
      );
      return `randomAllows(${aux.randomTable(atom)}u, ${atom.blocks}u, ${atom.blockSize}, q, k)`;
  }
}

function declareBitset(m: ShaderModule): void {
  m.declare(
    "inBitset",
    `
fn inBitset(base: u32, position: i32) -> bool {
  let i = u32(position);
  return ((aux[base + (i >> 5u)] >> (i & 31u)) & 1u) == 1u;
}`,
  );
}

/**
 * Declares `fn allowed(q: i32, k: i32) -> bool` for a component.
 * @param m the module being built
 * @param options the component's atoms and exclusions, N, aux data
 * @returns the function name
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareAllowed } from "./predicate_wgsl.ts";
 * declareAllowed(new ShaderModule(), { atoms: [{ kind: "causal" }], exclusions: [], n: 64, aux: undefined as never });
 * ```
 */
export function declareAllowed(
  m: ShaderModule,
  options: {
    atoms: readonly Atom[];
    exclusions: readonly (readonly Atom[])[];
    n: number;
    aux: AuxData;
  },
): string {
  const conj = (atoms: readonly Atom[]) =>
    atoms.map((a) => atomExpression(m, a, options.n, options.aux)).join(" && ");
  const lines = [`  let own = ${conj(options.atoms)};`];
  options.exclusions.forEach((e, i) => {
    lines.push(`  // Allowed by earlier component ${i}: counted there, not here.`);
    lines.push(`  let earlier${i} = ${conj(e)};`);
  });
  const excluded = options.exclusions.map((_, i) => ` && !earlier${i}`).join("");
  return m.declare(
    "allowed",
    `
fn allowed(q: i32, k: i32) -> bool {
${lines.join("\n")}
  return own${excluded};
}`,
  );
}
