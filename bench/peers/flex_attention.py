"""The peer Weft is measured against: PyTorch FlexAttention (and dense SDPA) on the same shapes
and patterns, on the same GPU. Each Weft JSON pattern becomes a mask_mod with exactly the allowed
set of DESIGN §2, written as a few comparisons and one-dimensional table lookups; a gated pattern
is one flex_attention call per branch plus the blend, compiled together as one function.

    deno eval 'import { SUITE } from "./bench/suite.ts"; console.log(JSON.stringify(SUITE))' \
        > suite.json
    python3 bench/peers/flex_attention.py --suite suite.json --out peer.json \
        [--n 4096,16384,65536] [--dtypes f16,f32] [--heads 8] [--head-dim 64] \
        [--modes default,max-autotune-no-cudagraphs] [--patterns dense,ring] \
        [--batch-calls 20] [--repeats 5] [--timing graph|stream] [--exact-kernel-mask] \
        [--backward]
    python3 bench/peers/flex_attention.py --check-masks 1000,4096 [--suite suite.json]

Writes a JSON array of rows {pattern, n, dtype, ms, impl, block_sparsity, mode, ms_stream,
timing}, and with --backward also {ms_fwd_bwd, ms_fwd_bwd_stream}: impl is "sdpa" (dense
F.scaled_dot_product_attention, pattern "sdpa_dense", no mode), "flex_attention" (mode
"default") or "flex_attention_max_autotune" (mode "max-autotune-no-cudagraphs"). The file is
rewritten after every row, so a run cut short keeps what it measured.

Timing. Each call (one pattern, one torch.compile mode) is compiled with fullgraph=True, so
nothing falls back to eager, then warmed up: the compiling call, then back-to-back batches until
the GPU has worked 250 ms (at least two batches). A sample is one CUDA event, --batch-calls calls
with no synchronisation between them, one CUDA event, divided by the number of calls; a row's
time is the median of --repeats samples. `ms_stream` issues the calls from Python; `ms` (with
the default --timing graph) replays the same batch captured in one CUDA graph, which leaves out
the host's dispatch (about 0.1 ms per compiled call, more than a small kernel takes) the way
Weft's timing submits its repeats in one command buffer; `timing` says which `ms` is ("stream"
where capture failed or --timing stream). Block-mask creation is not timed (FlexAttention's own
convention: built once per pattern and shape). Forward calls run under torch.no_grad() and
return the log-sum-exp as well as the output, as Weft does; float32 runs with TF32 off
(PyTorch's default), like Weft's float32 kernels.

--backward adds the forward and backward together, on the same block masks and values: copies
of q, k and v that require gradients, and one fixed random dO shaped like the output. One call
sets q.grad, k.grad and v.grad to None (no synchronisation), then runs `out = attention(q, k,
v); out.backward(dO)`; a gated pattern's out is the gates' blend of all its branches, compiled
as one function as in the forward, so the backward runs through every branch and the blend.
It is compiled in the row's mode (fullgraph=True; the output alone, no log-sum-exp) and timed
as above: `ms_fwd_bwd` per call from the CUDA graph (or from the launches, as
`ms_fwd_bwd_stream` always is), while `ms` stays the forward alone. Where the two timings
differ, `timing` adds the backward's after a comma ("cuda_graph, fwd_bwd stream": capturing
the backward failed). A forward and backward that fails leaves ms_fwd_bwd and
ms_fwd_bwd_stream null and the rest of the row as it was. The dense SDPA row is timed the same
way (F.scaled_dot_product_attention, uncompiled).

The kernel's mask_mod. FlexAttention runs mask_mod only in tiles the block mask marks partial.
Random blocks aligned to its 128 x 128 tile (BigBird's) are whole tiles: in a union they make
every tile they touch full and are false in the others, so the block mask is built from the
exact mask_mod and the kernel runs the union without them (kernel_mask_mod_of). That is the
same allowed set; --exact-kernel-mask keeps the exact mask_mod in the kernel instead.

--modes picks torch.compile modes: "default" and "max-autotune-no-cudagraphs" (which autotunes
FlexAttention's tile shapes; compiling takes a minute or more per pattern). A mode that fails
to compile for a pattern is reported on stderr and that row is left out.

--check-masks N[,N...] needs no GPU and no torch: it evaluates every mask_mod on numpy index
arrays and compares it with a literal transcription of DESIGN §2 (and the kernel's mask_mod on
every partial tile), for the suite's patterns (when --suite is given) and a few more, and exits
non-zero on any difference.
"""

import argparse
import json
import math
import sys
import time

import numpy as np

M32 = 0xFFFFFFFF
MODES = ("default", "max-autotune-no-cudagraphs")
IMPL_OF_MODE = {
    "default": "flex_attention",
    "max-autotune-no-cudagraphs": "flex_attention_max_autotune",
}
# Pooled landmarks, data-dependent buckets and TypeScript predicates or score modifiers are not
# a mask_mod over (q, k).
UNTRANSLATABLE = {"lowRank", "hashBucket", "predicate", "scored"}
# Up to this many runs of consecutive global tokens are written as comparisons; more use a table.
MAX_GLOBAL_RUNS = 4
# FlexAttention's block-mask tile, queries and keys (create_block_mask's default).
FLEX_BLOCK = 128


def lowbias32(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def random_key_blocks(p: dict, n: int) -> np.ndarray:
    """rand_kb[qb, j]: the j-th key block drawn for query block qb (DESIGN §2, random blocks)."""
    s, r, seed = p["blockSize"], p["blocks"], p["seed"]
    nkb = math.ceil(n / s)
    return np.array(
        [[lowbias32((seed + lowbias32((qb + lowbias32(j)) & M32)) & M32) % nkb for j in range(r)]
         for qb in range(nkb)],
        dtype=np.int32,
    ).reshape(nkb, r)


def global_runs(tokens: list, n: int) -> list:
    """The distinct tokens as sorted half-open runs [a, b) of consecutive positions."""
    bad = [t for t in tokens if not 0 <= t < n]
    if bad:
        raise ValueError(f"global token {bad[0]} is not below N = {n}")
    runs = []
    for t in sorted(set(tokens)):
        if runs and runs[-1][1] == t:
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1])
    return [tuple(r) for r in runs]


def block_of(x, size: int):
    """x // size, as a shift when size is a power of two."""
    return x >> (size.bit_length() - 1) if size & (size - 1) == 0 else x // size


def mask_mod_of(p: dict, n: int, table):
    """A mask_mod (b, h, q, k) -> bool for pattern p at length n.

    Written only with operators (`&`, `|`, `==`, `<`, `-`, `%`, `>>`, abs and indexing a 1-D
    table with an index tensor), so the same function runs on torch tensors (scalar tensors
    under FlexAttention's vmap, index blocks in its kernel) and on numpy arrays (--check-masks).
    `table(np_array)` turns a lookup table into the array type the mask will index.
    """
    kind = p["kind"]
    if kind == "dense":
        return lambda b, h, q, k: q >= 0
    if kind == "causal":
        return lambda b, h, q, k: k <= q
    if kind == "window":
        # Clamped to n: a reach of n or more is no limit (and stays clear of int32 overflow).
        left, right = min(p["left"], n), min(p["right"], n)
        if left == n and right == n:
            return lambda b, h, q, k: q >= 0
        if left == n:
            return lambda b, h, q, k: k <= q + right
        if right == n:
            return lambda b, h, q, k: k >= q - left
        return lambda b, h, q, k: (k >= q - left) & (k <= q + right)
    if kind == "ring":
        # min(d, n - d) <= r with d = |q - k| in [0, n) is d <= r or d >= n - r.
        r = min(p["radius"], n)

        def ring(b, h, q, k):
            d = abs(q - k)
            return (d <= r) | (d >= n - r)

        return ring
    if kind == "stride":
        # |q - k| < n, so a period of n or more allows q == k only.
        period = min(p["period"], n)
        if period == 1:
            return lambda b, h, q, k: q >= 0
        if period == n:
            return lambda b, h, q, k: q == k
        if period & (period - 1) == 0:
            # Two's complement: x & (period - 1) is x mod period for negative x too.
            return lambda b, h, q, k: ((q - k) & (period - 1)) == 0
        return lambda b, h, q, k: (q - k) % period == 0
    if kind == "global":
        runs = global_runs(p["tokens"], n)
        if not runs:
            return lambda b, h, q, k: q < 0  # no tokens allow nothing
        if len(runs) > MAX_GLOBAL_RUNS:
            is_global = np.zeros(n, dtype=bool)
            for a, e in runs:
                is_global[a:e] = True
            is_global = table(is_global)
            return lambda b, h, q, k: is_global[q] | is_global[k]

        def in_runs(x):
            out = None
            for a, e in runs:
                term = x < e if a == 0 else (x >= a if e == n else (x >= a) & (x < e))
                out = term if out is None else out | term
            return out

        return lambda b, h, q, k: in_runs(q) | in_runs(k)
    if kind == "random":
        # r one-dimensional lookups per query block: columns[j][qb] is rand_kb[qb, j]. A block
        # drawn twice is two equal comparisons, allowed once.
        s = p["blockSize"]
        rand_kb = random_key_blocks(p, n)
        columns = [table(np.ascontiguousarray(rand_kb[:, j])) for j in range(rand_kb.shape[1])]

        def random_blocks(b, h, q, k):
            qb, kb = block_of(q, s), block_of(k, s)
            out = kb == columns[0][qb]
            for col in columns[1:]:
                out = out | (kb == col[qb])
            return out

        return random_blocks
    if kind in ("union", "intersect"):
        mods = [mask_mod_of(c, n, table) for c in p["of"]]

        def combine(b, h, q, k):
            out = mods[0](b, h, q, k)
            for m in mods[1:]:
                out = (out | m(b, h, q, k)) if kind == "union" else (out & m(b, h, q, k))
            return out

        return combine
    raise ValueError(f"pattern kind {kind!r} has no FlexAttention translation")


def block_constant(p: dict, n: int) -> bool:
    """p's allowed set is a union of whole FLEX_BLOCK x FLEX_BLOCK tiles of the N x N grid."""
    return p["kind"] == "random" and p["blockSize"] % FLEX_BLOCK == 0 and n % FLEX_BLOCK == 0


def kernel_mask_mod_of(p: dict, n: int, table):
    """The mask_mod the kernel runs: equal to mask_mod_of(p) on every partial tile.

    FlexAttention evaluates mask_mod only in tiles the block mask marks partial; full tiles skip
    it. A union member whose allowed set is whole tiles (random blocks aligned to the tile) makes
    every tile it touches full, and is false in every other tile, so the kernel can leave it
    out: the block mask, built from the exact mask_mod, already carries it. Returns None when
    nothing can be left out (the kernel then runs the exact mask_mod).
    """
    if p["kind"] == "union":
        kept = [c for c in p["of"] if not block_constant(c, n)]
        reduced = [kernel_mask_mod_of(c, n, table) for c in kept]
        if len(kept) == len(p["of"]) and all(r is None for r in reduced):
            return None
        if not kept:
            return lambda b, h, q, k: q < 0  # every allowed tile is full
        mods = [r or mask_mod_of(c, n, table) for c, r in zip(kept, reduced)]

        def union(b, h, q, k):
            out = mods[0](b, h, q, k)
            for m in mods[1:]:
                out = out | m(b, h, q, k)
            return out

        return union
    if block_constant(p, n):
        return lambda b, h, q, k: q < 0
    return None


def kinds_in(p) -> set:
    """Every pattern kind that appears in p."""
    if isinstance(p, list):
        return set().union(*(kinds_in(c) for c in p)) if p else set()
    if not isinstance(p, dict):
        return set()
    out = {p["kind"]} if "kind" in p else set()
    for key in ("of", "branches", "pattern"):
        if key in p:
            out |= kinds_in(p[key])
    return out


# ---- --check-masks: numpy only ----


def reference_allowed(p: dict, n: int) -> np.ndarray:
    """allowed[q, k], transcribed literally from DESIGN §2's table (int64, no shortcuts)."""
    q = np.arange(n, dtype=np.int64)[:, None]
    k = np.arange(n, dtype=np.int64)[None, :]
    kind = p["kind"]
    if kind == "dense":
        out = np.ones((n, n), dtype=bool)
    elif kind == "causal":
        out = k <= q
    elif kind == "window":
        out = (q - p["left"] <= k) & (k <= q + p["right"])
    elif kind == "ring":
        d = np.abs(q - k)
        out = np.minimum(d, n - d) <= p["radius"]
    elif kind == "stride":
        out = np.mod(q - k, p["period"]) == 0
    elif kind == "global":
        if any(t >= n for t in p["tokens"]):
            raise ValueError("token out of range")
        is_global = np.isin(np.arange(n), p["tokens"])
        out = is_global[q] | is_global[k]
    elif kind == "random":
        s, r, seed = p["blockSize"], p["blocks"], p["seed"]
        nkb = math.ceil(n / s)
        allowed = np.zeros((nkb, nkb), dtype=bool)
        for qb in range(nkb):
            for j in range(r):
                kb = lowbias32((seed + lowbias32((qb + lowbias32(j)) & M32)) & M32) % nkb
                allowed[qb, kb] = True
        out = allowed[q // s, k // s]
    elif kind == "union":
        out = np.logical_or.reduce([reference_allowed(c, n) for c in p["of"]])
    elif kind == "intersect":
        out = np.logical_and.reduce([reference_allowed(c, n) for c in p["of"]])
    else:
        raise ValueError(kind)
    return np.broadcast_to(out, (n, n))


# Kinds and corners the suite does not reach, as functions of N.
EXTRA_CHECKS = [
    ("window asymmetric", lambda n: {"kind": "window", "left": 37, "right": 5}),
    ("window one-sided", lambda n: {"kind": "window", "left": 0, "right": 100}),
    ("window unbounded", lambda n: {"kind": "window", "left": 10 ** 12, "right": 3}),
    ("window everything", lambda n: {"kind": "window", "left": 10 ** 12, "right": 10 ** 12}),
    ("ring wide", lambda n: {"kind": "ring", "radius": 10 ** 9}),
    ("ring half", lambda n: {"kind": "ring", "radius": n // 2}),
    ("ring zero", lambda n: {"kind": "ring", "radius": 0}),
    ("stride 1", lambda n: {"kind": "stride", "period": 1}),
    ("stride 3", lambda n: {"kind": "stride", "period": 3}),
    ("stride 48", lambda n: {"kind": "stride", "period": 48}),
    ("stride N", lambda n: {"kind": "stride", "period": n}),
    ("stride huge", lambda n: {"kind": "stride", "period": 10 ** 10}),
    ("global none", lambda n: {"kind": "global", "tokens": []}),
    ("global runs", lambda n: {"kind": "global", "tokens": [5, 3, 4, 4, 90, 200, 201]}),
    ("global many", lambda n: {"kind": "global", "tokens": list(range(0, 400, 7))}),
    ("global tail", lambda n: {"kind": "global", "tokens": [n - 2, n - 1, 0]}),
    ("random 3x100", lambda n: {"kind": "random", "blocks": 3, "blockSize": 100, "seed": 7}),
    ("random 40x64", lambda n: {"kind": "random", "blocks": 40, "blockSize": 64,
                                "seed": 4294967295}),
    ("random 1x1", lambda n: {"kind": "random", "blocks": 1, "blockSize": 1, "seed": 3}),
    ("random 2x128", lambda n: {"kind": "random", "blocks": 2, "blockSize": 128, "seed": 9}),
    ("union random 256", lambda n: {"kind": "union", "of": [
        {"kind": "window", "left": 100, "right": 0},
        {"kind": "union", "of": [{"kind": "stride", "period": 200},
                                 {"kind": "random", "blocks": 2, "blockSize": 256, "seed": 5}]},
        {"kind": "intersect", "of": [{"kind": "causal"},
                                     {"kind": "random", "blocks": 4, "blockSize": 128,
                                      "seed": 2}]}]}),
    ("intersect", lambda n: {"kind": "intersect",
                             "of": [{"kind": "causal"}, {"kind": "stride", "period": 5}]}),
]


def partial_tiles(allowed: np.ndarray) -> np.ndarray:
    """[q, k]: the pair lies in a FLEX_BLOCK tile that is neither all allowed nor all refused
    (the tiles FlexAttention runs mask_mod in); a ragged last tile counts its padding refused."""
    n = allowed.shape[0]
    t = -(-n // FLEX_BLOCK)
    padded = np.zeros((t * FLEX_BLOCK, t * FLEX_BLOCK), dtype=bool)
    padded[:n, :n] = allowed
    count = padded.reshape(t, FLEX_BLOCK, t, FLEX_BLOCK).sum(axis=(1, 3))
    partial = (count > 0) & (count < FLEX_BLOCK * FLEX_BLOCK)
    return np.repeat(np.repeat(partial, FLEX_BLOCK, 0), FLEX_BLOCK, 1)[:n, :n]


def mismatch(label: str, what: str, got: np.ndarray, want: np.ndarray, where: np.ndarray) -> bool:
    diff = (got != want) & where
    if not diff.any():
        return False
    qi, ki = np.argwhere(diff)[0]
    print(f"MISMATCH {label}: {what} differs at {int(diff.sum())} pairs, first (q={qi}, k={ki}): "
          f"{bool(got[qi, ki])}, DESIGN §2 {bool(want[qi, ki])}", file=sys.stderr)
    return True


def same(a):
    return a


def check_masks(ns: list, suite: list) -> int:
    cases = []
    for entry in suite:
        pattern = entry["pattern"]
        if kinds_in(pattern) & UNTRANSLATABLE:
            continue
        branches = pattern["branches"] if pattern["kind"] == "gated" else [pattern]
        for i, b in enumerate(branches):
            name = f"{entry['name']}[{i}]" if len(branches) > 1 else entry["name"]
            cases.append((name, lambda n, b=b: b))
    cases += EXTRA_CHECKS
    failures = 0
    for n in ns:
        q = np.arange(n, dtype=np.int32)[:, None]  # int32, as FlexAttention's indices
        k = np.arange(n, dtype=np.int32)[None, :]
        for name, pattern_at in cases:
            p = pattern_at(n)
            if any(t >= n for t in p.get("tokens", [])):
                continue
            want = reference_allowed(p, n)
            got = np.broadcast_to(mask_mod_of(p, n, same)(None, None, q, k), (n, n))
            bad = mismatch(f"{name} n={n}", "mask_mod", got, want, np.ones((n, n), dtype=bool))
            kernel_mod = kernel_mask_mod_of(p, n, same)
            if kernel_mod is not None:
                got = np.broadcast_to(kernel_mod(None, None, q, k), (n, n))
                bad |= mismatch(f"{name} n={n}", "kernel mask_mod", got, want, partial_tiles(want))
            failures += bad
            if not bad:
                print(f"ok {name} n={n} (density {want.mean():.4f}"
                      f"{', kernel mask_mod reduced' if kernel_mod else ''})", file=sys.stderr)
    print(f"{failures} mismatches over {len(cases)} patterns at N = {ns}", file=sys.stderr)
    return 1 if failures else 0


# ---- timing on the GPU ----


def run(args) -> list:
    import torch
    import torch._dynamo
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

    # Every pattern's block mask is a compile of create_block_mask with another mask_mod.
    for name in ("cache_size_limit", "recompile_limit",
                 "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 1000)
    dev = "cuda"
    compiled_create_block_mask = torch.compile(create_block_mask, dynamic=False)

    def table(a: np.ndarray):
        return torch.as_tensor(a, device=dev)

    def block_mask(p: dict, n: int):
        mask_mod = mask_mod_of(p, n, table)
        # Compiled, it builds the mask tile by tile instead of materialising N x N booleans.
        try:
            bm = compiled_create_block_mask(mask_mod, None, None, n, n, device=dev,
                                            BLOCK_SIZE=FLEX_BLOCK)
        except Exception as e:  # older PyTorch: the _compile flag did the same
            print(f"warning: compiled create_block_mask failed ({e}); trying _compile=True",
                  file=sys.stderr)
            bm = create_block_mask(mask_mod, None, None, n, n, device=dev,
                                   BLOCK_SIZE=FLEX_BLOCK, _compile=True)
        kernel_mod = None if args.exact_kernel_mask else kernel_mask_mod_of(p, n, table)
        if kernel_mod is None:
            return bm
        return BlockMask.from_kv_blocks(
            bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices,
            BLOCK_SIZE=bm.BLOCK_SIZE, mask_mod=kernel_mod, seq_lengths=(n, n))

    def compiled_call(gates: list, mode: str):
        if len(gates) == 1:
            def call(q, k, v, bm):
                return flex_attention(q, k, v, block_mask=bm, return_lse=True)
        else:
            def call(q, k, v, *bms):
                out, lses = None, []
                for g, bm in zip(gates, bms):
                    o, lse = flex_attention(q, k, v, block_mask=bm, return_lse=True)
                    out = g * o if out is None else out + g * o
                    lses.append(lse)
                return out, lses
        return torch.compile(call, fullgraph=True, dynamic=False,
                             mode=None if mode == "default" else mode)

    def compiled_output(gates: list, mode: str):
        """The output alone (--backward): one branch's, or the gates' blend of every branch."""
        def call(q, k, v, *bms):
            out = None
            for g, bm in zip(gates, bms):
                o = flex_attention(q, k, v, block_mask=bm)
                if len(gates) > 1:
                    o = g * o
                out = o if out is None else out + o
            return out
        return torch.compile(call, fullgraph=True, dynamic=False,
                             mode=None if mode == "default" else mode)

    def median_sample(launch_batch) -> float:
        samples = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            launch_batch()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / args.batch_calls)
        return float(np.median(samples))

    def time_ms(fn, what: str = "") -> tuple:
        """(CUDA-graph ms or None, stream ms) per call of fn."""
        def stream_batch():
            for _ in range(args.batch_calls):
                fn()

        fn()  # compiles
        torch.cuda.synchronize()
        started, batches = time.perf_counter(), 0
        while batches < 2 or time.perf_counter() - started < 0.25:
            stream_batch()
            torch.cuda.synchronize()
            batches += 1
        stream_ms = median_sample(stream_batch)
        if args.timing == "stream":
            return None, stream_ms
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                stream_batch()
            for _ in range(2):
                graph.replay()
            graph_ms = median_sample(graph.replay)
            del graph
            return graph_ms, stream_ms
        except Exception as e:
            print(f"warning: {what + ': ' if what else ''}CUDA graph capture failed "
                  f"({type(e).__name__}: {e}); stream timing only", file=sys.stderr)
            torch.cuda.synchronize()
            return None, stream_ms

    def time_fwd_bwd(attention, grad_inputs: tuple, what: str) -> tuple:
        """time_ms of `attention(q, k, v).backward(dO)` on the inputs that require gradients;
        (None, None) where it fails."""
        qg, kg, vg, d_out = grad_inputs

        def step():
            qg.grad = kg.grad = vg.grad = None  # no accumulation, no synchronisation
            attention(qg, kg, vg).backward(d_out)

        try:
            with torch.enable_grad():
                return time_ms(step, f"{what} fwd+bwd")
        except Exception as e:
            print(f"warning: {what} fwd+bwd: {type(e).__name__}: {e}; ms_fwd_bwd null",
                  file=sys.stderr)
            return None, None
        finally:
            qg.grad = kg.grad = vg.grad = None

    suite = json.load(open(args.suite))
    if args.patterns:
        wanted = args.patterns.split(",")
        unknown = set(wanted) - {e["name"] for e in suite}
        if unknown:
            raise SystemExit(f"unknown pattern(s) {sorted(unknown)}")
        suite = [e for e in suite if e["name"] in wanted]
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}: expected one of {', '.join(MODES)}")
    rows = []

    def emit(row: dict, graph_ms, stream_ms, label: str, fwd_bwd=None):
        """fwd_bwd: time_fwd_bwd's (graph ms, stream ms) with --backward, else None."""
        row["ms"] = graph_ms if graph_ms is not None else stream_ms
        row["ms_stream"] = stream_ms
        row["timing"] = "cuda_graph" if graph_ms is not None else "stream"
        graph_text = f"{graph_ms:.4f} ms graph, " if graph_ms is not None else ""
        text = f"{label}: {graph_text}{stream_ms:.4f} ms stream"
        if fwd_bwd is not None:
            bwd_graph, bwd_stream = fwd_bwd
            row["ms_fwd_bwd"] = bwd_graph if bwd_graph is not None else bwd_stream
            row["ms_fwd_bwd_stream"] = bwd_stream
            if bwd_stream is not None:
                bwd_timing = "cuda_graph" if bwd_graph is not None else "stream"
                if bwd_timing != row["timing"]:
                    row["timing"] += f", fwd_bwd {bwd_timing}"
                bwd_graph_text = f"{bwd_graph:.4f} ms graph, " if bwd_graph is not None else ""
                text += f"; fwd+bwd {bwd_graph_text}{bwd_stream:.4f} ms stream"
        rows.append(row)
        json.dump(rows, open(args.out, "w"), indent=1)  # partial results survive a time-out
        print(text, file=sys.stderr)

    with torch.no_grad():
        for dtype_name in args.dtypes.split(","):
            dtype = {"f16": torch.float16, "f32": torch.float32}[dtype_name]
            for n in [int(x) for x in args.n.split(",")]:
                shape = (1, args.heads, n, args.head_dim)
                gen = torch.Generator(device=dev).manual_seed(n)
                q, k, v = (torch.randn(shape, device=dev, dtype=dtype, generator=gen)
                           for _ in range(3))
                # --backward: leaf copies that require gradients, and dO (the output's shape).
                grad_inputs = None
                if args.backward:
                    grad_inputs = (*(t.detach().clone().requires_grad_() for t in (q, k, v)),
                                   torch.randn(shape, device=dev, dtype=dtype, generator=gen))
                try:
                    label = f"sdpa dense n={n} {dtype_name}"
                    graph_ms, stream_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v),
                                                  label)
                    fwd_bwd = None if grad_inputs is None else time_fwd_bwd(
                        F.scaled_dot_product_attention, grad_inputs, label)
                    emit({"pattern": "sdpa_dense", "n": n, "dtype": dtype_name, "impl": "sdpa"},
                         graph_ms, stream_ms, label, fwd_bwd)
                except Exception as e:
                    print(f"warning: sdpa n={n} {dtype_name} failed: {e}", file=sys.stderr)

                # Block masks first, untimed, once per pattern and shape.
                prepared = []
                for entry in suite:
                    name, pattern = entry["name"], entry["pattern"]
                    if kinds_in(pattern) & UNTRANSLATABLE:
                        print(f"skip {name}: no FlexAttention mask_mod for it", file=sys.stderr)
                        continue
                    branches = pattern["branches"] if pattern["kind"] == "gated" else [pattern]
                    gates = pattern.get("gates") or [1 / len(branches)] * len(branches)
                    try:
                        masks = [block_mask(b, n) for b in branches]
                    except Exception as e:  # report and go on with the other patterns
                        print(f"warning: {name} n={n}: no block mask ({e})", file=sys.stderr)
                        continue
                    sparsity = float(np.mean([bm.sparsity() for bm in masks])) / 100
                    prepared.append((name, gates, masks, sparsity))

                for mode in modes:
                    for name, gates, masks, sparsity in prepared:
                        # A fresh Dynamo cache per compile: no mode or pattern reuses another's.
                        torch._dynamo.reset()
                        call = compiled_call(gates, mode)
                        label = f"flex {name} n={n} {dtype_name} {mode}"
                        try:
                            graph_ms, stream_ms = time_ms(lambda: call(q, k, v, *masks), label)
                        except Exception as e:
                            print(f"warning: {label}: {type(e).__name__}: {e}; row left out",
                                  file=sys.stderr)
                            continue
                        fwd_bwd = None
                        if grad_inputs is not None:
                            output = compiled_output(gates, mode)
                            fwd_bwd = time_fwd_bwd(
                                lambda qg, kg, vg: output(qg, kg, vg, *masks), grad_inputs, label)
                            del output
                        emit({"pattern": name, "n": n, "dtype": dtype_name,
                              "impl": IMPL_OF_MODE[mode], "block_sparsity": sparsity,
                              "mode": mode}, graph_ms, stream_ms,
                             f"{label} (block sparsity {sparsity:.3f})", fwd_bwd)
                del prepared, q, k, v, grad_inputs
                torch._dynamo.reset()
                torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", help="JSON array of {name, pattern} (bench/suite.ts's SUITE)")
    parser.add_argument("--out", help="JSON file for the rows")
    parser.add_argument("--n", default="4096,16384,65536")
    parser.add_argument("--dtypes", default="f16,f32")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--patterns", help="suite names to run (default: all)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"torch.compile modes, from {', '.join(MODES)}")
    parser.add_argument("--batch-calls", type=int, default=20,
                        help="calls back to back between two CUDA events (one sample)")
    parser.add_argument("--repeats", type=int, default=5, help="samples per row (median taken)")
    parser.add_argument("--timing", choices=("graph", "stream"), default="graph",
                        help="ms from a CUDA graph of the batch (default) or from the launches")
    parser.add_argument("--exact-kernel-mask", action="store_true",
                        help="run the exact mask_mod in the kernel too (no tile-level reduction)")
    parser.add_argument("--backward", action="store_true",
                        help="also time forward + backward (out.backward(dO)) as ms_fwd_bwd")
    parser.add_argument("--check-masks", metavar="N[,N...]",
                        help="check the mask_mods against DESIGN §2 with numpy, then exit")
    args = parser.parse_args()
    if args.check_masks:
        suite = json.load(open(args.suite)) if args.suite else []
        sys.exit(check_masks([int(x) for x in args.check_masks.split(",")], suite))
    if not args.suite or not args.out:
        parser.error("--suite and --out are required to measure")
    if args.batch_calls < 1 or args.repeats < 1:
        parser.error("--batch-calls and --repeats must be at least 1")
    json.dump(run(args), open(args.out, "w"), indent=1)
