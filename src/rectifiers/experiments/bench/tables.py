"""Markdown tables of bench statistics, shared by ``summary.md`` and the results page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rectifiers.experiments.bench.statistics import CellSummary

__all__ = ["cell_table", "cell_table_legend", "cost_table", "fmt", "fmt_p", "pct"]


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage (``0.2061`` -> ``20.6``)."""
    return fmt(None if x is None else 100 * x, f".{digits}f")


def fmt_p(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


CELL_TABLE_HEAD = (
    "| act | init | depth | width | n | test err % mean ± std | 95 % CI | last-epoch err % | "
    "best epoch | Δ err vs {base} (pts) [95 % CI] | p | p Holm | not conv. [95 % CI] | "
    "disagree | dead | s/run |")


def cell_table(cells: Sequence[CellSummary], baseline: str) -> list[str]:
    """The per-cell Markdown table (errors in %, Δ in percentage points)."""
    lines = [CELL_TABLE_HEAD.format(base=baseline), "|" + "---|" * 16]
    for c in cells:
        delta = "–" if not c.vs_baseline else (
            f"{100 * c.d_err:+.1f} [{100 * c.d_err_ci_low:+.1f}, {100 * c.d_err_ci_high:+.1f}]")
        lines.append(
            f"| {c.act} | {c.init} | {c.depth} | {c.width} | {c.n} | {pct(c.err_mean)} ± "
            f"{pct(c.err_std)} | [{pct(c.err_ci_low)}, {pct(c.err_ci_high)}] | "
            f"{pct(c.err_final_mean)} | {fmt(c.best_epoch, '.1f')} | {delta} | "
            f"{fmt_p(c.p_value)} | {fmt_p(c.p_holm)} | {c.not_converged}/{c.n} "
            f"[{c.not_conv_ci_low:.2f}, {c.not_conv_ci_high:.2f}] | {fmt(c.disagreement, '.3f')}"
            f" | {fmt(c.dead_rate, '.3f')} | {c.wall_s:.1f} |")
    return lines


def cell_table_legend(baseline: str, cells: Sequence[CellSummary]) -> str:
    """What the columns of :func:`cell_table` mean (one paragraph)."""
    family = sum(1 for c in cells if not math.isnan(c.p_value))
    return (
        "Test error = 1 - accuracy of the epoch with the lowest validation error (mean ± sample "
        "std over seeds, 95 % Student-t interval of the mean); last-epoch err: the same runs' "
        "error after the last epoch; best epoch: mean selected epoch. "
        f"Δ: paired difference of the test error to `{baseline}` at the same init/depth/width "
        "over the seeds both have (positive = worse), its 95 % interval and the paired t-test "
        f"p-value; p Holm: Holm-Bonferroni adjusted over all {family} comparisons of the grid. "
        "Not conv.: runs that diverged or ended with a test error >= chance - 0.10 (0.80 for "
        "10 classes), with the Wilson 95 % interval of the fraction. Disagree: fraction of test "
        "examples whose top-1 differs between two seeds, mean over pairs of runs that "
        "converged. Dead: fraction of zero activation outputs on the test set (selected "
        "weights). s/run: training wall time per run.")


def cost_table(costs: dict[str, Any] | None) -> list[str]:
    """The per-activation cost table of ``cost.json`` (empty if there is none)."""
    if not costs or not costs.get("model"):
        return []
    meta = costs.get("meta", {})
    lines = [
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
            f"{fmt(a.get('time_rel', float('nan')), '.2f')} | "
            f"{fmt(a.get('bytes_rel', float('nan')), '.2f')} |")
    return lines
