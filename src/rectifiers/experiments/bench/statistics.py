"""Per-cell statistics of finished runs: mean, std and 95 % interval over seeds, the paired
test against the baseline activation, and the prediction disagreement between seeds."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rectifiers.experiments.stats import compare, summarize

__all__ = ["CellSummary", "prediction_disagreement", "summarize_rows"]


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
