import assert from "node:assert/strict";
import * as w from "../../dsl/builders.ts";
import { PatternError } from "../../core/errors.ts";
import { parsePattern, type Pattern } from "../../dsl/schema.ts";

/** One valid pattern of every kind, with the builder call that must produce it. */
const VALID: { json: unknown; built: () => Pattern }[] = [
  { json: { kind: "dense" }, built: () => w.dense() },
  { json: { kind: "causal" }, built: () => w.causal() },
  { json: { kind: "window", left: 16, right: 3 }, built: () => w.window(16, 3) },
  { json: { kind: "ring", radius: 0 }, built: () => w.ring(0) },
  { json: { kind: "stride", period: 7 }, built: () => w.stride(7) },
  { json: { kind: "global", tokens: [0, 5, 99] }, built: () => w.global([0, 5, 99]) },
  {
    json: { kind: "random", blocks: 3, blockSize: 24, seed: 4294967295 },
    built: () => w.random({ blocks: 3, blockSize: 24, seed: 4294967295 }),
  },
  {
    json: { kind: "select", blockSize: 64, blocks: 16, initial: 1, local: 2 },
    built: () => w.select({ blockSize: 64, blocks: 16, initial: 1, local: 2 }),
  },
  {
    json: { kind: "select", blockSize: 1, blocks: 64 },
    built: () => w.select({ blockSize: 1, blocks: 64 }),
  },
  {
    json: { kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 16 }] },
    built: () => w.union(w.ring(8), w.stride(16)),
  },
  {
    json: { kind: "intersect", of: [{ kind: "stride", period: 4 }, { kind: "causal" }] },
    built: () => w.intersect(w.stride(4), w.causal()),
  },
  {
    json: {
      kind: "gated",
      branches: [{ kind: "ring", radius: 2 }, {
        kind: "union",
        of: [{ kind: "global", tokens: [1] }, { kind: "causal" }],
      }],
      gates: [0.25, 0.75],
    },
    built: () => w.gated([w.ring(2), w.union(w.global([1]), w.causal())], [0.25, 0.75]),
  },
  {
    json: { kind: "gated", branches: [{ kind: "dense" }] },
    built: () => w.gated([w.dense()]),
  },
  {
    json: { kind: "linear", featureMap: "favor", features: 1024, seed: 7, causal: true },
    built: () => w.linear({ featureMap: "favor", features: 1024, seed: 7, causal: true }),
  },
  {
    json: {
      kind: "gated",
      branches: [{ kind: "window", left: 4, right: 0 }, { kind: "linear", featureMap: "elu1" }],
    },
    built: () => w.gated([w.window(4, 0), w.linear({ featureMap: "elu1" })]),
  },
];

/** Bad input and the text the one-line PatternError must contain (the field's path first). */
const INVALID: { why: string; input: unknown; message: RegExp }[] = [
  {
    why: "period 0",
    input: { kind: "stride", period: 0 },
    message: /pattern\.period: stride period must be an integer in \[1, .*got 0/,
  },
  {
    why: "negative radius",
    input: { kind: "ring", radius: -1 },
    message: /pattern\.radius: ring radius .*got -1/,
  },
  {
    why: "negative window",
    input: { kind: "window", left: 2, right: -3 },
    message: /pattern\.right: window right .*got -3/,
  },
  { why: "unknown kind", input: { kind: "blur" }, message: /pattern\.kind: unknown kind "blur"/ },
  { why: "no kind", input: { radius: 3 }, message: /must be an object with a "kind"/ },
  { why: "not an object", input: null, message: /must be an object with a "kind"/ },
  {
    why: "missing field",
    input: { kind: "window", left: 1 },
    message: /pattern\.right: window right .*got nothing/,
  },
  {
    why: "select blocks 0",
    input: { kind: "select", blockSize: 64, blocks: 0 },
    message: /pattern\.blocks: select blocks must be an integer in \[1, 64\], got 0/,
  },
  {
    why: "select blocks past 64",
    input: { kind: "select", blockSize: 64, blocks: 65 },
    message: /pattern\.blocks: select blocks must be an integer in \[1, 64\], got 65/,
  },
  {
    why: "select blockSize 0",
    input: { kind: "select", blockSize: 0, blocks: 4 },
    message: /pattern\.blockSize: select blockSize must be an integer in \[1, 2147483647\], got 0/,
  },
  {
    why: "select forced blocks past its blocks",
    input: { kind: "select", blockSize: 8, blocks: 2, initial: 1, local: 2 },
    message:
      /pattern\.local: select initial \+ local must be at most select blocks \(2\), got 1 \+ 2/,
  },
  {
    why: "missing seed",
    input: { kind: "random", blocks: 1, blockSize: 32 },
    message: /pattern\.seed: random seed .*got nothing/,
  },
  {
    why: "extra field",
    input: { kind: "ring", radius: 2, extra: 1 },
    message: /unexpected field extra/,
  },
  {
    why: "gates length mismatch",
    input: { kind: "gated", branches: [{ kind: "dense" }], gates: [0.5, 0.5] },
    message: /pattern\.gates: gated\.gates must have one gate per branch \(1\), got 2/,
  },
  {
    why: "nested gated",
    input: { kind: "union", of: [{ kind: "gated", branches: [{ kind: "dense" }] }] },
    message: /pattern\.of\[0\]: "gated" may only be the outermost pattern/,
  },
  {
    why: "non-integer",
    input: { kind: "stride", period: 1.5 },
    message: /pattern\.period: .*got 1\.5/,
  },
  {
    why: "non-integer deep inside",
    input: { kind: "intersect", of: [{ kind: "causal" }, { kind: "ring", radius: 2.5 }] },
    message: /pattern\.of\[1\]\.radius: .*got 2\.5/,
  },
  {
    why: "empty union",
    input: { kind: "union", of: [] },
    message: /pattern\.of: union\.of must hold at least one pattern/,
  },
  {
    why: "negative global token",
    input: { kind: "global", tokens: [0, -1] },
    message: /pattern\.tokens\[1\]: global token .*got -1/,
  },
  {
    why: "seed past u32",
    input: { kind: "random", blocks: 1, blockSize: 32, seed: 2 ** 32 },
    message: /pattern\.seed: random seed must be an integer in \[0, 4294967295\]/,
  },
  {
    why: "unknown feature map",
    input: { kind: "linear", featureMap: "relu" },
    message: /pattern\.featureMap: linear featureMap must be "elu1" or "favor", got "relu"/,
  },
  {
    why: "favor without features",
    input: { kind: "linear", featureMap: "favor", seed: 1 },
    message: /pattern\.features: linear features must be an integer in \[1, 1024\] for "favor"/,
  },
  {
    why: "favor features past the range",
    input: { kind: "linear", featureMap: "favor", features: 1025 },
    message: /pattern\.features: linear features must be an integer in \[1, 1024\], got 1025/,
  },
  {
    why: "linear inside a union",
    input: { kind: "union", of: [{ kind: "causal" }, { kind: "linear", featureMap: "elu1" }] },
    message: /pattern\.of\[1\]: "linear" may only be the outermost pattern or a gated branch/,
  },
  {
    why: "linear inside an intersection of a gated branch",
    input: {
      kind: "gated",
      branches: [{ kind: "intersect", of: [{ kind: "linear", featureMap: "elu1" }] }],
    },
    message: /pattern\.branches\[0\]\.of\[0\]: "linear" may only be the outermost/,
  },
  {
    why: "linear under a score",
    input: {
      kind: "scored",
      pattern: { kind: "linear", featureMap: "elu1" },
      score: { expr: "s" },
    },
    message: /pattern\.pattern: "linear" may only be the outermost pattern/,
  },
  {
    why: "non-finite gate",
    input: { kind: "gated", branches: [{ kind: "dense" }], gates: [Infinity] },
    message: /pattern\.gates\[0\]: gated\.gates must hold finite numbers/,
  },
];

Deno.test("valid patterns of every kind parse to themselves and survive JSON", () => {
  for (const { json, built } of VALID) {
    const parsed = parsePattern(json);
    assert.deepEqual(parsed, json);
    assert.deepEqual(parsePattern(JSON.parse(JSON.stringify(parsed))), json);
    assert.deepEqual(built(), json, `builder for ${JSON.stringify(json)}`);
  }
});

Deno.test("builder defaults: window(l) is symmetric, random seed is 0", () => {
  assert.deepEqual(w.window(5), { kind: "window", left: 5, right: 5 });
  assert.deepEqual(w.random({ blocks: 2, blockSize: 8 }), {
    kind: "random",
    blocks: 2,
    blockSize: 8,
    seed: 0,
  });
});

/** Runs `fn` and returns what it threw; fails the test when it returns normally. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail("expected an error, none was thrown");
}

for (const { why, input, message } of INVALID) {
  Deno.test(`invalid pattern (${why}) throws a one-line PatternError naming the field`, () => {
    const e = thrown(() => parsePattern(input));
    assert.ok(e instanceof PatternError, `a PatternError, got ${e}`);
    assert.match(e.message, /^Cannot compile pattern: pattern/);
    assert.match(e.message, message);
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
  });
}
