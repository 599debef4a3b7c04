"""The peer Weft is measured against: PyTorch FlexAttention (and dense SDPA) on the same shapes
and patterns, on the same GPU. Each Weft JSON pattern becomes a mask_mod (DESIGN §2 semantics);
a gated pattern is one flex_attention call per branch plus the blend.

    python3 bench/peers/flex_attention.py --suite bench/suite.json --out peer.json \
        [--n 4096,16384,65536] [--dtypes f16,f32] [--heads 8] [--head-dim 64]

Writes a JSON array of rows {pattern, n, dtype, ms, impl, block_sparsity}. Times are medians of
CUDA-event-timed calls after warm-up; block-mask creation is not timed (FlexAttention's own
convention). flex_attention is compiled once per shape; the recompile limit is raised so that no
pattern falls back to eager mode.
"""

import argparse
import json
import math
import sys

import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

torch._dynamo.config.cache_size_limit = 1000
torch._dynamo.config.accumulated_cache_size_limit = 1000
compiled_flex = torch.compile(flex_attention, dynamic=False)

M32 = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def random_block_table(p: dict, n: int) -> np.ndarray:
    """allowed[qb, kb] for DESIGN §2's random blocks."""
    s, r, seed = p["blockSize"], p["blocks"], p["seed"]
    nkb = math.ceil(n / s)
    allowed = np.zeros((nkb, nkb), dtype=bool)
    for qb in range(nkb):
        for j in range(r):
            kb = lowbias32((seed + lowbias32((qb + lowbias32(j)) & M32)) & M32) % nkb
            allowed[qb, kb] = True
    return allowed


def mask_mod_of(p: dict, n: int, device: str):
    kind = p["kind"]
    if kind == "dense":
        return lambda b, h, q, k: q >= 0
    if kind == "causal":
        return lambda b, h, q, k: k <= q
    if kind == "window":
        left, right = p["left"], p["right"]
        return lambda b, h, q, k: (k >= q - left) & (k <= q + right)
    if kind == "ring":
        r = p["radius"]

        def ring(b, h, q, k):
            d = (q - k).abs()
            return torch.minimum(d, n - d) <= r

        return ring
    if kind == "stride":
        period = p["period"]
        return lambda b, h, q, k: torch.remainder(q - k, period) == 0
    if kind == "global":
        is_global = torch.zeros(n, dtype=torch.bool, device=device)
        is_global[torch.tensor(p["tokens"], dtype=torch.long)] = True
        return lambda b, h, q, k: is_global[q] | is_global[k]
    if kind == "random":
        table = torch.tensor(random_block_table(p, n), device=device)
        s = p["blockSize"]
        return lambda b, h, q, k: table[q // s, k // s]
    if kind in ("union", "intersect"):
        mods = [mask_mod_of(c, n, device) for c in p["of"]]

        def combine(b, h, q, k):
            out = mods[0](b, h, q, k)
            for m in mods[1:]:
                out = (out | m(b, h, q, k)) if kind == "union" else (out & m(b, h, q, k))
            return out

        return combine
    raise ValueError(f"pattern kind {kind!r} has no FlexAttention translation")


def median_ms(fn, warmup: int = 3, reps: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def run(args) -> list:
    suite = json.load(open(args.suite))
    rows = []
    dev = "cuda"
    for dtype_name in args.dtypes.split(","):
        dtype = {"f16": torch.float16, "f32": torch.float32}[dtype_name]
        for n in [int(x) for x in args.n.split(",")]:
            shape = (1, args.heads, n, args.head_dim)
            gen = torch.Generator(device=dev).manual_seed(n)
            q, k, v = (torch.randn(shape, device=dev, dtype=dtype, generator=gen) for _ in range(3))
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
            rows.append({"pattern": "sdpa_dense", "n": n, "dtype": dtype_name, "ms": ms, "impl": "sdpa"})
            json.dump(rows, open(args.out, "w"), indent=1)  # partial results survive a time-out
            print(f"sdpa dense n={n} {dtype_name}: {ms:.3f} ms", file=sys.stderr)
            for entry in suite:
                name, pattern = entry["name"], entry["pattern"]
                if '"lowRank"' in json.dumps(pattern) or '"hashBucket"' in json.dumps(pattern):
                    # Pooled landmarks and data-dependent buckets are not a mask_mod over (q, k).
                    print(f"skip {name}: no FlexAttention mask_mod for it", file=sys.stderr)
                    continue
                branches = pattern["branches"] if pattern["kind"] == "gated" else [pattern]
                gates = pattern.get("gates") or [1 / len(branches)] * len(branches)
                try:
                    # _compile=True builds the block mask tile by tile instead of materialising
                    # an N x N boolean tensor (32 GiB at N = 65536).
                    masks = [
                        create_block_mask(mask_mod_of(b, n, dev), None, None, n, n, device=dev,
                                          _compile=True)
                        for b in branches
                    ]
                except Exception as e:  # report and go on with the other patterns
                    print(f"flex {name} n={n} {dtype_name}: no block mask ({e})", file=sys.stderr)
                    continue

                def call():
                    out = None
                    for g, bm in zip(gates, masks):
                        o = compiled_flex(q, k, v, block_mask=bm)
                        out = g * o if out is None else out + g * o
                    return out

                ms = median_ms(call)
                sparsity = float(np.mean([bm.sparsity() for bm in masks])) / 100
                rows.append({
                    "pattern": name, "n": n, "dtype": dtype_name, "ms": ms,
                    "impl": "flex_attention", "block_sparsity": sparsity,
                })
                json.dump(rows, open(args.out, "w"), indent=1)
                print(f"flex {name} n={n} {dtype_name}: {ms:.3f} ms (block sparsity {sparsity:.3f})",
                      file=sys.stderr)
                del masks
            del q, k, v
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", required=True, help="JSON array of {name, pattern}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", default="4096,16384,65536")
    parser.add_argument("--dtypes", default="f16,f32")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args()
    json.dump(run(args), open(args.out, "w"), indent=1)
