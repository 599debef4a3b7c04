// deno-lint-ignore-file no-regex-spaces -- the patterns match the generated WGSL's indentation
/**
 * The WGSL of TypeScript predicates and score modifiers: readable functions under their source,
 * helpers declared once and only when used, `h` and `b` passed only where read, the score
 * modifier applied in the natural-log domain, and no change to kernels without them.
 */
import assert from "node:assert/strict";
import { compile } from "../../compiler/compile.ts";
import type { Pattern } from "../../dsl/schema.ts";

const shape = { batch: 2, headsQ: 2, headsKV: 2, seqLen: 64, headDim: 16 };
const kernel = (pattern: Pattern) => compile(pattern, { shape, unroll: false }).passes[0].wgsl;
const count = (text: string, part: string) => text.split(part).length - 1;

Deno.test("a predicate becomes one function under its source; % uses floorMod only", () => {
  const wgsl = kernel({
    kind: "predicate",
    expr: "(q, k) => {\n  const d = q - k;\n  return d % 3 == 0 && Math.abs(d) <= W;\n}",
    constants: { W: 9 },
  });
  assert.match(
    wgsl,
    /\/\/ Predicate written in TypeScript:\n\/\/   \(q, k\) => \{\n\/\/     const d = q - k;\n\/\/     return d % 3 == 0 && Math\.abs\(d\) <= W;\n\/\/   \}\nfn predicate_[0-9a-f]{6}\(q: i32, k: i32\) -> bool \{\n  let v_d = \(q - k\);\n  return \(\(floorMod\(v_d, 3\) == 0\) && \(abs\(v_d\) <= 9\)\);\n\}/,
  );
  assert.equal(count(wgsl, "fn floorMod("), 1);
  assert.equal(count(wgsl, "fn floorDiv("), 0);
  assert.match(
    wgsl,
    /fn allowed\(q: i32, k: i32\) -> bool \{\n  let own = predicate_[0-9a-f]{6}\(q, k\);/,
  );
  assert.ok(!wgsl.includes("let head"), "no head or batch when nothing reads them");
  assert.equal(
    kernel({ kind: "predicate", expr: "(q - k) % 3 == 0" }),
    kernel({
      kind: "predicate",
      expr: "(q - k) % 3 == 0",
    }),
  );
});

Deno.test("h and b reach predicates that read them; floor division has its helper", () => {
  const wgsl = kernel({ kind: "predicate", expr: "Math.floor((k - q) / 4) != h + b" });
  assert.match(wgsl, /fn predicate_[0-9a-f]{6}\(q: i32, k: i32, h: i32, b: i32\) -> bool/);
  assert.match(wgsl, /return \(floorDiv\(\(k - q\), 4\) != \(h \+ b\)\);/);
  assert.match(wgsl, /fn allowed\(q: i32, k: i32, h: i32, b: i32\) -> bool/);
  assert.match(wgsl, /let head = i32\(bh % HQ\);.*\n  let batch = i32\(bh \/ HQ\);/);
  assert.match(wgsl, /allowed\(q0, k0, head, batch\)/);
});

Deno.test("a scored pattern applies its modifier to s = raw score, back in the exp2 domain", () => {
  const wgsl = kernel({
    kind: "scored",
    pattern: { kind: "causal" },
    score: {
      expr: "(s, q, k, h) => s - slopes[h] * Math.pow(q - k, 2) + 0.5",
      constants: { slopes: [0.5, 0.25] },
    },
  });
  assert.match(wgsl, /const slopes_[0-9a-f]{6} = array<f32, 2>\(0\.5, 0\.25\);/);
  assert.match(
    wgsl,
    /fn scoreModifier\(s: f32, q: i32, k: i32, h: i32, b: i32\) -> f32 \{\n  return \(\(s - \(slopes_[0-9a-f]{6}\[h\] \* \(f32\(\(q - k\)\) \* f32\(\(q - k\)\)\)\)\) \+ 0\.5\);/,
  );
  assert.match(
    wgsl,
    /s0_0 = scoreModifier\(s0_0 \* LN2, max\(q0, 0\), max\(k0, 0\), head, batch\) \* LOG2E;/,
  );
  // Kernels without predicates or scores are untouched.
  const plain = kernel({ kind: "causal" });
  for (const part of ["scoreModifier", "LOG2E", "let head", "predicate_", "floorMod"]) {
    assert.ok(!plain.includes(part), part);
  }
});

Deno.test("registered masks are functions of their own; tanh is clamped against overflow", () => {
  const wgsl = kernel({
    kind: "scored",
    pattern: {
      kind: "predicate",
      expr: "(q, k) => near(q, k) || near(k, 0)",
      masks: { near: { expr: "(a, b) => Math.abs(a - b) <= 2" } },
    },
    score: { expr: "(s) => 4 * Math.tanh(s / 4)" },
  });
  assert.equal(count(wgsl, "fn mask_near_"), 1);
  assert.match(
    wgsl,
    /fn mask_near_[0-9a-f]{6}\(v_a: i32, v_b: i32\) -> bool \{\n  return \(abs\(\(v_a - v_b\)\) <= 2\);/,
  );
  assert.match(
    wgsl,
    /return \(mask_near_[0-9a-f]{6}\(q, k\) \|\| mask_near_[0-9a-f]{6}\(k, 0\)\);/,
  );
  assert.match(wgsl, /return \(4\.0 \* tanh\(clamp\(\(s \/ 4\.0\), -10\.0, 10\.0\)\)\);/);
});
