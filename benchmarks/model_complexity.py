"""Model complexity table (ours vs the paper) and training throughput of the small models.

Part 1: for every registered model at its paper input size, parameters, PReLU slopes and
multiply-adds counted by ``torch.utils.flop_counter`` on the ``meta`` device (no memory used),
next to Table 3 / Table 1 / paper-spec values.

Part 2: training images/s (forward + backward + SGD momentum step, batch 128, fp32) of the small
models, variants interleaved round by round (A B C A B C ...), medians after a warm-up. Each
round also times a 1024^3 fp32 matmul: its GFLOP/s against an idle machine's shows how much of
the CPU the benchmark actually got on a shared machine.

Part 3 (``--fmnist-epochs N``): train ``prelunet_small`` on Fashion-MNIST for N epochs with a
plain loop (SGD momentum 0.9, one-cycle lr peaking at ``--lr``, weight decay 5e-4 except on
slopes, batch 128, random horizontal flips, standardised inputs) and report test accuracy:
evidence that the default small model learns quickly, independent of the training package.

Usage:
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/model_complexity.py [--rounds 7] [--steps 3] [--threads 1]
        [--fmnist-epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rectifiers.models import complexity, create_model, list_models

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
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, *m.default_input_size)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

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
    from rectifiers.data.fashion_mnist import load_fashion_mnist

    xtr, ytr = load_fashion_mnist(split="train")
    xte, yte = load_fashion_mnist(split="test")
    xtr, xte = xtr.float(), xte.float()
    mu, sd = xtr.mean(), xtr.std()
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    torch.manual_seed(seed)
    m = create_model("prelunet_small", num_classes=10, in_chans=1, act=act)  # global RNG
    slopes = [p for n, p in m.named_parameters() if ".act" in n]
    rest = [p for n, p in m.named_parameters() if ".act" not in n]
    opt = torch.optim.SGD([{"params": rest, "weight_decay": 5e-4},
                           {"params": slopes, "weight_decay": 0.0}], lr=lr, momentum=0.9)
    steps_per_epoch = len(xtr) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    log, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        m.train()
        perm = torch.randperm(len(xtr))
        for i in range(steps_per_epoch):
            idx = perm[i * 128:(i + 1) * 128]
            xb = xtr[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(m(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        m.eval()
        with torch.no_grad():
            correct = sum((m(xte[j:j + 1000]).argmax(1) == yte[j:j + 1000]).sum().item()
                          for j in range(0, len(xte), 1000))
        log.append({"epoch": epoch + 1, "test_acc": correct / len(xte),
                    "wall_s": time.perf_counter() - t0})
        print(f"epoch {epoch + 1}: test acc {correct / len(xte):.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return log


def _atomic_write(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-train", action="store_true", help="complexity table only")
    p.add_argument("--fmnist-epochs", type=int, default=0,
                   help="also train prelunet_small on Fashion-MNIST for this many epochs")
    p.add_argument("--lr", type=float, default=0.05, help="peak one-cycle lr for --fmnist-epochs")
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
        _atomic_write(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
