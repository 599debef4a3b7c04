/**
 * Tile classification of predicate atoms by interval analysis (`expression_intervals.ts`): the
 * predicate is evaluated once over the box of a tile's query and key positions (and every head
 * and batch the schedule serves), never element by element. True on the whole box: FULL; false
 * on the whole box: EMPTY; anything the analysis cannot decide: PARTIAL, so a tile is never
 * wrongly FULL or EMPTY, only sometimes needlessly PARTIAL.
 * @module
 */
import type { Program } from "../dsl/expression.ts";
import { predicateProgram } from "../dsl/expression_check.ts";
import { type Atom, Coverage } from "./atoms.ts";
import { type Box, type ClassRange, programInterval } from "../dsl/expression_intervals.ts";
import type { Layout, TileSpan } from "./layout.ts";

/** Heads and batches one schedule serves; unknown, any the GPU grid can hold (65535 a side). */
export interface HeadBatchRange {
  batch: number;
  headsQ: number;
}

const ANY_GRID: HeadBatchRange = { batch: 65535, headsQ: 65535 };

type PredicateAtom = Extract<Atom, { kind: "predicate" }>;

const programs = new WeakMap<PredicateAtom, Program>();

/**
 * Coverage of a predicate atom over the block `q in qs, k in ks`.
 * @param atom the predicate
 * @param qs the query tile's span
 * @param ks the key tile's span
 * @param ctx N, the layouts (residue classes narrow `%`), and the heads and batches
 * @returns Full, Empty or Partial (unknown)
 * @example
 * ```ts
 * import { classifyPredicate } from "./predicate_classify.ts";
 * const span = (lo: number, hi: number) => ({ lo, hi, contiguous: true, classLo: -1, classHi: -1 });
 * const identity = { kind: "identity" as const };
 * const ctx = { n: 256, qLayout: identity, kLayout: identity };
 * const near = { kind: "predicate" as const, expr: "Math.abs(q - k) <= 40" };
 * classifyPredicate(near, span(64, 95), span(64, 95), ctx); // Coverage.Full
 * classifyPredicate(near, span(64, 95), span(192, 223), ctx); // Coverage.Empty
 * ```
 */
export function classifyPredicate(
  atom: PredicateAtom,
  qs: TileSpan,
  ks: TileSpan,
  ctx: { n: number; qLayout: Layout; kLayout: Layout; domain?: HeadBatchRange },
): Coverage {
  let program = programs.get(atom);
  if (!program) programs.set(atom, program = predicateProgram(atom));
  const grid = ctx.domain ?? ANY_GRID;
  const box: Box = {
    q: { lo: qs.lo, hi: qs.hi },
    k: { lo: ks.lo, hi: ks.hi },
    n: ctx.n,
    h: { lo: 0, hi: grid.headsQ - 1 },
    b: { lo: 0, hi: grid.batch - 1 },
    s: { lo: 0, hi: 0 },
    qClasses: classes(ctx.qLayout, qs),
    kClasses: classes(ctx.kLayout, ks),
  };
  const verdict = programInterval(program, box);
  return verdict.lo === 1 ? Coverage.Full : verdict.hi === 0 ? Coverage.Empty : Coverage.Partial;
}

function classes(layout: Layout, span: TileSpan): ClassRange | undefined {
  return layout.kind === "residue" && span.classLo >= 0
    ? { period: layout.period, lo: span.classLo, hi: span.classHi }
    : undefined;
}
