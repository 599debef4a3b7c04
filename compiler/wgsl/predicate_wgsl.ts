/**
 * WGSL for allowed-set predicates: each atom becomes a boolean expression over the positions
 * `q` and `k` (i32). A component's predicate is its atoms' AND, minus each earlier component's.
 * Only PARTIAL tiles evaluate it.
 * @module
 */
import { assert } from "../../core/errors.ts";
import { type Atom, atomLabel } from "../atoms.ts";
import type { ParamBlock } from "../aux_data.ts";
import { codeSetOf, type HashLayout } from "../hash_layout.ts";
import { predicateCall } from "./expression_wgsl.ts";
import { ParamReader } from "./params_wgsl.ts";
import type { ShaderModule } from "./shader_module.ts";
import { allowedReadsHeadOrBatch, codeRef } from "../component_reads.ts";
import { SEQUENCE_N } from "./sequence_wgsl.ts";

/**
 * The WGSL expression for one atom, declaring any helper it calls. Its numbers (window, radius,
 * period, block size, aux offsets) are parameters, read by `let`s that `reader` collects.
 * @param reader collects the `let`s of the function the expression goes in
 * @param atom the atom
 * @param n N
 * @param hash where hashBucket codes live (hashRound atoms)
 * @param stagedCodes the hashBucket rounds whose codes the kernel stages
 * @param sequenceN packed sequences: the WGSL name of the sequence's key count, which a ring's
 *   wrap and a predicate's `n` read instead of N (numbers past it are clamped to N, which
 *   allows what the sequence's count allows)
 * @returns a boolean WGSL expression in `q` and `k`
 * @example
 * ```ts
 * import { AuxData } from "../aux_data.ts";
 * import { RandomTables } from "../random_table.ts";
 * import { ShaderModule } from "./shader_module.ts";
 * import { ParamReader } from "./params_wgsl.ts";
 * import { atomExpression } from "./predicate_wgsl.ts";
 * const aux = new AuxData(128, new RandomTables(128));
 * const reader = new ParamReader(new ShaderModule(), aux.paramBlock(), true);
 * atomExpression(reader, { kind: "stride", period: 16 }, 128); // "u32(abs(q - k)) % period0 == 0u"
 * ```
 */
export function atomExpression(
  reader: ParamReader,
  atom: Atom,
  n: number,
  hash?: HashLayout,
  stagedCodes?: readonly string[],
  sequenceN?: string,
): string {
  const { m } = reader;
  const aux = reader.params.aux;
  const label = atomLabel(atom);
  // Any window, radius, period or block size past N allows what N allows; clamping keeps
  // `q + right` and friends inside i32.
  const clamp = (x: number) => Math.min(x, n);
  switch (atom.kind) {
    case "dense":
      return "true";
    case "causal":
      return "k <= q";
    case "window": {
      const left = reader.signed("left", clamp(atom.left), label);
      const right = reader.signed("right", clamp(atom.right), label);
      return `(k >= q - ${left} && k <= q + ${right})`;
    }
    case "ring": {
      const radius = () => reader.signed("radius", clamp(atom.radius), label);
      if (sequenceN !== undefined) {
        m.declare(
          "ringDistanceIn",
          `
// Distance on a circle of n positions: a packed sequence's ring wraps at its own ends.
fn ringDistanceIn(q: i32, k: i32, n: i32) -> i32 {
  let d = abs(q - k);
  return min(d, n - d);
}`,
        );
        return `ringDistanceIn(q, k, ${sequenceN}) <= ${radius()}`;
      }
      m.declare(
        "ringDistance",
        `
// Distance on a circle of N positions (the ring wraps at both ends).
fn ringDistance(q: i32, k: i32) -> i32 {
  let d = abs(q - k);
  return min(d, ${n} - d);
}`,
      );
      return `ringDistance(q, k) <= ${radius()}`;
    }
    case "stride":
      // Unsigned remainder of |q - k|: signed % on negative operands was miscompiled on
      // llvmpipe (it behaved as unsigned), and divisibility does not depend on the sign.
      return `u32(abs(q - k)) % ${reader.unsigned("period", clamp(atom.period), label)} == 0u`;
    case "globalRows":
    case "globalCols": {
      declareBitset(m);
      const bitset = reader.dataOffset("bitset", aux.bitset(atom.tokens), `${label}: aux offset`);
      return `inBitset(${bitset}, ${atom.kind === "globalRows" ? "q" : "k"})`;
    }
    case "random": {
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
      const table = reader.dataOffset("table", aux.randomTable(atom), `${label}: aux offset`);
      const blocks = reader.unsigned("blocks", atom.blocks, label);
      const size = reader.signed("blockSize", clamp(atom.blockSize), label);
      return `randomAllows(${table}, ${blocks}, ${size}, q, k)`;
    }
    case "hashRound": {
      // Codes the kernel staged (the query's in registers, the key tile's in workgroup memory).
      const slot = stagedCodes?.indexOf(codeRef(atom)) ?? -1;
      if (slot >= 0) return `qCodes[${slot}] == kCodes[${slot}]`;
      assert(hash, "a hashBucket kernel without its hash layout");
      const set = codeSetOf(hash, atom);
      const first = set.codes + atom.round * (set.rowsQ + set.rowsK) * n;
      declareHashRows(reader.m);
      reader.m.declare(
        "sameBucket",
        `
// Do Q[q] and K[k] share a bucket? codes: the round's first query sort in the hash buffer;
// its ${set.rowsQ} query sorts come first, then the key/value sorts (hash_layout.ts).
fn sameBucket(codes: u32, q: i32, k: i32) -> bool {
  return hash[codes + queryRow * N + u32(q)] == hash[codes + (${set.rowsQ}u + keyRow) * N + u32(k)];
}`,
      );
      return `sameBucket(${first}u, q, k)`;
    }
    case "lowRank":
      // Only in landmark components, where k is a landmark index and every one of the rank counts.
      return "true";
    case "predicate":
      return predicateCall(m, atom, sequenceN ?? n);
  }
}

/**
 * The rows a hashBucket kernel reads codes and bucket order from: set once by the entry point.
 * @param m the module being built
 */
export function declareHashRows(m: ShaderModule): void {
  m.declare(
    "hashRows",
    `
var<private> queryRow: u32;           // batch * HQ + query head: its sorts in the hash buffer
var<private> keyRow: u32;             // batch * HKV + key/value head`,
  );
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
 * Declares `fn allowed(q: i32, k: i32) -> bool` (or `options.name`) for a component, its
 * numbers read from the kernel's parameter block (`allowed(q, k, h, b)` when
 * `allowedReadsHeadOrBatch`).
 * @param m the module being built
 * @param options the component's atoms and exclusions, N, the kernel's parameter block
 * @returns the function name
 * @example
 * ```ts
 * import { AuxData } from "../aux_data.ts";
 * import { RandomTables } from "../random_table.ts";
 * import { ShaderModule } from "./shader_module.ts";
 * import { declareAllowed } from "./predicate_wgsl.ts";
 * const params = new AuxData(64, new RandomTables(64)).paramBlock();
 * declareAllowed(new ShaderModule(), { atoms: [{ kind: "causal" }], exclusions: [], n: 64, params });
 * ```
 */
export function declareAllowed(
  m: ShaderModule,
  options: {
    atoms: readonly Atom[];
    exclusions: readonly (readonly Atom[])[];
    n: number;
    params: ParamBlock;
    /** Landmark components: k is a landmark index, each landmark `segment` rows long. */
    landmarkSegment?: number;
    /** Where hashBucket codes live (components with a hashBucket round). */
    hash?: HashLayout;
    /**
     * hashBucket rounds whose codes the kernel stages (`codeRef`s, at most 4): `allowed` then
     * takes the query's and the key's codes, `allowed(q, k, qCodes, kCodes)`.
     */
    stagedCodes?: readonly string[];
    /** The function's name (default `allowed`; kernels sharing a module name one per member). */
    name?: string;
    /**
     * Packed sequences: `allowed(q, k, n, ...)` takes positions within a sequence and its key
     * count `n`, which a ring's wrap and the predicates read.
     */
    packed?: boolean;
  },
): string {
  const reader = new ParamReader(m, options.params, true);
  const name = options.name ?? "allowed";
  const segment = options.landmarkSegment;
  const expression = (a: Atom) =>
    segment !== undefined && a.kind === "causal"
      // DESIGN §2: under causal, landmark k only once its last row is <= q.
      ? `min(${options.n}, (k + 1) * ${segment}) - 1 <= q`
      : atomExpression(
        reader,
        a,
        options.n,
        options.hash,
        options.stagedCodes,
        options.packed ? SEQUENCE_N : undefined,
      );
  const conj = (atoms: readonly Atom[]) => atoms.map(expression).join(" && ");
  const lines = [`  let own = ${conj(options.atoms)};`];
  options.exclusions.forEach((e, i) => {
    lines.push(`  // Allowed by earlier component ${i}: counted there, not here.`);
    lines.push(`  let earlier${i} = ${conj(e)};`);
  });
  const excluded = options.exclusions.map((_, i) => ` && !earlier${i}`).join("");
  return m.declare(
    name,
    `
fn ${name}(q: i32, k: i32${options.packed ? `, ${SEQUENCE_N}: i32` : ""}${
      allowedReadsHeadOrBatch(options) ? ", h: i32, b: i32" : ""
    }${options.stagedCodes?.length ? ", qCodes: vec4<u32>, kCodes: vec4<u32>" : ""}) -> bool {
${[...reader.lines, ...lines].join("\n")}
  return own${excluded};
}`,
  );
}
