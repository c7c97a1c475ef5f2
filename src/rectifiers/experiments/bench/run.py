"""Running the grid: one run trained by the engine (:func:`run_cell`) and the resumable loop
over every unfinished run of a grid (:func:`run_grid`)."""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rectifiers.analysis.dead_units import DeadUnitTracker
from rectifiers.data import build_loader, holdout_split, open_dataset, take_subset
from rectifiers.errors import ConfigError
from rectifiers.experiments.bench.grid import BenchSettings, Grid, RunSpec
from rectifiers.experiments.bench.store import (
    CSV_NAME,
    PREDS_DIR,
    append_row,
    check_settings,
    prepare_dir,
    read_rows,
    row_key,
    save_preds,
)
from rectifiers.runtime import autocast
from rectifiers.train import DivergenceError, TrainConfig, train

__all__ = ["RunOutcome", "run_cell", "run_grid", "train_config", "validate_cells"]


@dataclass
class RunOutcome:
    """What one run produced. ``test_acc``, ``predictions`` (top-1 class per test example, in
    test-set order), ``dead_rate`` and ``never_active`` are those of the selected epoch (the
    lowest validation error, ``best_epoch``, ``val_err``); ``test_acc_final`` is the last
    epoch's test accuracy."""

    test_acc: float
    test_acc_final: float
    val_err: float
    best_epoch: int
    train_loss: float
    epochs_done: int
    wall_s: float
    diverged: bool
    dead_rate: float
    predictions: np.ndarray
    device: str = "cpu"
    never_active: float = float("nan")


def train_config(spec: RunSpec, settings: BenchSettings) -> TrainConfig:
    """The engine's settings for one run of the grid (validated by the caller)."""
    return TrainConfig(
        model=settings.model, act=spec.act, init=spec.init,
        model_kwargs={"depth": spec.depth, "width": spec.width},
        dataset="fashion_mnist", data_dir=settings.data_dir,
        augment=settings.augment, epochs=spec.epochs, batch_size=settings.batch_size,
        lr=settings.lr, weight_decay=settings.weight_decay, sched=settings.sched,
        device=settings.device, amp=settings.amp, channels_last=settings.channels_last,
        seed=spec.seed, out_dir=None, progress=False, verbose=False,
    )


def validate_cells(grid: Grid, settings: BenchSettings) -> None:
    """Check every cell's engine settings before anything is written, so that a bad
    ``--sched`` or a depth the model cannot take fails at once (``ConfigError`` naming the
    cell), not after ``bench.json`` recorded the bad recipe."""
    for spec in {s.key[:4]: s for s in grid.specs()}.values():
        try:
            train_config(spec, settings).validate()
        except ConfigError as exc:
            raise ConfigError(f"bench cell act={spec.act} init={spec.init} depth={spec.depth} "
                              f"width={spec.width}: {exc}") from exc


def run_cell(spec: RunSpec, settings: BenchSettings,
             model: torch.nn.Module | None = None) -> RunOutcome:
    """Train one run in-process with ``rectifiers.train.train``; select the epoch on the
    held-out validation split; evaluate it on the test set.

    ``model``: a model the caller built and initialised (e.g. with Few-Bit activations,
    ``benchmarks/fewbit.py``); default: the engine builds ``spec``'s model.

    Data (:func:`_datasets`): ``settings.val_size`` training examples are held out (data
    seed 0, the same for every run) and validated on after every epoch; the run trains on
    ``spec.subset`` of the other training examples (drawn with the run's seed; 0 = all).
    The weights of the epoch with the lowest validation error are kept (the first such epoch
    on ties) and scored on the test set - ``settings.test_subset`` examples of the official
    test split (all 10000 if 0), in order and the same for every run, so predictions of two
    seeds can be compared example by example - normalised exactly as training normalised its
    inputs. The test set never selects anything; the last epoch's test accuracy is kept too
    (``test_acc_final``).

    ``diverged``: training stopped on a non-finite loss (``DivergenceError``) or a weight is
    not finite. Such a run counts as a chance-level classifier (accuracy 1/classes, predictions
    -1 = none) so that instability lowers a cell's mean instead of silently leaving it.
    ``dead_rate``: the dynamic dead-unit rate of the selected weights, i.e. the fraction of all
    activation outputs on the test set that are exactly zero (``analysis.dead_units``: the
    per-layer zero fractions weighted by layer size). ``never_active``: the fraction of units
    (channel x position) whose input was never > 0 on any test example.
    """
    cfg = train_config(spec, settings)
    train_set, val_set = _datasets(spec, settings)
    test = _test_set(settings)
    labels = test.labels.numpy()
    chance = 1.0 / test.num_classes
    best: dict[str, Any] = {"err": math.inf, "epoch": 0, "state": None}

    def keep_best(row: dict[str, Any], model: torch.nn.Module) -> None:
        err = float(row["val_top1_err"])
        if row["epoch"] >= 1 and err < best["err"]:
            best.update(err=err, epoch=int(row["epoch"]),
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})

    t0 = time.perf_counter()
    try:
        result = train(cfg, model=model, train_set=train_set, val_set=val_set,
                       on_epoch=keep_best)
    except DivergenceError as exc:
        return _chance_outcome(chance, labels, float("nan"), len(exc.history),
                               time.perf_counter() - t0, cfg.device)
    wall = time.perf_counter() - t0
    model = result.model
    device = next(model.parameters()).device
    train_loss = _final_train_loss(result)
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()) or best["state"] is None:
        return _chance_outcome(chance, labels, train_loss, len(result.history), wall,
                               str(device))
    # Evaluate with the normalisation train() computed, so bench and training never differ.
    loader = build_loader(test, 500, train=False, normalization=result.normalization)
    final_preds, _, _ = _predict(model, loader, device, settings)
    model.load_state_dict(best["state"])
    preds, dead, never = _predict(model, loader, device, settings)
    return RunOutcome(
        test_acc=float((preds == labels).mean()),
        test_acc_final=float((final_preds == labels).mean()), val_err=best["err"],
        best_epoch=best["epoch"], train_loss=train_loss, epochs_done=len(result.history),
        wall_s=wall, diverged=not math.isfinite(train_loss), dead_rate=dead,
        never_active=never, predictions=preds, device=str(device))


def _chance_outcome(chance: float, labels: np.ndarray, train_loss: float, epochs_done: int,
                    wall: float, device: str) -> RunOutcome:
    """A diverged run: a chance-level classifier that predicts nothing (-1)."""
    return RunOutcome(
        test_acc=chance, test_acc_final=chance, val_err=1.0 - chance, best_epoch=0,
        train_loss=train_loss, epochs_done=epochs_done, wall_s=wall, diverged=True,
        dead_rate=float("nan"), never_active=float("nan"),
        predictions=np.full(labels.shape, -1, dtype=np.int64), device=device)


@functools.lru_cache(maxsize=2)
def _split(data_dir: str | None, val_size: int) -> tuple[Any, Any]:
    """(training pool, validation set): the training split with ``val_size`` examples held
    out by :func:`rectifiers.data.holdout_split` (data seed 0)."""
    return holdout_split(open_dataset("fashion_mnist", "train", data_dir), val_size, seed=0)


def _datasets(spec: RunSpec, settings: BenchSettings) -> tuple[Any, Any]:
    """(training set, validation set) of one run: ``spec.subset`` examples of the pool (the
    run's seed; 0 = the whole pool) and the fixed held-out validation set."""
    pool, val = _split(settings.data_dir, settings.val_size)
    return take_subset(pool, spec.subset or None, spec.seed), val


def _eta(walls: list[tuple[int, float]], left: list[RunSpec]) -> float:
    """Seconds the runs ``left`` will take: each at the median wall time of the finished runs
    of its depth; a depth not run yet at the median time per layer times its depth (runs go
    seed-major, depth by depth, so the first runs alone would underestimate a deep grid)."""
    by_depth: dict[int, list[float]] = {}
    for depth, wall in walls:
        by_depth.setdefault(depth, []).append(wall)
    per_layer = statistics.median(wall / max(depth, 1) for depth, wall in walls)
    return sum(statistics.median(by_depth[s.depth]) if s.depth in by_depth
               else per_layer * s.depth for s in left)


def _final_train_loss(result: Any) -> float:
    history = getattr(result, "history", None) or []
    return float(history[-1]["train_loss"]) if history else float("nan")


def _test_set(settings: BenchSettings) -> Any:
    """The fixed test set every run is scored on: ``test_subset`` examples (0: all) by the
    one subset rule of :func:`rectifiers.data.open_dataset` with data seed 0, in split order,
    the same for every run of the directory."""
    return open_dataset("fashion_mnist", "test", settings.data_dir,
                        settings.test_subset or None, seed=0)


def _predict(model: Any, loader: Any, device: Any, settings: BenchSettings,
             ) -> tuple[np.ndarray, float, float]:
    """Top-1 predictions over ``loader`` and the dead-unit rates seen meanwhile (the engine's
    ``evaluate`` gives metrics only; this pass keeps every prediction for the disagreement)."""
    model.eval()
    out: list[torch.Tensor] = []
    with torch.no_grad(), DeadUnitTracker(model) as tracker:
        for x, _ in loader:
            x = x.to(device)
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, settings.amp):
                out.append(model(x).float().argmax(1).cpu())
    rows = tracker.summary()
    units = np.array([r["units"] for r in rows], dtype=np.float64)
    zero = np.array([r["zero_fraction"] for r in rows])
    never = np.array([r["never_active_fraction"] for r in rows])
    return (torch.cat(out).numpy().astype(np.int64), float((zero * units).sum() / units.sum()),
            float((never * units).sum() / units.sum()))


def run_grid(grid: Grid, settings: BenchSettings, out_dir: str | os.PathLike,
             max_runs: int | None = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every unfinished run of ``grid`` into ``out_dir``; return all rows of the CSV.

    Finished runs (same key in ``runs.csv``) are skipped. ``max_runs`` stops after that many
    new runs (to split a long grid over several sessions).
    """
    out = Path(out_dir)
    specs = grid.specs()
    prepare_dir(out)
    check_settings(out, settings)
    csv_path = out / CSV_NAME
    rows = read_rows(csv_path)
    done = {row_key(r) for r in rows}
    todo = [s for s in specs if s.key not in done]
    total = len(specs)
    log(f"[bench] {total} runs in the grid, {total - len(todo)} already finished, "
        f"{len(todo)} to run -> {out}")
    if max_runs is not None:
        todo = todo[:max_runs]
    walls: list[tuple[int, float]] = []
    # Xavier-initialised deep nets carry signals near 1e-38; denormal arithmetic is ~100x
    # slower on x86 and changes no reported number (values below 1.2e-38 become 0).
    flush = torch.set_flush_denormal(True)
    try:
        _run_todo(todo, settings, out, csv_path, rows, walls, log)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    return rows


def _run_todo(todo: list[RunSpec], settings: BenchSettings, out: Path, csv_path: Path,
              rows: list[dict[str, Any]], walls: list[tuple[int, float]],
              log: Callable[[str], None],
              ) -> None:
    for k, spec in enumerate(todo, 1):
        outcome = run_cell(spec, settings)  # module attribute: tests count calls through it
        rel = f"{PREDS_DIR}/{spec.tag}.npy"
        save_preds(out / rel, outcome.predictions)  # before the row: a row implies its preds
        row = {**asdict(spec), "test_acc": outcome.test_acc, "test_err": 1.0 - outcome.test_acc,
               "test_acc_final": outcome.test_acc_final, "val_err": outcome.val_err,
               "best_epoch": outcome.best_epoch,
               "train_loss": outcome.train_loss, "epochs_done": outcome.epochs_done,
               "wall_s": outcome.wall_s, "diverged": outcome.diverged,
               "dead_rate": outcome.dead_rate, "never_active": outcome.never_active,
               "preds": rel, "device": outcome.device,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        append_row(csv_path, row)
        rows.append(row)
        walls.append((spec.depth, outcome.wall_s))
        eta = _eta(walls, todo[k:])
        log(f"[bench] {k}/{len(todo)} {spec.tag}: acc {outcome.test_acc:.4f} (epoch "
            f"{outcome.best_epoch}, last {outcome.test_acc_final:.4f}) "
            f"loss {outcome.train_loss:.4f}{' DIVERGED' if outcome.diverged else ''} "
            f"dead {outcome.dead_rate:.3f} ({outcome.wall_s:.1f}s, ~{eta / 60:.0f} min left)")
