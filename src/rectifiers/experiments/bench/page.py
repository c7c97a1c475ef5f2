"""The results page of a bench directory (``rectifiers bench summarize DIR --page PAGE.md``).

Writes ``PAGE.md`` (recipe, grid, command, machine, dates, wall time, plots, the per-cell
table, the significance tables against the baseline with Holm-adjusted p-values, the
non-convergence table and the per-activation table) and, in the folder ``PAGE/`` next to it,
a copy of ``runs.csv`` (one row per run), ``cells.csv`` (one row per cell), the directory's
``cost.json`` and ``bench.json`` where it has them, and the plots (``--plots-dir`` puts the
plots elsewhere).

The page starts with a hand-written summary between the markers ``<!-- summary -->`` and
``<!-- /summary -->``: when the page exists, that block is kept verbatim and everything else
is regenerated, so the generator can be rerun after the summary was written.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from rectifiers.errors import ConfigError
from rectifiers.experiments.bench.grid import PRESETS, BenchSettings
from rectifiers.experiments.bench.plots import plot_cells
from rectifiers.experiments.bench.statistics import (
    CellSummary,
    not_converged_threshold,
    summarize_acts,
)
from rectifiers.experiments.bench.store import COST_NAME, CSV_NAME, SETTINGS_NAME
from rectifiers.experiments.bench.tables import (
    cell_table,
    cell_table_legend,
    cost_table,
    fmt,
    fmt_p,
    pct,
)
from rectifiers.files import atomic_write_bytes, atomic_write_text

__all__ = ["SUMMARY_BEGIN", "SUMMARY_END", "machine_description", "write_page"]

SUMMARY_BEGIN = "<!-- summary -->"
SUMMARY_END = "<!-- /summary -->"
_PLACEHOLDER = (f"{SUMMARY_BEGIN}\n## Summary\n\n_To be written by hand: which activations and "
                "inits train deep plain nets and which fail, and where the data cannot tell them "
                f"apart. The generator keeps everything between the summary markers._\n\n"
                f"{SUMMARY_END}")


def _kept_summary(page: Path) -> str:
    """The hand-written summary block of an existing page (the placeholder if none)."""
    if not page.exists():
        return _PLACEHOLDER
    text = page.read_text(encoding="utf-8")
    m = re.search(re.escape(SUMMARY_BEGIN) + r".*?" + re.escape(SUMMARY_END), text, re.S)
    if m:
        return m.group(0)
    if text.strip():
        raise ConfigError(f"{page} exists but has no {SUMMARY_BEGIN} ... {SUMMARY_END} block; "
                          "the generator would overwrite it. Add the markers around the part "
                          "to keep, or choose another --page")
    return _PLACEHOLDER


def machine_description() -> str:
    """CPU model (lscpu), core count, OS and the library versions of this machine."""
    cpu = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        cpu = m.group(1).strip() if m else ""
    except (OSError, subprocess.SubprocessError):
        pass
    cpu = cpu or platform.processor() or platform.machine()
    import torch

    return (f"{cpu}, {os.cpu_count()} logical cores; {platform.platform()}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _grid_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    seeds = sorted({r["seed"] for r in rows})
    return dict(
        acts=tuple(dict.fromkeys(r["act"] for r in rows)),
        inits=tuple(dict.fromkeys(r["init"] for r in rows)),
        depths=tuple(sorted({r["depth"] for r in rows})),
        widths=tuple(sorted({r["width"] for r in rows})),
        seeds=seeds, epochs=sorted({r["epochs"] for r in rows}),
        subset=sorted({r["subset"] for r in rows}))


def _command(grid: dict[str, Any], recipe: dict[str, Any], out_dir: str) -> str:
    """The ``rectifiers bench`` command that runs this grid with this recipe: the preset's
    name if one matches, the explicit flags otherwise."""
    seeds = grid["seeds"]
    simple = (seeds == list(range(len(seeds))) and len(grid["epochs"]) == 1
              and len(grid["subset"]) == 1)
    full = {**{f.name: f.default for f in fields(BenchSettings)}, **recipe}
    if simple:
        for name, preset in PRESETS.items():
            want = {**{f.name: f.default for f in fields(BenchSettings)}, **preset}
            same_grid = (tuple(preset["acts"]) == grid["acts"]
                         and set(preset["inits"]) == set(grid["inits"])
                         and set(preset["depths"]) == set(grid["depths"])
                         and set(preset["widths"]) == set(grid["widths"])
                         and preset["seeds"] == len(seeds)
                         and [preset["epochs"]] == grid["epochs"]
                         and [preset["subset"]] == grid["subset"])
            same_recipe = all(want.get(k) == v for k, v in recipe.items() if k != "data_rule")
            if same_grid and same_recipe:
                return f"rectifiers bench --preset {name} --out-dir {out_dir}"
    flags = [
        f"--acts {','.join(grid['acts'])}", f"--inits {','.join(grid['inits'])}",
        f"--depths {','.join(map(str, grid['depths']))}",
        f"--widths {','.join(map(str, grid['widths']))}",
        f"--seeds {len(seeds)}" if simple else f"(seeds {seeds})",
        f"--epochs {grid['epochs'][0]}" if len(grid["epochs"]) == 1 else
        f"(epochs {grid['epochs']})",
        f"--subset {grid['subset'][0]}" if len(grid["subset"]) == 1 else
        f"(subsets {grid['subset']})",
        f"--test-subset {full['test_subset']}", f"--val-size {full['val_size']}",
        f"--model {full['model']}", f"--lr {full['lr']}", f"--batch-size {full['batch_size']}",
        f"--weight-decay {full['weight_decay']}", f"--sched {full['sched']}",
        f"--augment {full['augment']}", f"--amp {full['amp']}",
        "--channels-last" if full["channels_last"] else "--no-channels-last",
        f"--out-dir {out_dir}"]
    return "rectifiers bench " + " \\\n  ".join(
        " ".join(flags[i:i + 4]) for i in range(0, len(flags), 4))


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError):
        return None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rel(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target, page_dir)).as_posix()


def _significance(cells: Sequence[CellSummary], baseline: str, init: str, width: int,
                  depths: Sequence[int], acts: Sequence[str], alpha: float) -> list[str]:
    head = "| act | " + " | ".join(f"d={d}: Δ err (pts) [95 % CI] | p | p Holm"
                                   for d in depths) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(depths)]
    by = {(c.act, c.depth): c for c in cells if c.init == init and c.width == width}
    for act in acts:
        if act == baseline:
            continue
        parts = []
        for d in depths:
            c = by.get((act, d))
            if c is None or not c.vs_baseline:
                parts.append("– | – | –")
                continue
            mark = "**" if c.p_holm < alpha else ""
            parts.append(f"{mark}{100 * c.d_err:+.1f}{mark} [{100 * c.d_err_ci_low:+.1f}, "
                         f"{100 * c.d_err_ci_high:+.1f}] | {fmt_p(c.p_value)} | "
                         f"{mark}{fmt_p(c.p_holm)}{mark}")
        lines.append(f"| {act} | " + " | ".join(parts) + " |")
    return lines


def _convergence(cells: Sequence[CellSummary], inits: Sequence[str], depths: Sequence[int],
                 acts: Sequence[str], width: int) -> list[str]:
    cols = [(i, d) for i in inits for d in depths]
    lines = ["| act | " + " | ".join(f"{i} d={d}" for i, d in cols) + " | total |",
             "|---|" + "---|" * (len(cols) + 1)]
    by = {(c.act, c.init, c.depth): c for c in cells if c.width == width}
    for act in acts:
        parts, bad, n = [], 0, 0
        for i, d in cols:
            c = by.get((act, i, d))
            if c is None:
                parts.append("–")
                continue
            bad, n = bad + c.not_converged, n + c.n
            parts.append(f"**{c.not_converged}/{c.n}**" if c.not_converged else f"0/{c.n}")
        lines.append(f"| {act} | " + " | ".join(parts) + f" | {bad}/{n} |")
    return lines


def _act_table(cells: Sequence[CellSummary], rows: Sequence[dict[str, Any]],
               costs: dict[str, Any] | None, baseline: str, alpha: float) -> list[str]:
    model = {c["name"]: c for c in (costs or {}).get("model", [])}
    lines = [f"| act | runs | mean test err % (over cells) | not converged | vs {baseline}: "
             "better / worse (Holm) | dead-unit rate | disagreement | step time (rel ReLU) | "
             "saved bytes (rel ReLU) |", "|---|" + "---|" * 8]
    for a in summarize_acts(cells, rows, alpha):
        c = model.get(a.act, {})
        cmp = "–" if a.act == baseline else f"{a.better} / {a.worse}"
        lines.append(
            f"| {a.act} | {a.runs} | {pct(a.err_mean)} | {a.not_converged}/{a.runs} | {cmp} | "
            f"{fmt(a.dead_rate, '.3f')} | {fmt(a.disagreement, '.3f')} | "
            f"{fmt(c.get('time_rel', float('nan')), '.2f')} | "
            f"{fmt(c.get('bytes_rel', float('nan')), '.2f')} |")
    return lines


def write_page(page: str | os.PathLike, out_dir: str | os.PathLike,
               rows: Sequence[dict[str, Any]], cells: Sequence[CellSummary],
               recipe: dict[str, Any] | None, costs: dict[str, Any] | None,
               baseline: str = "prelu", plots_dir: str | os.PathLike | None = None,
               cells_csv: str | None = None, alpha: float = 0.05) -> list[Path]:
    """Write the results page, ``runs.csv``/``cells.csv`` next to it and its plots; return
    the paths written. ``cells_csv``: the text of ``summary.csv`` (copied as ``cells.csv``)."""
    page = Path(page)
    out = Path(out_dir)
    if page.suffix != ".md":
        raise ConfigError(f"--page {page}: give a Markdown file name ending in .md")
    summary = _kept_summary(page)
    page_dir = page.parent
    assets = page_dir / page.stem
    plots_at = Path(plots_dir) if plots_dir is not None else assets
    written: list[Path] = []

    # runs.csv up to its last complete line (a grid may still be appending to it)
    raw = (out / CSV_NAME).read_bytes()
    raw = raw[: raw.rfind(b"\n") + 1]
    atomic_write_bytes(assets / "runs.csv", raw)
    written.append(assets / "runs.csv")
    if cells_csv is not None:
        atomic_write_text(assets / "cells.csv", cells_csv)
        written.append(assets / "cells.csv")
    # the measured costs and the grid's recipe, byte for byte: what the page's tables rest on
    copied = [n for n in (COST_NAME, SETTINGS_NAME) if (out / n).is_file()]
    for name in copied:
        atomic_write_bytes(assets / name, (out / name).read_bytes())
        written.append(assets / name)
    plots = plot_cells(list(cells), plots_at)
    written += plots

    grid = _grid_of(rows)
    recipe = recipe or {}
    acts, inits, depths, widths = grid["acts"], grid["inits"], grid["depths"], grid["widths"]
    n_expected = (len(acts) * len(inits) * len(depths) * len(widths) * len(grid["seeds"]))
    finished = sorted(t for t in (_parse_time(r["finished"]) for r in rows) if t)
    wall = sum(r["wall_s"] for r in rows)
    devices = sorted({r["device"] for r in rows})
    family = sum(1 for c in cells if c.p_value == c.p_value)
    threshold = not_converged_threshold()
    cmd = _command(grid, recipe, str(out))
    regen = (f"rectifiers bench summarize {out} --page {page}"
             + (f" --plots-dir {plots_dir}" if plots_dir is not None else ""))
    n_seeds = len(grid["seeds"])
    tz = time.strftime("%Z")

    L: list[str] = [
        "# Activation x init x depth in plain nets: results", "",
        f"<!-- Generated by `{regen}`. Everything outside the summary markers is rewritten "
        "when the page is regenerated. -->", "", summary, "",
        "## What was run", "",
        f"{len(rows)} runs{'' if len(rows) == n_expected else f' (of {n_expected})'}: "
        f"{_plural(len(acts), 'activation')} ({', '.join(acts)}) x "
        f"{_plural(len(inits), 'init')} ({', '.join(inits)}) x depths "
        f"{', '.join(map(str, depths))} x width "
        f"{', '.join(map(str, widths))} x {_plural(n_seeds, 'seed')}, on Fashion-MNIST. "
        f"Every run trains `{recipe.get('model', 'plain_small')}` (3x3 convs, SPP, three fc "
        "layers; no batch norm, no skip connection; depth counts weight layers) for "
        f"{', '.join(map(str, grid['epochs']))} epoch{'' if grid['epochs'] == [1] else 's'} on "
        f"{', '.join(str(s or 'all') for s in grid['subset'])} training images drawn with the "
        f"run's seed from the training split minus {recipe.get('val_size', '?')} images held "
        "out (data seed 0, the same for every run). After every epoch the run is validated on "
        "the held-out images; the weights of the epoch with the lowest validation error (the "
        "first on ties) are kept and scored on "
        f"{recipe.get('test_subset') or 'all 10000'} test images (the same for every run). "
        "The test set selects nothing; the last epoch's test error is reported beside it.", "",
        "Recipe (`bench.json`):", "",
        "| setting | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(recipe.items())], "",
        "Command (the grid, then this page):", "", "```bash", cmd, regen, "```", "",
        f"Machine: {machine_description()} (the machine that generated this page; the runs' "
        f"device: {', '.join(devices)}).", "",
        f"Date: runs finished {finished[0]:%Y-%m-%d %H:%M} to {finished[-1]:%Y-%m-%d %H:%M} "
        f"({tz}; span {_hours((finished[-1] - finished[0]).total_seconds())}); page "
        f"generated {time.strftime('%Y-%m-%d %H:%M')} {tz}." if finished else
        f"Page generated {time.strftime('%Y-%m-%d %H:%M')} {tz}.", "",
        f"Wall time: {_hours(wall)} of training in total (sum of `wall_s`: the engine's "
        f"training loop with its per-epoch validation; mean {wall / max(len(rows), 1):.1f} s "
        "per run; test evaluation not included).", "",
        "## How to read the numbers", "",
        "* **Test error** = 1 - accuracy of the selected (best-validation) epoch; mean ± "
        "sample std over seeds and the 95 % Student-t interval of the mean. A run that diverged "
        "counts at chance level (error 0.9), so instability raises a cell's mean.",
        f"* **Paired test vs `{baseline}`** (channel-wise PReLU, the paper's): runs with the "
        "same seed share the data order and the random stream of the initial weights, so each "
        "activation is compared with the baseline seed by seed (paired t-test on the "
        + (f"differences, {n_seeds - 1} degrees of freedom with {n_seeds} seeds)"
           if n_seeds > 1 else "differences; it needs at least 2 seeds)")
        + f". Δ > 0: higher error than {baseline}.",
        f"* **Holm-Bonferroni**: the family is every comparison against {baseline} in the grid, "
        f"m = {family} (every other activation at every init x depth x width); a difference is "
        f"called significant when its Holm-adjusted p < {alpha} (bold), which keeps the chance "
        f"of any false positive in the whole table below {alpha}. With few seeds the test has "
        "little power: a cell without bold is *not shown to differ*, not shown to be equal.",
        f"* **Did not converge**: the run diverged (non-finite loss or weights) or its test "
        f"error is >= chance - 0.10 = {threshold:.2f} (10 classes). Fractions come with the "
        "Wilson 95 % interval.",
        "* **Disagreement**: fraction of test images whose top-1 class differs between two "
        "seeds of a cell, averaged over pairs of converged runs (the reproducibility measure of "
        "the SmeLU paper, Shamir et al. 2020). It grows with the error itself, so compare it "
        "between activations of similar error.",
        "* **Dead-unit rate**: fraction of all activation outputs on the test set that are "
        "exactly 0 with the selected weights (runs that did not diverge).", "",
    ]
    L += ["## Test error vs depth", ""]
    for p in plots:
        if p.name.startswith("err_vs_depth_") and "by_init" not in p.name:
            L += [f"![test error vs depth, {p.stem}]({_rel(p, page_dir)})", ""]
    for p in plots:
        if "by_init" in p.name:
            L += ["Per activation, one line per init:", "",
                  f"![test error vs depth per activation]({_rel(p, page_dir)})", ""]
    L += ["## Runs that did not converge", ""]
    for p in plots:
        if p.name.startswith("converged_vs_depth"):
            L += [f"![fraction of seeds converged]({_rel(p, page_dir)})", ""]
    for w in widths:
        L += [f"Runs that did not converge / runs, width {w}:", "",
              *_convergence(cells, inits, depths, acts, w), ""]
    L += [f"## Significance against {baseline}", "",
          f"Paired difference of the test error (percentage points, act - {baseline}), its 95 % "
          f"interval, the paired t-test p and the Holm-adjusted p (family of m = {family}); "
          f"bold: Holm-adjusted p < {alpha}.", ""]
    for w in widths:
        for init in inits:
            L += [f"### init = {init}" + (f", width {w}" if len(widths) > 1 else ""), "",
                  *_significance(cells, baseline, init, w, depths, acts, alpha), ""]
    L += ["## Per activation", "",
          "Over the whole grid: mean of the cell mean test errors, runs that did not "
          f"converge, cells where the activation is Holm-significantly better / worse than "
          f"{baseline}, dead-unit rate (mean over runs that did not diverge), disagreement "
          "(mean over cells), and from `cost.json` the time of one training step and the bytes "
          "autograd saves for backward, relative to ReLU.", "",
          *_act_table(cells, rows, costs, baseline, alpha), ""]
    cost = cost_table(costs)
    if cost:
        L += ["Cost measurement:", "", *cost, ""]
    else:
        L += [f"(No `cost.json` yet: `rectifiers bench summarize {out} --cost` measures it.)",
              ""]
    L += ["## Every cell", "", cell_table_legend(baseline, cells), ""]
    for init in inits:
        L += [f"### init = {init}", "",
              *cell_table([c for c in cells if c.init == init], baseline), ""]
    L += ["## Files", "",
          f"* [`{_rel(assets / 'runs.csv', page_dir)}`]({_rel(assets / 'runs.csv', page_dir)}):"
          " one row per run (key: act, init, depth, width, seed, epochs, subset; results: "
          "test_acc and test_err of the selected epoch, test_acc_final, val_err, best_epoch, "
          "train_loss, epochs_done, wall_s, diverged, dead_rate, never_active, device, "
          "finished; the `preds` column names the prediction file in the bench directory, "
          "not copied here).",
          *([f"* [`{_rel(assets / 'cells.csv', page_dir)}`]"
             f"({_rel(assets / 'cells.csv', page_dir)}): one row per cell, every statistic "
             "above."] if cells_csv is not None else []),
          *([f"* [`{_rel(assets / COST_NAME, page_dir)}`]({_rel(assets / COST_NAME, page_dir)})"
             ": the cost measurement of the per-activation table (model and activation level, "
             "seconds and bytes)."] if COST_NAME in copied else []),
          *([f"* [`{_rel(assets / SETTINGS_NAME, page_dir)}`]"
             f"({_rel(assets / SETTINGS_NAME, page_dir)}): the grid's recipe (`rectifiers "
             "bench` settings)."] if SETTINGS_NAME in copied else []), ""]
    atomic_write_text(page, "\n".join(L).rstrip() + "\n")
    written.append(page)
    return written
