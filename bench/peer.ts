/**
 * Joining Weft's rows with the peer's (bench/peers/flex_attention.py): each row gains the
 * FlexAttention time for the same pattern, N and dtype, the dense SDPA time at that N and
 * dtype, and the ratio `peer_ms / ms` (above 1: Weft is faster).
 * @module
 */
import type { BenchRow } from "./report.ts";

/** One row of the peer script's JSON. */
export interface PeerRow {
  pattern: string;
  n: number;
  dtype: "f32" | "f16";
  ms: number;
  impl: "flex_attention" | "sdpa";
  block_sparsity?: number;
}

/** A bench row with the peer's numbers where they were measured. */
export type RowWithPeer = BenchRow & {
  peer_ms: number | null;
  sdpa_ms: number | null;
  peer_ratio: number | null;
};

/**
 * Adds `peer_ms` (FlexAttention), `sdpa_ms` (dense SDPA) and `peer_ratio` to each row.
 * @param rows Weft's rows
 * @param peer the peer's rows (several files may be concatenated; later rows win)
 * @returns the rows with peer columns, null where the peer has no matching row
 * @example
 * ```ts
 * import { joinPeer } from "./peer.ts";
 * const row = { pattern: "ring", n: 4096, dtype: "f16", ms: 0.5 } as never;
 * joinPeer([row], [{ pattern: "ring", n: 4096, dtype: "f16", ms: 1, impl: "flex_attention" }])[0]
 *   .peer_ratio; // 2
 * ```
 */
export function joinPeer(rows: readonly BenchRow[], peer: readonly PeerRow[]): RowWithPeer[] {
  const key = (pattern: string, n: number, dtype: string) => `${pattern}|${n}|${dtype}`;
  const flex = new Map<string, number>(), sdpa = new Map<string, number>();
  for (const p of peer) {
    if (p.impl === "sdpa") sdpa.set(key("", p.n, p.dtype), p.ms);
    else flex.set(key(p.pattern, p.n, p.dtype), p.ms);
  }
  return rows.map((r) => {
    const peerMs = flex.get(key(r.pattern, r.n, r.dtype)) ?? null;
    return {
      ...r,
      peer_ms: peerMs,
      sdpa_ms: sdpa.get(key("", r.n, r.dtype)) ?? null,
      peer_ratio: peerMs !== null && r.ms ? peerMs / r.ms : null,
    };
  });
}

/**
 * A markdown table of the rows with their peer columns.
 * @param rows rows from `joinPeer`
 * @returns markdown text
 * @example
 * ```ts
 * import { peerMarkdown } from "./peer.ts";
 * peerMarkdown([]).split("\n")[0]; // the header row
 * ```
 */
export function peerMarkdown(rows: readonly RowWithPeer[]): string {
  const fmt = (x: number | null, digits = 3) => x === null ? "" : x.toPrecision(digits);
  const lines = [
    "| pattern | N | dtype | Weft ms | FlexAttention ms | Flex / Weft | SDPA dense ms | " +
    "Weft TFLOP/s dense-eq | density | efficiency |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.pattern} | ${r.n} | ${r.dtype} | ${fmt(r.ms)} | ${fmt(r.peer_ms)} | ` +
      `${fmt(r.peer_ratio)} | ${fmt(r.sdpa_ms)} | ${fmt(r.tflops_dense_equiv)} | ` +
      `${fmt(r.density, 4)} | ${fmt(r.efficiency)} |`
    ),
  ];
  return lines.join("\n") + "\n";
}
