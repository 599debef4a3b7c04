"""Decoding peers for `deno task bench --decode`: PyTorch FlexAttention (its decoding kernel,
which flex_attention picks for short queries) and F.scaled_dot_product_attention, each decoding
one query row per head against the same KV cache Weft decodes: B = 4, Hq = 32, Hkv = 8 (GQA,
`enable_gqa=True`), D = 128, float16, the query at the last position (offset Nk - 1). The `mla`
patterns decode multi-head latent attention's cache: Hkv = 1 (the shared latent head), D = 192
for queries and keys, Dv = 128 for values.

    python3 bench/peers/decode_peer.py --out decode_peer.json \
        [--nk 16384,131072,1048576] \
        [--patterns dense,window4096,ring+stride64,mla,mla+window4096] \
        [--batch-calls 20] [--repeats 5]

Each pattern's mask_mod is the exact allowed set of DESIGN §2 on absolute positions (the query
at Nk - 1, n = Nk): window(4096) `|p - k| <= 4096`, ring(128) `min(|p - k|, Nk - |p - k|) <= 128`,
stride(64) `(p - k) % 64 == 0`. The block mask is built once per pattern and Nk and not timed
(FlexAttention's convention; its build time is reported as `mask_ms`). SDPA takes the same set
as a boolean mask over the keys (dense: no mask). A sample is one CUDA event pair around
--batch-calls back-to-back calls replayed from a CUDA graph (launched from Python where capture
fails), divided by the calls; a row is the median of --repeats samples.

Writes a JSON array of rows {pattern, nk, impl, ms, mask_ms, timing}; impl is
"flex_attention" or "sdpa".
"""

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

B, HQ = 4, 32
# (key/value heads, D, Dv) of each cache: Llama-style GQA, and MLA's one latent head.
CACHES = {"gqa": (8, 128, 128), "mla": (1, 192, 128)}


def cache_of(pattern):
    return "mla" if pattern.startswith("mla") else "gqa"


def mask_mod_of(pattern, nk):
    """The allowed set of a decode pattern, for the query at position nk - 1 (q_idx 0)."""
    offset = nk - 1

    def window(b, h, q_idx, kv_idx):
        p = q_idx + offset
        return (p - kv_idx).abs() <= 4096

    def ring_stride(b, h, q_idx, kv_idx):
        p = q_idx + offset
        dist = (p - kv_idx).abs()
        ring = torch.minimum(dist, nk - dist) <= 128
        return ring | ((p - kv_idx) % 64 == 0)

    return {"dense": None, "window4096": window, "ring+stride64": ring_stride, "mla": None,
            "mla+window4096": window}[pattern]


def time_calls(fn, calls, repeats):
    """Median ms per call over `repeats` samples of `calls` back-to-back calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    timing = "cuda_graph"
    try:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        run = graph.replay
        per_run = calls
    except Exception as e:  # capture can fail; fall back to launches
        print(f"  graph capture failed ({type(e).__name__}); timing launches", file=sys.stderr)
        timing = "stream"

        def run():
            for _ in range(calls):
                fn()

        per_run = calls
    run()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / per_run)
    return statistics.median(samples), timing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--nk", default="16384,131072,1048576")
    ap.add_argument("--patterns", default="dense,window4096,ring+stride64,mla,mla+window4096")
    ap.add_argument("--batch-calls", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    flex = torch.compile(flex_attention, fullgraph=True)
    rows = []
    for nk in [int(x) for x in args.nk.split(",")]:
        for pattern in args.patterns.split(","):
            hkv, d, dv = CACHES[cache_of(pattern)]
            q = torch.randn(B, HQ, 1, d, device="cuda", dtype=torch.float16)
            k = torch.randn(B, hkv, nk, d, device="cuda", dtype=torch.float16)
            v = torch.randn(B, hkv, nk, dv, device="cuda", dtype=torch.float16)
            mask_mod = mask_mod_of(pattern, nk)
            mask_ms = None
            block_mask = None
            if mask_mod is not None:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                block_mask = create_block_mask(mask_mod, None, None, 1, nk, device="cuda")
                torch.cuda.synchronize()
                mask_ms = (time.perf_counter() - t0) * 1e3
            with torch.no_grad():
                try:
                    ms, timing = time_calls(
                        lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=True),
                        args.batch_calls,
                        args.repeats,
                    )
                    rows.append({"pattern": pattern, "nk": nk, "impl": "flex_attention",
                                 "ms": ms, "mask_ms": mask_ms, "timing": timing})
                    print(f"flex {pattern} nk={nk}: {ms:.4f} ms ({timing})", file=sys.stderr)
                except Exception as e:
                    print(f"flex {pattern} nk={nk} failed: {e}", file=sys.stderr)
                if mask_mod is None:
                    sdpa_mask = None
                else:
                    idx = torch.arange(nk, device="cuda")
                    sdpa_mask = mask_mod(0, 0, torch.zeros((), dtype=torch.long, device="cuda"), idx)
                    sdpa_mask = sdpa_mask.view(1, 1, 1, nk)
                try:
                    ms, timing = time_calls(
                        lambda: F.scaled_dot_product_attention(
                            q, k, v, attn_mask=sdpa_mask, enable_gqa=True),
                        args.batch_calls,
                        args.repeats,
                    )
                    rows.append({"pattern": pattern, "nk": nk, "impl": "sdpa", "ms": ms,
                                 "mask_ms": None, "timing": timing})
                    print(f"sdpa {pattern} nk={nk}: {ms:.4f} ms ({timing})", file=sys.stderr)
                except Exception as e:
                    print(f"sdpa {pattern} nk={nk} failed: {e}", file=sys.stderr)
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
