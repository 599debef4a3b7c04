/**
 * A component's BlockMask over packed sequences (DESIGN §5), built for each call's lengths.
 *
 * The rows of Q, K and V hold sequences laid end to end, and the tiles are cut from the packed
 * rows, so a tile may hold the end of one sequence and the start of the next. Each query tile
 * is taken one sequence at a time: the sequence's rows in the tile are a span of its own
 * positions, its keys a range of key tiles, and the classifier (`componentCoverage`,
 * `rangeCoverage`) decides those tiles on the sequence's own positions with `n` its key count,
 * exactly as for a call of that sequence alone. A tile is FULL only where every query row and
 * key of it belongs to that one sequence; a tile that also holds rows of another sequence is
 * PARTIAL, and the kernel's mask then tests that query and key share a sequence. Components
 * walk natural order on both sides (the only order in which a sequence is a range of rows).
 *
 * Built from the candidates and ranges as the static BlockMask is, a row costs about its runs
 * plus the sequences it holds (a predicate PARTIAL on most tiles, which the range classifier
 * cannot decide a range at a time, one classification per tile visited): rebuilding every mask
 * for new lengths is linear in the tiles.
 * @module
 */
import type { Sequence } from "../core/packed_sequences.ts";
import { Coverage } from "./atoms.ts";
import type { BlockMask } from "./block_mask.ts";
import { candidateKeyTiles } from "./candidates.ts";
import type { ClassifyContext, KeyRangeSpan } from "./classify.ts";
import { componentCoverage, type ComponentRule, rangeCoverage } from "./component_coverage.ts";
import type { Layout, TileSpan } from "./layout.ts";
import type { HeadBatchRange } from "./predicate_classify.ts";
import type { RandomTables } from "./random_table.ts";

/** Everything a packed BlockMask depends on besides the component. */
export interface PackedMaskOptions {
  /** The call's sequences, in row order (`packedSequences`). */
  sequences: readonly Sequence[];
  /** Query rows in all (Nq). */
  nq: number;
  /** Key rows in all (Nk): the plan's N. */
  nk: number;
  /** Query rows per query tile. */
  tileQ: number;
  /** Key rows per key tile. */
  tileK: number;
  /** The plan's random tables (the classifier's context; packing has no random atoms). */
  random: RandomTables;
  /** Heads and batches the schedule serves, for predicates that read `h` or `b`. */
  domain?: HeadBatchRange;
}

const IDENTITY: Layout = { kind: "identity" };

/**
 * Builds a component's schedule over packed sequences.
 * @param rule the component's atoms and exclusions
 * @param o the sequences, row counts, tile shape and classifier context
 * @returns a BlockMask over `ceil(Nk / tileQ)` query tiles (those past the query rows empty) and
 *   `ceil(Nk / tileK)` key tiles
 * @example
 * ```ts
 * import { packedBlockMask } from "./packed_mask.ts";
 * import { RandomTables } from "./random_table.ts";
 * const sequences = [
 *   { qStart: 0, qLen: 6, kStart: 0, kLen: 6, offset: 0 },
 *   { qStart: 6, qLen: 10, kStart: 6, kLen: 10, offset: 0 },
 * ];
 * const m = packedBlockMask({ atoms: [{ kind: "dense" }], exclusions: [] }, {
 *   sequences, nq: 16, nk: 16, tileQ: 4, tileK: 4, random: new RandomTables(16),
 * });
 * // Query tile 1 (rows 4-7) holds both sequences: one PARTIAL run. Key tile 1 holds keys of
 * // both, so the other query tiles see it PARTIAL; their own keys' tiles are FULL.
 * console.log(Array.from(m.offsets)); // [0, 2, 3, 5, 7]
 * console.log(Array.from(m.partial)); // [0, 1, 1, 1, 0, 1, 0]
 * ```
 */
export function packedBlockMask(rule: ComponentRule, o: PackedMaskOptions): BlockMask {
  const { sequences, nq, nk, tileQ, tileK } = o;
  const qTiles = Math.ceil(nk / tileQ);
  const offsets = new Uint32Array(qTiles + 1);
  const runs = new PackedRuns();
  let first = 0; // the first sequence that may hold rows of the current query tile
  for (let t = 0; t < qTiles; t++) {
    runs.startRow();
    const rowLo = t * tileQ, rowHi = Math.min(nq, rowLo + tileQ) - 1;
    while (first < sequences.length && end(sequences[first]) <= rowLo) first++;
    const held: Sequence[] = [];
    for (let s = first; s < sequences.length && sequences[s].qStart <= rowHi; s++) {
      if (sequences[s].qLen > 0) held.push(sequences[s]);
    }
    for (const seq of held) {
      addSequence(rule, seq, { rowLo, rowHi, alone: held.length === 1, runs, o });
    }
    offsets[t + 1] = runs.count;
  }
  return {
    qTiles,
    kTiles: Math.ceil(nk / tileK),
    tileQ,
    tileK,
    offsets,
    kvStart: Uint32Array.from(runs.start),
    kvLength: Uint32Array.from(runs.length),
    partial: Uint8Array.from(runs.partial),
  };
}

/** One past a sequence's last query row. */
function end(seq: Sequence): number {
  return seq.qStart + seq.qLen;
}

function span(lo: number, hi: number): TileSpan {
  return { lo, hi, contiguous: true, classLo: -1, classHi: -1 };
}

/**
 * Adds the key tiles one sequence's rows of a query tile visit. `alone`: the tile's query rows
 * are all this sequence's, so a key tile holding only its keys may be FULL.
 */
function addSequence(
  rule: ComponentRule,
  seq: Sequence,
  at: { rowLo: number; rowHi: number; alone: boolean; runs: PackedRuns; o: PackedMaskOptions },
): void {
  const { tileK, nk } = at.o;
  const keyEnd = seq.kStart + seq.kLen;
  // Query row r of the sequence is its position `offset + r - qStart`.
  const shift = seq.offset - seq.qStart;
  const qs = span(Math.max(at.rowLo, seq.qStart) + shift, Math.min(at.rowHi, end(seq) - 1) + shift);
  const ctx: ClassifyContext = {
    n: seq.kLen,
    qLayout: IDENTITY,
    kLayout: IDENTITY,
    random: at.o.random,
    domain: at.o.domain,
  };
  // The sequence's own keys in key tiles first..last, as positions within the sequence.
  const keys = (first: number, last: number) =>
    span(
      Math.max(first * tileK, seq.kStart) - seq.kStart,
      Math.min((last + 1) * tileK, keyEnd) - 1 - seq.kStart,
    );
  const coverage = (first: number, last: number): Coverage | undefined => {
    if (first === last) return componentCoverage(rule, qs, keys(first, first), ctx);
    const range: KeyRangeSpan = {
      ...keys(first, last),
      first: keys(first, first),
      last: keys(last, last),
      increasing: true,
    };
    return rangeCoverage(rule, qs, range, ctx);
  };
  // A key tile holding keys of another sequence (or none past Nk) is never FULL.
  const ownTile = (u: number) => u * tileK >= seq.kStart && Math.min((u + 1) * tileK, nk) <= keyEnd;
  const add = (first: number, last: number, c: Coverage) => {
    if (c !== Coverage.Full || !at.alone) return at.runs.add(first, last, true);
    if (!ownTile(first)) at.runs.add(first, first++, true);
    if (first > last) return;
    if (ownTile(last)) return at.runs.add(first, last, false);
    if (first < last) at.runs.add(first, last - 1, false);
    at.runs.add(last, last, true);
  };
  // Classify a whole range at once; bisect only where its tiles may differ.
  const bisect = (first: number, last: number, c = coverage(first, last)) => {
    if (c === Coverage.Empty) return;
    if (c !== undefined) return add(first, last, c);
    const mid = (first + last) >> 1;
    bisect(first, mid);
    bisect(mid + 1, last);
  };
  // Candidates as key positions within the sequence (tiles of one key), then the packed tiles
  // holding them; a tile two candidate ranges share is classified once, over all its keys.
  const candidates = candidateKeyTiles({
    atoms: rule.atoms,
    qLayout: IDENTITY,
    kLayout: IDENTITY,
    qSpan: qs,
    n: seq.kLen,
    tileK: 1,
    random: at.o.random,
  });
  let next = 0; // the first key tile no range of this sequence has classified yet
  for (const [a, b] of candidates) {
    const first = Math.max(next, Math.floor((seq.kStart + a) / tileK));
    const last = Math.floor((seq.kStart + b) / tileK);
    if (first > last) continue;
    bisect(first, last);
    next = last + 1;
  }
}

/**
 * A BlockMask's runs under construction, row by row. Ranges come in ascending order; one that
 * starts inside the row's last run (the key tile two sequences share) keeps only its new tiles,
 * and one that continues the last run in kind joins it, so runs stay disjoint and maximal.
 */
class PackedRuns {
  readonly start: number[] = [];
  readonly length: number[] = [];
  readonly partial: number[] = [];
  #rowStart = 0;

  get count(): number {
    return this.start.length;
  }

  startRow(): void {
    this.#rowStart = this.start.length;
  }

  add(first: number, last: number, partial: boolean): void {
    const r = this.start.length - 1;
    const end = r >= this.#rowStart ? this.start[r] + this.length[r] : 0;
    if (first < end) first = end;
    if (first > last) return;
    const kind = partial ? 1 : 0;
    if (r >= this.#rowStart && end === first && this.partial[r] === kind) {
      this.length[r] += last - first + 1;
      return;
    }
    this.start.push(first);
    this.length.push(last - first + 1);
    this.partial.push(kind);
  }
}
