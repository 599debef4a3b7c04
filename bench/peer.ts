/**
 * Joining Weft's rows with the peer's (bench/peers/flex_attention.py): each row gains the
 * FlexAttention time for the same pattern, N and dtype, the dense SDPA time at that N and
 * dtype, and the ratio `peer_ms / ms` (above 1: Weft is faster). Where the peer measured
 * FlexAttention under several torch.compile modes, the faster one is taken and named. Where the
 * peer ran with --backward, rows also gain its forward + backward time, the fastest mode's.
 * @module
 */
import type { BenchRow } from "./report.ts";

/** FlexAttention compiled with torch.compile's default mode, or with max-autotune. */
export type FlexImpl = "flex_attention" | "flex_attention_max_autotune";

/** One row of the peer script's JSON. */
export interface PeerRow {
  pattern: string;
  n: number;
  dtype: "f32" | "f16";
  ms: number;
  impl: FlexImpl | "sdpa";
  block_sparsity?: number;
  /** The torch.compile mode of a FlexAttention row; absent in files from older peer scripts. */
  mode?: string;
  /**
   * --backward: milliseconds per forward + backward call (`out.backward(dO)`), null where it
   * failed; absent without --backward.
   */
  ms_fwd_bwd?: number | null;
}

/** A bench row with the peer's numbers where they were measured. */
export type RowWithPeer = BenchRow & {
  peer_ms: number | null;
  /**
   * The torch.compile mode of the FlexAttention row in `peer_ms` (the faster mode), where the
   * peer's file names one; absent otherwise.
   */
  peer_mode?: string;
  sdpa_ms: number | null;
  peer_ratio: number | null;
  /**
   * FlexAttention's forward + backward ms (the fastest mode's, chosen apart from `peer_ms`'s),
   * null where the peer has none for the row; absent unless some peer row has `ms_fwd_bwd`.
   */
  peer_fwd_bwd_ms?: number | null;
  /** The torch.compile mode of `peer_fwd_bwd_ms`, where there is one and its row names it. */
  peer_fwd_bwd_mode?: string;
};

/** The mode a FlexAttention row was compiled with, where its file says. */
function modeOf(p: PeerRow): string | undefined {
  return p.mode ??
    (p.impl === "flex_attention_max_autotune" ? "max-autotune-no-cudagraphs" : undefined);
}

/**
 * Adds `peer_ms` (FlexAttention), `peer_mode`, `sdpa_ms` (dense SDPA) and `peer_ratio` to each
 * row, and `peer_fwd_bwd_ms` with `peer_fwd_bwd_mode` where the peer's rows have `ms_fwd_bwd`.
 * Within one impl a later row wins; across impls (torch.compile modes) the faster one does,
 * for the forward and for the forward + backward separately.
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
  const flex = new Map<string, Map<FlexImpl, PeerRow>>(), sdpa = new Map<string, number>();
  for (const p of peer) {
    if (p.impl === "sdpa") sdpa.set(key("", p.n, p.dtype), p.ms);
    else {
      const k = key(p.pattern, p.n, p.dtype);
      const byImpl = flex.get(k) ?? new Map<FlexImpl, PeerRow>();
      flex.set(k, byImpl.set(p.impl, p));
    }
  }
  const backward = peer.some((p) => p.ms_fwd_bwd !== undefined);
  return rows.map((withOld) => {
    // Rows re-read with --from may carry an earlier join's columns: this join replaces them.
    const {
      peer_ms: _ms,
      peer_mode: _mode,
      sdpa_ms: _sdpa,
      peer_ratio: _ratio,
      peer_fwd_bwd_ms: _fwdBwdMs,
      peer_fwd_bwd_mode: _fwdBwdMode,
      ...r
    } = withOld as RowWithPeer;
    let best: PeerRow | undefined, fwdBwd: PeerRow | undefined, fwdBwdMs: number | null = null;
    for (const p of flex.get(key(r.pattern, r.n, r.dtype))?.values() ?? []) {
      if (!best || p.ms < best.ms) best = p;
      const ms = p.ms_fwd_bwd;
      if (typeof ms === "number" && (fwdBwdMs === null || ms < fwdBwdMs)) {
        fwdBwd = p;
        fwdBwdMs = ms;
      }
    }
    const peerMs = best?.ms ?? null;
    const mode = best && modeOf(best);
    const joined: RowWithPeer = {
      ...r,
      peer_ms: peerMs,
      ...(mode !== undefined ? { peer_mode: mode } : {}),
      sdpa_ms: sdpa.get(key("", r.n, r.dtype)) ?? null,
      peer_ratio: peerMs !== null && r.ms ? peerMs / r.ms : null,
    };
    if (backward) {
      joined.peer_fwd_bwd_ms = fwdBwdMs;
      const fwdBwdMode = fwdBwd && modeOf(fwdBwd);
      if (fwdBwdMode !== undefined) joined.peer_fwd_bwd_mode = fwdBwdMode;
    }
    return joined;
  });
}

/** After a FlexAttention time: the torch.compile mode, unless it is the default. */
function modeNote(mode: string | undefined): string {
  return mode && mode !== "default" ? ` (${mode})` : "";
}

/**
 * A markdown table of the rows with their peer columns; a FlexAttention time from a mode other
 * than torch.compile's default names the mode. Where some row has `peer_fwd_bwd_ms`, a
 * FlexAttention forward + backward column follows Flex / Weft.
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
  const backward = rows.some((r) => r.peer_fwd_bwd_ms !== undefined);
  const fwdBwd = (r: RowWithPeer) =>
    backward ? `${fmt(r.peer_fwd_bwd_ms ?? null)}${modeNote(r.peer_fwd_bwd_mode)} | ` : "";
  const lines = [
    "| pattern | N | dtype | Weft ms | FlexAttention ms | Flex / Weft | " +
    (backward ? "FlexAttention fwd+bwd ms | " : "") +
    "SDPA dense ms | Weft TFLOP/s dense-eq | density | efficiency |",
    "| --- | ---: | --- | ---: | ---: | ---: | " + (backward ? "---: | " : "") +
    "---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.pattern} | ${r.n} | ${r.dtype} | ${fmt(r.ms)} | ` +
      `${fmt(r.peer_ms)}${modeNote(r.peer_mode)} | ${fmt(r.peer_ratio)} | ${fwdBwd(r)}` +
      `${fmt(r.sdpa_ms)} | ${fmt(r.tflops_dense_equiv)} | ${fmt(r.density, 4)} | ` +
      `${fmt(r.efficiency)} |`
    ),
  ];
  return lines.join("\n") + "\n";
}
