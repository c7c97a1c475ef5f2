"""Model complexity table (ours vs the paper) and training throughput of the small models.

Part 1: for every registered model at its paper input size, parameters, PReLU slopes and
multiply-adds counted by ``torch.utils.flop_counter`` on the ``meta`` device (no memory used),
next to Table 3 / Table 1 / paper-spec values.

Part 2: training images/s of the small models - one training step as ``rectifiers train``
takes it (:func:`rectifiers.train.train_step`: forward, loss, backward, the default gradient
clipping, SGD momentum update with its parameter groups; batch 128, fp32) - variants
interleaved round by round (A B C A B C ...), medians after a warm-up. Each
round also times a 1024^3 fp32 matmul: its GFLOP/s against an idle machine's shows how much of
the CPU the benchmark actually got on a shared machine.

Part 3 (``--fmnist-epochs N``): train ``prelunet_small`` on Fashion-MNIST for N epochs with the
training engine (:func:`rectifiers.train.train`: SGD momentum 0.9, lr ``--lr`` with a linear
warm-up over the first 15 % of the run then cosine to 0, weight decay 5e-4 except on slopes,
batch 128, random horizontal flips, fp32) and report the test accuracy after every epoch:
evidence that the default small model learns quickly with what ``rectifiers train`` runs.

Usage:
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/model_complexity.py [--rounds 7] [--steps 3] [--threads 1]
        [--fmnist-epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from rectifiers.files import atomic_write_text
from rectifiers.models import complexity, create_model, list_models
from rectifiers.optim import param_groups
from rectifiers.train import TrainConfig, train, train_step

# name -> (multiply-adds, weights without slopes, channel-wise slopes) from the paper / spec.
PAPER = {
    "prelunet_a": (1.90e10, 178.0e6, 14_688),
    "prelunet_b": (2.32e10, 183.3e6, 15_968),
    "prelunet_c": (5.30e10, 330.6e6, 20_576),
    "prelunet_small14": (0.95e9, 75.0e6, 10_304),  # paper-spec Sec. 4 [derived]
}
BIG = {"prelunet_a", "prelunet_b", "prelunet_c", "prelunet_small14", "plain_deep"}

TRAIN_VARIANTS: dict[str, dict] = {
    "prelunet_small (prelu) 1x28x28": dict(name="prelunet_small", act="prelu", in_chans=1),
    "prelunet_small (relu) 1x28x28": dict(name="prelunet_small", act="relu", in_chans=1),
    "prelunet_small (prelu) 3x32x32": dict(name="prelunet_small", act="prelu", in_chans=3,
                                           input_size=32),
    "plain_small depth 14 (relu)": dict(name="plain_small", act="relu", in_chans=1, depth=14),
    "plain_small depth 22 (relu)": dict(name="plain_small", act="relu", in_chans=1, depth=22),
    "plain_small depth 30 (relu)": dict(name="plain_small", act="relu", in_chans=1, depth=30),
}


def complexity_rows() -> list[dict]:
    rows = []
    for name in list_models():
        kw = {} if name in BIG else {"num_classes": 10, "in_chans": 1}
        for depth in {"plain_deep": (22, 30), "plain_small": (14, 22, 30)}.get(name, (None,)):
            extra = {"depth": depth} if depth else {}
            with torch.device("meta"):
                m = create_model(name, init=None, **kw, **extra)
            c = complexity(m)
            paper = PAPER.get(name)
            rows.append({
                "model": name + (f"(depth={depth})" if depth else ""),
                "input": "x".join(map(str, c["input_size"])),
                "params_M": c["params_without_slopes"] / 1e6, "slopes": c["slopes"],
                "macs_G": c["macs"] / 1e9,
                "paper_params_M": paper[1] / 1e6 if paper else None,
                "paper_slopes": paper[2] if paper else None,
                "paper_macs_G": paper[0] / 1e9 if paper else None,
            })
    return rows


def _train_step_fn(spec: dict, batch: int) -> tuple[Callable[[], None], int]:
    spec = dict(spec)
    name = spec.pop("name")
    torch.manual_seed(0)
    m = create_model(name, num_classes=10, **spec).train()
    cfg = TrainConfig(amp="none")  # rectifiers train's optimiser and clipping, in fp32
    opt = torch.optim.SGD(param_groups(m, cfg.weight_decay), lr=0.01, momentum=cfg.momentum)
    x = torch.randn(batch, *m.default_input_size)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        train_step(m, x, y, opt, amp=cfg.amp, grad_clip=cfg.grad_clip)

    return step, complexity(m)["macs"]


def throughput(rounds: int, steps: int, batch: int) -> tuple[dict[str, dict], float]:
    """Median wall and CPU (process) time per step of every variant, interleaved by round.

    CPU time is what the process itself consumed: on a shared machine it is much less
    disturbed than wall time (waiting for a core is not counted), so with ``--threads 1`` it
    estimates the idle single-core speed.
    """
    fns = {k: _train_step_fn(v, batch) for k, v in TRAIN_VARIANTS.items()}
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    mm: list[float] = []
    for r in range(rounds + 1):  # round 0 is the warm-up
        for k, (fn, _) in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                fn()
            if r:
                wall[k].append((time.perf_counter() - t0) / steps)
                cpu[k].append((time.process_time() - c0) / steps)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        if r:
            mm.append(5 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9)
    out = {}
    for k, (_, macs) in fns.items():
        t, c = statistics.median(wall[k]), statistics.median(cpu[k])
        out[k] = {"img_s": batch / t, "epoch60k_s": 60000 * t / batch,
                  "cpu_img_s": batch / c, "cpu_epoch60k_s": 60000 * c / batch,
                  "macs_M": macs / 1e6}
    return out, statistics.median(mm)


def fmnist_accuracy(epochs: int, lr: float, act: str = "prelu", seed: int = 0) -> list[dict]:
    """Test accuracy after every epoch of ``prelunet_small`` trained by the engine."""
    cfg = TrainConfig(model="prelunet_small", act=act, epochs=epochs, lr=lr, batch_size=128,
                      sched="cosine", warmup_epochs=0.15 * epochs, augment="flip", amp="none",
                      seed=seed, out_dir=None, progress=False, verbose=False)
    log: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def on_epoch(row: dict[str, Any], _model: torch.nn.Module) -> None:
        acc = 1.0 - row["val_top1_err"]
        log.append({"epoch": row["epoch"], "test_acc": acc,
                    "wall_s": time.perf_counter() - t0})
        print(f"epoch {row['epoch']}: test acc {acc:.4f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)

    train(cfg, on_epoch=on_epoch)
    return log


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-train", action="store_true", help="complexity table only")
    p.add_argument("--fmnist-epochs", type=int, default=0,
                   help="also train prelunet_small on Fashion-MNIST for this many epochs")
    p.add_argument("--lr", type=float, default=0.05, help="peak lr for --fmnist-epochs")
    p.add_argument("--json", help="also write the results here (atomic)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = complexity_rows()
    print("| model | input | params (M, w/o slopes) | paper | slopes | paper | MACs (G) | paper |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['params_M']:.2f} | "
              f"{fmt(r['paper_params_M'], '.1f')} | {r['slopes']:,} | "
              f"{fmt(r['paper_slopes'], ',')} | {r['macs_G']:.3f} | "
              f"{fmt(r['paper_macs_G'], '.2f')} |")
    result: dict = {"complexity": rows, "threads": torch.get_num_threads()}
    if not args.no_train:
        tp, gflops = throughput(args.rounds, args.steps, args.batch)
        print(f"\nthreads={torch.get_num_threads()} batch={args.batch} fp32; "
              f"1024^3 matmul during the run: {gflops:.1f} GFLOP/s (median)")
        print("| model | MACs/img (M) | wall img/s | wall s/epoch | CPU-time img/s | "
              "CPU s/epoch |")
        print("|---|---|---|---|---|---|")
        for k, v in tp.items():
            print(f"| {k} | {v['macs_M']:.1f} | {v['img_s']:.0f} | {v['epoch60k_s']:.0f} | "
                  f"{v['cpu_img_s']:.0f} | {v['cpu_epoch60k_s']:.0f} |")
        result.update(train=tp, matmul_gflops=gflops, batch=args.batch)
    if args.fmnist_epochs:
        result["fmnist"] = fmnist_accuracy(args.fmnist_epochs, args.lr)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
