/**
 * Normalisation: a pattern becomes branches (one per gate), each branch a union of terms, each
 * term a conjunction of atoms (disjunctive normal form). Intersections distribute over unions,
 * so every term is a plain AND of leaf rules that a single layout can serve.
 * @module
 */
import type { Pattern, ScoreModifier } from "../dsl/schema.ts";
import { PlanError } from "../core/errors.ts";
import { type Atom, atomKey, predicateLabel } from "./atoms.ts";
import { type SelectBranch, selectBranches } from "../dsl/select.ts";

/** A conjunction of atoms: the pairs every atom allows. An empty list allows nothing. */
export type Term = Atom[];

/** The most terms one branch may expand to; past this the plan would be mostly exclusions. */
export const MAX_TERMS = 64;

/** One softmax: the union of its terms. `gate` is the JSON gate when one was given. */
export interface NormalBranch {
  terms: Term[];
  label: string;
  /** The branch's score modifier (a `scored` pattern), applied to every term's scores. */
  score?: ScoreModifier;
  /** A select's softmax (dsl/select.ts): its own kernels, no terms. */
  select?: SelectBranch;
}

/**
 * Splits a pattern into branches and each branch into DNF terms.
 *
 * @param pattern a parsed pattern
 * @param seqLen N, to check global tokens and drop atoms that allow everything
 * @returns the branches in order (one when the pattern is not gated)
 * @throws {PlanError} a global token >= N, or too many terms
 * @example
 * ```ts
 * import { normalize } from "./normalize.ts";
 * const [b] = normalize({ kind: "union", of: [{ kind: "ring", radius: 2 }, { kind: "causal" }] }, 16);
 * console.log(b.terms.length); // 2
 * ```
 */
export function normalize(pattern: Pattern, seqLen: number): NormalBranch[] {
  const branches = pattern.kind === "gated" ? pattern.branches : [pattern];
  const selects = selectBranches(pattern);
  return branches.map((branch, i) => {
    const select = selects[i];
    if (select) return { terms: [], label: describe(branch), select };
    const where = pattern.kind === "gated" ? `pattern.branches[${i}]` : "pattern";
    const p = branch.kind === "scored" ? branch.pattern : branch;
    const inner = branch.kind === "scored" ? `${where}.pattern` : where;
    const terms = dedupe(termsOf(p, seqLen, inner).map((t) => simplify(t, seqLen)));
    const score = branch.kind === "scored" ? { score: branch.score } : {};
    return { terms, label: describe(branch), ...score };
  });
}

function termsOf(p: Pattern, n: number, where: string): Term[] {
  switch (p.kind) {
    case "dense":
    case "causal":
    case "window":
    case "ring":
    case "stride":
    case "random":
    case "lowRank":
    case "predicate":
      return [[p]];
    case "hashBucket":
      // One term per round: round t's component skips pairs an earlier round already allows.
      return Array.from({ length: p.rounds }, (_, round) => [{
        kind: "hashRound" as const,
        buckets: p.buckets,
        seed: p.seed,
        round,
        uniform: p.weights === "uniform",
      }]);
    case "global": {
      p.tokens.forEach((t, i) => {
        if (t >= n) {
          throw new PlanError(
            `Cannot plan pattern: ${where}.tokens[${i}]: global token must be < N (${n}), got ${t}`,
          );
        }
      });
      const tokens = [...new Set(p.tokens)].sort((a, b) => a - b);
      if (tokens.length === 0) return [];
      return [[{ kind: "globalRows", tokens }], [{ kind: "globalCols", tokens }]];
    }
    case "union":
      return limit(p.of.flatMap((c, i) => termsOf(c, n, `${where}.of[${i}]`)), where);
    case "intersect": {
      let acc: Term[] = [[]];
      p.of.forEach((c, i) => {
        const next = termsOf(c, n, `${where}.of[${i}]`);
        acc = limit(acc.flatMap((a) => next.map((b) => [...a, ...b])), where);
      });
      return acc;
    }
    case "linear": // no softmax terms: a linear branch runs kernels of its own (plan.ts)
      return [];
    case "gated":
      throw new PlanError(`Cannot plan pattern: ${where}: gated may only be the outermost pattern`);
    case "select":
      // selectBranches placed every select in a branch of its own before terms are made.
      throw new Error(`Bug in Weft: ${where}: a select reached the terms`);
    case "scored":
      throw new PlanError(
        `Cannot plan pattern: ${where}: scored may only be the outermost pattern or a gated branch`,
      );
  }
}

function limit(terms: Term[], where: string): Term[] {
  if (terms.length > MAX_TERMS) {
    throw new PlanError(
      `Cannot plan pattern: ${where}: expands to ${terms.length} disjoint components ` +
        `(at most ${MAX_TERMS}); intersect fewer unions with each other`,
    );
  }
  return terms;
}

/** Drops atoms that allow every pair at this N, and repeated atoms. */
function simplify(term: Term, n: number): Term {
  const seen = new Set<string>();
  const kept = term.filter((a) => {
    const key = atomKey(a);
    if (seen.has(key) || allowsEverything(a, n)) return false;
    seen.add(key);
    return true;
  });
  return kept.length === 0 ? [{ kind: "dense" }] : kept;
}

function allowsEverything(a: Atom, n: number): boolean {
  switch (a.kind) {
    case "dense":
      return true;
    case "window":
      return a.left >= n - 1 && a.right >= n - 1;
    case "ring":
      return 2 * a.radius + 1 >= n;
    case "stride":
      return a.period === 1;
    default:
      return false;
  }
}

function dedupe(terms: Term[]): Term[] {
  const seen = new Set<string>();
  return terms.filter((t) => {
    const key = t.map(atomKey).sort().join("&");
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Short human label of a pattern, for plan summaries. */
export function describe(p: Pattern): string {
  switch (p.kind) {
    case "dense":
    case "causal":
      return p.kind;
    case "window":
      return `window(${p.left},${p.right})`;
    case "ring":
      return `ring(${p.radius})`;
    case "stride":
      return `stride(${p.period})`;
    case "global":
      return `global(${p.tokens.length} tokens)`;
    case "random":
      return `random(${p.blocks}x${p.blockSize})`;
    case "lowRank":
      return `lowRank(${p.rank})`;
    case "hashBucket":
      return `hashBucket(${p.buckets} buckets x ${p.rounds} rounds${
        p.weights === "uniform" ? ", uniform" : ""
      })`;
    case "select": {
      const forced = [p.initial ? `${p.initial} initial` : "", p.local ? `${p.local} local` : ""]
        .filter((x) => x);
      return `select(${p.blocks}x${p.blockSize}${forced.length ? `, ${forced.join(", ")}` : ""})`;
    }
    case "predicate":
      return predicateLabel(p.expr);
    case "linear":
      return `linear(${p.featureMap === "favor" ? `favor ${p.features}` : "elu1"}${
        p.causal ? ", causal" : ""
      })`;
    case "scored":
      return `scored(${describe(p.pattern)})`;
    case "union":
      return `union(${p.of.map(describe).join(", ")})`;
    case "intersect":
      return `intersect(${p.of.map(describe).join(", ")})`;
    case "gated":
      return `gated(${p.branches.map(describe).join(", ")})`;
  }
}
