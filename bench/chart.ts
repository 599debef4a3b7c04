/**
 * The bench chart: GPU time against N for every pattern, log-log, one panel per dtype, as a
 * self-contained SVG (no fonts or scripts beyond the viewer's defaults).
 * @module
 */
import type { BenchRow } from "./report.ts";

const PANEL_W = 460, PANEL_H = 340, MARGIN = { left: 64, right: 130, top: 36, bottom: 44 };
const COLOURS = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/**
 * Renders rows as an SVG line chart of milliseconds against N (both log scale).
 * @param rows bench rows (failed rows are skipped)
 * @param title a heading: device and date
 * @returns SVG text
 * @example
 * ```ts
 * import { timeChart } from "./chart.ts";
 * const svg = timeChart([
 *   { pattern: "ring", n: 4096, dtype: "f32", ms: 0.3 },
 *   { pattern: "ring", n: 16384, dtype: "f32", ms: 1.2 },
 * ] as never, "example");
 * svg.startsWith("<svg"); // true
 * ```
 */
export function timeChart(rows: readonly BenchRow[], title: string): string {
  const ok = rows.filter((r) => r.ms !== null && r.ms > 0);
  const dtypes = [...new Set(ok.map((r) => r.dtype))];
  const patterns = [...new Set(ok.map((r) => r.pattern))];
  const ns = [...new Set(ok.map((r) => r.n))].sort((a, b) => a - b);
  const ms = ok.map((r) => r.ms!);
  const [yLo, yHi] = [decadeBelow(Math.min(...ms)), decadeAbove(Math.max(...ms))];
  const width = dtypes.length * PANEL_W, height = PANEL_H + 30;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${escape(title)}</text>`,
  ];
  dtypes.forEach((dtype, p) => {
    parts.push(
      panel({
        rows: ok.filter((r) => r.dtype === dtype),
        dtype,
        patterns,
        ns,
        yLo,
        yHi,
        x0: p * PANEL_W,
      }),
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function panel(o: {
  rows: BenchRow[];
  dtype: string;
  patterns: string[];
  ns: number[];
  yLo: number;
  yHi: number;
  x0: number;
}): string {
  const plotW = PANEL_W - MARGIN.left - MARGIN.right, plotH = PANEL_H - MARGIN.top - MARGIN.bottom;
  const left = o.x0 + MARGIN.left, top = 30 + MARGIN.top;
  const [nLo, nHi] = [o.ns[0], o.ns[o.ns.length - 1]];
  const x = (n: number) =>
    left + (nHi === nLo ? plotW / 2 : (Math.log(n / nLo) / Math.log(nHi / nLo)) * plotW);
  const y = (ms: number) => top + plotH - (Math.log(ms / o.yLo) / Math.log(o.yHi / o.yLo)) * plotH;
  const out = [
    `<text x="${left + plotW / 2}" y="${top - 10}" text-anchor="middle">${escape(o.dtype)}</text>`,
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
  ];
  for (let d = o.yLo; d <= o.yHi * 1.0001; d *= 10) {
    out.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${y(d)}" y2="${y(d)}" stroke="#eee"/>`,
      `<text x="${left - 6}" y="${y(d) + 4}" text-anchor="end">${
        d >= 1 ? d : d.toPrecision(1)
      }</text>`,
    );
  }
  for (const n of o.ns) {
    out.push(`<text x="${x(n)}" y="${top + plotH + 16}" text-anchor="middle">${n}</text>`);
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle">N</text>`,
    `<text x="${o.x0 + 16}" y="${top + plotH / 2}" transform="rotate(-90 ${o.x0 + 16} ${
      top + plotH / 2
    })" text-anchor="middle">ms (median GPU time)</text>`,
  );
  o.patterns.forEach((pattern, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = o.rows.filter((r) => r.pattern === pattern).sort((a, b) => a.n - b.n);
    if (points.length === 0) return;
    const path = points.map((r) => `${x(r.n).toFixed(1)},${y(r.ms!).toFixed(1)}`).join(" ");
    out.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    for (const r of points) {
      out.push(
        `<circle cx="${x(r.n).toFixed(1)}" cy="${y(r.ms!).toFixed(1)}" r="3" fill="${colour}"/>`,
      );
    }
    const ly = top + 8 + i * 16;
    out.push(
      `<line x1="${left + plotW + 10}" x2="${
        left + plotW + 28
      }" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${left + plotW + 32}" y="${ly + 4}">${escape(pattern)}</text>`,
    );
  });
  return out.join("\n");
}

function decadeBelow(x: number): number {
  return 10 ** Math.floor(Math.log10(x));
}

function decadeAbove(x: number): number {
  return 10 ** Math.ceil(Math.log10(x));
}

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}
