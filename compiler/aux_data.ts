/**
 * The aux buffer: one `array<u32>` per compiled pattern holding what its kernels read besides
 * Q, K, V and the schedule. Two regions:
 *
 * - parameters first: every number of the pattern a kernel uses (a window's left and right, a
 *   ring's radius, a stride's period, a residue layout's geometry, a random atom's block size,
 *   and the offsets of the data below), one word each, signed values as their two's complement.
 *   A kernel owns a contiguous block of slots, allocated in the order the WGSL is generated, so
 *   slot numbers depend only on the pattern's structure (which atoms and layouts, in what
 *   order), never on its numbers;
 * - data after them: gathered token lists, global-token bitsets, random-block tables, the
 *   query tiles a kernel runs where the queries are some of the positions, each stored once
 *   however many kernels read it.
 *
 * Because the numbers live in this buffer and not in the WGSL, two patterns of the same
 * structure at the same shape compile to the same WGSL (comments aside) and share pipelines.
 * @module
 */
import type { Atom } from "./atoms.ts";
import type { RandomTables } from "./random_table.ts";

/** A parameter word: a value, or the offset of a data item (known once all parameters are). */
export type ParamWord = { value: number } | { data: number };

/** Builds the aux words: parameter blocks first, then data items. */
export class AuxData {
  readonly #params: ParamWord[] = [];
  readonly #data: number[] = [];
  readonly #offsets = new Map<string, number>();

  /**
   * @param n N (bitsets cover `0..N-1`)
   * @param random the plan's random-block tables
   * @param constants bake the numbers into the WGSL instead (`CompileOptions.constantParams`):
   *   then no parameter slots are taken and data offsets are final as soon as they are added
   */
  constructor(
    readonly n: number,
    readonly random: RandomTables,
    readonly constants = false,
  ) {}

  /**
   * Starts a kernel's parameter block: its slots count from 0 at the current end of the
   * parameter region. Blocks are filled one kernel at a time.
   * @returns the block
   * @example
   * ```ts
   * import { AuxData } from "./aux_data.ts";
   * import { RandomTables } from "./random_table.ts";
   * const aux = new AuxData(64, new RandomTables(64));
   * const params = aux.paramBlock();
   * params.signed(-3); // slot 0
   * Array.from(aux.finish()); // [4294967293]
   * ```
   */
  paramBlock(): ParamBlock {
    return new ParamBlock(this, this.#params.length, (word) => this.#params.push(word) - 1);
  }

  /** Data offset of a sorted token list (a gathered layout), relative to the data region. */
  tokens(tokens: readonly number[]): number {
    return this.#add(`tokens:${tokens.join(",")}`, () => tokens);
  }

  /**
   * Data offset of the tiles a kernel runs, in workgroup order: the query tiles that hold the
   * call's queries (query_tiles.ts), or a gradient kernel's own tiles (plan_gradients.ts).
   */
  tileList(tiles: readonly number[]): number {
    return this.#add(`queryTiles:${tiles.join(",")}`, () => tiles);
  }

  /** Data offset of a bitset over positions `0..N-1` with the tokens' bits set. */
  bitset(tokens: readonly number[]): number {
    return this.#add(`bitset:${tokens.join(",")}`, () => {
      const words = new Array<number>(Math.ceil(this.n / 32)).fill(0);
      for (const t of tokens) words[t >> 5] = (words[t >> 5] | (1 << (t & 31))) >>> 0;
      return words;
    });
  }

  /** Data offset of a random atom's draw table `[queryBlock * blocks + j]`. */
  randomTable(atom: Extract<Atom, { kind: "random" }>): number {
    const table = this.random.get(atom);
    return this.#add(`random:${atom.blocks}/${atom.blockSize}/${atom.seed}`, () => table.draws);
  }

  /** The words: parameters (data offsets made absolute), then data; never empty. */
  finish(): Uint32Array {
    const start = this.#params.length;
    const params = this.#params.map((w) => "value" in w ? w.value : start + w.data);
    const words = [...params, ...this.#data];
    return Uint32Array.from(words.length ? words : [0]);
  }

  #add(key: string, make: () => ArrayLike<number>): number {
    let offset = this.#offsets.get(key);
    if (offset === undefined) {
      offset = this.#data.length;
      this.#offsets.set(key, offset);
      const words = make();
      for (let i = 0; i < words.length; i++) this.#data.push(words[i]);
    }
    return offset;
  }
}

/**
 * One kernel's parameter slots. The kernel finds slot `s` at `aux[base + s]`; `base` depends
 * only on how many slots earlier kernels of the pattern took, so it is structural too.
 */
export class ParamBlock {
  readonly #push: (word: ParamWord) => number;
  #slots = 0;

  constructor(readonly aux: AuxData, readonly base: number, push: (word: ParamWord) => number) {
    this.#push = push;
  }

  /** Slots taken so far. */
  get size(): number {
    return this.#slots;
  }

  /** Adds an unsigned word (`0 <= value < 2^32`); returns its slot. */
  unsigned(value: number): number {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new Error(`Weft internal error: parameter ${value} is not a u32`);
    }
    return this.#take({ value });
  }

  /** Adds a signed word (an i32, stored as its two's complement); returns its slot. */
  signed(value: number): number {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new Error(`Weft internal error: parameter ${value} is not an i32`);
    }
    return this.#take({ value: value >>> 0 });
  }

  /** Adds the absolute aux offset of a data item (from `aux.tokens`, `bitset`, ...). */
  dataOffset(data: number): number {
    return this.#take({ data });
  }

  #take(word: ParamWord): number {
    if (this.aux.constants) {
      throw new Error("Weft internal error: a parameter slot taken while baking constants");
    }
    const at = this.#push(word);
    if (at !== this.base + this.#slots) {
      throw new Error("Weft internal error: parameter blocks of two kernels interleaved");
    }
    return this.#slots++;
  }
}
