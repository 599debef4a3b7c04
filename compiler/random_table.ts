/**
 * Random-block tables: for each query block, the key blocks `random` draws (DESIGN §2). The
 * planner classifies tiles with them and the kernel reads the same table from its aux buffer, so
 * the hash is evaluated once per (query block, draw), never per element.
 * @module
 */
import { randomKeyBlocks } from "../core/hash.ts";
import type { Atom } from "./atoms.ts";

/** The atom of a `random` pattern: its draws per query block, block size and seed. */
export type RandomAtom = Extract<Atom, { kind: "random" }>;

/** The drawn key blocks of one `random` atom at one N. */
export class RandomTable {
  /** `draws[qb * blocks + j]`: the j-th key block drawn for query block qb (repeats allowed). */
  readonly draws: Uint32Array;
  /** Query blocks (equally, key blocks) at this N: `ceil(N / blockSize)`. */
  readonly queryBlocks: number;
  readonly #sorted: number[][] = [];

  /**
   * Draws every query block's key blocks.
   * @param atom the `random` atom
   * @param n sequence length N
   */
  constructor(readonly atom: RandomAtom, n: number) {
    const nkb = Math.ceil(n / atom.blockSize);
    this.queryBlocks = nkb;
    this.draws = new Uint32Array(nkb * atom.blocks);
    for (let qb = 0; qb < nkb; qb++) {
      const drawn = randomKeyBlocks(qb, atom.blocks, atom.seed, nkb);
      this.draws.set(drawn, qb * atom.blocks);
      this.#sorted.push([...new Set(drawn)].sort((a, b) => a - b));
    }
  }

  /** The distinct key blocks of query block `qb`, ascending. */
  drawnSorted(qb: number): readonly number[] {
    return this.#sorted[qb];
  }
}

/** Tables built on first use, one per distinct `random` atom. */
export class RandomTables {
  readonly #tables = new Map<string, RandomTable>();
  /** By atom object too: the planner asks once per tile, and the key string showed in profiles. */
  readonly #byAtom = new WeakMap<RandomAtom, RandomTable>();
  /**
   * An empty set of tables.
   * @param n sequence length N, which every table is drawn at
   */
  constructor(readonly n: number) {}

  /** The table of `atom`, built once. */
  get(atom: RandomAtom): RandomTable {
    let table = this.#byAtom.get(atom);
    if (table) return table;
    const key = `${atom.blocks}/${atom.blockSize}/${atom.seed}`;
    table = this.#tables.get(key);
    if (!table) this.#tables.set(key, table = new RandomTable(atom, this.n));
    this.#byAtom.set(atom, table);
    return table;
  }
}
