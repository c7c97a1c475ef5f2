"""``rectifiers bench``: the rectifier zoo head to head, activation x init x depth (x width).

Every run trains the same small plain network (``plain_small``: no batch norm, no skips, so
the activation and the init are what decide whether it trains) on Fashion-MNIST with the
same recipe; only the activation, the init rule, the depth, the width and the seed change.
Runs that share a seed share the data order and the random stream of the initial weights, so
two activations are compared *paired by seed*.

Resumable. Each finished run appends one row to ``runs.csv`` (write, flush, fsync) after its
test-set predictions were written atomically to ``preds/<run>.npy``; a restart reads the rows
back and skips every finished ``(act, init, depth, width, seed, epochs, subset)``: a finished
run is never recomputed. A row cut short by a crash (no final newline, wrong field count) is
ignored and cut off before the next append. The recipe settings that are not part of the key
(model, lr, batch size, ...) are stored in ``bench.json``; resuming with different ones is an
error rather than a silent mix of two recipes.

Summary (``rectifiers bench summarize DIR``, also written at the end of a run), per cell:
mean, std and 95 % Student-t interval of the test accuracy over seeds; the paired t-test
against the channel-wise PReLU baseline at the same init/depth/width (the paper's model);
the dead-unit rate; and the prediction disagreement between seeds, i.e. the fraction of test
examples whose top-1 class differs between two runs, averaged over all pairs of seeds (the
reproducibility metric of the SmeLU paper, Shamir et al. 2020). Per activation: the time of one
training step and the bytes saved for backward relative to ReLU (``analysis.cost``). Files:
``summary.csv``, ``summary.md``, ``cost.json`` and the plots ``acc_vs_depth_by_act*.png`` and
``acc_vs_depth_by_init*.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rectifiers.files import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = [
    "CSV_FIELDS",
    "KEY_FIELDS",
    "PRESETS",
    "BenchSettings",
    "CellSummary",
    "Grid",
    "RunOutcome",
    "RunSpec",
    "append_row",
    "main",
    "prediction_disagreement",
    "read_rows",
    "run_cell",
    "run_grid",
    "summarize_dir",
    "summarize_rows",
]

CSV_NAME = "runs.csv"
SETTINGS_NAME = "bench.json"
COST_NAME = "cost.json"
PREDS_DIR = "preds"

KEY_FIELDS: tuple[str, ...] = ("act", "init", "depth", "width", "seed", "epochs", "subset")
RESULT_FIELDS: tuple[str, ...] = (
    "test_acc", "test_err", "train_loss", "epochs_done", "wall_s", "diverged", "dead_rate",
    "never_active", "preds", "device", "finished",
)
CSV_FIELDS: tuple[str, ...] = KEY_FIELDS + RESULT_FIELDS

_INT_FIELDS = {"depth", "width", "seed", "epochs", "subset", "epochs_done"}
_FLOAT_FIELDS = {"test_acc", "test_err", "train_loss", "wall_s", "dead_rate", "never_active"}


# --------------------------------------------------------------------------------------------
# grid
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class RunSpec:
    """One training run: a cell of the grid plus a seed. ``subset=0`` means the full train set."""

    act: str
    init: str
    depth: int
    width: int
    seed: int
    epochs: int
    subset: int

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    @property
    def tag(self) -> str:
        """File-name-safe unique name of the run."""
        n = self.subset if self.subset else "all"
        return (f"{self.act}__{self.init}__d{self.depth}__w{self.width}__e{self.epochs}"
                f"__n{n}__s{self.seed}")


@dataclass
class Grid:
    """The cells to run: every combination of the lists, each with ``seeds`` seeds 0..seeds-1."""

    acts: tuple[str, ...]
    inits: tuple[str, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    seeds: int
    epochs: int
    subset: int  # training examples (a fixed seeded subset); 0 = all 60000

    def __post_init__(self) -> None:
        for name in ("acts", "inits", "depths", "widths"):
            values = tuple(getattr(self, name))
            if not values:
                raise ValueError(f"--{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"--{name} has duplicates: {list(values)}")
            setattr(self, name, values)
        for name in ("depths", "widths"):
            bad = [v for v in getattr(self, name) if int(v) < 1]
            if bad:
                raise ValueError(f"--{name} must be positive integers, got {bad}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.subset < 0:
            raise ValueError(f"--subset must be >= 0 (0 = full training set), got {self.subset}")

    def specs(self) -> list[RunSpec]:
        """All runs, seed-major: after the first pass every cell has one run, so a grid cut
        short still covers every cell (with fewer seeds) instead of a few cells fully."""
        return [RunSpec(a, i, d, w, s, self.epochs, self.subset)
                for s in range(self.seeds) for w in self.widths for d in self.depths
                for i in self.inits for a in self.acts]


@dataclass
class BenchSettings:
    """The recipe shared by every run of a bench directory (not part of a run's key)."""

    model: str = "plain_small"
    lr: float = 0.05  # TrainConfig's small-model default; 0.02 learned too slowly in 2 epochs
    batch_size: int = 128
    weight_decay: float = 5e-4
    sched: str = "cosine"
    augment: str = "none"  # augmentation preset of rectifiers.data ("none": short runs)
    amp: str = "none"
    channels_last: bool = True
    test_subset: int = 0  # test examples used (first n of the official test set); 0 = all
    data_dir: str | None = None
    device: str = "auto"  # not compared on resume: the same grid may continue on a GPU

    _NOT_COMPARED = ("data_dir", "device")

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._NOT_COMPARED}


# Presets. "quick" is toy-sized (the test suite runs its kind of grid); "default" is the
# documented overnight grid (132 runs; the time estimate and how it was made: docs/bench.md).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(acts=("relu", "prelu"), inits=("he",), depths=(5, 6), widths=(4,), seeds=2,
                  epochs=1, subset=256, test_subset=256, batch_size=64),
    "default": dict(
        acts=("relu", "leaky_relu", "prelu", "prelu_shared", "elu", "selu", "gelu", "silu",
              "mish", "smelu", "helu"),
        inits=("he", "xavier"), depths=(6, 14), widths=(16,), seeds=3, epochs=5, subset=20000,
        test_subset=0, batch_size=128),
}


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    """What one run produced. ``predictions``: top-1 class per test example, in test-set order."""

    test_acc: float
    train_loss: float
    epochs_done: int
    wall_s: float
    diverged: bool
    dead_rate: float
    predictions: np.ndarray
    device: str = "cpu"
    never_active: float = float("nan")


def run_cell(spec: RunSpec, settings: BenchSettings) -> RunOutcome:
    """Train one run in-process with ``rectifiers.train.train`` and evaluate it on the test set.

    The test set is the first ``settings.test_subset`` examples of the official test split
    (all 10000 if 0), in order and the same for every run, so predictions of two seeds can be
    compared example by example; it is normalised exactly as training normalised its inputs.

    ``diverged``: training stopped on a non-finite loss (``DivergenceError``) or a weight is
    not finite. Such a run counts as a chance-level classifier (accuracy 1/classes, predictions
    -1 = none) so that instability lowers a cell's mean instead of silently leaving it.
    ``dead_rate``: the dynamic dead-unit rate at the end of training, i.e. the fraction of all
    activation outputs on the test set that are exactly zero (``analysis.dead_units``: the
    per-layer zero fractions weighted by layer size). ``never_active``: the fraction of units
    (channel x position) whose input was never > 0 on any test example.
    """
    import torch

    from rectifiers.data import build_loader
    from rectifiers.train import DivergenceError, TrainConfig, train

    cfg = TrainConfig(
        model=settings.model, act=spec.act, init=spec.init,
        model_kwargs={"depth": spec.depth, "width": spec.width},
        dataset="fashion_mnist", data_dir=settings.data_dir,
        max_train_samples=spec.subset or None,
        # train() validates each epoch on its own seeded subset; that is only its log. The
        # bench's numbers come from the fixed test set below, so keep this pass small.
        max_val_samples=min(settings.test_subset or 10000, 1000),
        augment=settings.augment, epochs=spec.epochs, batch_size=settings.batch_size,
        lr=settings.lr, weight_decay=settings.weight_decay, sched=settings.sched,
        device=settings.device, amp=settings.amp, channels_last=settings.channels_last,
        seed=spec.seed, out_dir=None, progress=False, verbose=False,
    )
    test = _test_set(settings)
    labels = test.labels.numpy()
    chance = 1.0 / test.num_classes
    t0 = time.perf_counter()
    try:
        result = train(cfg)
    except DivergenceError as exc:
        return RunOutcome(
            test_acc=chance, train_loss=float("nan"),
            epochs_done=len(exc.history), wall_s=time.perf_counter() - t0, diverged=True,
            dead_rate=float("nan"), never_active=float("nan"),
            predictions=np.full(labels.shape, -1, dtype=np.int64), device=cfg.device)
    wall = time.perf_counter() - t0
    model = result.model
    device = next(model.parameters()).device
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return RunOutcome(
            test_acc=chance, train_loss=_final_train_loss(result),
            epochs_done=len(result.history), wall_s=wall, diverged=True,
            dead_rate=float("nan"), never_active=float("nan"),
            predictions=np.full(labels.shape, -1, dtype=np.int64), device=str(device))
    # Evaluate with the normalisation train() computed, so bench and training never differ.
    loader = build_loader(test, 500, train=False, normalization=result.normalization)
    preds, dead, never = _predict(model, loader, device, settings)
    train_loss = _final_train_loss(result)
    return RunOutcome(
        test_acc=float((preds == labels).mean()), train_loss=train_loss,
        epochs_done=len(result.history), wall_s=wall,
        diverged=not math.isfinite(train_loss), dead_rate=dead, never_active=never,
        predictions=preds, device=str(device))


def _final_train_loss(result: Any) -> float:
    history = getattr(result, "history", None) or []
    return float(history[-1]["train_loss"]) if history else float("nan")


def _test_set(settings: BenchSettings) -> Any:
    """The fixed test set (first ``test_subset`` examples) every run is scored on."""
    from rectifiers.data import FashionMNIST

    test = FashionMNIST(settings.data_dir, "test")
    if settings.test_subset:
        test.images = test.images[: settings.test_subset]
        test.labels = test.labels[: settings.test_subset]
    return test


def _predict(model: Any, loader: Any, device: Any, settings: BenchSettings,
             ) -> tuple[np.ndarray, float, float]:
    """Top-1 predictions over ``loader`` and the dead-unit rates seen meanwhile."""
    import torch

    from rectifiers.analysis.dead_units import DeadUnitTracker

    model.eval()
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.amp)
    out: list[torch.Tensor] = []
    with torch.no_grad(), DeadUnitTracker(model) as tracker:
        for x, _ in loader:
            x = x.to(device)
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out.append(model(x).float().argmax(1).cpu())
    rows = tracker.summary()
    units = np.array([r["units"] for r in rows], dtype=np.float64)
    zero = np.array([r["zero_fraction"] for r in rows])
    never = np.array([r["never_active_fraction"] for r in rows])
    return (torch.cat(out).numpy().astype(np.int64), float((zero * units).sum() / units.sum()),
            float((never * units).sum() / units.sum()))


# --------------------------------------------------------------------------------------------
# the CSV of finished runs
# --------------------------------------------------------------------------------------------
def _parse_row(values: list[str], line_no: int, path: Path) -> dict[str, Any]:
    if len(values) != len(CSV_FIELDS):
        raise ValueError(f"{path}:{line_no}: {len(values)} fields, expected {len(CSV_FIELDS)}")
    row: dict[str, Any] = {}
    for name, value in zip(CSV_FIELDS, values, strict=True):
        if name in _INT_FIELDS:
            row[name] = int(value)
        elif name in _FLOAT_FIELDS:
            row[name] = float(value)  # accepts "nan" and "inf"
        elif name == "diverged":
            if value not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: diverged={value!r}, expected 0 or 1")
            row[name] = value == "1"
        else:
            row[name] = value
    if not row["act"] or not row["init"]:
        raise ValueError(f"{path}:{line_no}: empty act/init")
    return row


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The finished runs in ``path`` (empty if it does not exist).

    A last line without its newline is a row cut short by a crash and is ignored (with a
    warning); so is any line that does not parse. A header that differs from
    :data:`CSV_FIELDS` is an error: the file was written by another version or another tool.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    if not text:
        return []
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # `tail` is "" when the file ends with a newline
    if tail:
        warnings.warn(f"{path}: ignoring a half-written last line (a run interrupted while "
                      f"writing): {tail[:80]!r}", stacklevel=2)
    if not complete:
        return []
    header = next(csv.reader([complete[0]]))
    if tuple(header) != CSV_FIELDS:
        raise ValueError(f"{path}: header {header} is not the bench header {list(CSV_FIELDS)}; "
                         f"use a new --out directory for this version of the bench")
    rows = []
    for i, line in enumerate(complete[1:], start=2):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(next(csv.reader([line])), i, path))
        except (ValueError, StopIteration) as exc:
            warnings.warn(f"{path}:{i}: ignoring a malformed row ({exc})", stacklevel=2)
    return rows


def _drop_partial_tail(path: Path) -> None:
    """Cut a half-written last line off, so the next append starts on a line of its own."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _format(name: str, value: Any) -> str:
    if name == "diverged":
        return "1" if value else "0"
    if name in _FLOAT_FIELDS:
        return repr(float(value))  # round-trips exactly, including nan/inf
    return str(value)


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one finished run (header first if the file is new), flushed and fsynced, so a
    crash loses at most the run in progress, never a finished one."""
    path = Path(path)
    missing = sorted(set(CSV_FIELDS) - set(row))
    if missing:
        raise ValueError(f"row lacks fields {missing}")
    for name in ("act", "init", "preds", "device"):
        if any(c in str(row[name]) for c in ",\n\r\""):
            raise ValueError(f"{name}={row[name]!r} contains a comma, quote or newline")
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        _drop_partial_tail(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if new:
        writer.writerow(CSV_FIELDS)
    writer.writerow([_format(n, row[n]) for n in CSV_FIELDS])
    with open(path, "a", encoding="utf-8") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def _row_key(row: dict[str, Any]) -> tuple:
    return tuple(row[f] for f in KEY_FIELDS)


def _save_preds(path: Path, preds: np.ndarray) -> None:
    buf = io.BytesIO()
    # int16 holds any class index of a small-classifier bench and keeps a 10k-run file at 20 kB
    np.save(buf, np.asarray(preds).astype(np.int16), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _load_preds(out_dir: Path, rel: str) -> np.ndarray | None:
    p = out_dir / rel
    if not rel or not p.is_file():
        return None
    return np.load(p, allow_pickle=False)


# --------------------------------------------------------------------------------------------
# running the grid
# --------------------------------------------------------------------------------------------
def _check_settings(out_dir: Path, settings: BenchSettings) -> None:
    path = out_dir / SETTINGS_NAME
    recipe = settings.recipe()
    if path.exists():
        stored = json.loads(path.read_text())
        diff = {k: (stored.get(k), v) for k, v in recipe.items() if stored.get(k) != v}
        if diff:
            desc = ", ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{out_dir} holds runs of another recipe ({desc}). Pass the same "
                             f"settings to resume, or use a new --out directory.")
    else:
        atomic_write_text(path, json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def run_grid(grid: Grid, settings: BenchSettings, out_dir: str | os.PathLike,
             max_runs: int | None = None,
             log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every unfinished run of ``grid`` into ``out_dir``; return all rows of the CSV.

    Finished runs (same key in ``runs.csv``) are skipped. ``max_runs`` stops after that many
    new runs (to split a long grid over several sessions).
    """
    out = Path(out_dir)
    (out / PREDS_DIR).mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    csv_path = out / CSV_NAME
    rows = read_rows(csv_path)
    done = {_row_key(r) for r in rows}
    todo = [s for s in grid.specs() if s.key not in done]
    total = len(grid.specs())
    log(f"[bench] {total} runs in the grid, {total - len(todo)} already finished, "
        f"{len(todo)} to run -> {out}")
    if max_runs is not None:
        todo = todo[:max_runs]
    walls: list[float] = []
    for k, spec in enumerate(todo, 1):
        outcome = run_cell(spec, settings)  # module attribute: tests count calls through it
        rel = f"{PREDS_DIR}/{spec.tag}.npy"
        _save_preds(out / rel, outcome.predictions)  # before the row: a row implies its preds
        row = {**asdict(spec), "test_acc": outcome.test_acc, "test_err": 1.0 - outcome.test_acc,
               "train_loss": outcome.train_loss, "epochs_done": outcome.epochs_done,
               "wall_s": outcome.wall_s, "diverged": outcome.diverged,
               "dead_rate": outcome.dead_rate, "never_active": outcome.never_active,
               "preds": rel, "device": outcome.device,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        append_row(csv_path, row)
        rows.append(row)
        walls.append(outcome.wall_s)
        eta = statistics.median(walls) * (len(todo) - k)
        log(f"[bench] {k}/{len(todo)} {spec.tag}: acc {outcome.test_acc:.4f} "
            f"loss {outcome.train_loss:.4f}{' DIVERGED' if outcome.diverged else ''} "
            f"dead {outcome.dead_rate:.3f} ({outcome.wall_s:.1f}s, ~{eta / 60:.0f} min left)")
    return rows


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
def prediction_disagreement(preds: Sequence[np.ndarray]) -> float:
    """Mean over all pairs of runs of the fraction of examples whose top-1 prediction differs.

    D = (2 / (R(R-1))) * sum_{i<j} mean_n [p_i(n) != p_j(n)]. NaN with fewer than two runs.
    """
    arrays = [np.asarray(p).reshape(-1) for p in preds]
    if len(arrays) < 2:
        return float("nan")
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"predictions differ in length: {[a.shape[0] for a in arrays]}; "
                         f"runs of a cell must be evaluated on the same test set")
    pairs = [float(np.mean(a != b)) for a, b in itertools.combinations(arrays, 2)]
    return float(np.mean(pairs))


@dataclass
class CellSummary:
    """Statistics of one cell over its seeds; ``vs_*`` compare with the baseline activation
    (paired by seed, on the seeds both have)."""

    act: str
    init: str
    depth: int
    width: int
    epochs: int
    subset: int
    n: int
    acc_mean: float
    acc_std: float
    acc_ci_low: float
    acc_ci_high: float
    train_loss_mean: float
    diverged: int
    dead_rate: float
    never_active: float
    disagreement: float
    wall_s: float
    vs_baseline: str = ""
    diff: float = float("nan")
    diff_ci_low: float = float("nan")
    diff_ci_high: float = float("nan")
    p_value: float = float("nan")
    seeds: list[int] = field(default_factory=list)


_CELL_FIELDS = ("act", "init", "depth", "width", "epochs", "subset")


def summarize_rows(rows: Iterable[dict[str, Any]], baseline: str = "prelu",
                   preds_loader: Callable[[dict[str, Any]], np.ndarray | None] | None = None,
                   ) -> list[CellSummary]:
    """Per-cell statistics of finished runs (see the module docstring).

    ``preds_loader(row)`` returns a run's predictions (None if missing); without it the
    disagreement is NaN. Cells are ordered by width, depth, init, then activation as first met.
    """
    from rectifiers.experiments.stats import compare, summarize

    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[tuple(r[f] for f in _CELL_FIELDS)].append(r)
    out: list[CellSummary] = []
    for key, runs in cells.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        accs = [r["test_acc"] for r in runs]
        s = summarize(accs)
        preds = []
        if preds_loader is not None:
            # diverged runs have no predictions (-1): disagreement is among runs that trained
            loaded = [preds_loader(r) for r in runs if not r["diverged"]]
            preds = [p for p in loaded if p is not None and (p >= 0).all()]
        losses = [r["train_loss"] for r in runs if math.isfinite(r["train_loss"])]
        deads = [r["dead_rate"] for r in runs if math.isfinite(r["dead_rate"])]
        cell = CellSummary(
            **dict(zip(_CELL_FIELDS, key, strict=True)), n=s.n, acc_mean=s.mean, acc_std=s.std,
            acc_ci_low=s.ci_low, acc_ci_high=s.ci_high,
            train_loss_mean=float(np.mean(losses)) if losses else float("nan"),
            diverged=sum(bool(r["diverged"]) for r in runs),
            dead_rate=float(np.mean(deads)) if deads else float("nan"),
            never_active=_nanmean([r["never_active"] for r in runs]),
            disagreement=prediction_disagreement(preds),
            wall_s=float(np.mean([r["wall_s"] for r in runs])),
            seeds=[r["seed"] for r in runs])
        base_runs = cells.get((baseline, *key[1:]))
        if key[0] != baseline and base_runs:
            by_seed = {r["seed"]: r["test_acc"] for r in base_runs}
            common = [r for r in runs if r["seed"] in by_seed]
            if len(common) >= 2:
                c = compare([r["test_acc"] for r in common],
                            [by_seed[r["seed"]] for r in common], paired=True)
                cell.vs_baseline, cell.diff = baseline, c.diff
                cell.diff_ci_low, cell.diff_ci_high, cell.p_value = c.ci_low, c.ci_high, c.p_value
        out.append(cell)
    act_order = {a: i for i, a in enumerate(dict.fromkeys(c.act for c in out))}
    init_order = {a: i for i, a in enumerate(dict.fromkeys(c.init for c in out))}
    out.sort(key=lambda c: (c.width, c.depth, init_order[c.init], act_order[c.act]))
    return out


def _nanmean(xs: Iterable[float]) -> float:
    finite = [x for x in xs if math.isfinite(x)]
    return float(np.mean(finite)) if finite else float("nan")


def _fmt(x: float, spec: str = ".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _markdown(cells: list[CellSummary], costs: dict[str, Any] | None, baseline: str,
              out_dir: Path) -> str:
    lines = [
        "# rectifiers bench summary", "",
        f"Directory `{out_dir}`. Test accuracy over seeds: mean ± std, 95 % Student-t interval "
        f"of the mean. Δ: paired difference to `{baseline}` (channel-wise PReLU) at the same "
        "init/depth/width, with its 95 % interval and the paired t-test p-value. Disagreement: "
        "fraction of test examples whose top-1 differs between two seeds, mean over seed pairs. "
        "Dead: fraction of zero activation outputs on the test set at the end of training.", "",
        "| act | init | depth | width | n | acc mean ± std | 95 % CI | Δ vs " + baseline +
        " [95 % CI] | p | disagree | dead | div | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        delta = "–" if not c.vs_baseline else (
            f"{c.diff:+.4f} [{c.diff_ci_low:+.4f}, {c.diff_ci_high:+.4f}]")
        lines.append(
            f"| {c.act} | {c.init} | {c.depth} | {c.width} | {c.n} | {c.acc_mean:.4f} ± "
            f"{_fmt(c.acc_std)} | [{_fmt(c.acc_ci_low)}, {_fmt(c.acc_ci_high)}] | {delta} | "
            f"{_fmt(c.p_value, '.3g')} | {_fmt(c.disagreement)} | {_fmt(c.dead_rate, '.3f')} | "
            f"{c.diverged} | {c.wall_s:.1f} |")
    if costs and costs.get("model"):
        meta = costs.get("meta", {})
        lines += [
            "", "## Cost per activation (relative to ReLU)", "",
            f"Model level: one SGD step of `{meta.get('model', '?')}` (depth {meta.get('depth')}, "
            f"width {meta.get('width')}, batch {meta.get('batch')}) on {meta.get('device')}; "
            "saved = bytes of unique non-parameter storages autograd keeps for backward. "
            "Activation level: the activation alone, fwd+bwd on one feature map "
            f"{meta.get('act_shape')}. Medians of interleaved repeats.", "",
            "| act | step time (rel) | saved bytes (rel) | act fwd+bwd (rel) | act saved (rel) |",
            "|---|---|---|---|---|",
        ]
        act_level = {c["name"]: c for c in costs.get("activation", [])}
        for c in costs["model"]:
            a = act_level.get(c["name"], {})
            lines.append(
                f"| {c['name']} | {c['time_rel']:.2f} | {c['bytes_rel']:.2f} | "
                f"{_fmt(a.get('time_rel', float('nan')), '.2f')} | "
                f"{_fmt(a.get('bytes_rel', float('nan')), '.2f')} |")
    return "\n".join(lines) + "\n"


def _write_summary_csv(path: Path, cells: list[CellSummary]) -> None:
    names = [f.name for f in fields(CellSummary)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for c in cells:
        d = asdict(c)
        d["seeds"] = " ".join(map(str, d["seeds"]))
        w.writerow([d[n] for n in names])
    atomic_write_text(path, buf.getvalue())


def _plot(cells: list[CellSummary], out_dir: Path) -> list[Path]:
    """Accuracy vs depth: panels per init with one line per activation, and panels per
    activation with one line per init; error bars = 95 % CI (none with a single seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    widths = sorted({c.width for c in cells})
    for width in widths:
        wc = [c for c in cells if c.width == width]
        suffix = f"_w{width}" if len(widths) > 1 else ""
        for panel_by, line_by, name in (("init", "act", "acc_vs_depth_by_act"),
                                        ("act", "init", "acc_vs_depth_by_init")):
            panels = list(dict.fromkeys(getattr(c, panel_by) for c in wc))
            lines_ = list(dict.fromkeys(getattr(c, line_by) for c in wc))
            ncols = min(len(panels), 4)
            nrows = math.ceil(len(panels) / ncols)
            fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 1.8, 3.4 * nrows),
                                     squeeze=False, sharey=True)
            cmap = plt.get_cmap("tab10")
            markers = "osD^vP*X<>h"
            depths = sorted({c.depth for c in wc})
            span = (max(depths) - min(depths)) or 1
            for ax, panel in zip(axes.flat, panels, strict=False):
                for j, line in enumerate(lines_):
                    pts = sorted((c for c in wc if getattr(c, panel_by) == panel
                                  and getattr(c, line_by) == line), key=lambda c: c.depth)
                    if not pts:
                        continue
                    # small horizontal offsets keep overlapping error bars apart
                    off = (j - (len(lines_) - 1) / 2) * 0.012 * span
                    x = [c.depth + off for c in pts]
                    y = [100 * c.acc_mean for c in pts]
                    err = [[100 * (c.acc_mean - c.acc_ci_low) if c.n > 1 else 0 for c in pts],
                           [100 * (c.acc_ci_high - c.acc_mean) if c.n > 1 else 0 for c in pts]]
                    # colour, marker and (past 10 lines) dash style all vary: readable in grey
                    ax.errorbar(x, y, yerr=err, marker=markers[j % len(markers)], ms=4,
                                capsize=3, lw=1.4, ls="-" if j < 10 else "--",
                                color=cmap(j % 10), label=line)
                ax.set_title(f"{panel_by} = {panel}")
                ax.set_xlabel("depth (weight layers)")
                ax.set_xticks(depths)
                ax.grid(alpha=0.3)
            for ax in axes[:, 0]:
                ax.set_ylabel("test accuracy (%)")
            for ax in list(axes.flat)[len(panels):]:
                ax.set_visible(False)
            handles, labels = axes.flat[0].get_legend_handles_labels()
            for ax in list(axes.flat)[1:len(panels)]:
                for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                    if lab not in labels:
                        handles.append(h)
                        labels.append(lab)
            fig.legend(handles, labels, title=line_by, loc="center right", frameon=False)
            n_seeds = max(c.n for c in wc)
            fig.suptitle(f"Fashion-MNIST test accuracy vs depth\n(width {width}, up to "
                         f"{n_seeds} seeds, bars: 95 % CI)", fontsize=11)
            fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 0.92))
            path = out_dir / f"{name}{suffix}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def measure_bench_costs(acts: Sequence[str], settings: BenchSettings, depth: int, width: int,
                        batch: int | None = None, repeats: int = 10, warmup: int = 2,
                        device: str = "cpu") -> dict[str, Any]:
    """Model-level (the bench's network at ``depth``/``width``) and activation-level costs of
    each activation relative to ReLU, as a JSON-ready dict."""
    from rectifiers.analysis.cost import measure_activation_costs, measure_model_costs
    from rectifiers.models import create_model

    acts = list(dict.fromkeys(["relu", *acts]))
    batch = batch or settings.batch_size

    def builder(act: str) -> Callable[[], Any]:
        return lambda: create_model(settings.model, num_classes=10, in_chans=1, act=act,
                                    init="he", depth=depth, width=width)

    model_costs = measure_model_costs({a: builder(a) for a in acts}, (batch, 1, 28, 28), 10,
                                      repeats=repeats, warmup=warmup, device=device)
    act_shape = (batch, width, 14, 14)  # conv1 is 3x3/2: the first maps are 14x14
    act_costs = measure_activation_costs(acts, act_shape, repeats=2 * repeats, warmup=warmup,
                                         device=device)
    return {
        "meta": {"model": settings.model, "depth": depth, "width": width, "batch": batch,
                 "act_shape": list(act_shape), "device": device, "repeats": repeats},
        "model": [c.as_dict() for c in model_costs],
        "activation": [c.as_dict() for c in act_costs],
    }


def summarize_dir(out_dir: str | os.PathLike, baseline: str = "prelu", plots: bool = True,
                  cost: bool = False, cost_device: str = "cpu", cost_repeats: int = 10,
                  log: Callable[[str], None] = print) -> list[CellSummary]:
    """Summarise the runs in ``out_dir`` and write summary.csv, summary.md and the plots.

    ``cost=True`` measures the per-activation costs (cached in cost.json; re-measured when
    activations are missing from it)."""
    out = Path(out_dir)
    rows = read_rows(out / CSV_NAME)
    if not rows:
        raise ValueError(f"{out / CSV_NAME} has no finished runs; run `rectifiers bench --out "
                         f"{out} ...` first")
    cells = summarize_rows(rows, baseline, preds_loader=lambda r: _load_preds(out, r["preds"]))
    costs = None
    cost_path = out / COST_NAME
    if cost_path.exists():
        costs = json.loads(cost_path.read_text())
    acts = list(dict.fromkeys(c.act for c in cells))
    have = {c["name"] for c in (costs or {}).get("model", [])}
    if cost and not set(acts) <= have:
        settings = BenchSettings(**json.loads((out / SETTINGS_NAME).read_text()))
        depth = max(c.depth for c in cells)
        width = max(c.width for c in cells)
        log(f"[bench] measuring step time and saved bytes of {len(acts)} activations "
            f"(depth {depth}, width {width})")
        costs = measure_bench_costs(acts, settings, depth, width, repeats=cost_repeats,
                                    device=cost_device)
        atomic_write_text(cost_path, json.dumps(costs, indent=2) + "\n")
    _write_summary_csv(out / "summary.csv", cells)
    md = _markdown(cells, costs, baseline, out)
    atomic_write_text(out / "summary.md", md)
    if plots:
        for p in _plot(cells, out):
            log(f"[bench] wrote {p}")
    log(md)
    return cells


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
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
                    "several seeds per cell, resumably; then summarise. "
                    "`rectifiers bench summarize DIR` re-summarises a directory.",
        epilog="Example: rectifiers bench --acts relu,prelu,gelu --inits he,xavier "
               "--depths 6,14 --widths 16 --seeds 3 --epochs 3 --subset 10000 --out runs/bench")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="grid and recipe to start from; the flags below override it")
    p.add_argument("--out", default="runs/bench", help="output directory (resumed if it exists)")
    p.add_argument("--acts", type=_csv_list(str), help="comma-separated activation names")
    p.add_argument("--inits", type=_csv_list(str), help="comma-separated init schemes")
    p.add_argument("--depths", type=_csv_list(int), help="comma-separated depths")
    p.add_argument("--widths", type=_csv_list(int), help="comma-separated widths")
    p.add_argument("--seeds", type=int, help="number of seeds per cell (0..N-1)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int, help="training examples used; 0 = all 60000")
    p.add_argument("--test-subset", type=int, help="test examples used; 0 = all 10000")
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
    p.add_argument("--baseline", default="prelu", help="activation compared against")
    p.add_argument("--max-runs", type=int, default=None,
                   help="stop after this many new runs (resume later with the same command)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    p.add_argument("--no-cost", action="store_true",
                   help="skip the step-time / saved-bytes measurement in the summary")
    p.add_argument("--no-plots", action="store_true")
    return p


def _summarize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rectifiers bench summarize",
                                description="Summarise a bench directory (no training).")
    p.add_argument("dir")
    p.add_argument("--baseline", default="prelu")
    p.add_argument("--cost", action="store_true",
                   help="measure the per-activation costs if cost.json lacks some")
    p.add_argument("--device", default="cpu", help="device for the cost measurement")
    p.add_argument("--no-plots", action="store_true")
    return p


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _from_args(args: argparse.Namespace) -> tuple[Grid, BenchSettings]:
    preset = dict(PRESETS[args.preset])
    pick = {k: getattr(args, k) for k in ("acts", "inits", "depths", "widths", "seeds",
                                           "epochs", "subset", "test_subset", "batch_size",
                                           "model", "lr", "weight_decay", "sched", "augment",
                                           "amp", "channels_last")}
    preset.update({k: v for k, v in pick.items() if v is not None})
    grid = Grid(**{f.name: preset[f.name] for f in fields(Grid)})
    known = {f.name for f in fields(BenchSettings)}
    settings = BenchSettings(**{k: v for k, v in preset.items() if k in known},
                             data_dir=args.data_dir, device=args.device)
    if settings.test_subset < 0 or settings.batch_size < 1 or not settings.lr > 0:
        raise ValueError("need --test-subset >= 0, --batch-size >= 1 and --lr > 0")
    return grid, settings


def _validate_names(grid: Grid, baseline: str) -> None:
    from rectifiers.init import list_init_schemes
    from rectifiers.nn import list_activations

    acts = set(list_activations())
    bad = [a for a in (*grid.acts, baseline) if a not in acts]
    if bad:
        raise ValueError(f"unknown activation(s) {bad}; known: {', '.join(sorted(acts))}")
    inits = set(list_init_schemes())
    bad = [i for i in grid.inits if i not in inits]
    if bad:
        raise ValueError(f"unknown init scheme(s) {bad}; known: {', '.join(sorted(inits))}")


def main(argv: Sequence[str] | None = None) -> int:
    from rectifiers.data.idx import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "summarize":
            a = _summarize_parser().parse_args(argv[1:])
            summarize_dir(a.dir, a.baseline, plots=not a.no_plots, cost=a.cost,
                          cost_device=_resolve_device(a.device))
            return 0
        args = _run_parser().parse_args(argv)
        grid, settings = _from_args(args)
        _validate_names(grid, args.baseline)
        if args.dry_run:
            specs = grid.specs()
            done = {_row_key(r) for r in read_rows(Path(args.out) / CSV_NAME)}
            print(f"{len(specs)} runs ({len(specs) - len([s for s in specs if s.key in done])}"
                  f" to do) = {len(grid.acts)} acts x {len(grid.inits)} inits x "
                  f"{len(grid.depths)} depths x {len(grid.widths)} widths x {grid.seeds} seeds; "
                  f"{grid.epochs} epochs on {grid.subset or 60000} examples; recipe "
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
    except (ValueError, DatasetError) as exc:  # bad input or missing data: message, no trace
        print(f"rectifiers bench: error: {exc}", file=sys.stderr)
        return 2
