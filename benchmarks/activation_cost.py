"""Forward+backward cost and saved-for-backward bytes of PReLU and the activation zoo.

Prints two tables, every variant measured interleaved in one process (A B C ... A B C ...,
median over rounds after warm-up) so machine load hits all variants alike:

1. ReLU / LeakyReLU / torch.nn.PReLU / ours (shared, channel-wise, in-place or not; the
   default fused C++ backend ``[cpp]`` and the ``[eager]`` fallback), contiguous and
   channels_last, on a (32, 64, 56, 56) fp32 tensor;
2. the zoo grid (``--zoo``, the default table of this file since the zoo kernels landed): every
   registered activation (``make_activation`` defaults, and its ``inplace=True`` form where that
   changes what is kept), PyTorch's own GELU/ELU/SELU/SiLU/Mish/LeakyReLU/RReLU, on
   (16, 64, 56, 56) in training mode, fp32 and bf16, contiguous and channels_last; every
   variant timed once per round, in a fresh random order each round (no variant always follows
   the same one), and the ratio to the same round's in-place ReLU taken per round: the median
   of those per-round ratios is robust on a loaded machine;
3. with ``--focus``: only in-place ReLU vs ours channel-wise ``[cpp]`` (in-place or not), both
   layouts, many interleaved rounds; prints the median of the per-round ratios too (the
   robust number on a loaded machine).

Columns: median ms of one forward+backward, ratio to in-place ReLU, unique bytes saved for
backward (storages deduplicated by pointer, via ``saved_tensors_hooks``), and the extra bytes
over in-place ReLU (which keeps only its output, i.e. the input buffer itself).

Run (the malloc settings stop page faults from dominating, see docs/benchmarking.md)::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/activation_cost.py [--quick] [--compile] [--focus N] \\
        [--zoo] [--rounds N]

``--compile`` adds rows for ``set_prelu_backend("compile")`` (costs ~20-30 s per shape to
compile on a 2-core CPU, needs a C++ compiler).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
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


TIMER = time.perf_counter  # --timer cpu: time.process_time (CPU seconds of all threads)


def make_step(act: nn.Module, leaf: torch.Tensor, grad: torch.Tensor) -> Callable[[], float]:
    def step() -> float:
        leaf.grad = None
        for p in act.parameters():
            p.grad = None
        h = leaf.clone()  # a fresh non-leaf each step: in-place variants may overwrite it
        t0 = TIMER()
        act(h).backward(grad)
        return TIMER() - t0

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
    ap.add_argument("--zoo", action="store_true",
                    help="only the zoo grid (every activation, fp32/bf16, both layouts)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the zoo grid")
    ap.add_argument("--only", default="", help="zoo grid: comma-separated activation names")
    ap.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time instead of wall time (with --threads 1 it is "
                    "not inflated by waiting for a core on a loaded machine)")
    args = ap.parse_args()
    if args.timer == "cpu":
        global TIMER
        TIMER = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}")
    if args.zoo:
        only = [n for n in args.only.split(",") if n]
        zoo_grid((4, 16, 28, 28) if args.quick else (16, 64, 56, 56),
                 2 if args.quick else args.rounds, only)
        return
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

    set_prelu_backend("cpp")
    zoo_grid((4, 16, 28, 28) if args.quick else (16, 64, 56, 56), 2 if args.quick else args.rounds,
             [])


def cpu_model() -> str:
    """``lscpu``'s model name (ratios depend on the CPU kind: state it with every result)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown (no lscpu)"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


# PyTorch's own modules, for the comparison the zoo issue asks for
NATIVE = {
    "torch ReLU": lambda c: nn.ReLU(),  # not in place: what the extra output buffer costs
    "torch GELU": lambda c: nn.GELU(),
    "torch GELU(tanh)": lambda c: nn.GELU(approximate="tanh"),
    "torch ELU": lambda c: nn.ELU(),
    "torch SELU": lambda c: nn.SELU(),
    "torch SiLU": lambda c: nn.SiLU(),
    "torch Mish": lambda c: nn.Mish(),
    "torch LeakyReLU": lambda c: nn.LeakyReLU(0.01),
    "torch RReLU": lambda c: nn.RReLU(1 / 8, 1 / 3),
}
# activations whose inplace=True keeps less than inplace=False (the others ignore it)
INPLACE = {"relu", "leaky_relu", "prelu", "prelu_shared", "rrelu", "elu", "selu", "smelu", "helu"}


def zoo_variants(c: int, only: list[str]) -> list[tuple[str, Callable[[], nn.Module]]]:
    out: list[tuple[str, Callable[[], nn.Module]]] = [
        ("ReLU in-place [torch]", lambda: nn.ReLU(inplace=True))]
    for name in list_activations():
        if only and name not in only:
            continue
        out.append((name, lambda name=name: make_activation(name, channels=c, inplace=False)))
        if name in INPLACE:
            out.append((f"{name} in-place",
                        lambda name=name: make_activation(name, channels=c, inplace=True)))
    for label, build in NATIVE.items():
        if not only or any(label.lower().split()[1].startswith(n.split("_")[0]) for n in only):
            out.append((label, lambda build=build: build(c)))
    return out


def zoo_grid(shape: tuple[int, ...], rounds: int, only: list[str]) -> None:
    """Every activation, fp32/bf16 x contiguous/channels_last: per-round ratios to relu_."""
    torch.manual_seed(0)
    c = shape[1]
    mb = 2**20
    print(f"\nZoo grid: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"timer {TIMER.__name__}, input "
          f"{shape}, training mode, forward+backward net of the input copy; {rounds} "
          "interleaved rounds (each in a fresh random order) after 2 warm-up rounds; ratio = "
          "median over rounds of (time / same round's in-place ReLU)")
    for dtype in (torch.float32, torch.bfloat16):
        for fmt in (torch.contiguous_format, torch.channels_last):
            base = torch.randn(shape).to(dtype).contiguous(memory_format=fmt)
            grad = torch.randn_like(base)
            rows = []
            for label, build in zoo_variants(c, only):
                act = build().train()
                leaf = base.clone().requires_grad_()
                rows.append((label, make_step(act, leaf, grad), saved_bytes(act, leaf.clone())))
            times: list[list[float]] = [[] for _ in rows]
            order = list(range(len(rows)))
            shuffle = random.Random(0)
            for r in range(rounds + 2):
                # a fresh order each round: what ran just before a variant (the state of the
                # caches it finds) differs from round to round instead of biasing one variant
                shuffle.shuffle(order)
                for i in order:
                    t = rows[i][1]()
                    if r >= 2:
                        times[i].append(t)
            layout = "channels_last" if fmt == torch.channels_last else "contiguous"
            print(f"\n{str(dtype).replace('torch.', '')}, {layout}")
            print("| variant | median ms | x relu_ (median per-round ratio) | saved MB "
                  "| extra MB vs relu_ |")
            print("|---|---|---|---|---|")
            ref_kept = rows[0][2][1]
            for (label, _, (sv, kept)), ts in zip(rows, times, strict=True):
                ratio = statistics.median(t / t0 for t, t0 in zip(ts, times[0], strict=True))
                print(f"| {label} | {statistics.median(ts) * 1e3:.2f} | {ratio:.2f} "
                      f"| {sv / mb:.2f} | {(kept - ref_kept) / mb:.2f} |", flush=True)


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
