"""Training-step throughput of the PReLU-nets, next to the machine's measured matmul peak.

What it measures (one process, variants interleaved A B C A B C ..., medians after warm-up,
because absolute times drift on a shared machine; ratios are the robust numbers):

* images/s and achieved GFLOP/s of one SGD training step (forward + backward + update) of the
  default small model (``prelunet_small``, batch 128, 28x28x1); FLOPs are counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on the real step, not by hand;
* the machine's matmul peak in the same run (fp32 and bf16, n^3 matmul), for scale;
* PReLU-net step time / ReLU-net step time (the paper's "negligible extra cost"; target <= 1.05)
  for fp32 and bf16 autocast, NCHW and channels_last, eager and ``torch.compile``
  (``--compile-all``), each the median of per-round ratios; bf16 vs fp32, NCHW vs channels_last.
  ``--clock cpu`` times with the process's CPU time (with ``--threads 1``) on a loaded machine.

Run (Linux; the malloc settings avoid page-fault storms, see docs/benchmarking):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \
        python benchmarks/train_throughput.py [--quick] [--no-compile] [--json out.json]

``--model prelunet_a --image-size 112 --batch-size 16`` times a paper model at reduced size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from rectifiers.models import create_model
from rectifiers.optim import param_groups
from rectifiers.train import TrainConfig, train_step


def matmul_peak(n: int, dtype: torch.dtype, repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """GFLOP/s of an n x n x n matmul (2 n^3 flops), median of ``repeats`` (timed by ``clock``,
    the same clock as the steps)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        t = clock()
        a @ b
        times.append(clock() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def make_step(model_name: str, act: str, amp: str, channels_last: bool, compiled: bool,
              batch: int, in_chans: int, size: int, num_classes: int, seed: int,
              model_kw: dict) -> tuple[Callable[[], None], torch.nn.Module, torch.Tensor]:
    """A closure doing one training step with ``rectifiers.train``'s own step function and
    its default settings (momentum 0.9, weight decay 5e-4, gradient clipping at 5)."""
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=num_classes, in_chans=in_chans, act=act,
                         **model_kw)
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig()
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=1e-3, momentum=cfg.momentum)
    x = torch.randn(batch, in_chans, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,))
    fwd = torch.compile(model) if compiled else model

    def step() -> None:
        train_step(fwd, x, y, opt, amp=amp, grad_clip=cfg.grad_clip)

    return step, model, x


def _label(act: str, amp: str, channels_last: bool, compiled: bool) -> str:
    return (f"{act} {'bf16' if amp == 'bf16' else 'fp32'} {'cl' if channels_last else 'nchw'}"
            f"{' compiled' if compiled else ''}")


def count_step_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, 2048^3 peak matmul")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    p.add_argument("--model", default="prelunet_small")
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=None, help="steps per timing sample")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile-all", action="store_true", help="compile every fp32/bf16 x "
                   "nchw/cl variant, PReLU and ReLU (default: bf16 cl only)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall clock, or this process's CPU time (robust on a loaded machine, "
                   "meaningful with --threads 1 only: OpenMP spin-waits count as CPU time)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 11)
    steps = args.steps or (2 if args.quick else 4)
    n = 2048 if args.quick else 4096
    model_kw = {}
    if args.model.startswith("prelunet_small") or args.model == "plain_small":
        model_kw["input_size"] = args.image_size

    # (label, act, amp, channels_last, compiled): every PReLU variant has its ReLU twin
    variants = []
    for amp in ("none", "bf16"):
        for cl in (False, True):
            for act in ("prelu", "relu"):
                variants.append((_label(act, amp, cl, False), act, amp, cl, False))
    if not args.no_compile:
        for amp, cl in ([("none", False), ("none", True), ("bf16", False), ("bf16", True)]
                        if args.compile_all else [("bf16", True)]):
            for act in ("prelu", "relu"):
                variants.append((_label(act, amp, cl, True), act, amp, cl, True))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    print(f"# train_throughput: {args.model}, batch {args.batch_size}, "
          f"{args.in_chans}x{args.image_size}x{args.image_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}", flush=True)
    peak32 = matmul_peak(n, torch.float32, 3 if args.quick else 5, clock)
    peak16 = matmul_peak(n, torch.bfloat16, 3 if args.quick else 5, clock)
    print(f"matmul peak {n}^3: fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s", flush=True)

    steps_fns = {}
    flops = {}
    for label, act, amp, cl, comp in variants:
        fn, model, _ = make_step(args.model, act, amp, cl, comp, args.batch_size, args.in_chans,
                                 args.image_size, args.num_classes, 0, model_kw)
        t = time.perf_counter()
        for _ in range(3 if comp else 2):  # warm-up; compiles the compiled variants
            fn()
        if comp:
            print(f"  compiled {label} in {time.perf_counter() - t:.0f}s", flush=True)
        if not comp:
            flops[label] = count_step_flops(fn)
        steps_fns[label] = fn
    for label, *_ in variants:  # compiled variants do the same arithmetic as eager ones
        if label not in flops:
            flops[label] = flops[label.replace(" compiled", "")]

    samples: dict[str, list[float]] = {label: [] for label, *_ in variants}
    for _ in range(rounds):
        for label, *_ in variants:
            fn = steps_fns[label]
            t = clock()
            for _ in range(steps):
                fn()
            samples[label].append((clock() - t) / steps)
    med = {k: statistics.median(v) for k, v in samples.items()}

    print(f"\n{'variant':<24} {'ms/step':>8} {'img/s':>8} {'GFLOP/step':>10} {'GFLOP/s':>8} "
          f"{'% peak':>7}")
    rows = {}
    for label, _act, amp, _cl, _comp in variants:
        gflop = flops[label] / 1e9
        gfs = gflop / med[label]
        peak = peak16 if amp == "bf16" else peak32
        rows[label] = {"ms_per_step": 1e3 * med[label],
                       "images_per_s": args.batch_size / med[label],
                       "gflop_per_step": gflop, "gflop_per_s": gfs, "pct_of_matmul_peak":
                       100 * gfs / peak}
        print(f"{label:<24} {1e3 * med[label]:>8.1f} {args.batch_size / med[label]:>8.0f} "
              f"{gflop:>10.2f} {gfs:>8.1f} {100 * gfs / peak:>6.1f}%")

    def ratio(a: str, b: str) -> float | None:
        """Median over rounds of the per-round ratio a/b (the two were timed back to back in
        every round, so load drifts cancel)."""
        if a not in samples or b not in samples:
            return None
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    ratios: dict[str, float | None] = {}
    for amp in ("none", "bf16"):
        for cl in (False, True):
            for comp in (False, True):
                key = _label("prelu", amp, cl, comp).replace("prelu ", "prelu/relu ")
                ratios[key] = ratio(_label("prelu", amp, cl, comp), _label("relu", amp, cl, comp))
    ratios.update({
        "bf16/fp32 (prelu cl)": ratio("prelu bf16 cl", "prelu fp32 cl"),
        "cl/nchw (prelu fp32)": ratio("prelu fp32 cl", "prelu fp32 nchw"),
        "cl/nchw (prelu bf16)": ratio("prelu bf16 cl", "prelu bf16 nchw"),
        "compiled/eager (prelu bf16 cl)": ratio("prelu bf16 cl compiled", "prelu bf16 cl"),
        "compiled/eager (relu bf16 cl)": ratio("relu bf16 cl compiled", "relu bf16 cl"),
    })
    print(f"\nstep-time ratios, median of per-round ratios, {args.clock} clock "
          "(< 1: the first is faster):")
    for k, v in ratios.items():
        if v is not None:
            print(f"  {k:<32} {v:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "matmul_peak_gflops": {"fp32": peak32, "bf16": peak16},
                       "variants": rows, "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
