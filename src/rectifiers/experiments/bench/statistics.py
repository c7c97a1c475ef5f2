"""Per-cell statistics of finished runs, in test error (1 - accuracy of the selected epoch).

Per cell (act, init, depth, width) over its seeds:

* test error: mean, sample std and 95 % Student-t interval of the mean
  (:func:`rectifiers.experiments.stats.summarize`); the same mean and std for the last
  epoch's error (``err_final_*``) and the mean selected epoch (``best_epoch``);
* the paired difference to the baseline activation (channel-wise PReLU by default) at the same
  init/depth/width, over the seeds both have: ``d_err`` = err(act) - err(baseline), its 95 %
  interval and the paired t-test p-value (``stats.compare(paired=True)``), plus ``p_holm``,
  the Holm-Bonferroni adjusted p-value over every comparison of the rows given
  (:func:`holm_adjust`; the family is every non-baseline cell that has a p-value);
* non-convergence: a run *did not converge* if it diverged or its test error is at least
  chance - 0.10 (0.80 with 10 classes, :func:`not_converged_threshold`); the count, and the
  Wilson 95 % interval of the fraction (``stats.wilson_interval``);
* the prediction disagreement between seeds (:func:`prediction_disagreement`), among the runs
  that converged: a run stuck at chance predicts one class, which says nothing about
  reproducibility;
* the dead-unit rate (mean over runs that did not diverge).

A diverged run enters the error statistics at chance level (error 1 - 1/classes, the runner
records accuracy 1/classes), so instability raises a cell's mean instead of vanishing from it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rectifiers.experiments.stats import compare, summarize, wilson_interval

__all__ = ["ActSummary", "CellSummary", "holm_adjust", "not_converged",
           "not_converged_threshold", "prediction_disagreement", "summarize_acts",
           "summarize_rows"]

NUM_CLASSES = 10  # Fashion-MNIST, the bench's data set
NOT_CONVERGED_MARGIN = 0.10  # within 10 points of chance error counts as "did not train"


def not_converged_threshold(num_classes: int = NUM_CLASSES) -> float:
    """Test error at or above which a run counts as not converged: chance error
    (1 - 1/classes) minus 0.10, i.e. 0.80 for 10 classes."""
    return 1.0 - 1.0 / num_classes - NOT_CONVERGED_MARGIN


def not_converged(row: dict[str, Any], num_classes: int = NUM_CLASSES) -> bool:
    """A run that diverged or whose (selected-epoch) test error is within 0.10 of chance."""
    return bool(row["diverged"]) or 1.0 - row["test_acc"] >= not_converged_threshold(
        num_classes) - 1e-12


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


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; NaN entries stay NaN and are not
    part of the family.

    With the m finite p-values sorted, p_(1) <= ... <= p_(m):
    p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)). Rejecting every hypothesis with
    p~ < alpha controls the family-wise error rate at alpha, under any dependence.

    >>> holm_adjust([0.5, 0.125, 0.25, float("nan")])
    [0.5, 0.375, 0.5, nan]
    """
    finite = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    m = len(finite)
    out = [float("nan")] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


@dataclass
class CellSummary:
    """Statistics of one cell over its seeds (see the module docstring). Errors and
    accuracies are fractions; ``d_err`` > 0 means a higher error than the baseline."""

    act: str
    init: str
    depth: int
    width: int
    epochs: int
    subset: int
    n: int
    err_mean: float
    err_std: float
    err_ci_low: float
    err_ci_high: float
    err_final_mean: float
    err_final_std: float
    best_epoch: float  # mean selected epoch over runs that did not diverge
    val_err_mean: float
    not_converged: int
    not_conv_ci_low: float  # Wilson 95 % interval of not_converged / n
    not_conv_ci_high: float
    diverged: int
    dead_rate: float
    never_active: float
    disagreement: float  # among runs that converged (NaN with fewer than two)
    n_disagree: int  # runs that entered the disagreement
    wall_s: float
    train_loss_mean: float
    vs_baseline: str = ""
    d_err: float = float("nan")
    d_err_ci_low: float = float("nan")
    d_err_ci_high: float = float("nan")
    p_value: float = float("nan")
    p_holm: float = float("nan")
    n_paired: int = 0
    seeds: list[int] = field(default_factory=list)

    @property
    def acc_mean(self) -> float:
        return 1.0 - self.err_mean

    @property
    def not_conv_frac(self) -> float:
        return self.not_converged / self.n if self.n else float("nan")


_CELL_FIELDS = ("act", "init", "depth", "width", "epochs", "subset")


def summarize_rows(rows: Iterable[dict[str, Any]], baseline: str = "prelu",
                   preds_loader: Callable[[dict[str, Any]], np.ndarray | None] | None = None,
                   num_classes: int = NUM_CLASSES) -> list[CellSummary]:
    """Per-cell statistics of finished runs (see the module docstring).

    ``preds_loader(row)`` returns a run's predictions (None if missing); without it the
    disagreement is NaN. The Holm adjustment runs over every comparison in ``rows``. Cells
    are ordered by width, depth, init, then activation as first met.
    """
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[tuple(r[f] for f in _CELL_FIELDS)].append(r)
    out: list[CellSummary] = []
    for key, runs in cells.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        s = summarize([1.0 - r["test_acc"] for r in runs])
        fin = summarize([1.0 - r["test_acc_final"] for r in runs])
        trained = [r for r in runs if not r["diverged"]]
        bad = sum(not_converged(r, num_classes) for r in runs)
        lo, hi = wilson_interval(bad, len(runs))
        preds = []
        if preds_loader is not None:
            # diverged runs have no predictions (-1); runs at chance say nothing either
            loaded = [preds_loader(r) for r in runs if not not_converged(r, num_classes)]
            preds = [p for p in loaded if p is not None and (p >= 0).all()]
        cell = CellSummary(
            **dict(zip(_CELL_FIELDS, key, strict=True)), n=s.n, err_mean=s.mean,
            err_std=s.std, err_ci_low=s.ci_low, err_ci_high=s.ci_high,
            err_final_mean=fin.mean, err_final_std=fin.std,
            best_epoch=_nanmean([r["best_epoch"] for r in trained]),
            val_err_mean=_nanmean([r["val_err"] for r in trained]),
            not_converged=bad, not_conv_ci_low=lo, not_conv_ci_high=hi,
            diverged=sum(bool(r["diverged"]) for r in runs),
            dead_rate=_nanmean([r["dead_rate"] for r in trained]),
            never_active=_nanmean([r["never_active"] for r in trained]),
            disagreement=prediction_disagreement(preds), n_disagree=len(preds),
            wall_s=float(np.mean([r["wall_s"] for r in runs])),
            train_loss_mean=_nanmean([r["train_loss"] for r in runs]),
            seeds=[r["seed"] for r in runs])
        base_runs = cells.get((baseline, *key[1:]))
        if key[0] != baseline and base_runs:
            by_seed = {r["seed"]: 1.0 - r["test_acc"] for r in base_runs}
            common = [r for r in runs if r["seed"] in by_seed]
            if len(common) >= 2:
                c = compare([1.0 - r["test_acc"] for r in common],
                            [by_seed[r["seed"]] for r in common], paired=True)
                cell.vs_baseline, cell.d_err, cell.n_paired = baseline, c.diff, len(common)
                cell.d_err_ci_low, cell.d_err_ci_high, cell.p_value = (c.ci_low, c.ci_high,
                                                                       c.p_value)
        out.append(cell)
    for cell, p in zip(out, holm_adjust([c.p_value for c in out]), strict=True):
        cell.p_holm = p
    act_order = {a: i for i, a in enumerate(dict.fromkeys(c.act for c in out))}
    init_order = {a: i for i, a in enumerate(dict.fromkeys(c.init for c in out))}
    out.sort(key=lambda c: (c.width, c.depth, init_order[c.init], act_order[c.act]))
    return out


@dataclass
class ActSummary:
    """One activation over the whole grid (every init, depth and width)."""

    act: str
    cells: int
    runs: int
    err_mean: float  # mean over its cells of the cell mean test error
    not_converged: int
    dead_rate: float  # mean over its runs that did not diverge
    disagreement: float  # mean over its cells that have one
    better: int  # cells Holm-significantly below the baseline's error (alpha 0.05)
    worse: int


def summarize_acts(cells: Sequence[CellSummary], rows: Iterable[dict[str, Any]],
                   alpha: float = 0.05) -> list[ActSummary]:
    """Per-activation aggregates of :func:`summarize_rows`' cells (and the raw rows, for the
    run-weighted dead-unit rate), in the cells' activation order."""
    by_act: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_act[r["act"]].append(r)
    out = []
    for act in dict.fromkeys(c.act for c in cells):
        cs = [c for c in cells if c.act == act]
        out.append(ActSummary(
            act=act, cells=len(cs), runs=sum(c.n for c in cs),
            err_mean=float(np.mean([c.err_mean for c in cs])),
            not_converged=sum(c.not_converged for c in cs),
            dead_rate=_nanmean([r["dead_rate"] for r in by_act[act] if not r["diverged"]]),
            disagreement=_nanmean([c.disagreement for c in cs]),
            better=sum(c.p_holm < alpha and c.d_err < 0 for c in cs),
            worse=sum(c.p_holm < alpha and c.d_err > 0 for c in cs)))
    return out


def _nanmean(xs: Iterable[float]) -> float:
    finite = [float(x) for x in xs if math.isfinite(x)]
    return float(np.mean(finite)) if finite else float("nan")
