"""``rectifiers reproduce``: the paper's findings, measured on Fashion-MNIST, as a report.

Usage::

    rectifiers reproduce --quick                 # all six experiments, ~6-7 min on 2 idle cores
    rectifiers reproduce signal xor --quick      # some of them
    rectifiers reproduce relu-vs-prelu --full --seeds 10 --out reports/table2

Experiments (each runnable alone; ``slopes`` and ``dead`` reuse the runs of
``relu-vs-prelu`` when run together):

1. ``signal``         Sec. 2.2: per-layer forward/backward std at init vs Eqs. 9/13.
2. ``depth``          Sec. 2.3, Figs. 2-3: 22/30-layer plain nets, He vs Xavier.
3. ``relu-vs-prelu``  Table 2: ReLU, PReLU shared/channel-wise, LeakyReLU(0.25), paired seeds.
4. ``slopes``         Table 1: learned coefficients per layer vs the paper's.
5. ``xor``            One PReLU neuron solves XOR (vs a 2-2-1 ReLU MLP).
6. ``dead``           Dead units of ReLU vs PReLU vs LeakyReLU through training.

Writes ``report.md`` (Markdown with PNG plots), ``results.json`` and the plots to ``--out``
(default ``reports/quick`` or ``reports/full``) and prints a verdict per experiment.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import torch

from rectifiers.experiments import depth, relu_vs_prelu, signal_prop, xor
from rectifiers.experiments.report import Section, format_summary, write_report

EXPERIMENTS: tuple[str, ...] = ("signal", "depth", "relu-vs-prelu", "slopes", "xor", "dead")
MODES = ("quick", "full", "smoke")

# Rough wall-clock seconds per experiment on 2 idle cores, for the progress line's ETA
# (measured with `rectifiers reproduce --quick`; `full` is an evening; `smoke` seconds).
# slopes/dead cost nothing extra after relu-vs-prelu, which trains everything they need.
ESTIMATE_S = {
    "quick": {"signal": 30, "depth": 200, "relu-vs-prelu": 160, "slopes": 2, "xor": 8,
              "dead": 2},
    "full": {"signal": 300, "depth": 9000, "relu-vs-prelu": 14000, "slopes": 2, "xor": 60,
             "dead": 2},
    "smoke": {e: 3 for e in EXPERIMENTS},
}


def _settings(mode: str) -> dict[str, object]:
    pick = {"quick": "QUICK", "full": "FULL", "smoke": "TINY"}[mode]
    return {"signal": getattr(signal_prop, pick), "depth": getattr(depth, pick),
            "runs": getattr(relu_vs_prelu, pick), "xor": getattr(xor, pick)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rectifiers reproduce",
        description="Reproduce the findings of He et al. 2015 (Delving Deep into Rectifiers) "
                    "at CPU scale on Fashion-MNIST and write a report with plots and verdicts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="experiments: " + ", ".join(EXPERIMENTS) + " (default: all)",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                   help=f"which to run: {', '.join(EXPERIMENTS)}, or 'all' (default)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small subsets, few epochs and seeds: <= 10 min on 2 cores (default)")
    size.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="full data, more epochs and seeds: an evening on 2 cores")
    size.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="tiny sizes that only check the pipeline (numbers are meaningless)")
    p.set_defaults(mode="quick")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per configuration for signal/depth/relu-vs-prelu/slopes/dead "
                        "(default: the mode's; XOR keeps its own hundreds of seeds)")
    p.add_argument("--out", default=None,
                   help="output directory (default: reports/<mode>)")
    p.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST directory (default: $RECTIFIERS_DATA or "
                        "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice, all cores)")
    return p


def _resolve(names: list[str]) -> list[str]:
    if not names or names == ["all"]:
        return list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(EXPERIMENTS)} or 'all'")
    # Keep the report in the canonical order whatever order was typed.
    return [e for e in EXPERIMENTS if e in names]


def _command(exp: str, args: argparse.Namespace) -> str:
    parts = ["rectifiers", "reproduce", exp, f"--{args.mode}"]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.out is not None:
        parts += ["--out", args.out]
    return shlex.join(parts)


def run(names: list[str], args: argparse.Namespace) -> tuple[list[Section], Path, float]:
    """Run the experiments ``names``; write the report; return sections, path, wall time."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(args.out or f"reports/{args.mode}")
    out.mkdir(parents=True, exist_ok=True)
    st = _settings(args.mode)
    if args.seeds is not None:
        for key in ("signal", "depth", "runs"):
            st[key] = dataclasses.replace(st[key], seeds=args.seeds)
    if args.mode == "smoke":
        st["depth"] = dataclasses.replace(st["depth"], data_source=_smoke_source(args))
        st["runs"] = dataclasses.replace(st["runs"], data_source=_smoke_source(args))

    est = ESTIMATE_S[args.mode]
    remaining = sum(est[n] for n in names)
    sections: list[Section] = []

    def progress(msg: str) -> None:
        print(msg, flush=True)

    for i, name in enumerate(names, 1):
        elapsed = time.perf_counter() - t_start
        progress(f"[{i}/{len(names)}] {name}  (elapsed {elapsed / 60:.1f} min, "
                 f"~{remaining / 60:.1f} min left on 2 idle cores)")
        cmd = _command(name, args)
        if name == "signal":
            sections.append(signal_prop.run(st["signal"], out, cmd, progress=progress))
        elif name == "depth":
            sections.append(depth.run(st["depth"], out, cmd, data_dir=args.data_dir,
                                      progress=progress))
        elif name == "xor":
            sections.append(xor.run(st["xor"], out, cmd))
        else:
            sections += relu_vs_prelu.run((name,), st["runs"], out, {name: cmd},
                                          data_dir=args.data_dir, progress=progress)
        s = sections[-1]
        progress(f"      -> {s.verdict}: {s.verdict_note} ({s.seconds:.0f} s)")
        remaining -= est[name]
    wall = time.perf_counter() - t_start
    all_cmd = shlex.join(["rectifiers", "reproduce"] + ([] if names == list(EXPERIMENTS)
                                                        else names) + [f"--{args.mode}"]
                         + (["--seeds", str(args.seeds)] if args.seeds is not None else [])
                         + (["--out", args.out] if args.out is not None else []))
    path = write_report(sections, out, title="Delving Deep into Rectifiers: reproduction report",
                        command=all_cmd, mode=args.mode, wall_seconds=wall,
                        cpu_seconds=time.process_time() - cpu_start)
    return sections, path, wall


def _smoke_source(args: argparse.Namespace) -> str:
    """Smoke runs use Fashion-MNIST when present, else the synthetic set (no download)."""
    from rectifiers.data.fashion_mnist import load_fashion_mnist
    from rectifiers.data.idx import DatasetError

    try:
        load_fashion_mnist(args.data_dir, "test")
    except (DatasetError, OSError):
        return "synthetic"
    return "fashion_mnist"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = _resolve(args.experiments)
    except ValueError as e:
        parser.error(str(e))
    if args.seeds is not None and args.seeds < 2:
        parser.error("--seeds must be >= 2 (a spread and a confidence interval need two runs)")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    # Xavier/default-init nets carry signals near 1e-38 deep inside; denormal arithmetic is
    # ~100x slower on x86 and changes no reported number (values below 1.2e-38 become 0).
    flush = torch.set_flush_denormal(True)
    try:
        sections, path, wall = run(names, args)
    except Exception as e:  # a clear one-line error, not a traceback, for data problems
        from rectifiers.data.idx import DatasetError

        if isinstance(e, DatasetError):
            print(f"rectifiers reproduce: {e}", file=sys.stderr)
            return 2
        raise
    finally:
        if flush:
            torch.set_flush_denormal(False)
    print(format_summary(sections, path, wall))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
