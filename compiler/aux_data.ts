/**
 * The aux buffer: one `array<u32>` per compiled pattern holding the data its predicates and
 * layouts look up (gathered token lists, global-token bitsets, random-block tables). Each item
 * is stored once and addressed by a constant offset baked into the WGSL.
 * @module
 */
import type { Atom } from "./atoms.ts";
import type { RandomTables } from "./random_table.ts";

/** Builds the aux words; `offsetOf*` returns where an item starts, adding it on first use. */
export class AuxData {
  readonly #words: number[] = [];
  readonly #offsets = new Map<string, number>();

  constructor(readonly n: number, readonly random: RandomTables) {}

  /** Offset of a sorted token list (a gathered layout). */
  tokens(tokens: readonly number[]): number {
    return this.#add(`tokens:${tokens.join(",")}`, () => tokens);
  }

  /** Offset of a bitset over positions `0..N-1` with the tokens' bits set. */
  bitset(tokens: readonly number[]): number {
    return this.#add(`bitset:${tokens.join(",")}`, () => {
      const words = new Array<number>(Math.ceil(this.n / 32)).fill(0);
      for (const t of tokens) words[t >> 5] = (words[t >> 5] | (1 << (t & 31))) >>> 0;
      return words;
    });
  }

  /** Offset of a random atom's draw table `[queryBlock * blocks + j]`. */
  randomTable(atom: Extract<Atom, { kind: "random" }>): number {
    const table = this.random.get(atom);
    return this.#add(`random:${atom.blocks}/${atom.blockSize}/${atom.seed}`, () => table.draws);
  }

  /** The words, at least one so the binding is never empty. */
  finish(): Uint32Array {
    return Uint32Array.from(this.#words.length ? this.#words : [0]);
  }

  #add(key: string, make: () => ArrayLike<number>): number {
    let offset = this.#offsets.get(key);
    if (offset === undefined) {
      offset = this.#words.length;
      this.#offsets.set(key, offset);
      const words = make();
      for (let i = 0; i < words.length; i++) this.#words.push(words[i]);
    }
    return offset;
  }
}
