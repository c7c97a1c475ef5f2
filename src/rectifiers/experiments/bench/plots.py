"""The bench's plots (matplotlib, imported lazily):

* ``err_vs_depth_<init>.png``: test error vs depth for one init, one line per activation,
  error bars = 95 % Student-t interval of the mean (clipped to [0, 100] %; none with a single
  seed); a log y-axis when the plotted means span a factor of 10 or more;
* ``err_vs_depth_by_init.png``: one panel per activation, one line per init;
* ``converged_vs_depth.png``: per init, the fraction of seeds that converged (see
  :func:`.statistics.not_converged`) per activation and depth, written in each square as k/n.

A grid with several widths gets one set of files per width (suffix ``_w<width>``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rectifiers.experiments.bench.statistics import CellSummary
from rectifiers.files import atomic_path

__all__ = ["plot_cells"]

_MARKERS = "osD^vP*X<>hd"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def _style(j: int) -> dict[str, Any]:
    """Colour, marker and (past 10 lines) dash style all vary: readable in grey too."""
    plt = _pyplot()
    return dict(color=plt.get_cmap("tab10")(j % 10), marker=_MARKERS[j % len(_MARKERS)],
                ls="-" if j < 10 else "--")


def _error_lines(ax: Any, cells: Sequence[CellSummary], line_by: str, lines: Sequence[str],
                 depths: Sequence[int]) -> bool:
    """Draw one error-vs-depth line per value of ``line_by``; True if the y-axis went log."""
    means = [100 * c.err_mean for c in cells if c.err_mean > 0]
    log = bool(means) and max(means) / min(means) >= 10
    span = (max(depths) - min(depths)) or 1
    for j, line in enumerate(lines):
        pts = sorted((c for c in cells if getattr(c, line_by) == line), key=lambda c: c.depth)
        if not pts:
            continue
        off = (j - (len(lines) - 1) / 2) * 0.008 * span  # keep error bars apart
        x = [c.depth + off for c in pts]
        y = [100 * c.err_mean for c in pts]
        lo = [100 * max(c.err_ci_low, 0.0) if c.n > 1 else 100 * c.err_mean for c in pts]
        hi = [100 * min(c.err_ci_high, 1.0) if c.n > 1 else 100 * c.err_mean for c in pts]
        if log:
            floor = 0.5 * min(means)
            lo = [max(v, floor) for v in lo]
        err = [[max(m - v, 0.0) for m, v in zip(y, lo, strict=True)],
               [max(v - m, 0.0) for m, v in zip(y, hi, strict=True)]]
        ax.errorbar(x, y, yerr=err, ms=4, capsize=2.5, lw=1.3, elinewidth=0.9, label=line,
                    **_style(j))
    if log:
        ax.set_yscale("log")
    ax.set_xticks(list(depths))
    ax.set_xlabel("depth (weight layers)")
    ax.grid(alpha=0.3, which="both")
    return log


def _chance_line(ax: Any, chance_err: float) -> None:
    ax.axhline(100 * chance_err, color="grey", lw=0.8, ls=":")
    ax.annotate("chance", (1.0, 100 * chance_err), xycoords=("axes fraction", "data"),
                xytext=(-2, -10), textcoords="offset points", ha="right", fontsize=7,
                color="grey")


def _seeds(cells: Sequence[CellSummary]) -> str:
    lo, hi = min(c.n for c in cells), max(c.n for c in cells)
    n = f"{hi}" if lo == hi else f"{lo}-{hi}"
    return f"{n} seed{'' if hi == 1 else 's'} per point"


def _subtitle(cells: Sequence[CellSummary], width: int) -> str:
    c0 = cells[0]
    return (f"width {width}, {c0.epochs} epochs on {c0.subset or 'all'} training images, "
            f"{_seeds(cells)}; bars: 95 % CI of the mean")


def plot_cells(cells: list[CellSummary], out_dir: Path, chance_err: float = 0.9) -> list[Path]:
    """Write every plot of the module docstring into ``out_dir``; return the paths."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    written: list[Path] = []
    widths = sorted({c.width for c in cells})
    for width in widths:
        wc = [c for c in cells if c.width == width]
        suffix = f"_w{width}" if len(widths) > 1 else ""
        acts = list(dict.fromkeys(c.act for c in wc))
        inits = list(dict.fromkeys(c.init for c in wc))
        depths = sorted({c.depth for c in wc})

        for init in inits:
            ic = [c for c in wc if c.init == init]
            fig, ax = plt.subplots(figsize=(7.8, 4.6))
            log = _error_lines(ax, ic, "act", acts, depths)
            _chance_line(ax, chance_err)
            ax.set_ylabel("test error (%)" + (", log scale" if log else ""))
            ax.set_title(f"Fashion-MNIST, plain nets, init = {init}\n{_subtitle(ic, width)}",
                         fontsize=9.5)
            ax.legend(title="activation", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False, fontsize=8.5)
            fig.tight_layout()
            written.append(_save(fig, out_dir / f"err_vs_depth_{init}{suffix}.png"))

        ncols = min(len(acts), 4)
        nrows = math.ceil(len(acts) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 1.2, 2.7 * nrows + 0.6),
                                 squeeze=False, sharey=True, sharex=True)
        for ax, act in zip(axes.flat, acts, strict=False):
            _error_lines(ax, [c for c in wc if c.act == act], "init", inits, depths)
            _chance_line(ax, chance_err)
            ax.set_title(act, fontsize=10)
        for ax in axes[:, 0]:
            ax.set_ylabel("test error (%)")
        for ax in list(axes.flat)[len(acts):]:
            ax.set_visible(False)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, title="init", loc="upper right", ncols=len(inits),
                   frameon=False, fontsize=9)
        fig.suptitle(f"Test error vs depth per activation\n{_subtitle(wc, width)}",
                     fontsize=10, x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        written.append(_save(fig, out_dir / f"err_vs_depth_by_init{suffix}.png"))

        written.append(_plot_converged(wc, acts, inits, depths, width,
                                       out_dir / f"converged_vs_depth{suffix}.png"))
    return written


def _plot_converged(cells: Sequence[CellSummary], acts: Sequence[str], inits: Sequence[str],
                    depths: Sequence[int], width: int, path: Path) -> Path:
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(inits), figsize=(1.0 + 0.75 * len(depths) * len(inits)
                                                     + 1.6 * len(inits),
                                                     0.9 + 0.32 * len(acts)),
                             squeeze=False, sharey=True)
    image = None
    for ax, init in zip(axes[0], inits, strict=True):
        frac = np.full((len(acts), len(depths)), np.nan)
        for c in cells:
            if c.init == init:
                i, j = acts.index(c.act), depths.index(c.depth)
                frac[i, j] = 1.0 - c.not_conv_frac
                ok = c.n - c.not_converged
                ax.text(j, i, f"{ok}/{c.n}", ha="center", va="center", fontsize=8,
                        color="black" if 0.25 < frac[i, j] < 0.85 else "white")
        for i, j in zip(*np.nonzero(np.isnan(frac)), strict=True):
            ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="grey")
        # red-blue rather than red-green (colour-blind readers); k/n is written in each square
        image = ax.imshow(frac, cmap="RdYlBu", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(depths)), [str(d) for d in depths])
        ax.set_yticks(range(len(acts)), list(acts))
        ax.set_xlabel("depth (weight layers)")
        ax.set_title(f"init = {init}", fontsize=10)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.04, pad=0.02,
                 label="fraction of seeds converged")
    fig.suptitle(f"Seeds that converged (test error < chance - 10 points), width {width}",
                 fontsize=10)
    return _save(fig, path)
