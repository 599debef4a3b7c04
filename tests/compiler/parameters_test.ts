/**
 * Pattern numbers are runtime parameters: two patterns of the same structure at the same shape
 * compile to the same kernels (the pipeline cache's key, WGSL without comments), with the
 * numbers only in the aux buffer; a structure change (another layout, a dropped atom) is new
 * code. Cases: parameter_cases.json.
 */
import assert from "node:assert/strict";
import { compile, type CompiledAttention, pipelineKey } from "../../compiler/mod.ts";
import { layoutLabel } from "../../compiler/layout.ts";
import { words } from "./_buffers.ts";

const cases = JSON.parse(
  await Deno.readTextFile(new URL("parameter_cases.json", import.meta.url)),
) as { shape: never; sameStructure: [unknown, unknown][]; newStructure: [unknown, unknown][] };
const shape = cases.shape;

/** Components and their layout kinds, branch by branch: what the plan built. */
function structure(c: CompiledAttention): string {
  return c.plan.branches.map((b) =>
    b.components.map((x) =>
      `${x.atoms.map((a) => a.kind).join("&")} minus ${x.exclusions.length}: ` +
      `${x.qLayout.kind}/${x.kLayout.kind}`
    ).join(", ")
  ).join(" | ");
}

const label = (p: unknown) => JSON.stringify(p);

for (const [a, b] of cases.sameStructure) {
  Deno.test(`same structure, same kernels: ${label(a)} vs ${label(b)}`, () => {
    const ca = compile(a, { shape }), cb = compile(b, { shape });
    assert.equal(structure(ca), structure(cb), "the plan's structure must match for this case");
    assert.equal(ca.passes.length, cb.passes.length);
    // Schedule offsets live in the schedule buffer's header, so every kernel matches.
    ca.passes.forEach((pass, i) => {
      const [ka, kb] = [pass.wgsl, cb.passes[i].wgsl].map(pipelineKey);
      assert.equal(ka, kb, `${pass.label}: WGSL differs`);
    });
    // The numbers moved to aux: the buffers differ where the WGSL does not.
    assert.notDeepEqual(Array.from(words(ca, "aux")), Array.from(words(cb, "aux")));
  });
}

for (const [a, b] of cases.newStructure) {
  Deno.test(`numbers that change the plan's structure compile new kernels: ${label(a)} vs ${label(b)}`, () => {
    const ca = compile(a, { shape }), cb = compile(b, { shape });
    assert.notEqual(structure(ca), structure(cb));
    const keys = new Set(ca.passes.map((p) => pipelineKey(p.wgsl)));
    assert.ok(cb.passes.some((p) => !keys.has(pipelineKey(p.wgsl))));
  });
}

Deno.test("gates are a buffer: gated patterns with other JSON gates have identical WGSL", () => {
  const pi = (g: number) => ({
    kind: "gated",
    branches: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }],
    gates: [g, 1 - g],
  });
  const ca = compile(pi(0.5), { shape }), cb = compile(pi(0.9), { shape });
  assert.deepEqual(ca.passes.map((p) => p.wgsl), cb.passes.map((p) => p.wgsl));
  assert.deepEqual(ca.defaultGates, [0.5, 0.5]);
  assert.deepEqual(cb.defaultGates, [0.9, 1 - 0.9]);
});

Deno.test("parameter words: window(100, 50) reads left and right from aux slots 0 and 1", () => {
  const c = compile({ kind: "window", left: 100, right: 50 }, { shape });
  const wgsl = c.passes[0].wgsl;
  assert.match(wgsl, /const PARAMS = 0u;/);
  assert.match(wgsl, /let left0 = signedParam\(0u\); \/\/ window\(100,50\)/);
  assert.match(wgsl, /let right1 = signedParam\(1u\); \/\/ window\(100,50\)/);
  assert.match(wgsl, /k >= q - left0 && k <= q \+ right1/);
  assert.deepEqual(Array.from(words(c, "aux")), [100, 50]);
});

Deno.test("parameter words: stride(16)'s residue layouts and predicate, and a random table offset", () => {
  const n = 100;
  const small = { ...cases.shape as object, seqLen: n } as never;
  const stride = compile({ kind: "stride", period: 16 }, { shape: small });
  assert.equal(layoutLabel(stride.plan.branches[0].components[0].qLayout), "residue(16)");
  // N = 100 = 6 * 16 + 4: classes 0..3 hold 7 positions, the rest 6; both layouts, then the period.
  assert.deepEqual(Array.from(words(stride, "aux")), [16, 7, 4, 6, 16, 7, 4, 6, 16]);
  assert.match(stride.passes[0].wgsl, /u32\(abs\(q - k\)\) % period8 == 0u/);
  // A random atom's table lies after the 3 parameter words; its offset is the first of them.
  const random = compile({ kind: "random", blocks: 2, blockSize: 25, seed: 3 }, { shape: small });
  const aux = Array.from(words(random, "aux"));
  assert.deepEqual(aux.slice(0, 3), [3, 2, 25]);
  assert.equal(aux.length, 3 + 4 * 2, "4 query blocks x 2 draws");
  assert.match(random.passes[0].wgsl, /randomAllows\(table0, blocks1, blockSize2, q, k\)/);
});

Deno.test("numbers past N are clamped to N: the same pairs, and i32 arithmetic cannot wrap", () => {
  const small = { ...cases.shape as object, seqLen: 100 } as never;
  const c = compile({ kind: "window", left: 0, right: 2 ** 31 - 1 }, { shape: small });
  assert.deepEqual(Array.from(words(c, "aux")), [0, 100]);
});

Deno.test("constantParams bakes the numbers in: other numbers, other WGSL, no parameter words", () => {
  const options = { shape, constantParams: true };
  const a = compile({ kind: "stride", period: 16 }, options);
  const b = compile({ kind: "stride", period: 32 }, options);
  assert.notEqual(pipelineKey(a.passes[0].wgsl), pipelineKey(b.passes[0].wgsl));
  assert.match(a.passes[0].wgsl, /let period = 16u;/);
  assert.doesNotMatch(a.passes[0].wgsl, /PARAMS|param\(/);
  assert.deepEqual(
    Array.from(words(a, "aux")),
    [0],
    "nothing in aux but the one word a binding needs",
  );
  const g = compile({ kind: "global", tokens: [3, 7] }, options);
  assert.ok(words(g, "aux").length > 1, "data items stay in aux");
});

Deno.test("pipelineKey drops comments and blank lines, nothing else", () => {
  const wgsl = "// header ring(128)\n\nfn f() -> i32 {\n  let r = 3; // radius 3\n  return r;\n}\n";
  assert.equal(pipelineKey(wgsl), "fn f() -> i32 {\n  let r = 3;\n  return r;\n}");
});
