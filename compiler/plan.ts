/**
 * Plan: what the kernels will do for one pattern at one N and tile shape.
 *
 * A plan has one branch per gate (one when not gated). A branch is a list of components whose
 * allowed sets are disjoint: component `j` allows the AND of its atoms minus whatever an earlier
 * component of the branch allows. Each component has its own layouts and BlockMask and writes a
 * partial (O, LSE); partials merge exactly by log-sum-exp, so a union never needs one layout
 * for everything. Pure data: no GPU, no WGSL.
 * @module
 */
import { predicateProgram } from "../dsl/expression_check.ts";
import type { LinearPattern, Pattern, ScoreModifier } from "../dsl/schema.ts";
import { type Atom, atomLabel } from "./atoms.ts";
import { constantDivisors } from "../dsl/expression_intervals.ts";
import { type BlockMask, blockMaskCounts, buildBlockMask } from "./block_mask.ts";
import { type Layout, layoutLabel } from "./layout.ts";
import { normalize, type Term } from "./normalize.ts";
import type { HeadBatchRange } from "./predicate_classify.ts";
import { RandomTables } from "./random_table.ts";
import { landmarkBlockMask } from "./landmark_mask.ts";
import { checkLowRankPlacement, landmarkGeometry } from "../dsl/low_rank.ts";
import { checkHashPlacement } from "../dsl/hash_bucket.ts";
import { type QueryRange, queryTiles } from "./query_tiles.ts";
import type { SelectBranch } from "../dsl/select.ts";

/** One disjoint piece of a branch. */
export interface Component {
  /** Allowed: every atom allows the pair... */
  atoms: Atom[];
  /** ...and no earlier component of the branch does (each entry is one earlier component). */
  exclusions: Atom[][];
  /** The order its query tiles walk query positions in. */
  qLayout: Layout;
  /** The order its key tiles walk key positions in. */
  kLayout: Layout;
  /** Its tile schedule: the key tiles each query tile visits, each FULL or PARTIAL. */
  mask: BlockMask;
}

/** One softmax. */
export interface Branch {
  /** The branch's pattern in short, for plan summaries. */
  label: string;
  /** Disjoint pieces whose partial (O, LSE) merge into the branch's softmax. */
  components: Component[];
  /** A `scored` branch's modifier: every component's kernel applies it to its scores. */
  score?: ScoreModifier;
  /** Uniform hashBucket weights: every allowed score of this softmax is 0 (the ANNA estimator). */
  uniform?: boolean;
  /**
   * A linear branch (DESIGN §2): no softmax and no components; its own kernels compute it
   * (plan_linear.ts).
   */
  linear?: LinearPattern;
  /** A select's softmax: no components; its own kernels choose blocks and attend (DESIGN §2). */
  select?: SelectBranch;
}

/** The tile shape the kernels and schedules share. */
export interface TileShape {
  /** Queries per workgroup (one invocation each). */
  tileQ: number;
  /** Keys staged in workgroup memory per step. */
  tileK: number;
}

/** What the kernels will do for one pattern at one N and tile shape (the module comment says how). */
export interface Plan {
  /** The parsed pattern it plans. */
  pattern: Pattern;
  /** N: the key positions, which every layout and BlockMask is over on both sides. */
  n: number;
  /**
   * Where the call's queries are some of the positions (query_tiles.ts): its Nq rows from
   * position `offset`; the kernels run only the query tiles that hold them. Absent: every
   * position is a query.
   */
  queries?: QueryRange;
  /**
   * The rows are packed sequences whose lengths come with each call (packed_mask.ts): every
   * component walks natural order, and its BlockMask is rebuilt for each call's lengths.
   */
  packed?: true;
  /** The tile shape every component's BlockMask is built for. */
  tiles: TileShape;
  /** One per softmax: one per gated branch, else one. */
  branches: Branch[];
  /** JSON gates of a gated pattern, else undefined (runtime gates or 1/branches apply). */
  gates?: number[];
  /** Random-block tables the kernels read (shared by every component). */
  random: RandomTables;
}

/**
 * Plans a pattern: normalise, make components disjoint, choose each component's layouts by the
 * fewest tiles visited, and build its BlockMask.
 *
 * @param pattern a parsed pattern
 * @param n N, the key positions (the sequence length of a square call)
 * @param tiles the tile shape
 * @param options `domain`: the heads and batches the schedules serve (predicates may read `h`
 *   and `b`; without it, any the GPU grid can hold); `queries`: the call's query rows, where
 *   they are some of the positions; `packed`: the rows are packed sequences, so every
 *   component walks natural order
 * @returns the plan
 * @throws {PlanError} when the pattern cannot be planned at this N
 * @example
 * ```ts
 * import { planPattern } from "./plan.ts";
 * const plan = planPattern({ kind: "stride", period: 16 }, 4096, { tileQ: 64, tileK: 32 });
 * console.log(plan.branches[0].components[0].qLayout); // { kind: "residue", period: 16 }
 * ```
 */
export function planPattern(
  pattern: Pattern,
  n: number,
  tiles: TileShape,
  options: { domain?: HeadBatchRange; queries?: QueryRange; packed?: boolean } = {},
): Plan {
  const random = new RandomTables(n);
  checkLowRankPlacement(pattern);
  const uniform = checkHashPlacement(pattern);
  const branches = normalize(pattern, n).map((b, i): Branch => {
    // Token terms first, then hashBucket rounds, then landmark terms (lowRank). Landmarks are
    // keys of their own, disjoint from every token key, so they exclude only landmark
    // components; a round's component excludes every earlier one (the static ones by their
    // predicates, earlier rounds by the codes), and nothing static ever has to exclude a round.
    const landmark = (t: Term) => t.some((a) => a.kind === "lowRank");
    const hashed = (t: Term) => t.some((a) => a.kind === "hashRound");
    const terms = orderTerms(b.terms.filter((t) => !landmark(t) && !hashed(t)));
    const components: Component[] = [];
    for (const atoms of terms) {
      const exclusions = components.map((c) => c.atoms);
      const context = { n, tiles, random, domain: options.domain, packed: options.packed };
      components.push(bestComponent(atoms, exclusions, context));
    }
    for (const atoms of b.terms.filter(hashed)) {
      components.push(bucketComponent(atoms, components, n, tiles));
    }
    for (const atoms of b.terms.filter(landmark)) {
      components.push(landmarkComponent(atoms, components, n, tiles));
    }
    return {
      label: b.label,
      components,
      ...(b.score ? { score: b.score } : {}),
      ...(uniform[i] ? { uniform: true } : {}),
      ...(linearOf(pattern, i) ? { linear: linearOf(pattern, i) } : {}),
      ...(b.select ? { select: b.select } : {}),
    };
  });
  const gates = pattern.kind === "gated" ? pattern.gates : undefined;
  const queries = options.queries;
  return {
    pattern,
    n,
    ...(queries ? { queries } : {}),
    ...(options.packed ? { packed: true as const } : {}),
    tiles,
    branches,
    gates,
    random,
  };
}

/** Branch i's linear pattern, if it is one. */
function linearOf(pattern: Pattern, i: number): LinearPattern | undefined {
  const branch = pattern.kind === "gated" ? pattern.branches[i] : pattern;
  return branch.kind === "linear" ? branch : undefined;
}

/** Band-like terms first: their tiles are cheap to exclude in any other layout. */
function orderTerms(terms: Term[]): Term[] {
  const rank = (t: Term) =>
    t.some((a) => a.kind === "globalRows")
      ? 3
      : t.some((a) => a.kind === "globalCols")
      ? 2
      : t.some((a) => a.kind === "stride")
      ? 1
      : 0;
  return terms.map((t, i) => [t, i] as const)
    .sort((x, y) => rank(x[0]) - rank(y[0]) || x[1] - y[1])
    .map(([t]) => t);
}

function bestComponent(
  atoms: Atom[],
  exclusions: Atom[][],
  context: {
    n: number;
    tiles: TileShape;
    random: RandomTables;
    domain?: HeadBatchRange;
    packed?: boolean;
  },
): Component {
  const { n, tiles, random, domain } = context;
  let best: Component | undefined;
  // Specialised layouts come first, so a worse candidate stops early instead of listing, say,
  // every tile of stride(16) in natural order. Packed sequences are ranges of rows only in
  // natural order.
  const candidates: [Layout, Layout][] = context.packed
    ? [[{ kind: "identity" }, { kind: "identity" }]]
    : layoutCandidates(atoms, n, tiles.tileK).reverse();
  for (const [qLayout, kLayout] of candidates) {
    const maxVisited = best ? cost(best.mask) : undefined; // a cost is at least its visited count
    const mask = buildBlockMask({
      atoms,
      exclusions,
      qLayout,
      kLayout,
      n,
      ...tiles,
      random,
      domain,
      maxVisited,
      projectedLimit: maxVisited,
    });
    if (!mask) continue;
    const candidate = { atoms, exclusions, qLayout, kLayout, mask };
    // On a tie natural order wins: such components can share one kernel (run_fusion.ts).
    const natural = qLayout.kind === "identity" && kLayout.kind === "identity";
    if (!best || cost(mask) < cost(best.mask) || (cost(mask) === cost(best.mask) && natural)) {
      best = candidate;
    }
  }
  return best!;
}

/**
 * A term with a hashBucket round: queries and keys in that round's bucket order. Its schedule
 * is data-dependent (the kernel reads each query tile's key range from the sort), so its
 * BlockMask lists no runs.
 */
function bucketComponent(
  atoms: Atom[],
  earlier: Component[],
  n: number,
  tiles: TileShape,
): Component {
  const round = atoms.find((a) => a.kind === "hashRound")!;
  const order = { buckets: round.buckets, seed: round.seed, round: round.round };
  const qTiles = Math.ceil(n / tiles.tileQ);
  const mask: BlockMask = {
    qTiles,
    kTiles: Math.ceil(n / tiles.tileK),
    ...tiles,
    offsets: new Uint32Array(qTiles + 1),
    kvStart: new Uint32Array(0),
    kvLength: new Uint32Array(0),
    partial: new Uint8Array(0),
  };
  return {
    atoms,
    exclusions: earlier.map((c) => c.atoms),
    qLayout: { kind: "sorted", side: "q", ...order },
    kLayout: { kind: "sorted", side: "k", ...order },
    mask,
  };
}

/** A lowRank term: queries in natural order against the rank's landmarks. */
function landmarkComponent(
  atoms: Atom[],
  earlier: Component[],
  n: number,
  tiles: TileShape,
): Component {
  const rank = atoms.find((a) => a.kind === "lowRank")!.rank;
  const { segment, count } = landmarkGeometry(n, rank);
  const kLayout: Layout = { kind: "landmarks", rank, segment, count };
  const exclusions = earlier.filter((c) =>
    c.kLayout.kind === "landmarks" && c.kLayout.rank === rank
  )
    .map((c) => c.atoms);
  const mask = landmarkBlockMask({ atoms, exclusions, n, ...tiles, segment, count });
  return { atoms, exclusions, qLayout: { kind: "identity" }, kLayout, mask };
}

/** A PARTIAL tile costs about one and a half FULL ones (the predicate per element). */
function cost(mask: BlockMask): number {
  const { visited, partial } = blockMaskCounts(mask);
  return visited + 0.5 * partial;
}

/**
 * Identity (or gathered global rows/columns; global columns also in natural order), and a
 * residue order per stride period and per constant divisor of `%` in a predicate (the first
 * two): in residue order `(q - k) % P` is constant on most tiles, so `(q - k) % P == 0` is
 * block-diagonal like `stride(P)`.
 */
function layoutCandidates(atoms: Atom[], n: number, tileK: number): [Layout, Layout][] {
  const rows = atoms.find((a) => a.kind === "globalRows");
  const cols = atoms.find((a) => a.kind === "globalCols");
  const q: Layout = rows ? { kind: "gather", tokens: rows.tokens } : { kind: "identity" };
  const k: Layout = cols ? { kind: "gather", tokens: cols.tokens } : { kind: "identity" };
  if (cols && !rows) {
    // Global columns in natural key order fuse with the other natural components. Tokens that
    // fill whole key tiles (BigBird's first 64) gather into those very tiles: the same mask, so
    // natural order alone. Tokens spread over more tiles than they fill are cheaper gathered.
    const natural: [Layout, Layout] = [q, { kind: "identity" }];
    const tilesHit = new Set(cols.tokens.map((t) => Math.floor(t / tileK))).size;
    if (tilesHit * tileK === cols.tokens.length) return [natural];
    return tilesHit === Math.ceil(cols.tokens.length / tileK) ? [natural, [q, k]] : [[q, k]];
  }
  const out: [Layout, Layout][] = [[q, k]];
  if (rows || cols) return out;
  const periods: number[] = [];
  for (const a of atoms) {
    if (a.kind === "stride") periods.push(a.period);
    if (a.kind === "predicate") {
      periods.push(...constantDivisors(predicateProgram(a), n).slice(0, 2));
    }
  }
  for (const period of new Set(periods)) {
    if (period >= 2 && period < n) {
      const residue: Layout = { kind: "residue", period };
      out.push([residue, residue]);
    }
  }
  return out;
}

/**
 * Tiles visited by the plan and the dense count (every branch visits its own tiles).
 * @param plan the plan
 * @returns visited, partial and dense tile counts
 * @example
 * ```ts
 * import { planPattern, planTileCounts } from "./plan.ts";
 * planTileCounts(planPattern({ kind: "dense" }, 128, { tileQ: 64, tileK: 32 })); // visited 8 of 8
 * ```
 */
export function planTileCounts(plan: Plan): { visited: number; partial: number; dense: number } {
  let visited = 0, partial = 0;
  for (const b of plan.branches) {
    for (const c of b.components) {
      const counts = blockMaskCounts(c.mask);
      visited += counts.visited;
      partial += counts.partial;
    }
  }
  const dense = plan.branches.length * Math.ceil(plan.n / plan.tiles.tileQ) *
    Math.ceil(plan.n / plan.tiles.tileK);
  return { visited, partial, dense };
}

/**
 * A readable summary: branches, components with their layouts, tiles visited.
 * @param plan the plan
 * @returns several lines of text
 * @example
 * ```ts
 * import { planPattern, planSummary } from "./plan.ts";
 * console.log(planSummary(planPattern({ kind: "ring", radius: 8 }, 256, { tileQ: 64, tileK: 32 })));
 * ```
 */
export function planSummary(plan: Plan): string {
  const lines: string[] = [];
  const { visited, partial, dense } = planTileCounts(plan);
  lines.push(
    `N=${plan.n}, tile ${plan.tiles.tileQ}x${plan.tiles.tileK}: ${visited} of ${dense} tiles ` +
      `visited (${pct(visited / dense)}), ${partial} partial` +
      (plan.branches.some((b) => b.components.some((c) => c.qLayout.kind === "sorted"))
        ? ", plus the hashBucket rounds' (read from the codes at run time)"
        : ""),
  );
  const q = plan.queries;
  if (plan.packed) {
    lines.push(
      `packed sequences: ${q?.count ?? plan.n} query rows and ${plan.n} key rows hold ` +
        "sequences laid end to end; the tiles are built for each call's lengths",
    );
  } else if (q) {
    lines.push(
      `queries: ${q.count} row(s) at positions ${q.offset}..${q.offset + q.count - 1} of the ` +
        `${plan.n} keys; each component runs only its query tiles that hold them`,
    );
  }
  plan.branches.forEach((b, i) => {
    const gate = plan.gates ? ` gate ${plan.gates[i]}` : "";
    lines.push(`branch ${i}: ${b.label}${gate}`);
    if (b.linear) {
      lines.push(
        `  not a softmax: φ(Q)ᵀS / φ(Q)ᵀz over ${
          b.linear.causal ? "keys k <= q" : "every key"
        }, as chunk sums, a scan over chunks and a pass per query row (no tiles; linear in N)`,
      );
    } else if (b.components.length === 0) lines.push("  (allows nothing)");
    b.components.forEach((c, j) => {
      const { visited, partial } = blockMaskCounts(c.mask);
      const excl = c.exclusions.length ? ` minus components 0..${c.exclusions.length - 1}` : "";
      const tiles = c.qLayout.kind === "sorted"
        ? "key tiles from the codes (each query tile's buckets, one range)"
        : `${visited} tiles (${partial} partial) in ${c.mask.kvStart.length} runs`;
      const run = q
        ? `; runs ${queryTiles(c.qLayout, plan.n, c.mask.tileQ, q).length} of ` +
          `${c.mask.qTiles} query tiles`
        : "";
      lines.push(
        `  component ${j}: ${c.atoms.map(atomLabel).join(" & ")}${excl}; ` +
          `layout q ${layoutLabel(c.qLayout)}, k ${layoutLabel(c.kLayout)}; ${tiles}${run}`,
      );
    });
  });
  return lines.join("\n");
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.01 ? 3 : 2)}%`;
}
