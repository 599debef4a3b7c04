/**
 * Predicates and score modifiers written in TypeScript: what the subset accepts, the JSON the
 * builders produce, and the one-line errors (line and construct) for what it refuses.
 */
import assert from "node:assert/strict";
import { mask, registerMask, score, scored, stride, union } from "../../dsl/builders.ts";
import { PatternError } from "../../core/errors.ts";
import { inputsOf } from "../../dsl/expression.ts";
import { compileExpression } from "../../dsl/expression_parse.ts";
import { parsePattern } from "../../dsl/schema.ts";

/** The PatternError message of `f`, failing when `f` does not throw one. */
function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PatternError, `expected a PatternError, got ${e}`);
    return e.message;
  }
  assert.fail("expected a PatternError");
}

Deno.test("mask() builds the JSON predicate from the function's source", () => {
  const W = 8;
  const p = mask((q, k) => Math.abs(q - k) <= W, { constants: { W } });
  assert.equal(p.kind, "predicate");
  assert.deepEqual((p as { constants?: unknown }).constants, { W: 8 });
  // The stored source is the function's text; it parses back to the same pattern.
  assert.deepEqual(parsePattern(JSON.parse(JSON.stringify(p))), p);
});

Deno.test("refused: a loop, a string operation and Date.now() name their line and construct", () => {
  const loop = errorOf(() =>
    mask((q, k) => {
      const d = q - k;
      for (;;) {
        break;
      }
      return d > 0;
    })
  );
  assert.match(loop, /^Cannot compile pattern: pattern\.expr: line 3: a for loop is not allowed/);
  const text = errorOf(() => mask((q, k) => String(q).length > k));
  assert.match(text, /pattern\.expr: line 1: the property access String\(q\)\.length is not/);
  const concat = errorOf(() => mask((q, k) => ("w" + q).length > k));
  assert.match(concat, /pattern\.expr: line 1: a string is not allowed/);
  const clock = errorOf(() =>
    mask((q, k) => {
      const t = Date.now();
      return t > q + k;
    })
  );
  assert.match(clock, /pattern\.expr: line 2: the call Date\.now\(\) is not allowed/);
});

/** Source outside the subset, and the message it must get (after "line L: "). */
const REFUSED: [string, RegExp][] = [
  ["(q, k) => { let d = q - k; return d > 0; }", /line 1: let \(use const/],
  ["(q, k) => { var d = q; return d > k; }", /line 1: var \(use const/],
  ["(q, k) => {\n  const d = q;\n  d = k;\n  return d > 0;\n}", /line 3: an assignment \(=\)/],
  ["(q, k) => this.w > q", /line 1: this is not allowed/],
  ["(q, k) => [1, 2][q] > k", /line 1: an array literal is not allowed/],
  ["(q, k) => q / 2 > k", /line 1: \/ is real division; a predicate divides integers with/],
  ["(q, k) => q > 1.5", /line 1: 1\.5 is not an integer: predicates compute on integers only/],
  ["(q, k) => Math.exp(q) > k", /line 1: Math\.exp is for score modifiers/],
  ["(q, k) => Math.random() > 0", /line 1: Math\.random is not allowed/],
  ["(q, k) => q && k", /line 1: && needs booleans, got an integer and an integer/],
  ["(q, k) => q - k", /line 1: a predicate must return a boolean/],
  ["(q, k) => unknownMask(q, k)", /line 1: call to unknown function unknownMask\(\)/],
  ["(q, k) => q > W", /line 1: unknown name W \(in scope: q, k; pass other values in constants/],
  ["(q, k) => {\n  if (q > k) return true;\n  return false;\n}", /line 2: an if statement/],
  ["(q, k) => (q ^ k) == 0", /line 1: the operator \^ is not allowed/],
  ["(q, k) => { const d = q - k; }", /line 1: the function must end with return/],
  ["(q, k) => { while (q > k) {} return true; }", /line 1: a while loop is not allowed/],
  ["(q, k, n, h, b, extra) => q > k", /line 1: too many parameters: at most 5/],
  ["(q, k) => q = k", /line 1: an assignment \(=\)/],
  ["(q, k) => q++ > k", /line 1: an increment or decrement/],
  ["(q, k) => `${q}` == `${k}`", /line 1: a template string/],
  ["(q, k) => new Date() > q", /line 1: new is not allowed/],
  ["(q, k) => ((q) => q > 0)(k)", /line 1: a nested function/],
  ["(q, k) => q >", /line 1: syntax error: Expression expected/],
];

Deno.test("refused constructs name the line and the construct", () => {
  for (const [expr, message] of REFUSED) {
    const got = errorOf(() => parsePattern({ kind: "predicate", expr }));
    assert.match(got, /^Cannot compile pattern: pattern\.expr: line \d+: /, expr);
    assert.match(got, message, `${expr}: ${got}`);
  }
});

Deno.test("the path names where the predicate sits; scores are checked too", () => {
  const bad = { kind: "predicate", expr: "q > k ? 1 : true" };
  assert.match(
    errorOf(() => parsePattern({ kind: "union", of: [{ kind: "causal" }, bad] })),
    /pattern\.of\[1\]\.expr: line 1: \?: arms must both be booleans or both numbers/,
  );
  assert.match(
    errorOf(() =>
      parsePattern({ kind: "scored", pattern: { kind: "causal" }, score: { expr: "s > 0" } })
    ),
    /pattern\.score\.expr: line 1: a score modifier must return a number/,
  );
  assert.match(
    errorOf(() =>
      parsePattern({
        kind: "union",
        of: [{ kind: "scored", pattern: { kind: "causal" }, score: { expr: "s" } }],
      })
    ),
    /pattern\.of\[0\]: "scored" may only be the outermost pattern or a gated branch/,
  );
  // A gated branch may be scored.
  parsePattern({
    kind: "gated",
    branches: [{ kind: "scored", pattern: { kind: "causal" }, score: { expr: "s * 0.5" } }],
  });
});

Deno.test("bare expressions and functions bind q, k, n, h, b in the builder's order", () => {
  const bare = compileExpression({ expr: "(q - k) % n == h" }, "mask");
  assert.deepEqual([...inputsOf(bare)].sort(), ["h", "k", "n", "q"]);
  // Parameters are positional: (i, j, size, head, batch) are q, k, n, h, b.
  const renamed = compileExpression({ expr: "(i, j, size, head, batch) => i + batch < j" }, "mask");
  assert.deepEqual([...inputsOf(renamed)].sort(), ["b", "k", "q"]);
  // TypeScript annotations in JSON source are ignored.
  const typed = compileExpression(
    { expr: "(q: number, k: number) => (q as number) >= k!" },
    "mask",
  );
  assert.deepEqual([...inputsOf(typed)].sort(), ["k", "q"]);
  const s = compileExpression({ expr: "(x, q, k) => x - Math.abs(q - k)" }, "score");
  assert.deepEqual([...inputsOf(s)].sort(), ["k", "q", "s"]);
});

Deno.test("types: Math.floor of an integer division is integer division; reals only in scores", () => {
  const p = compileExpression({ expr: "Math.floor((q - k) / 3) == -1" }, "mask");
  assert.equal(p.result.op, "binary");
  const left = (p.result as { a: { op: string; fn?: string; type: string } }).a;
  assert.deepEqual([left.op, left.fn, left.type], ["binary", "floorDiv", "int"]);
  const s = compileExpression({ expr: "(s, q, k) => s / 2 + (q - k) / 4" }, "score");
  assert.equal(s.result.type, "real");
  assert.match(
    errorOf(() => compileExpression({ expr: "q % 1.5 == 0" }, "mask")),
    /1\.5 is not an integer/,
  );
  assert.match(
    errorOf(() => compileExpression({ expr: "(s) => s % 2" }, "score")),
    /% needs integers, got s % 2/,
  );
  assert.match(
    errorOf(() => compileExpression({ expr: "(s, q, k, h) => t[q - k]" }, "score")),
    /line 1: indexing is allowed only on a captured constant array, got t\[q - k\]/,
  );
  assert.match(
    errorOf(() =>
      compileExpression({ expr: "(s, q) => s + t[s]", constants: { t: [1, 2] } }, "score")
    ),
    /an array index must be an integer, got a real/,
  );
  assert.match(
    errorOf(() => compileExpression({ expr: "q > W", constants: { W: 0.5 } }, "mask")),
    /constant W = 0\.5 is not an integer/,
  );
});

Deno.test("registered masks are embedded in the pattern, so its JSON stands alone", () => {
  const near = registerMask("nearTest", (a: number, b: number) => Math.abs(a - b) <= 2);
  assert.equal(near(1, 3), true); // still a plain function
  registerMask("nearOrStep", (a: number, b: number) => nearTest(a, b) || (a - b) % 8 == 0);
  const p = mask((q, k) => nearOrStep(q, k) && k <= q);
  const masks = (p as { masks?: Record<string, unknown> }).masks!;
  assert.deepEqual(Object.keys(masks).sort(), ["nearOrStep", "nearTest"]);
  const program = compileExpression(p as { expr: string }, "mask");
  assert.deepEqual(Object.keys(program.masks).sort(), ["nearOrStep", "nearTest"]);
  assert.deepEqual(program.masks.nearTest.params, ["a", "b"]);
  // The same name with another body is refused; the same definition again is fine.
  registerMask("nearTest", (a: number, b: number) => Math.abs(a - b) <= 2);
  assert.match(
    errorOf(() => registerMask("nearTest", (a: number, b: number) => a == b)),
    /"nearTest" is already registered with another definition/,
  );
  assert.match(
    errorOf(() => registerMask("bad", (a: number) => a > 0.5)),
    /Cannot register mask: mask bad: line 1: 0\.5 is not an integer/,
  );
  // Arity and recursion are checked where the call is.
  assert.match(
    errorOf(() =>
      parsePattern({
        kind: "predicate",
        expr: "(q, k) => twice(q)",
        masks: { twice: { expr: "(a, b) => a == b" } },
      })
    ),
    /line 1: mask twice takes 2 arguments, got 1/,
  );
  assert.match(
    errorOf(() =>
      parsePattern({
        kind: "predicate",
        expr: "(q, k) => loopy(q, k)",
        masks: { loopy: { expr: "(a, b) => loopy(b, a)" } },
      })
    ),
    /mask loopy: line 1: mask loopy calls itself \(loopy -> loopy\)/,
  );
});

// Declared for the TypeScript checker only: the registered sources call them by name.
declare function nearTest(a: number, b: number): boolean;
declare function nearOrStep(a: number, b: number): boolean;

Deno.test("score() and scored() build the JSON wrapper; constants must be numbers", () => {
  const slopes = [0.5, 0.25];
  const alibi = score((s, q, k, h) => s - slopes[h] * Math.abs(q - k), { constants: { slopes } });
  const p = scored(union(mask((q, k) => k <= q), stride(4)), alibi);
  assert.equal(p.kind, "scored");
  assert.deepEqual((p as { score: unknown }).score, {
    expr: alibi.expr,
    constants: { slopes: [0.5, 0.25] },
  });
  assert.match(
    errorOf(() =>
      parsePattern({
        kind: "predicate",
        expr: "q > W",
        constants: { W: "3" },
      })
    ),
    /pattern\.constants\.W: constants must map names to numbers or arrays of numbers/,
  );
  assert.match(
    errorOf(() => compileExpression({ expr: "q > q", constants: { q: 1 } }, "mask")),
    /constant "q" has the name of a parameter or input/,
  );
});
