/** Joining the FlexAttention peer's rows (bench/peers/flex_attention.py) with Weft's. */
import assert from "node:assert/strict";
import { joinPeer, peerMarkdown, type PeerRow } from "../../bench/peer.ts";
import type { BenchRow } from "../../bench/report.ts";

const row = (pattern: string, n: number, ms: number) =>
  ({
    pattern,
    n,
    dtype: "f16",
    ms,
    device: "test GPU",
    tflops_dense_equiv: null,
    density: null,
    efficiency: null,
  }) as BenchRow;

Deno.test("joinPeer: rows without modes join as before, later rows win, no peer_mode", () => {
  const peer: PeerRow[] = [
    { pattern: "sdpa_dense", n: 4096, dtype: "f16", ms: 0.1, impl: "sdpa" },
    { pattern: "ring", n: 4096, dtype: "f16", ms: 3, impl: "flex_attention" },
    { pattern: "ring", n: 4096, dtype: "f16", ms: 1, impl: "flex_attention" },
  ];
  const [ring, causal] = joinPeer([row("ring", 4096, 0.5), row("causal", 4096, 0.5)], peer);
  assert.equal(ring.peer_ms, 1);
  assert.equal(ring.peer_ratio, 2);
  assert.equal(ring.sdpa_ms, 0.1);
  assert.ok(!("peer_mode" in ring), "old peer files leave the joined JSON as it was");
  assert.ok(!("peer_fwd_bwd_ms" in ring) && !("peer_fwd_bwd_mode" in ring));
  assert.equal(
    peerMarkdown([ring]).split("\n")[0],
    "| pattern | N | dtype | Weft ms | FlexAttention ms | Flex / Weft | SDPA dense ms | " +
      "Weft TFLOP/s dense-eq | density | efficiency |",
  );
  assert.equal(causal.peer_ms, null);
  assert.equal(causal.peer_ratio, null);
  assert.equal(causal.sdpa_ms, 0.1);
});

Deno.test("joinPeer: the faster torch.compile mode is taken and named", () => {
  const peer: PeerRow[] = [
    { pattern: "ring", n: 4096, dtype: "f16", ms: 2, impl: "flex_attention", mode: "default" },
    {
      pattern: "ring",
      n: 4096,
      dtype: "f16",
      ms: 1,
      impl: "flex_attention_max_autotune",
      mode: "max-autotune-no-cudagraphs",
    },
    { pattern: "bigbird", n: 4096, dtype: "f16", ms: 3, impl: "flex_attention", mode: "default" },
    // no mode field: the impl names it
    { pattern: "bigbird", n: 4096, dtype: "f16", ms: 4, impl: "flex_attention_max_autotune" },
  ];
  const [ring, bigbird] = joinPeer([row("ring", 4096, 0.5), row("bigbird", 4096, 1)], peer);
  assert.equal(ring.peer_ms, 1);
  assert.equal(ring.peer_mode, "max-autotune-no-cudagraphs");
  assert.equal(ring.peer_ratio, 2);
  assert.equal(bigbird.peer_ms, 3);
  assert.equal(bigbird.peer_mode, "default");
  const table = peerMarkdown([ring, bigbird]).split("\n");
  assert.match(table[2], /\| 1\.00 \(max-autotune-no-cudagraphs\) \|/);
  assert.match(table[3], /\| 3\.00 \|/);
});

Deno.test("joinPeer: --backward rows carry the fastest mode's forward + backward", () => {
  const flex = (pattern: string, ms: number, fwdBwd: number | null, autotune: boolean) =>
    ({
      pattern,
      n: 4096,
      dtype: "f16",
      ms,
      impl: autotune ? "flex_attention_max_autotune" : "flex_attention",
      mode: autotune ? "max-autotune-no-cudagraphs" : "default",
      ms_fwd_bwd: fwdBwd,
    }) as PeerRow;
  const peer: PeerRow[] = [
    { pattern: "sdpa_dense", n: 4096, dtype: "f16", ms: 0.1, impl: "sdpa", ms_fwd_bwd: 0.4 },
    // the faster forward is not the faster forward + backward
    flex("ring", 2, 5, false),
    flex("ring", 1, 6, true),
    // a failed forward + backward (null) is passed over
    flex("bigbird", 3, 9, false),
    flex("bigbird", 4, null, true),
    flex("causal", 3, null, false),
  ];
  const rows = ["ring", "bigbird", "causal", "window"].map((p) => row(p, 4096, 0.5));
  const [ring, bigbird, causal, window] = joinPeer(rows, peer);
  assert.equal(ring.peer_ms, 1);
  assert.equal(ring.peer_mode, "max-autotune-no-cudagraphs");
  assert.equal(ring.peer_fwd_bwd_ms, 5);
  assert.equal(ring.peer_fwd_bwd_mode, "default");
  assert.equal(bigbird.peer_fwd_bwd_ms, 9);
  assert.equal(causal.peer_fwd_bwd_ms, null);
  assert.ok(!("peer_fwd_bwd_mode" in causal));
  assert.equal(window.peer_ms, null);
  assert.equal(window.peer_fwd_bwd_ms, null);
  const table = peerMarkdown([ring, bigbird, causal]).split("\n");
  assert.match(table[0], /\| Flex \/ Weft \| FlexAttention fwd\+bwd ms \| SDPA dense ms \|/);
  assert.equal(table[1].split("|").length, table[0].split("|").length);
  assert.match(table[2], /\| 1\.00 \(max-autotune-no-cudagraphs\) \| 2\.00 \| 5\.00 \| 0\.100 \|/);
  assert.match(table[3], /\| 6\.00 \| 9\.00 \| 0\.100 \|/);
  assert.ok(table[4].includes("| 6.00 |  | 0.100 |"), "an empty cell where it failed");
});

Deno.test("joinPeer: forward + backward from a named non-default mode is noted", () => {
  const peer: PeerRow[] = [{
    pattern: "ring",
    n: 4096,
    dtype: "f16",
    ms: 1,
    impl: "flex_attention_max_autotune",
    ms_fwd_bwd: 3,
  }];
  const [ring] = joinPeer([row("ring", 4096, 0.5)], peer);
  assert.equal(ring.peer_fwd_bwd_mode, "max-autotune-no-cudagraphs");
  assert.match(peerMarkdown([ring]).split("\n")[2], /\| 3\.00 \(max-autotune-no-cudagraphs\) \|/);
});

Deno.test("joinPeer: an earlier join's columns are replaced, not left behind", () => {
  const peer: PeerRow[] = [
    { pattern: "ring", n: 4096, dtype: "f16", ms: 2, impl: "flex_attention_max_autotune" },
  ];
  const [joined] = joinPeer([row("ring", 4096, 0.5)], peer);
  assert.equal(joined.peer_mode, "max-autotune-no-cudagraphs");
  const [again] = joinPeer([joined], []);
  assert.equal(again.peer_ms, null);
  assert.ok(!("peer_mode" in again), "no mode without the time it belonged to");
  assert.equal(
    peerMarkdown([again]).split("\n")[2],
    "| ring | 4096 | f16 | 0.500 |  |  |  |  |  |  |",
  );
});
