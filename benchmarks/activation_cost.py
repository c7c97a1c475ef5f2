"""Forward+backward cost and saved-for-backward bytes of PReLU and the activation zoo.

Prints two tables, every variant measured interleaved in one process (A B C ... A B C ...,
median over rounds after warm-up) so machine load hits all variants alike:

1. ReLU / LeakyReLU / torch.nn.PReLU / ours (shared, channel-wise, in-place or not; the
   default fused C++ backend ``[cpp]`` and the ``[eager]`` fallback), contiguous and
   channels_last, on a (32, 64, 56, 56) fp32 tensor;
2. every registered activation (contiguous);
3. with ``--focus``: only in-place ReLU vs ours channel-wise ``[cpp]`` (in-place or not), both
   layouts, many interleaved rounds; prints the median of the per-round ratios too (the
   robust number on a loaded machine).

Columns: median ms of one forward+backward, ratio to in-place ReLU, unique bytes saved for
backward (storages deduplicated by pointer, via ``saved_tensors_hooks``), and the extra bytes
over in-place ReLU (which keeps only its output, i.e. the input buffer itself).

Run (the malloc settings stop page faults from dominating, see docs/benchmarking.md)::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/activation_cost.py [--quick] [--compile] [--focus]

``--compile`` adds rows for ``set_prelu_backend("compile")`` (costs ~20-30 s per shape to
compile on a 2-core CPU, needs a C++ compiler).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from rectifiers.nn import PReLU, list_activations, make_activation, set_prelu_backend


def saved_bytes(act: nn.Module, h: torch.Tensor) -> tuple[int, int]:
    """Unique bytes saved for backward by ``act(h)``, and the same plus the output.

    Storages are deduplicated by pointer. The second number is what a network must keep
    alive per activation (the next layer saves the output anyway): in-place layers share
    one buffer between input and output, out-of-place ones keep two.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = act(h)
    saved = sum(seen.values())
    seen[y.untyped_storage().data_ptr()] = y.untyped_storage().nbytes()
    return saved, sum(seen.values())


def make_step(act: nn.Module, leaf: torch.Tensor, grad: torch.Tensor) -> Callable[[], float]:
    def step() -> float:
        leaf.grad = None
        for p in act.parameters():
            p.grad = None
        h = leaf.clone()  # a fresh non-leaf each step: in-place variants may overwrite it
        t0 = time.perf_counter()
        act(h).backward(grad)
        return time.perf_counter() - t0

    return step


def run_table(variants, shape, rounds: int, iters: int, warmup: int):
    torch.manual_seed(0)
    base = torch.randn(shape)
    rows = []
    for name, fmt, build in variants:
        x = base.contiguous(memory_format=fmt)
        leaf = x.clone().requires_grad_()
        grad = torch.randn_like(x)
        act = build()
        act.train()
        rows.append([name, fmt, make_step(act, leaf, grad), [], saved_bytes(act, leaf.clone())])
    for _ in range(warmup):
        for r in rows:
            r[2]()
    for _ in range(rounds):
        for r in rows:
            r[3].extend(r[2]() for _ in range(iters))
    return [(name, fmt, statistics.median(ts) * 1e3, nb) for name, fmt, _, ts, nb in rows]


def print_table(title: str, results, ref_name: str) -> None:
    ref = {fmt: (ms, nb) for name, fmt, ms, nb in results if name == ref_name}
    mb = 2**20
    print(f"\n{title}")
    print(f"| {'variant':40s} | {'layout':13s} | median ms | x relu_ | saved MB "
          "| saved+out MB | extra MB vs relu_ |")
    print(f"|{'-' * 42}|{'-' * 15}|-----------|---------|----------|--------------|"
          "-------------------|")
    for name, fmt, ms, (sv, kept) in results:
        rms, (_, rkept) = ref[fmt]
        layout = "channels_last" if fmt == torch.channels_last else "contiguous"
        print(
            f"| {name:40s} | {layout:13s} | {ms:9.2f} | {ms / rms:7.2f} | {sv / mb:8.2f} "
            f"| {kept / mb:12.2f} | {(kept - rkept) / mb:17.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shape, few repeats (smoke)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile backend rows")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--focus", type=int, default=0, metavar="ROUNDS",
                    help="only the focused ReLU_ vs channel-wise [cpp] comparison, ROUNDS rounds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (4, 16, 28, 28) if args.quick else (32, 64, 56, 56)
    rounds, iters, warmup = (2, 2, 1) if args.quick else (9, 3, 2)
    c = shape[1]
    if args.focus:
        focus(shape, args.focus)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {shape} fp32, "
          f"{rounds}x{iters} timed steps per variant after {warmup} warm-up rounds")

    def ours(n, inplace, backend="cpp"):
        def build():
            set_prelu_backend(backend)
            return _Backend(PReLU(n, inplace=inplace), backend)

        return build

    core = [
        ("ReLU in-place", lambda: nn.ReLU(inplace=True)),
        ("ReLU", lambda: nn.ReLU()),
        ("LeakyReLU(0.01)", lambda: nn.LeakyReLU(0.01)),
        ("LeakyReLU(0.01) in-place", lambda: nn.LeakyReLU(0.01, inplace=True)),
        ("torch.nn.PReLU shared", lambda: nn.PReLU(1)),
        ("torch.nn.PReLU channel-wise", lambda: nn.PReLU(c)),
        ("ours PReLU shared [cpp]", ours(1, False)),
        ("ours PReLU channel-wise [cpp]", ours(c, False)),
        ("ours PReLU shared in-place [cpp]", ours(1, True)),
        ("ours PReLU channel-wise in-place [cpp]", ours(c, True)),
        ("ours PReLU shared [eager]", ours(1, False, "eager")),
        ("ours PReLU channel-wise [eager]", ours(c, False, "eager")),
        ("ours PReLU ch-wise in-place [eager]", ours(c, True, "eager")),
    ]
    if args.compile:
        core += [
            ("ours PReLU shared [compile]", ours(1, False, "compile")),
            ("ours PReLU channel-wise [compile]", ours(c, False, "compile")),
            ("ours PReLU ch-wise in-place [compile]", ours(c, True, "compile")),
        ]
    variants = [
        (n, fmt, b) for fmt in (torch.contiguous_format, torch.channels_last) for n, b in core
    ]
    print_table("Table 1: PReLU vs ReLU, forward+backward", run_table(
        variants, shape, rounds, iters, warmup), "ReLU in-place")

    zoo = [("ReLU in-place", torch.contiguous_format, lambda: nn.ReLU(inplace=True))]
    for name in list_activations():
        zoo.append((name, torch.contiguous_format,
                    lambda name=name: make_activation(name, channels=c)))
    set_prelu_backend("cpp")
    print_table("Table 2: activation zoo (make_activation defaults), forward+backward",
                run_table(zoo, shape, rounds, iters, warmup), "ReLU in-place")


def focus(shape: tuple[int, ...], rounds: int) -> None:
    """In-place ReLU vs ours channel-wise [cpp], interleaved step by step, both layouts."""
    torch.manual_seed(0)
    base = torch.randn(shape)
    c = shape[1]
    names = ["ReLU in-place", "ours channel-wise [cpp]", "ours channel-wise in-place [cpp]"]
    set_prelu_backend("cpp")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {shape} fp32, "
          f"{rounds} interleaved rounds after 3 warm-up rounds")
    print("| layout | variant | median ms | x relu_ (ratio of medians) | median per-round ratio |")
    print("|---|---|---|---|---|")
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = base.contiguous(memory_format=fmt)
        grad = torch.randn_like(x)
        acts = [nn.ReLU(inplace=True), PReLU(c), PReLU(c, inplace=True)]
        steps = [make_step(a, x.clone().requires_grad_(), grad) for a in acts]
        times: list[list[float]] = [[] for _ in acts]
        for r in range(rounds + 3):
            for i, step in enumerate(steps):
                t = step()
                if r >= 3:
                    times[i].append(t)
        layout = "channels_last" if fmt == torch.channels_last else "contiguous"
        ref = statistics.median(times[0])
        for name, ts in zip(names, times, strict=True):
            per_round = statistics.median(t / r0 for t, r0 in zip(ts, times[0], strict=True))
            med = statistics.median(ts)
            print(f"| {layout} | {name} | {med * 1e3:.2f} | {med / ref:.2f} | {per_round:.2f} |")


class _Backend(nn.Module):
    """Switches the global PReLU backend around the call so variants can be interleaved."""

    def __init__(self, inner: nn.Module, backend: str) -> None:
        super().__init__()
        self.inner, self.backend = inner, backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        set_prelu_backend(self.backend)
        return self.inner(x)


if __name__ == "__main__":
    main()
