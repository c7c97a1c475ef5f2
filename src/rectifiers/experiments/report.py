"""The reproduction report: one section per experiment, written as Markdown + PNG + JSON.

Every experiment of ``rectifiers reproduce`` returns a :class:`Section`: the paper's claim
(with its number), what we measured (with spread over seeds), tables, plots, the exact
command that produced it and a one-line verdict. :func:`write_report` turns a list of
sections into ``report.md`` (self-contained next to its PNGs) and ``results.json`` (the
numbers, for scripts), both written atomically so an interrupted run never leaves a
half-written report; :func:`format_summary` is the short text printed at the end of a run.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rectifiers.files import atomic_path, atomic_write_text

__all__ = [
    "VERDICTS",
    "Section",
    "fmt",
    "format_summary",
    "integer_ticks",
    "markdown_table",
    "new_figure",
    "numbered_titles",
    "plain_log_ticks",
    "plt_colormap",
    "save_figure",
    "write_report",
]

# A verdict is one of these, so a reader can scan the report for them.
VERDICTS: tuple[str, ...] = (
    "reproduced",
    "partly reproduced",
    "not reproduced",
    "not testable at this scale",
)


@dataclass
class Section:
    """One experiment's part of the report.

    ``claim``: what the paper says, with its number. ``result``: what we measured, in
    prose with spread. ``tables``: Markdown tables (from :func:`markdown_table`).
    ``plots``: PNG file names relative to the report directory. ``verdict``: one of
    :data:`VERDICTS`; ``verdict_note``: the one-line reason. ``data``: the raw numbers,
    saved to ``results.json``. ``title`` carries no number: the report numbers its sections
    in the order it is given them (:func:`numbered_titles`).
    """

    key: str
    title: str
    claim: str
    result: str
    verdict: str
    verdict_note: str
    command: str
    tables: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    setup: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # this invocation's time
    # Training time of the section's runs, including runs read back from the run store
    # (trained by an earlier invocation); None: the section trains nothing it stores.
    train_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


def fmt(x: float, digits: int = 3) -> str:
    """Compact number for tables: ``nan`` as an en dash, large/small values in e-notation."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = float(x)
    if x != 0 and (abs(x) < 10 ** -(digits) or abs(x) >= 10 ** (digits + 3)):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats are formatted with :func:`fmt`."""
    if any(len(r) != len(headers) for r in rows):
        raise ValueError(f"every row needs {len(headers)} cells")

    def cell(v: Any) -> str:
        return fmt(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 3.8):
    """A matplotlib figure on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False)
    return fig, axes


def plt_colormap(name: str):
    """A matplotlib colormap by name (matplotlib is imported lazily: it is an extra)."""
    import matplotlib

    return matplotlib.colormaps[name]


def integer_ticks(ax, axis: str = "x") -> None:
    """Whole-number ticks only (epochs)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def plain_log_ticks(ax, axis: str = "y") -> None:
    """Keep a log scale but label ticks as plain numbers (15, 20, 30) instead of 1.5x10^1."""
    from matplotlib.ticker import FuncFormatter

    f = FuncFormatter(lambda v, _pos: f"{v:g}")
    a = getattr(ax, f"{axis}axis")
    a.set_major_formatter(f)
    a.set_minor_formatter(f)
    ax.tick_params(axis=axis, which="minor", labelsize=7)


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Save ``fig`` as PNG atomically and close it (small files: the report is committed)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def numbered_titles(sections: Sequence[Section]) -> list[str]:
    """``"1. <title>"``, ``"2. <title>"``, ... in report order: the one place numbers are made."""
    return [f"{i}. {s.title}" for i, s in enumerate(sections, 1)]


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def write_report(sections: Sequence[Section], out_dir: str | os.PathLike, *, title: str,
                 command: str, mode: str, wall_seconds: float,
                 cpu_seconds: float | None = None) -> Path:
    """Write ``report.md`` and ``results.json`` into ``out_dir``; return the Markdown path.

    ``cpu_seconds`` (process CPU time, all threads) is reported next to the wall time: on a
    shared machine the wall time says little about what an idle one would take.
    """
    out = Path(out_dir)
    env = _environment()
    md = [f"# {title}", ""]
    md.append(
        f"Produced by `{command}` ({mode} mode) in {wall_seconds / 60:.1f} min wall"
        + (f" ({cpu_seconds / 60:.1f} min CPU)" if cpu_seconds is not None else "") + " on "
        f"{env['cpu_count']} CPU core(s), {env['threads']} torch thread(s), torch "
        f"{env['torch']}, Python {env['python']}. Every number below was measured in that run; "
        "spreads are over seeds (mean ± sample std, 95 % Student-t intervals)."
    )
    trained = sum(s.train_seconds or 0.0 for s in sections)
    if trained > wall_seconds + 60:
        md[-1] += (f" Runs finished by earlier invocations were read back from the run store "
                   f"(`runs/` next to the report) instead of trained again: the training time "
                   f"of all runs is {trained / 60:.0f} min (one process each), the time "
                   "column below counts it.")
    md += ["", "## Summary", ""]
    titles = numbered_titles(sections)
    md.append(markdown_table(
        ["experiment", "verdict", "why", "time"],
        [[f"[{t}](#{_anchor(t)})", f"**{s.verdict}**", s.verdict_note,
          _duration(s.seconds if s.train_seconds is None else max(s.seconds, s.train_seconds))]
         for t, s in zip(titles, sections, strict=True)],
    ))
    for t, s in zip(titles, sections, strict=True):
        md += ["", f"## {t}", ""]
        md += [f"**Paper.** {s.claim}", ""]
        if s.setup:
            md += [f"**Setup.** {s.setup}", ""]
        md += [f"**Result.** {s.result}", ""]
        for t in s.tables:
            md += [t, ""]
        for p in s.plots:
            md += [f"![{Path(p).stem}]({p})", ""]
        md += [f"**Verdict: {s.verdict}.** {s.verdict_note}", ""]
        md += ["Command:", "", "```", s.command, "```"]
    path = atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    results = {
        "title": title, "command": command, "mode": mode, "wall_seconds": wall_seconds,
        "cpu_seconds": cpu_seconds,
        "environment": env,
        "sections": [{"number": i, **asdict(s)} for i, s in enumerate(sections, 1)],
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=_json_default))
    return path


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "as_dict"):
        return o.as_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _anchor(title: str) -> str:
    # GitHub's heading anchors: lower case, spaces to '-', punctuation dropped.
    keep = [c.lower() if c.isalnum() else ("-" if c in " -" else "") for c in title]
    return "".join(keep)


def format_summary(sections: Sequence[Section], report_path: str | os.PathLike,
                   wall_seconds: float) -> str:
    """The text printed at the end of ``rectifiers reproduce``: one verdict per experiment."""
    titles = numbered_titles(sections)
    width = max((len(t) for t in titles), default=10)
    lines = ["", "=" * 78, "Delving Deep into Rectifiers - reproduction summary", "=" * 78]
    for t, s in zip(titles, sections, strict=True):
        lines.append(f"{t:<{width}}  {s.verdict.upper()}")
        lines.append(f"{'':<{width}}  {s.verdict_note}")
    lines.append("-" * 78)
    lines.append(f"report: {report_path}   (wall time {wall_seconds / 60:.1f} min)")
    return "\n".join(lines)
