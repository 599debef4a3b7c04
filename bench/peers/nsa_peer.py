"""FlexAttention's NSA on Weft's kept blocks: the peer of `deno task bench --nsa`.

    python3 bench/peers/nsa_peer.py --kept nsa_kept.npy --out nsa_peer.json \
        [--heads 8] [--head-dim 64] [--dtype f16] [--block 64] [--compress-block 64] \
        [--window 512] [--flex-block 128,128] [--batch-calls 20] [--repeats 5]
    python3 bench/peers/nsa_peer.py --check-mask --kept nsa_kept.npy [--block 64]

`--kept` holds the blocks Weft's selection kept, int32 [B, Hkv, N, blocks] (ascending, -1 past
the kept), as bench/nsa.ts writes them. The selected branch's allowed set is then fixed data:
query q of key/value head g sees key k when k <= q and block k // block is one of q's kept.

The selected branch's BlockMask is built from the kept blocks directly, never by evaluating the
mask over N x N: per (query tile, key tile) of FlexAttention's block size, the count of (query
row, kept block) pairs that fall in it says whether the tile is empty, full (every row of the
tile keeps every selection block in it, and the tile is wholly at or before the tile's first
query) or partial (the mask_mod decides per element). The mask_mod reads one flat boolean table
`kept_table[(g * N + q) * blocks_per_row + k // block]`: a one-dimensional lookup at a computed
index, plus the causal comparison. Building it (table and tile lists, on the GPU) is timed
apart from attention.

Timing: each of the three attention calls (the selected branch alone; all three branches with
the gates' blend: compressed over mean-pooled blocks of K and V, selected, sliding window) is
compiled with torch.compile(fullgraph=True), warmed up (250 ms of work, at least two batches),
then timed as --repeats samples of one CUDA event pair around --batch-calls back-to-back calls
(no synchronisation between them), the median per call. The mask building is timed the same
way around one build per sample.

Writes a JSON object {device, torch, n, dtype, selected_ms, total_ms, mask_ms, flex_block,
block_sparsity}; where torch or CUDA is missing it writes {skipped: why} and exits 0, so the
bench can say so. --check-mask needs only numpy: it builds the tile lists with numpy and checks,
at every element of every tile, that the tiles cover exactly the allowed set (partial tiles
through the same lookup the mask_mod uses); exit 1 on any difference.
"""

import argparse
import json
import math
import sys
import time

import numpy as np


def tile_lists(kept, n: int, block: int, tile_q: int, tile_k: int, xp):
    """Per (key/value head, query tile) the key tiles to visit, full and partial.

    kept: [Hkv, N, blocks] integer array (numpy or torch), -1 past the kept.
    xp: a Backend. Returns (partial [Hkv, QT, KT] bool, full [Hkv, QT, KT] bool).
    """
    hkv, _, slots = kept.shape
    q_tiles, k_tiles = math.ceil(n / tile_q), math.ceil(n / tile_k)
    # Each selection block covers one key tile or several (block >= tile_k), or shares one.
    spans = max(1, block // tile_k)
    pos = xp.arange(n)
    rows = []
    for h in range(hkv):
        j = kept[h]                                     # [N, slots]
        valid = j >= 0
        qt = xp.expand(pos // tile_q, slots)            # [N, slots]
        for r in range(spans):
            kt = (xp.clip0(j) * block) // tile_k + r
            inside = valid & (kt < k_tiles)
            flat = (h * q_tiles + qt) * k_tiles + xp.where(inside, kt, 0)
            rows.append(xp.where(inside, flat, hkv * q_tiles * k_tiles))
    index = xp.cat([xp.flat(r) for r in rows])
    counts = xp.bincount(index, hkv * q_tiles * k_tiles + 1)[:-1]
    counts = counts.reshape(hkv, q_tiles, k_tiles)
    qt = xp.arange(q_tiles).reshape(1, q_tiles, 1)
    kt = xp.arange(k_tiles).reshape(1, 1, k_tiles)
    # A key tile starting after the query tile's last row holds no key <= any of its queries.
    reachable = kt * tile_k <= xp.minimum(qt * tile_q + tile_q - 1, n - 1)
    # Full: every row keeps every selection block in the key tile (rows x blocks per tile
    # pairs, short edge tiles counted exactly), and every key is <= every query of the tile.
    rows_in = xp.minimum(qt * tile_q + tile_q, n) - qt * tile_q
    keys_in = xp.minimum(kt * tile_k + tile_k, n) - kt * tile_k
    blocks_in = (keys_in + block - 1) // block if block < tile_k else 1 + 0 * keys_in
    causal_full = xp.minimum(kt * tile_k + tile_k, n) - 1 <= qt * tile_q
    full = (counts == rows_in * blocks_in) & causal_full & reachable
    partial = (counts > 0) & reachable & ~full
    return partial, full


class NumpyBackend:
    arange = staticmethod(np.arange)
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def expand(x, slots):
        return np.repeat(x[:, None], slots, axis=1)

    @staticmethod
    def clip0(x):
        return np.maximum(x, 0)

    @staticmethod
    def cat(xs):
        return np.concatenate(xs)

    @staticmethod
    def flat(x):
        return x.reshape(-1)

    @staticmethod
    def bincount(x, size):
        return np.bincount(x.astype(np.int64), minlength=size)


def torch_backend(torch, dev):
    class TorchBackend:
        @staticmethod
        def arange(n):
            return torch.arange(n, device=dev)

        where = staticmethod(torch.where)

        @staticmethod
        def minimum(a, b):
            # torch.minimum takes two tensors; the tile bounds mix tensors and ints.
            if not torch.is_tensor(b):
                return a.clamp(max=b)
            return torch.minimum(a, b)

        @staticmethod
        def expand(x, slots):
            return x[:, None].expand(-1, slots)

        @staticmethod
        def clip0(x):
            return x.clamp(min=0)

        @staticmethod
        def cat(xs):
            return torch.cat(xs)

        @staticmethod
        def flat(x):
            return x.reshape(-1)

        @staticmethod
        def bincount(x, size):
            return torch.bincount(x.to(torch.int64), minlength=size)

    return TorchBackend


def check_mask(args) -> int:
    """Every element of every tile: the tiles and the lookup give exactly the allowed set."""
    kept = np.load(args.kept)[0].astype(np.int64)  # [Hkv, N, blocks]
    hkv, n, _ = kept.shape
    tq, tk = (int(x) for x in args.flex_block.split(","))
    partial, full = tile_lists(kept, n, args.block, tq, tk, NumpyBackend)
    count = math.ceil(n / args.block)
    table = np.zeros(hkv * n * count, dtype=bool)
    for h in range(hkv):
        for q in range(n):
            for j in kept[h, q]:
                if j >= 0:
                    table[(h * n + q) * count + j] = True
    bad = 0
    q = np.arange(n)[:, None]
    k = np.arange(n)[None, :]
    for h in range(hkv):
        allowed = table[((h * n + q) * count + k // args.block)] & (k <= q)
        tiles_full = np.repeat(np.repeat(full[h], tq, 0), tk, 1)[:n, :n]
        tiles_partial = np.repeat(np.repeat(partial[h], tq, 0), tk, 1)[:n, :n]
        covered = tiles_full | (tiles_partial & allowed)  # the kernel's view
        bad += int(np.sum(covered != allowed))
        bad += int(np.sum(tiles_full & ~allowed))
    sparsity = 1 - (partial.sum() + full.sum()) / partial.size
    print(f"check-mask: N={n}, tiles {tq}x{tk}: {int(full.sum())} full and {int(partial.sum())} "
          f"partial of {partial.size} tiles (block sparsity {sparsity:.3f}); "
          f"{bad} elements differ from the allowed set")
    return 1 if bad else 0


def run(args) -> dict:
    import torch
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

    dev = "cuda"
    dtype = torch.float16 if args.dtype == "f16" else torch.float32
    kept_np = np.load(args.kept)
    batch, hkv, n, _ = kept_np.shape
    hq, d, block = args.heads, args.head_dim, args.block
    group = hq // hkv
    count = math.ceil(n / block)
    tq, tk = (int(x) for x in args.flex_block.split(","))
    kept = torch.as_tensor(kept_np[0], device=dev).to(torch.int64)  # [Hkv, N, blocks]
    xp = torch_backend(torch, dev)

    def build():
        """The selected branch's BlockMask from the kept blocks (timed as mask building)."""
        valid = kept >= 0
        rows = (torch.arange(hkv, device=dev)[:, None, None] * n
                + torch.arange(n, device=dev)[None, :, None])
        flat = torch.where(valid, rows * count + kept.clamp(min=0), hkv * n * count)
        table = torch.zeros(hkv * n * count + 1, dtype=torch.bool, device=dev)
        table[flat.reshape(-1)] = True
        partial, full = tile_lists(kept, n, block, tq, tk, xp)

        def lists(m):  # [Hkv, QT, KT] -> counts [1, H, QT] and indices [1, H, QT, KT]
            num = m.sum(-1).to(torch.int32)
            idx = torch.argsort((~m).to(torch.int8), dim=-1, stable=True).to(torch.int32)
            if hkv > 1:
                num, idx = num.repeat_interleave(group, 0), idx.repeat_interleave(group, 0)
            return num[None], idx[None]

        if hkv == 1:
            def mask_mod(b, h, q_idx, kv_idx):
                return (kv_idx <= q_idx) & table[q_idx * count + kv_idx // block]
        else:
            def mask_mod(b, h, q_idx, kv_idx):
                return (kv_idx <= q_idx) & table[((h // group) * n + q_idx) * count
                                                 + kv_idx // block]
        kv_num, kv_idx = lists(partial)
        full_num, full_idx = lists(full)
        bm = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx,
                                      BLOCK_SIZE=(tq, tk), mask_mod=mask_mod,
                                      seq_lengths=(n, n))
        return bm, partial, full

    def median_ms(fn, calls: int) -> float:
        samples = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / calls)
        return float(np.median(samples))

    def time_ms(fn) -> float:
        fn()  # compiles
        torch.cuda.synchronize()
        started, batches = time.perf_counter(), 0
        while batches < 2 or time.perf_counter() - started < 0.25:
            for _ in range(args.batch_calls):
                fn()
            torch.cuda.synchronize()
            batches += 1
        return median_ms(fn, args.batch_calls)

    torch.manual_seed(0)
    q = torch.randn(batch, hq, n, d, device=dev, dtype=dtype)
    k = torch.randn(batch, hkv, n, d, device=dev, dtype=dtype)
    v = torch.randn(batch, hkv, n, d, device=dev, dtype=dtype)
    gates = torch.sigmoid(torch.randn(batch, hq, 3, device=dev, dtype=torch.float32)).to(dtype)

    build()
    torch.cuda.synchronize()
    mask_ms = median_ms(build, 1)
    bm_sel, partial, full = build()

    # Compressed branch: landmark j (mean of rows [j L, (j + 1) L)) once its last row is <= q.
    seg = args.compress_block
    landmarks = n // seg  # N is a multiple of the block at the bench's sizes

    def compressed_mod(b, h, q_idx, kv_idx):
        return (kv_idx + 1) * seg - 1 <= q_idx

    def window_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx <= args.window)

    bm_cmp = create_block_mask(compressed_mod, None, None, n, landmarks, device=dev)
    bm_win = create_block_mask(window_mod, None, None, n, n, device=dev)
    gqa = hq != hkv

    def selected(q, k, v, bm):
        return flex_attention(q, k, v, block_mask=bm, enable_gqa=gqa, return_lse=True)

    def nsa(q, k, v, gates, bm_cmp, bm_sel, bm_win):
        kc = k[:, :, :landmarks * seg].reshape(batch, hkv, landmarks, seg, d).mean(3)
        vc = v[:, :, :landmarks * seg].reshape(batch, hkv, landmarks, seg, d).mean(3)
        o_cmp = flex_attention(q, kc, vc, block_mask=bm_cmp, enable_gqa=gqa)
        o_sel = flex_attention(q, k, v, block_mask=bm_sel, enable_gqa=gqa)
        o_win = flex_attention(q, k, v, block_mask=bm_win, enable_gqa=gqa)
        g = gates[..., None, None]
        return g[:, :, 0] * o_cmp + g[:, :, 1] * o_sel + g[:, :, 2] * o_win

    selected_c = torch.compile(selected, fullgraph=True, dynamic=False)
    nsa_c = torch.compile(nsa, fullgraph=True, dynamic=False)
    with torch.no_grad():
        selected_ms = time_ms(lambda: selected_c(q, k, v, bm_sel))
        total_ms = time_ms(lambda: nsa_c(q, k, v, gates, bm_cmp, bm_sel, bm_win))
    tiles = partial.numel()
    return {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "n": n,
        "dtype": args.dtype,
        "selected_ms": selected_ms,
        "total_ms": total_ms,
        "mask_ms": mask_ms,
        "flex_block": [tq, tk],
        "block_sparsity": 1 - (int(partial.sum()) + int(full.sum())) / tiles,
        "full_tiles": int(full.sum()),
        "partial_tiles": int(partial.sum()),
        "timing": f"stream, CUDA events around {args.batch_calls} calls, median of "
                  f"{args.repeats}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kept", required=True, help="Weft's kept blocks, int32 .npy")
    parser.add_argument("--out", help="JSON output file")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    parser.add_argument("--block", type=int, default=64, help="selection block size")
    parser.add_argument("--compress-block", type=int, default=64)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--flex-block", default="128,128",
                        help="FlexAttention's BlockMask tile, queries,keys")
    parser.add_argument("--batch-calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check-mask", action="store_true",
                        help="numpy only: check the tile lists against the allowed set")
    args = parser.parse_args()
    if args.batch_calls < 20:
        raise SystemExit("--batch-calls must be at least 20")
    tile_k = int(args.flex_block.split(",")[1])
    if tile_k % args.block and args.block % tile_k:
        raise SystemExit(f"--block {args.block} and the key tile {tile_k}: one must divide "
                         "the other (a selection block may not straddle two key tiles)")
    if args.check_mask:
        return check_mask(args)
    result: dict
    try:
        import torch
        if not torch.cuda.is_available():
            result = {"skipped": "torch has no CUDA device here"}
        else:
            result = run(args)
    except ImportError as e:
        result = {"skipped": f"torch is not installed ({e})"}
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text, file=sys.stderr if "skipped" in result else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
