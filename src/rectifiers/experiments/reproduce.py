"""``rectifiers reproduce``: the paper's findings, measured on Fashion-MNIST, as a report.

Usage::

    rectifiers reproduce --quick                 # all six experiments, ~6-7 min on 2 idle cores
    rectifiers reproduce signal xor --quick      # some of them
    rectifiers reproduce relu-vs-prelu --full --seeds 10 --out reports/table2

Experiments (registered by name with their presets in :mod:`rectifiers.experiments.registry`,
each runnable alone; ``slopes`` and ``dead`` reuse the runs of ``relu-vs-prelu`` when run
together; the report numbers its sections in this order):

* ``signal``         Sec. 2.2: per-layer forward/backward std at init vs Eqs. 9/13.
* ``depth``          Sec. 2.3, Figs. 2-3: 22/30-layer plain nets, He vs Xavier.
* ``relu-vs-prelu``  Table 2: ReLU, PReLU shared/channel-wise, LeakyReLU(0.25), paired seeds.
* ``slopes``         Table 1: learned coefficients per layer vs the paper's.
* ``xor``            One PReLU neuron solves XOR (vs a 2-2-1 ReLU MLP).
* ``dead``           Dead units of ReLU vs PReLU vs LeakyReLU through training.

Writes ``report.md`` (Markdown with PNG plots), ``results.json`` and the plots to ``--out``
(default ``reports/quick`` or ``reports/full``) and prints a verdict per experiment. Every
finished training run is stored in ``<out>/runs/`` and never recomputed: an interrupted
``--full`` continues where it stopped when the same command is run again, and experiments may
be run one by one (even at once, in two processes) into the same directory before a last
``rectifiers reproduce --full`` writes the whole report from the stored runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from rectifiers.data import DatasetError, open_dataset
from rectifiers.errors import ConfigError, UserError, debug_enabled
from rectifiers.experiments.registry import EXPERIMENTS as REGISTRY
from rectifiers.experiments.report import Section, format_summary, write_report
from rectifiers.experiments.runs import open_data

EXPERIMENTS: tuple[str, ...] = tuple(REGISTRY)


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
                      help="longer training, more seeds, lr sweeps: ~2 h of 2 cores, resumable "
                           "(finished runs are stored in OUT/runs/ and never recomputed)")
    size.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="tiny sizes that only check the pipeline (numbers are meaningless)")
    p.set_defaults(mode="quick")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per configuration for signal/depth/relu-vs-prelu/slopes/dead "
                        "(default: the mode's; XOR keeps its own hundreds of seeds)")
    p.add_argument("--first-seed", type=int, default=None,
                   help="seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1 (default 0); another value "
                        "gives an independent seed set, to check that a verdict is not luck")
    p.add_argument("--out-dir", "--out", dest="out", default=None,
                   help="output directory (default: reports/<mode>); --out is an alias")
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
    if args.first_seed is not None:
        parts += ["--first-seed", str(args.first_seed)]
    if args.out is not None:
        parts += ["--out-dir", args.out]
    return shlex.join(parts)


def run(names: list[str], args: argparse.Namespace) -> tuple[list[Section], Path, float]:
    """Run the experiments ``names``; write the report; return sections, path, wall time."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    out = _prepare_out(Path(args.out or f"reports/{args.mode}"))
    experiments = [REGISTRY[n] for n in names]
    data_source = _smoke_source(args) if args.mode == "smoke" else "fashion_mnist"
    for exp in experiments:  # a missing or damaged data set fails now, not after minutes
        if exp.trains:
            st = exp.presets[args.mode]
            open_data(st.n_train, st.n_test, args.data_dir, data_source)
    remaining = sum(e.estimate_s[args.mode] for e in experiments)
    sections: list[Section] = []

    def progress(msg: str) -> None:
        print(msg, flush=True)

    for i, exp in enumerate(experiments, 1):
        elapsed = time.perf_counter() - t_start
        progress(f"[{i}/{len(names)}] {exp.name}  (elapsed {elapsed / 60:.1f} min, "
                 f"~{remaining / 60:.1f} min left on 2 idle cores)")
        settings = exp.presets[args.mode]
        if exp.seeded and args.seeds is not None:
            settings = dataclasses.replace(settings, seeds=args.seeds)
        if args.first_seed is not None and hasattr(settings, "first_seed"):
            settings = dataclasses.replace(settings, first_seed=args.first_seed)
        if exp.trains:
            settings = dataclasses.replace(settings, data_source=data_source)
        s = exp.run(settings, out, _command(exp.name, args), data_dir=args.data_dir,
                    progress=progress)
        sections.append(s)
        progress(f"      -> {s.verdict}: {s.verdict_note} ({s.seconds:.0f} s)")
        remaining -= exp.estimate_s[args.mode]
    wall = time.perf_counter() - t_start
    all_cmd = shlex.join(["rectifiers", "reproduce"] + ([] if names == list(EXPERIMENTS)
                                                        else names) + [f"--{args.mode}"]
                         + (["--seeds", str(args.seeds)] if args.seeds is not None else [])
                         + (["--first-seed", str(args.first_seed)]
                            if args.first_seed is not None else [])
                         + (["--out-dir", args.out] if args.out is not None else []))
    path = write_report(sections, out, title="Delving Deep into Rectifiers: reproduction report",
                        command=all_cmd, mode=args.mode, wall_seconds=wall,
                        cpu_seconds=time.process_time() - cpu_start)
    return sections, path, wall


def _prepare_out(out: Path) -> Path:
    """Create the output directory; a file in the way or no write permission is a user error,
    reported before any experiment runs."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out-dir {out} is an existing file, not a directory; choose a "
                          "directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out-dir {out}: cannot create it ({exc.strerror or exc}); choose "
                          "a writable directory") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out-dir {out} is not writable; choose a writable directory")
    return out


def _smoke_source(args: argparse.Namespace) -> str:
    """Smoke runs use Fashion-MNIST when present, else the synthetic set (no download)."""
    try:
        open_dataset("fashion_mnist", "test", args.data_dir)
    except DatasetError:
        return "synthetic"
    return "fashion_mnist"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = _resolve(args.experiments)
    except ValueError as e:
        parser.error(str(e))
    if args.first_seed is not None and args.first_seed < 0:
        parser.error("--first-seed must be >= 0")
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
    except UserError as e:  # bad input or data: one message, no traceback
        if debug_enabled():
            raise
        print(f"rectifiers reproduce: error: {e}", file=sys.stderr)
        return 2
    finally:
        if flush:
            torch.set_flush_denormal(False)
    print(format_summary(sections, path, wall))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
