import assert from "node:assert/strict";
import { PlanError, ShapeError } from "../../core/errors.ts";
import { randomKeyBlocks } from "../../core/hash.ts";
import type { Pattern } from "../../dsl/schema.ts";
import { readNpyFile } from "../../cli/npy.ts";
import { allowedMask, type AttentionShape, reference } from "../../runtime/reference/mod.ts";
import { normals } from "../../runtime/seeded_random.ts";

// ---------------------------------------------------------------------------------------------
// An independent oracle for the oracle: masks built as explicit N x N matrices by enumerating
// each rule's keys (not by testing a predicate), and a softmax without the max trick.

type Mask = boolean[][];

function emptyMask(n: number): Mask {
  return Array.from({ length: n }, () => new Array<boolean>(n).fill(false));
}

function maskMatrix(p: Pattern, n: number): Mask {
  const m = emptyMask(n);
  const allow = (q: number, k: number) => {
    if (k >= 0 && k < n) m[q][k] = true;
  };
  for (let q = 0; q < n; q++) {
    switch (p.kind) {
      case "dense":
        for (let k = 0; k < n; k++) allow(q, k);
        break;
      case "causal":
        for (let k = 0; k <= q; k++) allow(q, k);
        break;
      case "window":
        for (let k = q - p.left; k <= q + p.right; k++) allow(q, k);
        break;
      case "ring": // walk the circle both ways from q
        for (let step = -p.radius; step <= p.radius; step++) allow(q, (((q + step) % n) + n) % n);
        break;
      case "stride": // keys congruent to q modulo the period
        for (let k = q % p.period; k < n; k += p.period) allow(q, k);
        break;
      case "global":
        for (const g of p.tokens) {
          allow(q, g);
          if (q === g) { for (let k = 0; k < n; k++) allow(q, k); }
        }
        break;
      case "random": {
        const s = p.blockSize;
        const qb = Math.floor(q / s);
        for (const kb of randomKeyBlocks(qb, p.blocks, p.seed, Math.ceil(n / s))) {
          for (let k = kb * s; k < (kb + 1) * s; k++) allow(q, k);
        }
        break;
      }
      case "union":
      case "intersect": {
        const members = p.of.map((c) => maskMatrix(c, n));
        for (let k = 0; k < n; k++) {
          const votes = members.filter((c) => c[q][k]).length;
          m[q][k] = p.kind === "union" ? votes > 0 : votes === members.length;
        }
        break;
      }
      case "gated":
        throw new Error("test bug: mask of a gated pattern");
    }
  }
  return m;
}

/** Dense softmax over every key, masked entries weighted 0; q/k/v are one head, [N, D]. */
function naiveHead(
  mask: Mask,
  q: number[][],
  k: number[][],
  v: number[][],
  scale: number,
): { o: number[][]; lse: number[] } {
  const o: number[][] = [];
  const lse: number[] = [];
  for (let i = 0; i < q.length; i++) {
    const e = k.map((kr, j) => mask[i][j] ? Math.exp(scale * dot(q[i], kr)) : 0);
    const z = e.reduce((a, b) => a + b, 0);
    lse.push(Math.log(z)); // log(0) = -Infinity for an empty row
    o.push(q[i].map((_, d) => z === 0 ? 0 : e.reduce((a, ej, j) => a + ej * v[j][d], 0) / z));
  }
  return { o, lse };
}

function dot(a: number[], b: number[]): number {
  return a.reduce((s, x, i) => s + x * b[i], 0);
}

/** Rows of head `(b, h)` of a `[B, H, N, D]` tensor. */
function head(t: ArrayLike<number>, b: number, h: number, H: number, N: number, D: number) {
  const base = (b * H + h) * N * D;
  return Array.from(
    { length: N },
    (_, i) => Array.from({ length: D }, (_, d) => t[base + i * D + d]),
  );
}

function randomTensor(length: number, seed: number): Float64Array {
  return Float64Array.from({ length }, normals(seed));
}

function inputs(shape: AttentionShape, seed: number) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N, headDim: D } = shape;
  return {
    q: randomTensor(B * Hq * N * D, seed),
    k: randomTensor(B * Hkv * N * D, seed + 1),
    v: randomTensor(B * Hkv * N * D, seed + 2),
  };
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-12) {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (a === e) continue; // also covers -Infinity
    assert.ok(Math.abs(a - e) <= tol, `index ${i}: got ${a}, expected ${e}`);
  }
}

const PATTERNS: Pattern[] = [
  { kind: "dense" },
  { kind: "causal" },
  { kind: "window", left: 3, right: 1 },
  { kind: "ring", radius: 2 },
  { kind: "ring", radius: 9 },
  { kind: "stride", period: 1 },
  { kind: "stride", period: 7 },
  { kind: "global", tokens: [0, 8, 16] },
  { kind: "random", blocks: 2, blockSize: 3, seed: 5 },
  { kind: "random", blocks: 1, blockSize: 5, seed: 0xffffffff },
  { kind: "union", of: [{ kind: "ring", radius: 1 }, { kind: "stride", period: 4 }] },
  {
    kind: "union",
    of: [
      { kind: "window", left: 2, right: 2 },
      { kind: "global", tokens: [1] },
      { kind: "random", blocks: 1, blockSize: 4, seed: 3 },
    ],
  },
  { kind: "intersect", of: [{ kind: "stride", period: 4 }, { kind: "causal" }] },
  { kind: "intersect", of: [{ kind: "window", left: 4, right: 4 }, { kind: "causal" }] },
  { kind: "intersect", of: [{ kind: "stride", period: 5 }, { kind: "global", tokens: [3] }] },
];

// ---------------------------------------------------------------------------------------------

Deno.test("allowedMask equals the enumerated mask matrix for every kind (N = 17)", () => {
  const n = 17;
  for (const p of PATTERNS) {
    const allowed = allowedMask(p, n);
    const m = maskMatrix(p, n);
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) {
        assert.equal(allowed(q, k), m[q][k], `${JSON.stringify(p)} at (${q}, ${k})`);
      }
    }
  }
});

function keysOf(p: Pattern, n: number, q: number): number[] {
  const allowed = allowedMask(p, n);
  return Array.from({ length: n }, (_, k) => k).filter((k) => allowed(q, k));
}

Deno.test("ring wraps at both ends: N = 16, r = 2", () => {
  const ring: Pattern = { kind: "ring", radius: 2 };
  assert.deepEqual(keysOf(ring, 16, 0), [0, 1, 2, 14, 15]);
  assert.deepEqual(keysOf(ring, 16, 1), [0, 1, 2, 3, 15]);
  assert.deepEqual(keysOf(ring, 16, 8), [6, 7, 8, 9, 10]);
  assert.deepEqual(keysOf(ring, 16, 15), [0, 1, 13, 14, 15]);
});

Deno.test("ring with radius >= N/2 allows everything; N/2 - 1 drops only the antipode", () => {
  const all = Array.from({ length: 16 }, (_, k) => k);
  assert.deepEqual(keysOf({ kind: "ring", radius: 8 }, 16, 3), all);
  assert.deepEqual(keysOf({ kind: "ring", radius: 100 }, 16, 3), all);
  assert.deepEqual(keysOf({ kind: "ring", radius: 7 }, 16, 3), all.filter((k) => k !== 11));
});

Deno.test("stride uses the mathematical modulo for k > q", () => {
  assert.deepEqual(keysOf({ kind: "stride", period: 4 }, 16, 1), [1, 5, 9, 13]);
  assert.deepEqual(keysOf({ kind: "stride", period: 7 }, 16, 2), [2, 9]);
});

Deno.test("window does not wrap; global rows and columns are full", () => {
  assert.deepEqual(keysOf({ kind: "window", left: 2, right: 1 }, 16, 0), [0, 1]);
  assert.deepEqual(keysOf({ kind: "window", left: 2, right: 1 }, 16, 15), [13, 14, 15]);
  const g: Pattern = { kind: "global", tokens: [0, 15] };
  assert.deepEqual(keysOf(g, 16, 7), [0, 15]);
  assert.equal(keysOf(g, 16, 15).length, 16);
});

Deno.test("random blocks are deterministic and follow randomKeyBlocks, last block partial", () => {
  const p: Pattern = { kind: "random", blocks: 2, blockSize: 24, seed: 12345 };
  const n = 130; // nkb = 6, the last block holds 10 keys
  const a = allowedMask(p, n), b = allowedMask(p, n);
  for (let q = 0; q < n; q++) {
    const drawn = new Set(randomKeyBlocks(Math.floor(q / 24), 2, 12345, 6));
    for (let k = 0; k < n; k++) {
      assert.equal(a(q, k), b(q, k));
      assert.equal(a(q, k), drawn.has(Math.floor(k / 24)), `(${q}, ${k})`);
    }
  }
});

Deno.test("allowedMask refuses gated and a global token >= N with PlanError", () => {
  assert.throws(
    () => allowedMask({ kind: "gated", branches: [{ kind: "dense" }] }, 8),
    (e) => e instanceof PlanError && /gated/.test(e.message),
  );
  assert.throws(
    () =>
      allowedMask(
        { kind: "union", of: [{ kind: "causal" }, { kind: "global", tokens: [1, 8] }] },
        8,
      ),
    (e) =>
      e instanceof PlanError &&
      e.message.includes("pattern.of[1].tokens[1]: global token must be < N (8), got 8"),
  );
});

Deno.test("reference equals the naive masked softmax for every kind", () => {
  const shape = { batch: 2, headsQ: 2, headsKV: 2, seqLen: 17, headDim: 5 };
  const { batch: B, headsQ: H, seqLen: N, headDim: D } = shape;
  const { q, k, v } = inputs(shape, 1);
  for (const pattern of PATTERNS) {
    const out = reference({ pattern, shape, q, k, v });
    const mask = maskMatrix(pattern, N);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const naive = naiveHead(
          mask,
          head(q, b, h, H, N, D),
          head(k, b, h, H, N, D),
          head(v, b, h, H, N, D),
          1 / Math.sqrt(D),
        );
        const base = (b * H + h) * N;
        assertClose(out.o.subarray(base * D, (base + N) * D), naive.o.flat());
        assertClose(out.lse.subarray(base, base + N), naive.lse);
      }
    }
  }
});

Deno.test("an explicit scale replaces 1/sqrt(D)", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 9, headDim: 4 };
  const { q, k, v } = inputs(shape, 7);
  const pattern: Pattern = { kind: "causal" };
  const out = reference({ pattern, shape, q, k, v, scale: 0.3 });
  const naive = naiveHead(
    maskMatrix(pattern, 9),
    head(q, 0, 0, 1, 9, 4),
    head(k, 0, 0, 1, 9, 4),
    head(v, 0, 0, 1, 9, 4),
    0.3,
  );
  assertClose(out.o, naive.o.flat());
  assertClose(out.lse, naive.lse);
});

Deno.test("empty rows give o = 0 and lse = -Infinity, never NaN", () => {
  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 16, headDim: 4 };
  const { q, k, v } = inputs(shape, 3);
  // Rows q with (q - 3) mod 5 == 0 see key 3 (row 3 sees its stride class); the rest see nothing.
  const pattern: Pattern = {
    kind: "intersect",
    of: [{ kind: "stride", period: 5 }, { kind: "global", tokens: [3] }],
  };
  const { o, lse } = reference({ pattern, shape, q, k, v });
  assert.ok(!o.some(Number.isNaN) && !lse.some(Number.isNaN));
  for (let row = 0; row < 16; row++) {
    const empty = (row - 3) % 5 !== 0;
    assert.equal(lse[row] === -Infinity, empty, `row ${row}`);
    if (empty) assert.deepEqual([...o.subarray(row * 4, row * 4 + 4)], [0, 0, 0, 0]);
  }
  // A row with a single key copies that key's value and has lse = its score.
  assertClose(o.subarray(8 * 4, 9 * 4), v.subarray(3 * 4, 4 * 4));
});

Deno.test("GQA and MQA: query head h reads kv head floor(h / (Hq / Hkv))", () => {
  const pattern: Pattern = { kind: "union", of: [{ kind: "ring", radius: 2 }, { kind: "causal" }] };
  for (const headsKV of [1, 2, 4]) {
    const shape = { batch: 2, headsQ: 4, headsKV, seqLen: 11, headDim: 3 };
    const { q, k, v } = inputs(shape, 11);
    const { o, lse } = reference({ pattern, shape, q, k, v });
    const single = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 11, headDim: 3 };
    const size = 11 * 3;
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 4; h++) {
        const kvHead = Math.floor(h / (4 / headsKV));
        const qi = (b * 4 + h) * size, kvi = (b * headsKV + kvHead) * size;
        const one = reference({
          pattern,
          shape: single,
          q: q.subarray(qi, qi + size),
          k: k.subarray(kvi, kvi + size),
          v: v.subarray(kvi, kvi + size),
        });
        assertClose(o.subarray(qi, qi + size), one.o, 0);
        assertClose(lse.subarray((b * 4 + h) * 11, (b * 4 + h + 1) * 11), one.lse, 0);
      }
    }
  }
});

Deno.test("gated: each branch its own softmax, blended by runtime, JSON or default gates", () => {
  const shape = { batch: 2, headsQ: 2, headsKV: 1, seqLen: 13, headDim: 4 };
  const { batch: B, headsQ: H, seqLen: N, headDim: D } = shape;
  const { q, k, v } = inputs(shape, 21);
  const branches: Pattern[] = [
    { kind: "ring", radius: 2 },
    { kind: "stride", period: 4 },
    { kind: "intersect", of: [{ kind: "stride", period: 5 }, { kind: "global", tokens: [3] }] },
  ];
  const alone = branches.map((pattern) => reference({ pattern, shape, q, k, v }));
  const perHead = Float64Array.from({ length: B * H * 3 }, normals(5));
  const perPosition = Float64Array.from({ length: B * H * N * 3 }, normals(6));
  const variants: {
    gates?: { data: Float64Array; shape: number[] };
    json?: number[];
    g: (row: number, i: number) => number;
  }[] = [
    { g: () => 1 / 3 },
    { json: [0.5, 0.25, 2], g: (_row, i) => [0.5, 0.25, 2][i] },
    {
      json: [9, 9, 9], // the runtime tensor wins over the JSON gates
      gates: { data: perHead, shape: [B, H, 3] },
      g: (row, i) => perHead[Math.floor(row / N) * 3 + i],
    },
    { gates: { data: perPosition, shape: [B, H, N, 3] }, g: (row, i) => perPosition[row * 3 + i] },
  ];
  for (const { gates, json, g } of variants) {
    const pattern: Pattern = json
      ? { kind: "gated", branches, gates: json }
      : { kind: "gated", branches };
    const out = reference({ pattern, shape, q, k, v, gates });
    const expected = new Float64Array(B * H * N * D);
    for (let row = 0; row < B * H * N; row++) {
      for (let i = 0; i < 3; i++) {
        for (let d = 0; d < D; d++) expected[row * D + d] += g(row, i) * alone[i].o[row * D + d];
      }
    }
    assertClose(out.o, expected);
    // lse is [branches, B, Hq, N]: each branch's own, whatever the gates.
    assert.equal(out.lse.length, 3 * B * H * N);
    for (let i = 0; i < 3; i++) {
      assertClose(out.lse.subarray(i * B * H * N, (i + 1) * B * H * N), alone[i].lse, 0);
    }
  }
});

Deno.test("shape errors are one line and name the field", () => {
  const shape = { batch: 1, headsQ: 2, headsKV: 2, seqLen: 8, headDim: 8 };
  const { q, k, v } = inputs(shape, 0);
  const dense: Pattern = { kind: "dense" };
  const gated: Pattern = { kind: "gated", branches: [dense, { kind: "causal" }] };
  const cases: { input: Parameters<typeof reference>[0]; message: string }[] = [
    {
      input: { pattern: dense, shape: { ...shape, headsQ: 6, headsKV: 4 }, q, k, v },
      message: "headsQ (6) must be a multiple of headsKV (4)",
    },
    {
      input: { pattern: dense, shape, q: q.subarray(1), k, v },
      message: "q has 127 elements, expected B*Hq*N*D = 128",
    },
    {
      input: { pattern: dense, shape: { ...shape, headsKV: 1 }, q, k, v },
      message: "k has 128 elements, expected B*Hkv*N*D = 64",
    },
    {
      input: { pattern: dense, shape, q, k, v: v.subarray(0, 100) },
      message: "v has 100 elements, expected B*Hkv*N*D = 128",
    },
    {
      input: { pattern: dense, shape: { ...shape, seqLen: 0 }, q, k, v },
      message: "seqLen must be an integer >= 1, got 0",
    },
    {
      input: {
        pattern: gated,
        shape,
        q,
        k,
        v,
        gates: { data: new Float64Array(6), shape: [1, 2, 3] },
      },
      message: "gates shape is [1, 2, 3], expected [B, Hq, branches] = [1, 2, 2]",
    },
    {
      input: {
        pattern: gated,
        shape,
        q,
        k,
        v,
        gates: { data: new Float64Array(3), shape: [1, 2, 2] },
      },
      message: "gates has 3 elements, its shape [1, 2, 2] needs 4",
    },
    {
      input: {
        pattern: dense,
        shape,
        q,
        k,
        v,
        gates: { data: new Float64Array(2), shape: [1, 2, 1] },
      },
      message: "gates were given but the pattern is not gated",
    },
  ];
  for (const { input, message } of cases) {
    assert.throws(
      () => reference(input),
      (e) => e instanceof ShapeError && e.message.includes(message) && !e.message.includes("\n"),
      message,
    );
  }
});

Deno.test("golden files hold exactly what the reference computes from their inputs", async () => {
  const dir = new URL("../golden/", import.meta.url);
  const manifest = JSON.parse(await Deno.readTextFile(new URL("manifest.json", dir)));
  assert.ok(manifest.cases.length >= 30);
  for (const c of manifest.cases) {
    const read = (file: string) => readNpyFile(new URL(file, dir));
    const [q, k, v, o, lse] = await Promise.all(
      [c.files.q, c.files.k, c.files.v, c.files.o, c.files.lse].map(read),
    );
    const gates = c.files.gates ? await read(c.files.gates) : undefined;
    const out = reference({
      pattern: c.pattern,
      shape: c.shape,
      q: q.data,
      k: k.data,
      v: v.data,
      gates: gates && { data: gates.data, shape: gates.shape },
      // Serving cases: where the queries sit among the keys, or packed sequences' lengths.
      queryOffset: c.queryOffset,
      seqLens: c.seqLens,
      kvSeqLens: c.kvSeqLens,
    });
    // Stored as float32: the float64 result rounded once, so the match is exact.
    assert.deepEqual(o.data, Float32Array.from(out.o), `${c.name}: o`);
    assert.deepEqual(lse.data, Float32Array.from(out.lse), `${c.name}: lse`);
  }
});
