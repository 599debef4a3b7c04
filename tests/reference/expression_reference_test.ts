/**
 * The reference's interpreter for TypeScript predicates and scores: Weft's integer semantics
 * (the mathematical modulo, floor division) on negative operands, and the reference's output
 * for predicates that read the head and for scored patterns, computed here by hand.
 */
import assert from "node:assert/strict";
import { compileExpression } from "../../dsl/expression_parse.ts";
import type { Pattern } from "../../dsl/schema.ts";
import {
  floorMod,
  predicateFunction,
  scoreDerivativeFunction,
  scoreFunction,
} from "../../runtime/reference/expression_eval.ts";
import { allowedMask, reference } from "../../runtime/reference/mod.ts";
import { normals } from "../../runtime/seeded_random.ts";

Deno.test("% is the mathematical modulo and Math.floor(a / b) floor division, any signs", () => {
  const mod = predicateFunction(compileExpression({ expr: "(q - k) % 5 == 3" }, "mask"), 64);
  // JavaScript's -2 % 5 is -2; DESIGN §2's mod is 3.
  assert.equal(mod(0, 2), true);
  assert.equal(mod(3, 0), true);
  assert.equal(mod(0, 3), false);
  const div = predicateFunction(
    compileExpression({ expr: "Math.floor((q - k) / 4) == -1" }, "mask"),
    64,
  );
  assert.deepEqual([1, 2, 3, 4, 5].map((k) => div(0, k)), [true, true, true, true, false]);
  for (const [a, m, want] of [[-7, 3, 2], [7, -3, 1], [-6, 3, 0], [-7, -3, 2], [0, 4, 0]]) {
    assert.equal(floorMod(a, m), want, `${a} mod ${m}`);
  }
  // Negative divisors: the modulo stays in [0, |m|).
  const negative = predicateFunction(compileExpression({ expr: "(q - k) % -4 == 2" }, "mask"), 64);
  assert.equal(negative(0, 2), true);
});

Deno.test("registered masks, locals, ?: and min/max evaluate as written", () => {
  const p = compileExpression({
    expr:
      "(q, k, n) => {\n  const d = Math.abs(q - k);\n  return near(d, W) ? true : Math.max(q, k) == n - 1;\n}",
    constants: { W: 2 },
    masks: { near: { expr: "(d, w) => d <= w" } },
  }, "mask");
  const f = predicateFunction(p, 10);
  assert.deepEqual([f(5, 3), f(5, 2), f(0, 9), f(9, 0), f(1, 8)], [true, false, true, true, false]);
});

Deno.test("a predicate that reads h gives each head its own allowed set", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 12, headDim: 4 };
  const pattern: Pattern = {
    kind: "predicate",
    expr: "(q, k, n, h) => (q - k) % 2 == h && k <= q",
  };
  const next = normals(5);
  const q = Array.from({ length: 2 * 12 * 4 }, next);
  const k = Array.from({ length: 12 * 4 }, next);
  const v = Array.from({ length: 12 * 4 }, next);
  const { o, lse } = reference({ pattern, shape, q, k, v });
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 12; i++) {
      // Head 0 sees even distances back, head 1 odd ones.
      const keys = Array.from({ length: i + 1 }, (_, j) => j).filter((j) => (i - j) % 2 === h);
      const row = attend(q.slice((h * 12 + i) * 4, (h * 12 + i + 1) * 4), k, v, keys, (s) => s);
      assertNear(lse[h * 12 + i], row.lse, `lse h=${h} q=${i}`);
      for (let d = 0; d < 4; d++) assertNear(o[(h * 12 + i) * 4 + d], row.o[d], `o h=${h} q=${i}`);
    }
  }
  // allowedMask evaluates one head at a time.
  assert.equal(allowedMask(pattern, 12, { head: 1 })(3, 0), true);
  assert.equal(allowedMask(pattern, 12, { head: 0 })(3, 0), false);
});

Deno.test("scored: every allowed score passes through the modifier, with per-head constants", () => {
  const shape = { batch: 2, headsQ: 2, headsKV: 2, seqLen: 9, headDim: 4 };
  const slopes = [0.5, 0.125];
  const pattern: Pattern = {
    kind: "scored",
    pattern: { kind: "window", left: 3, right: 1 },
    score: {
      expr: "(s, q, k, h, b) => s - slopes[h] * Math.abs(q - k) + b",
      constants: { slopes },
    },
  };
  const next = normals(6);
  const size = 2 * 2 * 9 * 4;
  const [q, k, v] = [0, 1, 2].map(() => Array.from({ length: size }, next));
  const { o, lse } = reference({ pattern, shape, q, k, v });
  const modifier = scoreFunction(compileExpression(pattern.score, "score"), 9);
  for (let b = 0; b < 2; b++) {
    for (let h = 0; h < 2; h++) {
      const base = (b * 2 + h) * 9;
      for (let i = 0; i < 9; i++) {
        const keys = Array.from({ length: 9 }, (_, j) => j).filter((j) => i - 3 <= j && j <= i + 1);
        const row = attend(
          q.slice((base + i) * 4, (base + i + 1) * 4),
          k.slice(base * 4, (base + 9) * 4),
          v.slice(base * 4, (base + 9) * 4),
          keys,
          (s, j) => s - slopes[h] * Math.abs(i - j) + b,
        );
        assertNear(lse[base + i], row.lse, `lse b=${b} h=${h} q=${i}`);
        assertNear(modifier(1, i, 0, h, b), 1 - slopes[h] * i + b, "score function");
        for (let d = 0; d < 4; d++) assertNear(o[(base + i) * 4 + d], row.o[d], `o q=${i}`);
      }
    }
  }
});

/** One softmax over `keys` with scores `score(q·k / 2, key)` (D = 4: scale 1/2). */
function attend(
  qRow: number[],
  k: number[],
  v: number[],
  keys: number[],
  score: (s: number, key: number) => number,
) {
  const s = keys.map((j) => score(qRow.reduce((a, x, d) => a + x * k[j * 4 + d], 0) / 2, j));
  const weights = s.map(Math.exp);
  const total = weights.reduce((a, w) => a + w, 0);
  // An empty row is o = 0, lse = -Infinity (DESIGN §1).
  const o = [0, 1, 2, 3].map((d) =>
    total && keys.reduce((a, j, x) => a + weights[x] * v[j * 4 + d], 0) / total
  );
  return { o, lse: keys.length ? Math.log(total) : -Infinity };
}

function assertNear(actual: number, expected: number, what: string): void {
  if (expected === -Infinity) return assert.equal(actual, expected, what);
  assert.ok(Math.abs(actual - expected) <= 1e-12, `${what}: ${actual} vs ${expected}`);
}

Deno.test("a score's derivative in s, from the same program, matches finite differences", () => {
  const exprs = [
    "s * s * s - q",
    "Math.exp(-s) + Math.log(2 + s * s)",
    "Math.tanh(s / 2) * Math.sqrt(1 + s * s)",
    "Math.pow(1 + s * s, 1.5) - Math.pow(2, s)",
    "Math.min(s, 0.5) + Math.max(s * 2, -1) + Math.abs(s - 0.25)",
    "q > k ? s / (1 + Math.abs(k)) : -s",
    "(k % 3) * s + Math.floor(q / 2) - Math.floor(s * 2)",
    "(s, q) => { const t = s * 2; const u = t * t; return u - t + q; }",
  ];
  for (const expr of exprs) {
    const program = compileExpression({ expr }, "score");
    const f = scoreFunction(program, 16), df = scoreDerivativeFunction(program, 16);
    for (const s of [-1.7, -0.3, 0.2, 0.9, 1.3]) {
      for (const [q, k] of [[3, 1], [1, 4]]) {
        const h = 1e-6;
        const fd = (f(s + h, q, k, 0, 0) - f(s - h, q, k, 0, 0)) / (2 * h);
        const got = df(s, q, k, 0, 0);
        assert.ok(Math.abs(fd - got) <= 1e-6 * Math.max(1, Math.abs(fd)), `${expr} at s=${s}`);
      }
    }
  }
});
