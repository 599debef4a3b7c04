/** The bench chart draws one line per pattern and panel, and one point per measured row. */
import assert from "node:assert/strict";
import { timeChart } from "../../bench/chart.ts";
import type { BenchRow } from "../../bench/report.ts";

Deno.test("timeChart: a polyline per pattern and dtype, a point per row, failed rows skipped", () => {
  const row = (pattern: string, n: number, dtype: "f32" | "f16", ms: number | null) =>
    ({ pattern, n, dtype, ms, device: "test GPU" }) as BenchRow;
  const rows = [
    row("dense", 4096, "f32", 3.6),
    row("dense", 16384, "f32", 52.8),
    row("ring", 4096, "f32", 0.3),
    row("ring", 16384, "f32", 1.2),
    row("ring", 4096, "f16", 0.27),
    row("ring", 16384, "f16", null),
  ];
  const svg = timeChart(rows, "test GPU");
  assert.equal(svg.match(/<polyline /g)?.length, 3);
  assert.equal(svg.match(/<circle /g)?.length, 5);
  assert.match(svg, /<text[^>]*>f16<\/text>/);
  assert.ok(!svg.includes("NaN"), "no NaN coordinates");
});
