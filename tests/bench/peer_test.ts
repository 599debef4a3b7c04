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
