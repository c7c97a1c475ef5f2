"""The bench's plots: accuracy vs depth, per init and per activation (matplotlib, lazily)."""

from __future__ import annotations

import math
from pathlib import Path

from rectifiers.experiments.bench.statistics import CellSummary
from rectifiers.files import atomic_path

__all__ = ["plot_cells"]


def plot_cells(cells: list[CellSummary], out_dir: Path) -> list[Path]:
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
