"""Forward+backward cost of PReLU vs in-place ReLU, side by side in one run (issue 11, item 4).

Every variant is timed once per round, interleaved (A B C D A B C D ...), and its ratio to the
same round's in-place ReLU is taken per round; the table gives the median ms and the median of
the per-round ratios (robust on a loaded machine). By default the clock is the process's CPU
time (all threads), which a loaded machine does not inflate by descheduling; ``--clock wall``
gives wall time. One sample = ``--inner`` calls of
``act(h).backward(g)`` on fresh non-leaf copies ``h`` (the copies are made outside the timed
region), so small maps are not dominated by the timer.

Rows: in-place ReLU (baseline), ours channel-wise in place, ours channel-wise out of place,
``torch.nn.PReLU`` (reference), on (32, 64, 56, 56) fp32 contiguous and channels_last and on a
small map (4, 16, 28, 28). Targets: in place <= 1.1x, out of place <= 1.3x, small map <= 1.5x.

``--train MODEL`` instead times whole training steps (``rectifiers.train.train_step``: forward
under autocast, cross-entropy, backward, clipping, SGD) of the PReLU-net and the same net with
ReLU, interleaved, in fp32 and bf16, contiguous and channels_last, eager or (``--compiled``)
``torch.compile(model, fullgraph=True)``. Target: PReLU-net / ReLU-net <= 1.03.

``--device cuda`` runs the same on a GPU (wall time after ``torch.cuda.synchronize()``; the op
table adds bf16 rows, the train table a column for the PReLU-net built with ``inplace=False``);
``benchmarks/cuda_check.sh`` runs it with the CUDA tests.

Run (the malloc settings stop page faults from dominating, see docs/benchmarking.md; for
``--train prelunet_a`` use ``MALLOC_MMAP_MAX_=0`` instead of the mmap threshold: its 528 MB fc1
weight gradient is otherwise mapped and page-faulted afresh every step)::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        .venv/bin/python benchmarks/prelu_cost.py [--rounds 15] [--backend cpp|eager] \\
        [--threads 1] [--clock cpu|wall] [--train prelunet_small [--batch 64] [--compiled]] \\
        [--device cuda] [--only LABEL] [--kernels]

``--train MODEL --leaky`` adds a third net with in-place LeakyReLU(0.25), signed activations at a
ReLU's kernel cost: its ratio is what the data costs (e.g. max pooling), not the layer.
``--train MODEL --pools`` times the model's max pooling on each net's own activations (ATen's
NCHW max pooling is slower on data with negative values than on a ReLU's zeros).
``--kernels`` times the fused CPU kernels alone (no autograd) against ``relu_`` and
``threshold_backward``, in fp32 and bf16.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import torch
from torch import nn
from torch.nn import functional as F

from rectifiers.models import create_model
from rectifiers.nn import PReLU, set_prelu_backend


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown CPU"
    info = {}
    for line in out.splitlines():
        key, _, val = line.partition(":")
        info[key.strip()] = val.strip()
    flags = set(info.get("Flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return (f"{info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs, "
            f"ISA: {' '.join(isa) or 'no avx2'}")


def device_name(device: str) -> str:
    if device == "cpu":
        return f"CPU: {cpu_model()}; threads {torch.get_num_threads()}"
    return f"GPU: {torch.cuda.get_device_name(device)} (host CPU: {cpu_model()})"


def make_clock(kind: str, device: str):
    """CPU time or wall time; on a GPU wall time after the device's queue has drained."""
    if device == "cpu":
        return time.process_time if kind == "cpu" else time.perf_counter

    def gpu_clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return gpu_clock


def variants(c: int, device: str = "cpu", dtype=torch.float32) -> dict[str, nn.Module]:
    # the slopes stay fp32 for a bf16 input (as under autocast); torch.nn.PReLU needs its own
    # slopes in the input's dtype
    return {
        "relu (in place)": nn.ReLU(inplace=True),
        "ours channel-wise in place": PReLU(c, inplace=True).to(device),
        "ours channel-wise": PReLU(c).to(device),
        "torch.nn.PReLU channel-wise": nn.PReLU(c).to(device=device, dtype=dtype),
    }


def bench(shape, channels_last: bool, rounds: int, inner: int, clock, dtype=torch.float32,
          device: str = "cpu"):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    leaf = x.requires_grad_()
    g = torch.randn_like(x)
    acts = variants(shape[1], device, dtype)
    times: dict[str, list[float]] = {k: [] for k in acts}
    ratios: dict[str, list[float]] = {k: [] for k in acts}
    for r in range(rounds + 2):  # two warm-up rounds
        this = {}
        for name, act in acts.items():
            hs = [leaf.detach().clone().requires_grad_() * 1 for _ in range(inner)]
            t0 = clock()
            for h in hs:
                act(h).backward(g)
            this[name] = (clock() - t0) / inner
            for p in act.parameters():
                p.grad = None
        if r >= 2:
            for name, t in this.items():
                times[name].append(t)
                ratios[name].append(t / this["relu (in place)"])
    return {k: (statistics.median(times[k]) * 1e3, statistics.median(ratios[k])) for k in acts}


def train_bench(model_name: str, batch: int, size: int, in_chans: int, num_classes: int,
                rounds: int, clock, compiled: bool, steps: int, device: str = "cpu",
                only: str | None = None, leaky: bool = False) -> list[tuple[str, float, float]]:
    """PReLU-net / ReLU-net train-step ratios (median of per-round ratios), interleaved.

    On a GPU a third net, the PReLU-net built with ``inplace=False``, shows what the in-place
    layer's host read of the slopes (one small device-to-host copy per layer) costs. ``leaky``
    adds the net with in-place LeakyReLU(0.25): a ReLU's kernel cost on signed activations like
    the PReLU-net's, which separates what the data costs (e.g. pooling) from the layer."""
    from rectifiers.optim import param_groups
    from rectifiers.train import train_step

    rows = []
    nets = {"prelu": ("prelu", {}), "relu": ("relu", {})}
    if device != "cpu" and not compiled:
        nets["prelu_out"] = ("prelu", {"inplace": False})
    if leaky:
        nets["leaky"] = ("leaky_relu", {"negative_slope": 0.25, "inplace": True})
    for amp in ("none", "bf16"):
        for cl in (False, True):
            label = (f"{model_name} b{batch} {size}px {'bf16' if amp == 'bf16' else 'fp32'} "
                     f"{'channels_last' if cl else 'contiguous'} "
                     f"{'compiled' if compiled else 'eager'}")
            if only and only not in label:
                continue
            fns = {}
            for key, (act, act_kwargs) in nets.items():
                torch.manual_seed(0)
                kw = {"input_size": size} if model_name == "prelunet_small" else {}
                model = create_model(model_name, num_classes=num_classes, in_chans=in_chans,
                                     act=act, act_kwargs=act_kwargs, **kw).train().to(device)
                x = torch.randn(batch, in_chans, size, size, device=device)
                if cl:
                    model = model.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.randint(0, num_classes, (batch,), device=device)
                opt = torch.optim.SGD(param_groups(model, 5e-4), lr=1e-4, momentum=0.9)
                fwd = torch.compile(model, fullgraph=True) if compiled else model

                def step(fwd=fwd, x=x, y=y, opt=opt, amp=amp):
                    for _ in range(steps):
                        train_step(fwd, x, y, opt, amp=amp, grad_clip=5.0)

                step()  # warm-up (and compile)
                fns[key] = step
            ratios, times = [], {k: [] for k in fns}
            ratios_out, ratios_leaky = [], []
            for _ in range(rounds):
                this = {}
                for key, fn in fns.items():
                    t0 = clock()
                    fn()
                    this[key] = (clock() - t0) / steps
                    times[key].append(this[key])
                ratios.append(this["prelu"] / this["relu"])
                if "prelu_out" in this:
                    ratios_out.append(this["prelu_out"] / this["relu"])
                if "leaky" in this:
                    ratios_leaky.append(this["leaky"] / this["relu"])
            rows.append((label, statistics.median(times["prelu"]) * 1e3,
                         statistics.median(times["relu"]) * 1e3, statistics.median(ratios)))
            extra = f" {statistics.median(ratios_out):.3f} |" if ratios_out else ""
            extra += f" {statistics.median(ratios_leaky):.3f} |" if ratios_leaky else ""
            print(f"| {label} | {rows[-1][1]:.2f} | {rows[-1][2]:.2f} | {rows[-1][3]:.3f} |"
                  + extra, flush=True)
    return rows


def pool_bench(model_name: str, batch: int, size: int, in_chans: int, num_classes: int,
               rounds: int, clock) -> None:
    """The model's max-pooling layers timed on the PReLU-net's and the ReLU-net's own inputs to
    them (one bf16 autocast forward of each freshly initialised net, contiguous): ATen's NCHW
    max pooling branches on every comparison, so its cost depends on the data (many exact zeros
    after a ReLU, negative values after a PReLU); the PReLU-net's inputs with their negatives
    set to 0 isolate that. Each input is timed as captured (contiguous) and channels_last."""
    caps = {}
    for act in ("relu", "prelu"):
        torch.manual_seed(0)
        kw = {"input_size": size} if model_name == "prelunet_small" else {}
        model = create_model(model_name, num_classes=num_classes, in_chans=in_chans, act=act,
                             **kw).train()
        pools = [m for m in model.modules()
                 if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))]
        got: list[tuple[nn.Module, torch.Tensor]] = []

        def keep(m, i, o, got=got):
            got.append((m, i[0].detach().clone()))

        hooks = [m.register_forward_hook(keep) for m in pools]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.randn(batch, in_chans, size, size))
        for h in hooks:
            h.remove()
        caps[act] = got
    print("| pooling layer | input | ReLU-net's input ms | PReLU-net's input ms | PReLU-net's, "
          "negatives set to 0 ms | PReLU / ReLU |")
    print("|---|---|---|---|---|---|")
    pairs = [(pool, a, b, "contiguous") for (pool, a), (_, b) in
             zip(caps["relu"], caps["prelu"], strict=True)]
    pairs += [(pool, a.contiguous(memory_format=torch.channels_last),
               b.contiguous(memory_format=torch.channels_last), "channels_last")
              for pool, a, b, _ in pairs]
    for pool, a, b, layout in pairs:
        inputs = {"relu": a, "prelu": b, "clamped": b.clamp(min=0)}
        times: dict[str, list[float]] = {k: [] for k in inputs}
        with torch.no_grad():
            for _ in range(rounds):
                for k, t in inputs.items():
                    t0 = clock()
                    for _ in range(5):
                        pool(t)
                    times[k].append((clock() - t0) / 5 * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {type(pool).__name__} | {tuple(a.shape)} {str(a.dtype).replace('torch.', '')} "
              f"{layout} "
              f"| {med['relu']:.3f} | {med['prelu']:.3f} | {med['clamped']:.3f} | "
              f"{med['prelu'] / med['relu']:.2f} |", flush=True)


def _kernel_row(shape, dtype, rounds: int, clock) -> tuple[dict[str, float], float, float]:
    """Median ms of each kernel and the median per-round ratios fwd/relu_, bwd/threshold."""
    from rectifiers.nn import _prelu_cpu

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(dtype)
    g = torch.randn(shape, generator=gen).to(dtype)
    w = torch.full((shape[1],), 0.25, dtype=dtype)
    lay = (shape[1], x[0, 0].numel())
    y = F.prelu(x, w)  # in place below: y is a fixed point of both forwards after one call
    inner = max(1, int(2e7 // x.numel()))  # ~20 M elements per sample
    fns = {
        "fwd": lambda: _prelu_cpu.forward(y, w, lay, y),
        "relu_": lambda: torch.relu_(y),
        "bwd": lambda: _prelu_cpu.backward(g, y, w, None, lay, True, dtype),
        "thr": lambda: torch.ops.aten.threshold_backward(g, y, 0),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = clock()
            for _ in range(inner):
                fn()
            times[k].append((clock() - t0) / inner * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    fr = statistics.median(a / b for a, b in zip(times["fwd"], times["relu_"], strict=True))
    br = statistics.median(a / b for a, b in zip(times["bwd"], times["thr"], strict=True))
    return med, fr, br


def kernel_bench(rounds: int, clock, only: str | None) -> None:
    """The fused CPU kernels alone (no autograd), in place on contiguous NCHW tensors: forward
    vs ``torch.relu_``, backward (output saved) vs ``aten::threshold_backward``, on
    prelunet_small's activation shapes at batch 64 and on (32,64,56,56), fp32 and bf16."""
    from rectifiers.nn import _prelu_cpu

    if not _prelu_cpu.available():
        raise SystemExit(f"--kernels needs the C++ kernels: {_prelu_cpu.load_error()}")
    print("| tensor | fwd ms | relu_ ms | fwd / relu_ | bwd ms | threshold_backward ms | "
          "bwd / threshold_backward |")
    print("|---|---|---|---|---|---|---|")
    shapes = [(64, 32, 28, 28), (64, 64, 14, 14), (64, 128, 7, 7), (32, 64, 56, 56)]
    for dtype in (torch.float32, torch.bfloat16):
        for shape in shapes:
            label = f"{shape} {'bf16' if dtype == torch.bfloat16 else 'fp32'}"
            if only and only not in label:
                continue
            med, fr, br = _kernel_row(shape, dtype, rounds, clock)
            print(f"| {label} | {med['fwd']:.3f} | {med['relu_']:.3f} | {fr:.2f} | "
                  f"{med['bwd']:.3f} | {med['thr']:.3f} | {br:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--backend", default="cpp", choices=["cpp", "eager"])
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="cpu: process CPU time (all threads; robust when the machine is "
                    "loaded by other work), wall: perf_counter")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default=None,
                    help="run only the cases (or --train rows) whose label contains this")
    ap.add_argument("--train", default=None, metavar="MODEL",
                    help="instead: PReLU-net / ReLU-net train-step ratios of MODEL "
                    "(prelunet_small at 28px, prelunet_a at 224px), fp32/bf16 x layouts")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1, help="train steps per timing sample")
    ap.add_argument("--compiled", action="store_true",
                    help="with --train: torch.compile(model, fullgraph=True)")
    ap.add_argument("--leaky", action="store_true",
                    help="with --train: add the net with in-place LeakyReLU(0.25) (signed "
                    "activations at a ReLU's kernel cost) and its ratio to the ReLU-net")
    ap.add_argument("--pools", action="store_true",
                    help="with --train: instead, the model's max pooling on the PReLU-net's and "
                    "the ReLU-net's own activations (ATen's NCHW kernels depend on the data)")
    ap.add_argument("--kernels", action="store_true",
                    help="instead: the fused CPU kernels alone (forward vs relu_, backward vs "
                    "threshold_backward), fp32 and bf16")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default) or a CUDA device; on a GPU the clock is wall time "
                    "after torch.cuda.synchronize, and bf16 rows are added")
    args = ap.parse_args()
    if (args.kernels or args.pools) and torch.device(args.device).type != "cpu":
        ap.error("--kernels and --pools time CPU code; leave out --device")
    if args.pools and not args.train:
        ap.error("--pools needs --train MODEL (whose pooling layers to time)")
    if args.leaky and not args.train:
        ap.error("--leaky needs --train MODEL (it adds a third net to the train-step table)")
    set_prelu_backend(args.backend)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(torch.device(args.device))
    clock = make_clock(args.clock, device)
    print(f"# {device_name(device)}; torch {torch.__version__}; backend {args.backend}; "
          f"clock {'wall (synchronized)' if device != 'cpu' else args.clock}")
    if args.kernels:
        kernel_bench(args.rounds, clock, args.only)
        return
    if args.train:
        small = args.train == "prelunet_small"
        if args.pools:
            pool_bench(args.train, args.batch, 28 if small else 224, 1 if small else 3,
                       10 if small else 1000, args.rounds, clock)
            return
        extra = (" PReLU-net inplace=False / ReLU-net |"
                 if device != "cpu" and not args.compiled else "")
        extra += " LeakyReLU-net / ReLU-net |" if args.leaky else ""
        print("| train step | PReLU-net ms | ReLU-net ms | PReLU-net / ReLU-net (median per "
              "round) |" + extra)
        print("|---|---|---|---|" + "---|" * extra.count("/"))
        train_bench(args.train, args.batch, 28 if small else 224, 1 if small else 3,
                    10 if small else 1000, args.rounds, clock, args.compiled, args.steps,
                    device, args.only, args.leaky)
        return
    cases = [
        ("(32,64,56,56) fp32 contiguous", (32, 64, 56, 56), False, 1, torch.float32),
        ("(32,64,56,56) fp32 channels_last", (32, 64, 56, 56), True, 1, torch.float32),
        ("(4,16,28,28) fp32 contiguous", (4, 16, 28, 28), False, 50, torch.float32),
        ("(4,16,28,28) fp32 channels_last", (4, 16, 28, 28), True, 50, torch.float32),
    ]
    if device != "cpu":  # a GPU: more calls per sample, and bf16
        cases = [(lab, sh, cl, 20 if inner == 1 else inner, dt) for lab, sh, cl, inner, dt in cases]
        cases += [("(32,64,56,56) bf16 contiguous", (32, 64, 56, 56), False, 20, torch.bfloat16),
                  ("(32,64,56,56) bf16 channels_last", (32, 64, 56, 56), True, 20,
                   torch.bfloat16)]
    print("| tensor | variant | ms (median) | ratio to in-place ReLU (median per round) |")
    print("|---|---|---|---|")
    for label, shape, cl, inner, dtype in cases:
        if args.only and args.only not in label:
            continue
        results = bench(shape, cl, args.rounds, inner, clock, dtype, device)
        for name, (ms, ratio) in results.items():
            print(f"| {label} | {name} | {ms:.3f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
