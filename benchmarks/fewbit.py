"""Few-Bit Backward (opt-in, ``rectifiers.nn.fewbit``): what it saves, what it costs, and what
it does to accuracy (issue 13, optional item).

1. Memory and time, layer level: a smooth activation on one (16, 64, 56, 56) fp32 map, exact vs
   Few-Bit with 4, 2 and 1 bits: bytes kept for backward and fwd+bwd time (interleaved rounds,
   medians), and model level: the bench model ``plain_small`` (depth 8, width 8, batch 64),
   bytes saved by one training forward.
2. Accuracy: the bench model trained on Fashion-MNIST exactly as one cell of the published
   bench grid (``rectifiers bench --preset published``: 4000 training images, 3 epochs, lr 0.02,
   batch 64, 2000 held-out validation images selecting the epoch, 5000 test images), He init,
   over ``--seeds`` seeds; each seed trains the exact and the Few-Bit models from the same
   initial weights on the same batches. Reported: test error per variant (mean, 95 % Student-t
   interval) and the paired difference Few-Bit - exact with its 95 % interval and p-value.

Run (about 5 min on 2 cores; needs the Debian package dataset-fashion-mnist)::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/fewbit.py [--act gelu] [--seeds 5] [--bits 4,2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch

from rectifiers.analysis.cost import activation_saved_bytes, model_saved_bytes
from rectifiers.experiments import stats
from rectifiers.experiments.bench.grid import BenchSettings, RunSpec
from rectifiers.experiments.bench.run import run_cell
from rectifiers.models import create_model
from rectifiers.models.registry import initialize_model
from rectifiers.nn import make_activation
from rectifiers.nn.fewbit import FewBit, use_fewbit
from rectifiers.train import rng as rng_state


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith("Model name:")), "unknown")


def layer_table(act_name: str, bits_list: list[int], rounds: int) -> None:
    shape = (16, 64, 56, 56)
    base = torch.randn(shape)
    g = torch.randn(shape)
    variants = {"exact": make_activation(act_name)}
    for b in bits_list:
        variants[f"few-bit {b}"] = FewBit(make_activation(act_name), b)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds + 2):
        for name, m in variants.items():
            leaf = base.clone().requires_grad_()
            t0 = time.perf_counter()
            m(leaf * 1).backward(g)
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    ref_t = statistics.median(times["exact"])
    ref_b = activation_saved_bytes(variants["exact"], shape)
    print(f"\n{act_name}, {shape} fp32, fwd+bwd incl. the input's x*1; {rounds} rounds")
    print("| variant | saved MiB | saved rel | fwd+bwd ms | time rel |")
    print("|---|---|---|---|---|")
    for name, m in variants.items():
        b = activation_saved_bytes(m, shape)
        t = statistics.median(times[name])
        print(f"| {name} | {b / 2**20:.2f} | {b / ref_b:.3f} | {t * 1e3:.1f} | {t / ref_t:.2f} |")


def _model(act: str, seed: int, bits: int, depth: int, width: int) -> torch.nn.Module:
    rng_state.seed_everything(seed)  # what the engine does before building, for every arm
    model = create_model("plain_small", num_classes=10, in_chans=1, act=act, init=None,
                         depth=depth, width=width)
    initialize_model(model, "he")
    if bits:
        use_fewbit(model, bits)
    return model


def model_bytes(act: str, bits_list: list[int]) -> None:
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    ref = model_saved_bytes(_model(act, 0, 0, 8, 8), x, y)
    print("\nplain_small depth 8 width 8, batch 64: bytes saved by one training forward")
    print("| variant | saved MiB | rel exact |")
    print("|---|---|---|")
    print(f"| exact | {ref / 2**20:.2f} | 1.000 |")
    for b in bits_list:
        v = model_saved_bytes(_model(act, 0, b, 8, 8), x, y)
        print(f"| few-bit {b} | {v / 2**20:.2f} | {v / ref:.3f} |")


def accuracy(act: str, bits_list: list[int], seeds: int, depth: int) -> None:
    settings = BenchSettings(val_size=2000, test_subset=5000, lr=0.02, batch_size=64)
    errs: dict[int, list[float]] = {b: [] for b in [0, *bits_list]}
    for seed in range(seeds):
        spec = RunSpec(act=act, init="he", depth=depth, width=8, seed=seed, subset=4000,
                       epochs=3)
        for b in errs:
            out = run_cell(spec, settings, model=_model(act, seed, b, depth, 8))
            errs[b].append(100 * (1 - out.test_acc))
            print(f"  seed {seed} {'exact' if b == 0 else f'few-bit {b}'}: test err "
                  f"{errs[b][-1]:.2f} % ({out.wall_s:.0f} s)", flush=True)
    print(f"\nFashion-MNIST, plain_small depth {depth} width 8, {act}, He, {seeds} seeds "
          "(published bench cell settings)")
    print("| variant | test err % mean [95 % CI] | paired diff vs exact (pts) [95 % CI] | p |")
    print("|---|---|---|---|")
    for b, e in errs.items():
        s = stats.summarize(e)
        if b == 0:
            print(f"| exact | {s.mean:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}] | - | - |")
            continue
        c = stats.compare(e, errs[0], paired=True)
        print(f"| few-bit {b} | {s.mean:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}] | "
              f"{c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}] | {c.p_value:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--act", default="gelu")
    ap.add_argument("--bits", default="4,2", help="comma-separated bit widths")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    bits_list = [int(b) for b in args.bits.split(",")]
    print(f"# CPU: {cpu_model()}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    layer_table(args.act, [4, 2, 1], args.rounds)
    model_bytes(args.act, [4, 2, 1])
    if not args.skip_accuracy:
        accuracy(args.act, bits_list, args.seeds, args.depth)


if __name__ == "__main__":
    main()
