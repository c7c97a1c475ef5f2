"""``rectifiers bench``: argument parsing and the command (train the grid, then summarise;
``rectifiers bench summarize DIR`` re-summarises a directory)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from rectifiers.errors import ConfigError, UserError, debug_enabled
from rectifiers.experiments.bench.grid import PRESETS, BenchSettings, Grid
from rectifiers.experiments.bench.run import run_grid, validate_cells
from rectifiers.experiments.bench.store import CSV_NAME, read_rows, row_key
from rectifiers.experiments.bench.summary import summarize_dir
from rectifiers.init import list_init_schemes
from rectifiers.nn import list_activations
from rectifiers.runtime import resolve_device

__all__ = ["main"]


def _csv_list(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return tuple(kind(t) for t in items)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad list {text!r}: {exc}") from exc
    return parse


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rectifiers bench",
        description="Train the activation x init x depth (x width) grid on Fashion-MNIST, "
                    "several seeds per cell, resumably; then summarise. Each run selects its "
                    "epoch on --val-size held-out training examples and reports the test "
                    "error of that epoch. `rectifiers bench summarize DIR [--page PAGE.md]` "
                    "re-summarises a directory (and writes the results page).",
        epilog="Example: rectifiers bench --acts relu,prelu,gelu --inits he,xavier "
               "--depths 6,14 --widths 16 --seeds 3 --epochs 3 --subset 10000 --out-dir runs/bench")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="grid and recipe to start from; the flags below override it. quick: "
                        "8 toy runs (seconds); default: 132 runs; published: the grid of "
                        "docs/bench-results.md, 324 runs, ~1.5-2 h of one CPU core")
    p.add_argument("--out-dir", "--out", dest="out", default="runs/bench",
                   help="output directory (resumed if it exists); --out is an alias")
    p.add_argument("--acts", type=_csv_list(str), help="comma-separated activation names")
    p.add_argument("--inits", type=_csv_list(str), help="comma-separated init schemes")
    p.add_argument("--depths", type=_csv_list(int), help="comma-separated depths")
    p.add_argument("--widths", type=_csv_list(int), help="comma-separated widths")
    p.add_argument("--seeds", type=int, help="number of seeds per cell (0..N-1)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int,
                   help="training examples per run, drawn with the run's seed from the "
                        "training split minus the held-out ones; 0 = all of those")
    p.add_argument("--test-subset", type=int,
                   help="test examples (the same for every run); 0 = all 10000")
    p.add_argument("--val-size", type=int,
                   help="training examples held out (the same for every run) to select the "
                        "epoch on (default 5000); the test set selects nothing")
    p.add_argument("--model", help="model name (default plain_small)")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--sched", help="lr schedule (default cosine)")
    p.add_argument("--augment", help="augmentation preset (default none)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--baseline", default="prelu",
                   help="activation every other one is compared with (paired by seed)")
    p.add_argument("--max-runs", type=int, default=None,
                   help="stop after this many new runs (resume later with the same command)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    p.add_argument("--no-cost", action="store_true",
                   help="skip the step-time / saved-bytes measurement in the summary")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    return p


def _summarize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rectifiers bench summarize",
        description="Summarise a bench directory (no training): summary.csv, summary.md and "
                    "the plots in DIR; with --page also the results page.",
        epilog="Example: rectifiers bench summarize runs/bench-published --cost "
               "--page docs/bench-results.md")
    p.add_argument("dir", help="the bench directory (--out-dir of `rectifiers bench`)")
    p.add_argument("--baseline", default="prelu",
                   help="activation every other one is compared with (paired by seed)")
    p.add_argument("--cost", action="store_true",
                   help="measure the per-activation costs if cost.json lacks some")
    p.add_argument("--device", default="cpu", help="device for the cost measurement")
    p.add_argument("--no-plots", action="store_true",
                   help="no plots in DIR (a --page still gets its own)")
    p.add_argument("--page", default=None, metavar="PAGE.md",
                   help="also write the results page (e.g. docs/bench-results.md) with, in the "
                        "folder PAGE/ next to it, a copy of runs.csv, cells.csv and the plots; "
                        "the hand-written block between <!-- summary --> and <!-- /summary --> "
                        "of an existing page is kept")
    p.add_argument("--plots-dir", default=None,
                   help="where the page's plots go (default: the folder PAGE/ next to it)")
    return p


def _resolve_device(device: str) -> str:
    return str(resolve_device(device))


def _from_args(args: argparse.Namespace) -> tuple[Grid, BenchSettings]:
    preset = dict(PRESETS[args.preset])
    pick = {k: getattr(args, k) for k in ("acts", "inits", "depths", "widths", "seeds",
                                           "epochs", "subset", "test_subset", "val_size",
                                           "batch_size",
                                           "model", "lr", "weight_decay", "sched", "augment",
                                           "amp", "channels_last")}
    preset.update({k: v for k, v in pick.items() if v is not None})
    grid = Grid(**{f.name: preset[f.name] for f in fields(Grid)})
    known = {f.name for f in fields(BenchSettings)}
    settings = BenchSettings(**{k: v for k, v in preset.items() if k in known},
                             data_dir=args.data_dir, device=args.device)
    if settings.test_subset < 0 or settings.batch_size < 1 or not settings.lr > 0:
        raise ConfigError("need --test-subset >= 0, --batch-size >= 1 and --lr > 0")
    if not 1 <= settings.val_size <= 30000:
        raise ConfigError(f"--val-size must be 1..30000 training examples, got "
                          f"{settings.val_size}")
    return grid, settings


def _validate_names(grid: Grid, baseline: str) -> None:
    acts = set(list_activations())
    bad = [a for a in (*grid.acts, baseline) if a not in acts]
    if bad:
        raise ConfigError(f"unknown activation(s) {bad} in --acts/--baseline; known: "
                          f"{', '.join(sorted(acts))}")
    inits = set(list_init_schemes())
    bad = [i for i in grid.inits if i not in inits]
    if bad:
        raise ConfigError(f"unknown init scheme(s) {bad} in --inits; known: "
                          f"{', '.join(sorted(inits))}")


def main(argv: Sequence[str] | None = None) -> int:
    """``rectifiers bench [summarize DIR]``; a user error prints one line and returns 2
    (re-raised with ``RECTIFIERS_DEBUG=1`` for its traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "summarize":
            a = _summarize_parser().parse_args(argv[1:])
            if a.plots_dir is not None and a.page is None:
                raise ConfigError("--plots-dir is where the page's plots go; give --page too")
            summarize_dir(a.dir, a.baseline, plots=not a.no_plots, cost=a.cost,
                          cost_device=_resolve_device(a.device), page=a.page,
                          plots_dir=a.plots_dir)
            return 0
        args = _run_parser().parse_args(argv)
        grid, settings = _from_args(args)
        _validate_names(grid, args.baseline)
        validate_cells(grid, settings)
        if args.dry_run:
            specs = grid.specs()
            done = {row_key(r) for r in read_rows(Path(args.out) / CSV_NAME)}
            print(f"{len(specs)} runs ({len(specs) - len([s for s in specs if s.key in done])}"
                  f" to do) = {len(grid.acts)} acts x {len(grid.inits)} inits x "
                  f"{len(grid.depths)} depths x {len(grid.widths)} widths x {grid.seeds} seeds; "
                  f"{grid.epochs} epochs on {grid.subset or 'all'} training examples "
                  f"({settings.val_size} held out to select the epoch); recipe "
                  f"{settings.recipe()}")
            return 0
        run_grid(grid, settings, args.out, max_runs=args.max_runs)
        summarize_dir(args.out, args.baseline, plots=not args.no_plots, cost=not args.no_cost,
                      cost_device=_resolve_device(settings.device))
        return 0
    except KeyboardInterrupt:
        print("[bench] interrupted; finished runs are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except UserError as exc:  # bad input or missing data: one message, no traceback
        if debug_enabled():
            raise
        print(f"rectifiers bench: error: {exc}", file=sys.stderr)
        return 2
