/**
 * Interval classification of TypeScript predicates against the element-level truth: over many
 * random predicates and tiles (identity and residue layouts, several heads and batches), a
 * tile is never FULL when some pair in it is refused and never EMPTY when some pair is
 * allowed. Then the schedules built from it (unions with stride, causal, global, ...) are
 * checked pair by pair, and the shape-time domain checks refuse what the kernels could not
 * compute exactly.
 */
import assert from "node:assert/strict";
import { Coverage } from "../../compiler/atoms.ts";
import { forEachKeyTile } from "../../compiler/block_mask.ts";
import { checkExpressionDomain } from "../../dsl/expression_domain.ts";
import { type Layout, layoutPositions, type TileSpan, tileSpans } from "../../compiler/layout.ts";
import { planPattern, planTileCounts } from "../../compiler/plan.ts";
import { classifyPredicate } from "../../compiler/predicate_classify.ts";
import { PlanError } from "../../core/errors.ts";
import { compileExpression } from "../../dsl/expression_parse.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { predicateFunction } from "../../runtime/reference/expression_eval.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";
import { componentAllows } from "../../cli/_component_allows.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";
import { randomPredicate } from "./_random_predicate.ts";

type PredicateAtom = {
  kind: "predicate";
  expr: string;
  masks?: Record<string, { expr: string }>;
};

/** Tallies of verdicts, to see that the analysis decides tiles, not just stays sound. */
interface Tally {
  boxes: number;
  uniform: number;
  decided: number;
}

/**
 * Classifies the tile of positions `qs x ks` (spans from a layout) and checks the verdict
 * against every pair, for every head and batch in the domain.
 */
function checkTile(
  atom: PredicateAtom,
  tile: { qSpan: TileSpan; kSpan: TileSpan; qPositions: number[]; kPositions: number[] },
  ctx: { n: number; qLayout: Layout; kLayout: Layout; domain: { batch: number; headsQ: number } },
  tally: Tally,
): void {
  const verdict = classifyPredicate(atom, tile.qSpan, tile.kSpan, ctx);
  const program = compileExpression(atom, "mask");
  let any = false, all = true;
  for (let b = 0; b < ctx.domain.batch; b++) {
    for (let h = 0; h < ctx.domain.headsQ; h++) {
      const allowed = predicateFunction(program, ctx.n, h, b);
      for (const q of tile.qPositions) {
        for (const k of tile.kPositions) {
          const a = allowed(q, k);
          any ||= a;
          all &&= a;
        }
      }
    }
  }
  const where = `${atom.expr} at N=${ctx.n}, q ${tile.qPositions}, k ${tile.kPositions}`;
  assert.ok(verdict !== Coverage.Full || all, `FULL but a pair is refused: ${where}`);
  assert.ok(verdict !== Coverage.Empty || !any, `EMPTY but a pair is allowed: ${where}`);
  tally.boxes++;
  if (all || !any) tally.uniform++;
  if (verdict !== Coverage.Partial) tally.decided++;
}

const span = (lo: number, hi: number): TileSpan => ({
  lo,
  hi,
  contiguous: true,
  classLo: -1,
  classHi: -1,
});
const range = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
const identity: Layout = { kind: "identity" };

Deno.test("interval verdicts are sound on random predicates and identity tiles", () => {
  const rand = mulberry32(77);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const tally: Tally = { boxes: 0, uniform: 0, decided: 0 };
  for (let i = 0; i < 400; i++) {
    const atom: PredicateAtom = { kind: "predicate", expr: randomPredicate(rand) };
    const n = int(1, 120);
    const ctx = { n, qLayout: identity, kLayout: identity, domain: { batch: 1, headsQ: 1 } };
    for (let t = 0; t < 12; t++) {
      const q0 = int(0, n - 1), k0 = int(0, n - 1);
      const q1 = Math.min(n - 1, q0 + int(0, 15)), k1 = Math.min(n - 1, k0 + int(0, 15));
      const tile = {
        qSpan: span(q0, q1),
        kSpan: span(k0, k1),
        qPositions: range(q0, q1),
        kPositions: range(k0, k1),
      };
      checkTile(atom, tile, ctx, tally);
    }
  }
  // Sound is not enough: most tiles whose pairs all agree must be decided, not left PARTIAL.
  assert.ok(tally.decided > 0.8 * tally.uniform, JSON.stringify(tally));
});

Deno.test("interval verdicts are sound on residue tiles, and for every head and batch", () => {
  const rand = mulberry32(78);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const tally: Tally = { boxes: 0, uniform: 0, decided: 0 };
  for (let i = 0; i < 250; i++) {
    const headBatch = i % 2 === 1;
    const atom: PredicateAtom = { kind: "predicate", expr: randomPredicate(rand, { headBatch }) };
    if (i % 5 === 2) {
      // A registered mask whose % divisor and dividend come through its parameters.
      atom.expr = `(${atom.expr}) ${rand() < 0.5 ? "&&" : "||"} step(q - k, ${int(2, 4)})`;
      atom.masks = { step: { expr: "(d, p) => d % p == 1" } };
    }
    const n = int(2, 90);
    const layout: Layout = i % 3 === 0
      ? identity
      : { kind: "residue", period: [2, 3, 4, 8, 16, 17][int(0, 5)] };
    if (layout.kind === "residue" && layout.period >= n) continue;
    const [tileQ, tileK] = [[4, 4], [8, 4], [16, 8]][int(0, 2)];
    const ctx = {
      n,
      qLayout: layout,
      kLayout: layout,
      domain: headBatch ? { batch: 2, headsQ: 3 } : { batch: 1, headsQ: 1 },
    };
    const positions = Array.from(layoutPositions(layout, n));
    const qSpans = tileSpans(layout, n, tileQ), kSpans = tileSpans(layout, n, tileK);
    for (let t = 0; t < 6; t++) {
      const a = int(0, qSpans.length - 1), b = int(0, kSpans.length - 1);
      const tile = {
        qSpan: qSpans[a],
        kSpan: kSpans[b],
        qPositions: positions.slice(a * tileQ, (a + 1) * tileQ),
        kPositions: positions.slice(b * tileK, (b + 1) * tileK),
      };
      checkTile(atom, tile, ctx, tally);
    }
  }
  assert.ok(tally.decided > 0.8 * tally.uniform, JSON.stringify(tally));
});

Deno.test("(q - k) % P == 0 is exact per tile in residue order, as cheap as stride(P)", () => {
  const n = 4096, tiles = { tileQ: 64, tileK: 32 };
  const predicate: Pattern = { kind: "predicate", expr: "(q, k) => (q - k) % 16 == 0" };
  const plan = planPattern(predicate, n, tiles);
  const component = plan.branches[0].components[0];
  assert.deepEqual(component.qLayout, { kind: "residue", period: 16 });
  const own = planTileCounts(plan), stride = planTileCounts(planPattern(stride16, n, tiles));
  assert.equal(own.visited, stride.visited);
  assert.equal(own.partial, stride.partial);
  // A key tile of k - q's own class, for a query tile of one class: every pair is allowed.
  const g = classifyPredicate(
    predicate as PredicateAtom,
    { lo: 5, hi: 4085, contiguous: false, classLo: 5, classHi: 5 },
    { lo: 21, hi: 3957, contiguous: false, classLo: 5, classHi: 5 },
    { n, qLayout: component.qLayout, kLayout: component.kLayout },
  );
  assert.equal(g, Coverage.Full);
});
const stride16: Pattern = { kind: "stride", period: 16 };

/** Every pair: components partition the truth, allowed pairs are visited, FULL tiles allowed. */
function checkSchedules(pattern: Pattern, n: number, tileQ: number, tileK: number): void {
  const plan = planPattern(pattern, n, { tileQ, tileK });
  const truth = allowedMask(pattern, n);
  const where = `${JSON.stringify(pattern)} N=${n} tile ${tileQ}x${tileK}`;
  const allows = plan.branches[0].components.map((c) => componentAllows(c, n));
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < n; k++) {
      const owners = allows.filter((a) => a(q, k)).length;
      assert.equal(owners, truth(q, k) ? 1 : 0, `${where}: (${q}, ${k}) has ${owners} owners`);
    }
  }
  plan.branches[0].components.forEach((c, j) => {
    const qPos = layoutPositions(c.qLayout, n), kPos = layoutPositions(c.kLayout, n);
    const m = c.mask;
    for (let t = 0; t < m.qTiles; t++) {
      const kinds = new Map<number, boolean>();
      forEachKeyTile(m, t, (kt, partial) => kinds.set(kt, partial));
      for (let kt = 0; kt < m.kTiles; kt++) {
        let any = false, all = true;
        for (let i = t * tileQ; i < Math.min(qPos.length, (t + 1) * tileQ); i++) {
          for (let x = kt * tileK; x < Math.min(kPos.length, (kt + 1) * tileK); x++) {
            const a = allows[j](qPos[i], kPos[x]);
            any ||= a;
            all &&= a;
          }
        }
        assert.ok(!any || kinds.has(kt), `${where}: tile (${t}, ${kt}) skipped`);
        assert.ok(kinds.get(kt) !== false || all, `${where}: tile (${t}, ${kt}) wrongly FULL`);
      }
    }
  });
}

Deno.test("schedules with predicates in unions and intersections match the reference", () => {
  const rand = mulberry32(79);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const others: Pattern[] = [
    { kind: "stride", period: 5 },
    { kind: "causal" },
    { kind: "window", left: 6, right: 2 },
    { kind: "global", tokens: [0, 7] },
    { kind: "ring", radius: 3 },
  ];
  for (let i = 0; i < 60; i++) {
    const n = int(8, 70);
    const predicate: Pattern = { kind: "predicate", expr: randomPredicate(rand) };
    const other = others[int(0, others.length - 1)];
    const pattern: Pattern = i % 3 === 0
      ? predicate
      : { kind: i % 3 === 1 ? "union" : "intersect", of: [other, predicate] };
    const [tq, tk] = [[4, 4], [8, 4], [16, 8]][int(0, 2)];
    checkSchedules(pattern, n, tq, tk);
  }
});

Deno.test("domain checks: i32 overflow, division by 0, indices and log are refused per shape", () => {
  const small = { n: 1024, batch: 1, headsQ: 4 };
  const refuse = (p: Pattern, domain: typeof small, message: RegExp) =>
    assert.throws(() => checkExpressionDomain(p, domain), (e: Error) => {
      assert.ok(e instanceof PlanError, String(e));
      assert.match(e.message, message);
      return true;
    });
  const product: Pattern = { kind: "predicate", expr: "(q, k) =>\n  q * k < 100" };
  checkExpressionDomain(product, small);
  refuse(
    product,
    { ...small, n: 65536 },
    /^Cannot plan pattern: pattern\.expr: line 2: q \* k may leave the i32 range the kernels compute in \(its range is \[0, 4294836225\]\) at N=65536/,
  );
  refuse(
    { kind: "predicate", expr: "k > 0 && q % k == 0" },
    small,
    /line 1: q % k may divide by 0 \(the divisor's range is \[0, 1023\]\)/,
  );
  checkExpressionDomain({ kind: "predicate", expr: "q % (k + 1) == 0" }, small);
  const alibi: Pattern = {
    kind: "scored",
    pattern: { kind: "causal" },
    score: { expr: "(s, q, k, h) => s - slopes[h] * (q - k)", constants: { slopes: [1, 2, 3, 4] } },
  };
  checkExpressionDomain(alibi, small);
  refuse(
    alibi,
    { ...small, headsQ: 8 },
    /pattern\.score\.expr: line 1: slopes\[h\] may index outside slopes \(4 entries; the index's range is \[0, 7\]\)/,
  );
  refuse(
    {
      kind: "gated",
      branches: [{ kind: "scored", pattern: { kind: "dense" }, score: { expr: "Math.log(s)" } }],
    },
    small,
    /pattern\.branches\[0\]\.score\.expr: line 1: Math\.log\(s\) needs a positive argument/,
  );
  refuse(
    {
      kind: "predicate",
      expr: "(q, k) => big(q, k)",
      masks: { big: { expr: "(a, b) =>\n  a * b * 4 > 0" } },
    },
    { ...small, n: 40000 },
    /pattern\.expr: mask big: line 2: a \* b \* 4 may leave the i32 range/,
  );
});
