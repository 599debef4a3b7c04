/**
 * The run-length BlockMask builder against a straightforward per-tile reference: classify every
 * candidate key tile of every query tile on its own (what the schedule meant before runs) and
 * compare tile by tile: the same visited tiles, the same PARTIAL flags, the same early stop.
 * Over random atoms, exclusions, layouts (identity, residue with N not a multiple of P, a
 * different period than the atom's, gathered), N and tile sizes.
 */
import assert from "node:assert/strict";
import { type Atom, Coverage } from "../../compiler/atoms.ts";
import {
  type BlockMask,
  blockMaskCounts,
  type BlockMaskOptions,
  buildBlockMask,
  forEachKeyTile,
} from "../../compiler/block_mask.ts";
import { candidateKeyTiles } from "../../compiler/candidates.ts";
import { classifyAll } from "../../compiler/classify.ts";
import { indexSpan, type Layout, layoutPositions, tileSpans } from "../../compiler/layout.ts";
import { RandomTables } from "../../compiler/random_table.ts";
import { mulberry32 } from "../../runtime/seeded_random.ts";

/** Per query tile, the visited key tiles as `kt -> partial`, classified one tile at a time. */
function perTileReference(o: BlockMaskOptions): Map<number, boolean>[] | undefined {
  const qSpans = tileSpans(o.qLayout, o.n, o.tileQ);
  const kSpans = tileSpans(o.kLayout, o.n, o.tileK);
  const ctx = { n: o.n, qLayout: o.qLayout, kLayout: o.kLayout, random: o.random };
  const rows: Map<number, boolean>[] = [];
  let visited = 0;
  for (const qs of qSpans) {
    const row = new Map<number, boolean>();
    for (const [first, last] of candidateKeyTiles({ ...o, qSpan: qs })) {
      for (let kt = first; kt <= last && kt < kSpans.length; kt++) {
        let c = classifyAll(o.atoms, qs, kSpans[kt], ctx);
        for (const excluded of o.exclusions) {
          if (c === Coverage.Empty) break;
          const e = classifyAll(excluded, qs, kSpans[kt], ctx);
          if (e === Coverage.Full) c = Coverage.Empty;
          else if (e === Coverage.Partial) c = Coverage.Partial;
        }
        if (c !== Coverage.Empty) row.set(kt, c === Coverage.Partial);
      }
    }
    rows.push(row);
    visited += row.size;
    if (visited > (o.maxVisited ?? Infinity)) return undefined;
  }
  return rows;
}

/** The BlockMask's invariants, and its tiles equal to the reference's. */
function assertSame(m: BlockMask, want: Map<number, boolean>[], where: string): void {
  assert.equal(m.qTiles, want.length, `${where}: query tiles`);
  assert.equal(m.offsets[0], 0, `${where}: offsets start at 0`);
  assert.equal(m.offsets[m.qTiles], m.kvStart.length, `${where}: offsets end at the run count`);
  let visited = 0, partial = 0;
  for (let t = 0; t < m.qTiles; t++) {
    for (let r = m.offsets[t]; r < m.offsets[t + 1]; r++) {
      assert.ok(m.kvLength[r] >= 1, `${where}: empty run`);
      assert.ok(m.kvStart[r] + m.kvLength[r] <= m.kTiles, `${where}: run past the last tile`);
      if (r > m.offsets[t]) {
        const end = m.kvStart[r - 1] + m.kvLength[r - 1];
        assert.ok(end <= m.kvStart[r], `${where}: runs of row ${t} overlap or descend`);
        assert.ok(
          end < m.kvStart[r] || m.partial[r - 1] !== m.partial[r],
          `${where}: row ${t} has two touching runs of one kind (not maximal)`,
        );
      }
    }
    const got = new Map<number, boolean>();
    forEachKeyTile(m, t, (kt, p) => got.set(kt, p));
    assert.deepEqual(got, want[t], `${where}: query tile ${t}`);
    visited += got.size;
    for (const p of got.values()) partial += p ? 1 : 0;
  }
  assert.deepEqual(blockMaskCounts(m), { visited, partial }, `${where}: counts`);
}

function randomAtom(rand: () => number, n: number): Atom {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const tokens = () =>
    [...new Set(Array.from({ length: int(0, 6) }, () => int(0, n - 1)))].sort((a, b) => a - b);
  switch (int(0, 8)) {
    case 0:
      return { kind: "dense" };
    case 1:
      return { kind: "causal" };
    case 2:
      return { kind: "window", left: int(-3, n), right: int(-3, n / 2) };
    case 3:
      return { kind: "ring", radius: int(0, n) };
    case 4:
    case 5:
      return { kind: "stride", period: int(1, Math.min(n + 2, 40)) };
    case 6:
      return { kind: "globalRows", tokens: tokens() };
    case 7:
      return { kind: "globalCols", tokens: tokens() };
    default: {
      const blockSize = rand() < 0.3 ? 1 : int(1, 40);
      return { kind: "random", blocks: int(1, 3), blockSize, seed: int(0, 1000) };
    }
  }
}

function randomLayout(rand: () => number, n: number, atoms: Atom[]): Layout {
  const r = rand();
  const strides = atoms.filter((a) => a.kind === "stride" && a.period >= 2);
  const stride = strides[Math.floor(rand() * strides.length)];
  if (r < 0.3) return { kind: "identity" };
  if (r < 0.6 && stride?.kind === "stride") return { kind: "residue", period: stride.period };
  if (r < 0.75) return { kind: "residue", period: 2 + Math.floor(rand() * 12) };
  const global = atoms.find((a) => a.kind === "globalRows" || a.kind === "globalCols");
  if (r < 0.85 && global && "tokens" in global) return { kind: "gather", tokens: global.tokens };
  const tokens = [
    ...new Set(Array.from({ length: 1 + Math.floor(rand() * n) }, () => Math.floor(rand() * n))),
  ];
  // The compiler gathers sorted tokens; the layout allows any order.
  return { kind: "gather", tokens: r < 0.95 ? tokens.sort((a, b) => a - b) : tokens };
}

function check(o: BlockMaskOptions, where: string): void {
  const want = perTileReference(o);
  const got = buildBlockMask(o);
  assert.equal(got === undefined, want === undefined, `${where}: early stop differs`);
  if (got && want) assertSame(got, want, where);
}

Deno.test("block mask: runs equal per-tile classification over random components", () => {
  const rand = mulberry32(7);
  // Tiles of one key make stride's and random's edge cases reachable; 64+ query rows make
  // random tiles span 64 query blocks.
  const tileShapes = [
    [1, 1],
    [4, 4],
    [8, 4],
    [16, 8],
    [64, 32],
    [3, 5],
    [32, 16],
    [130, 7],
    [5, 1],
    [2, 1],
    [64, 1],
    [64, 3],
  ];
  for (let i = 0; i < 1500; i++) {
    const n = 1 + Math.floor(rand() * 300);
    const atoms = Array.from({ length: 1 + Math.floor(rand() * 2) }, () => randomAtom(rand, n));
    const exclusions = Array.from(
      { length: Math.floor(rand() * 3) },
      () => Array.from({ length: 1 + Math.floor(rand() * 2) }, () => randomAtom(rand, n)),
    );
    const all = [...atoms, ...exclusions.flat()];
    const qLayout = randomLayout(rand, n, all);
    const kLayout = rand() < 0.7 && qLayout.kind === "residue"
      ? qLayout
      : randomLayout(rand, n, all);
    const [tileQ, tileK] = tileShapes[Math.floor(rand() * tileShapes.length)];
    const o = { atoms, exclusions, qLayout, kLayout, n, tileQ, tileK, random: new RandomTables(n) };
    const where = `#${i} ${JSON.stringify({ ...o, random: undefined })}`;
    check(o, where);
    const full = buildBlockMask(o);
    const visited = blockMaskCounts(full).visited;
    // The early stop counts tiles: at the count the mask is built, one below it is not (if any row
    // visits a tile, some bound between them stops it).
    check({ ...o, maxVisited: visited }, `${where} maxVisited=${visited}`);
    if (visited > 0) check({ ...o, maxVisited: visited - 1 }, `${where} maxVisited=${visited - 1}`);
    check({ ...o, maxVisited: Math.floor(rand() * visited) }, `${where} random maxVisited`);
  }
});

Deno.test("block mask: suite-like components at N = 4096 equal per-tile classification", () => {
  const n = 4096, random = new RandomTables(n);
  const identity: Layout = { kind: "identity" };
  const residue16: Layout = { kind: "residue", period: 16 };
  const first64 = Array.from({ length: 64 }, (_, i) => i);
  const cases: [Atom[], Atom[][], Layout, Layout][] = [
    [[{ kind: "dense" }], [], identity, identity],
    [[{ kind: "causal" }], [], identity, identity],
    [[{ kind: "window", left: 256, right: 256 }], [], identity, identity],
    [[{ kind: "ring", radius: 128 }], [], identity, identity],
    [[{ kind: "stride", period: 16 }], [], residue16, residue16],
    [[{ kind: "stride", period: 16 }], [], identity, identity],
    [[{ kind: "stride", period: 16 }], [[{ kind: "ring", radius: 128 }]], residue16, residue16],
    [[{ kind: "stride", period: 16 }], [[{ kind: "ring", radius: 128 }]], identity, identity],
    [[{ kind: "stride", period: 16 }, { kind: "causal" }], [], residue16, residue16],
    [
      [{ kind: "random", blocks: 3, blockSize: 128, seed: 1 }],
      [[{
        kind: "window",
        left: 192,
        right: 192,
      }]],
      identity,
      identity,
    ],
    [[{ kind: "random", blocks: 2, blockSize: 1, seed: 3 }], [], identity, identity],
    [[{ kind: "globalRows", tokens: first64 }], [[{ kind: "window", left: 192, right: 192 }]], {
      kind: "gather",
      tokens: first64,
    }, identity],
    [
      [{ kind: "globalCols", tokens: first64 }],
      [[{ kind: "window", left: 192, right: 192 }], [{
        kind: "globalRows",
        tokens: first64,
      }]],
      identity,
      { kind: "gather", tokens: first64 },
    ],
  ];
  for (const [atoms, exclusions, qLayout, kLayout] of cases) {
    for (const [tileQ, tileK] of [[64, 32], [32, 64], [48, 40], [128, 16]]) {
      const o = { atoms, exclusions, qLayout, kLayout, n, tileQ, tileK, random };
      check(o, `${JSON.stringify({ atoms, exclusions, qLayout, kLayout })} tile ${tileQ}x${tileK}`);
    }
  }
});

Deno.test("block mask: whole-range PARTIAL answers at their edges equal per-tile classification", () => {
  const n = 300, random = new RandomTables(n), identity: Layout = { kind: "identity" };
  const residue7: Layout = { kind: "residue", period: 7 };
  const dense: Atom = { kind: "dense" }, causal: Atom = { kind: "causal" };
  const cases: [Atom[], Atom[][], Layout, Layout, number, number][] = [];
  // random: a query tile spanning 63, 64 or 65 blocks of one position.
  for (const tileQ of [63, 64, 65, 66]) {
    for (const tileK of [1, 3]) {
      const r: Atom = { kind: "random", blocks: 2, blockSize: 1, seed: 5 };
      cases.push([[dense], [[r]], identity, identity, tileQ, tileK]);
      cases.push([[r], [], identity, identity, tileQ, tileK]);
    }
  }
  // stride in natural order: query tiles just narrower than, as wide as and wider than P.
  for (const tileQ of [4, 5, 6, 7, 8]) {
    cases.push([[{ kind: "stride", period: 6 }], [], identity, identity, tileQ, 1]);
    cases.push([[dense], [[{ kind: "stride", period: 6 }]], identity, identity, tileQ, 1]);
  }
  // Bands whose allowed difference interval is exactly as wide as a query tile's difference
  // range, with one-key tiles: a tile sliding across it fits it exactly once.
  for (const tileQ of [4, 5, 6]) {
    for (const left of [0, 2, tileQ - 1]) {
      const w: Atom = { kind: "window", left, right: tileQ - 1 - left };
      cases.push([[w], [], identity, identity, tileQ, 1]);
      cases.push([[dense], [[w]], identity, identity, tileQ, 1]);
    }
    const ring: Atom = { kind: "ring", radius: (tileQ - 1) / 2 };
    if (Number.isInteger(ring.radius)) cases.push([[ring], [], identity, identity, tileQ, 1]);
  }
  // stride in its residue order, as an exclusion (every key tile is a candidate), with query
  // tiles straddling classes (300 = 42 * 7 + 6).
  for (const [tileQ, tileK] of [[8, 4], [43, 5], [50, 1]]) {
    cases.push([[causal], [[{ kind: "stride", period: 7 }]], residue7, residue7, tileQ, tileK]);
    cases.push([[dense], [[{ kind: "stride", period: 7 }]], residue7, residue7, tileQ, tileK]);
  }
  for (const [atoms, exclusions, qLayout, kLayout, tileQ, tileK] of cases) {
    const o = { atoms, exclusions, qLayout, kLayout, n, tileQ, tileK, random };
    check(o, `${JSON.stringify({ atoms, exclusions, qLayout, kLayout })} tile ${tileQ}x${tileK}`);
  }
});

Deno.test("block mask: a dense row is one run and a causal row at most two", () => {
  const n = 4096, random = new RandomTables(n), identity: Layout = { kind: "identity" };
  const base = { exclusions: [], qLayout: identity, kLayout: identity, n, tileQ: 64, tileK: 32 };
  const dense = buildBlockMask({ ...base, atoms: [{ kind: "dense" }], random });
  assert.equal(dense.kvStart.length, 64);
  assert.deepEqual(blockMaskCounts(dense), { visited: 64 * 128, partial: 0 });
  const causal = buildBlockMask({ ...base, atoms: [{ kind: "causal" }], random });
  assert.equal(causal.kvStart.length, 64 + 63); // row 0 is its diagonal pair alone
  assert.deepEqual(blockMaskCounts(causal), { visited: 64 * 65, partial: 128 });
});

Deno.test("tile spans: the layout arithmetic equals a walk over every position", () => {
  const rand = mulberry32(11);
  for (let i = 0; i < 400; i++) {
    const n = 1 + Math.floor(rand() * 200);
    const tileSize = 1 + Math.floor(rand() * 40);
    const tokens = [
      ...new Set(Array.from({ length: Math.floor(rand() * n) }, () => Math.floor(rand() * n))),
    ];
    const layouts: Layout[] = [
      { kind: "identity" },
      { kind: "residue", period: 2 + Math.floor(rand() * 30) },
      { kind: "residue", period: n + 1 + Math.floor(rand() * 5) },
      { kind: "gather", tokens: [...tokens].sort((a, b) => a - b) },
      { kind: "gather", tokens }, // unsorted
    ];
    for (const layout of layouts) {
      const positions = layoutPositions(layout, n);
      const classOf = (index: number) =>
        layout.kind === "residue" ? positions[index] % layout.period : -1;
      const walk = (start: number, end: number) => {
        const run = Array.from(positions.subarray(start, end));
        const lo = Math.min(...run), hi = Math.max(...run);
        const contiguous = hi - lo + 1 === run.length;
        return { lo, hi, contiguous, classLo: classOf(start), classHi: classOf(end - 1) };
      };
      const where = `${JSON.stringify(layout)} N=${n}`;
      const want = [];
      for (let start = 0; start < positions.length; start += tileSize) {
        want.push(walk(start, Math.min(positions.length, start + tileSize)));
      }
      assert.deepEqual(tileSpans(layout, n, tileSize), want, `${where} tile ${tileSize}`);
      const span = indexSpan(layout, n);
      for (let j = 0; j < 20 && positions.length > 0; j++) {
        const start = Math.floor(rand() * positions.length);
        const end = start + 1 + Math.floor(rand() * (positions.length - start));
        assert.deepEqual(span(start, end), walk(start, end), `${where} [${start}, ${end})`);
      }
    }
  }
});

Deno.test("block mask: a layout trial projected past four times the limit stops early", () => {
  // stride(16) in natural order with 8x8 tiles visits half the tiles; the residue order 1/16. Projected from its first rows, natural order is dropped long before the exact
  // bound would stop it; a limit it stays under lets it finish, exact.
  const n = 4096, stride = [{ kind: "stride" as const, period: 16 }];
  const o = {
    atoms: stride,
    exclusions: [],
    qLayout: { kind: "identity" as const },
    kLayout: { kind: "identity" as const },
    n,
    tileQ: 8,
    tileK: 8,
    random: new RandomTables(n),
  };
  const natural = blockMaskCounts(buildBlockMask(o)).visited;
  const residue = blockMaskCounts(buildBlockMask({
    ...o,
    qLayout: { kind: "residue", period: 16 },
    kLayout: { kind: "residue", period: 16 },
  })).visited;
  assert.ok(natural > 4 * residue, `natural ${natural}, residue ${residue}`);
  assert.equal(buildBlockMask({ ...o, maxVisited: natural, projectedLimit: residue }), undefined);
  const kept = buildBlockMask({ ...o, maxVisited: natural, projectedLimit: natural });
  assert.equal(kept && blockMaskCounts(kept).visited, natural);
});
