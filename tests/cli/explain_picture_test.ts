/**
 * `explain --png` and the reach: cell counts from the tile schedule equal the reference's
 * element-level truth, the PNG is a valid file holding the drawn pixels, and the reach matches
 * hop counts worked out by hand.
 */
import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";
import { cellCounts } from "../../cli/_cell_counts.ts";
import { COMPONENT_COLOURS, maskImage } from "../../cli/_mask_image.ts";
import { crc32, encodePng } from "../../cli/_png.ts";
import { reach, strideClasses } from "../../cli/_reach.ts";
import { planPattern } from "../../compiler/plan.ts";
import { parsePattern, type Pattern } from "../../dsl/schema.ts";
import { allowedMask } from "../../runtime/reference/mod.ts";

const plan = (p: Pattern, n: number, tile = 8) =>
  planPattern(parsePattern(p), n, { tileQ: tile, tileK: tile });

Deno.test("cell counts add up to the reference's allowed pairs, cell by cell", () => {
  const pi: Pattern = {
    kind: "gated",
    branches: [{ kind: "ring", radius: 5 }, {
      kind: "union",
      of: [{ kind: "stride", period: 7 }, { kind: "global", tokens: [2, 50] }],
    }],
  };
  const n = 61, cell = 4;
  const counts = cellCounts(plan(pi, n), Math.ceil(n / cell));
  assert.equal(counts.cellSize, cell);
  const cells = counts.cells;
  [pi.branches[0], pi.branches[1]].forEach((branch, b) => {
    const allows = allowedMask(branch, n);
    const expected = new Float64Array(cells * cells);
    for (let q = 0; q < n; q++) {
      for (let k = 0; k < n; k++) {
        if (allows(q, k)) expected[Math.floor(q / cell) * cells + Math.floor(k / cell)]++;
      }
    }
    const got = new Float64Array(cells * cells);
    for (const c of counts.components.filter((c) => c.branch === b)) {
      c.counts.forEach((x, i) => got[i] += x);
    }
    assert.deepEqual(got, expected);
  });
});

Deno.test("the PNG decodes to the drawn raster", () => {
  const image = maskImage(plan({ kind: "ring", radius: 2 }, 16, 4), ["ring(2)"]);
  const png = encodePng(image);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer);
  assert.equal(view.getUint32(16), image.width);
  assert.equal(view.getUint32(20), image.height);
  // Every chunk's CRC holds; the IDAT stream inflates to filter byte + RGB per row.
  let at = 8, idat: Uint8Array | undefined;
  while (at < png.length) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    assert.equal(view.getUint32(at + 8 + length), crc32(png.subarray(at + 4, at + 8 + length)));
    if (type === "IDAT") idat = png.subarray(at + 8, at + 8 + length);
    at += 12 + length;
  }
  const raw = new Uint8Array(inflateSync(idat!));
  assert.equal(raw.length, image.height * (1 + image.width * 3));
  // N = 16 at element level: 32 px per position. Pixel of (q 0, k 0) is the ring's colour; of
  // (q 0, k 8) the background.
  const pixel = (
    x: number,
    y: number,
  ) => [...raw.subarray(y * (1 + image.width * 3) + 1 + x * 3).slice(0, 3)];
  assert.deepEqual(pixel(16 + 5, 16 + 5), COMPONENT_COLOURS[0]);
  assert.deepEqual(pixel(16 + 8 * 32 + 5, 16 + 5), [245, 245, 245]);
  assert.deepEqual(image.legend, [{ label: "ring(2)", colour: "#1f4e8c" }]);
});

Deno.test("reach: hops until every position has heard from every other", () => {
  // A ring of radius r on N positions: the far side is N/2 away, r per hop.
  assert.equal(reach(plan({ kind: "ring", radius: 4 }, 64)).hops, 8);
  assert.equal(reach(plan({ kind: "window", left: 1, right: 1 }, 16)).hops, 15);
  assert.equal(reach(plan({ kind: "dense" }, 33)).hops, 1);
  // Ring to fix the residue, then one π-step: 2 hops.
  const pi = reach(
    plan({ kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "stride", period: 16 }] }, 256),
  );
  assert.equal(pi.hops, 2);
  assert.equal(pi.cellSize, 1);
  // Causal: the last position never reaches the first; stride alone keeps its classes apart.
  const causal = reach(plan({ kind: "causal" }, 10));
  assert.equal(causal.hops, undefined);
  assert.equal(causal.unreachable, 45);
  const stride = reach(plan({ kind: "stride", period: 4 }, 16));
  assert.equal(stride.unreachable, 16 * 12);
  assert.deepEqual(strideClasses(plan({ kind: "stride", period: 6 }, 20)), [
    "stride(6): 6 residue classes of (q - k) mod 6; cyclic steps of 6 on 20 positions: gcd 2",
  ]);
});
