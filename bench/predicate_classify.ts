/**
 * Tile classification cost of TypeScript predicates: the time to plan each predicate (layout
 * choice and BlockMask by interval analysis, no element is tested) at one N, next to the
 * built-in pattern it imitates. CPU only: no adapter is needed, so the figure depends on the
 * machine's CPU, not its GPU.
 *
 *   deno run -A bench/predicate_classify.ts [N] [tileQ] [tileK]
 * @module
 */
import { planPattern, planTileCounts } from "../compiler/plan.ts";
import type { Pattern } from "../dsl/schema.ts";

const ROWS: [string, Pattern][] = [
  ["window(256) built in", { kind: "window", left: 256, right: 256 }],
  ["|q - k| <= 256", { kind: "predicate", expr: "(q, k) => Math.abs(q - k) <= 256" }],
  ["stride(16) built in", { kind: "stride", period: 16 }],
  ["(q - k) % 16 == 0", { kind: "predicate", expr: "(q, k) => (q - k) % 16 == 0" }],
  ["causal built in", { kind: "causal" }],
  ["k <= q", { kind: "predicate", expr: "(q, k) => k <= q" }],
  [
    "dilated window + causal",
    {
      kind: "predicate",
      expr: "(q, k) => {\n  const d = q - k;\n  return d >= 0 && d <= 512 && d % 4 == 0;\n}",
    },
  ],
  [
    "blocks of 128",
    { kind: "predicate", expr: "(q, k) => Math.floor(q / 128) == Math.floor(k / 128)" },
  ],
  [
    "union(|q-k|<=64, stride 64)",
    {
      kind: "union",
      of: [
        { kind: "predicate", expr: "(q, k) => Math.abs(q - k) <= 64" },
        { kind: "stride", period: 64 },
      ],
    },
  ],
];

const n = Number(Deno.args[0] ?? 65536);
const tiles = { tileQ: Number(Deno.args[1] ?? 64), tileK: Number(Deno.args[2] ?? 32) };
console.log(
  `predicate tile classification, N=${n}, tile ${tiles.tileQ}x${tiles.tileK}, ` +
    `${navigator.hardwareConcurrency} CPU threads, deno ${Deno.version.deno}`,
);
for (const [name, pattern] of ROWS) {
  planPattern(pattern, 1024, tiles); // compiles the source once; the runs below are planning only
  const times: number[] = [];
  let counts = { visited: 0, partial: 0, dense: 1 };
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const plan = planPattern(pattern, n, tiles);
    times.push(performance.now() - t0);
    counts = planTileCounts(plan);
  }
  const best = Math.min(...times);
  console.log(
    `${name.padEnd(28)} ${best.toFixed(1).padStart(8)} ms (best of 3)  ` +
      `${counts.visited} tiles visited (${counts.partial} partial) of ${counts.dense}`,
  );
}
