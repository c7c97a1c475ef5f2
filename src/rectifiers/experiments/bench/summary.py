"""``summary.csv``, ``summary.md`` and ``cost.json`` of a bench directory."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from rectifiers.analysis.cost import measure_activation_costs, measure_model_costs
from rectifiers.errors import UserError
from rectifiers.experiments.bench.grid import BenchSettings
from rectifiers.experiments.bench.page import write_page
from rectifiers.experiments.bench.plots import plot_cells
from rectifiers.experiments.bench.statistics import CellSummary, summarize_rows
from rectifiers.experiments.bench.store import (
    COST_NAME,
    CSV_NAME,
    SETTINGS_NAME,
    load_preds,
    read_rows,
    read_settings,
)
from rectifiers.experiments.bench.tables import cell_table, cell_table_legend, cost_table
from rectifiers.files import atomic_write_text
from rectifiers.models import create_model
from rectifiers.train import TrainConfig

__all__ = ["load_costs", "measure_bench_costs", "summarize_dir", "summary_csv_text"]


def _markdown(cells: list[CellSummary], costs: dict[str, Any] | None, baseline: str,
              out_dir: Path) -> str:
    lines = ["# rectifiers bench summary", "", f"Directory `{out_dir}`. "
             + cell_table_legend(baseline, cells), "", *cell_table(cells, baseline)]
    cost = cost_table(costs)
    if cost:
        lines += ["", "## Cost per activation (relative to ReLU)", "", *cost]
    return "\n".join(lines) + "\n"


def load_costs(out_dir: Path) -> dict[str, Any] | None:
    """``cost.json`` of a bench directory (None if absent)."""
    path = out_dir / COST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable ({exc}); delete it and rerun with --cost") \
            from exc


def summary_csv_text(cells: list[CellSummary]) -> str:
    """``summary.csv``: one row per cell, every field of :class:`CellSummary`."""
    names = [f.name for f in fields(CellSummary)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for c in cells:
        d = asdict(c)
        d["seeds"] = " ".join(map(str, d["seeds"]))
        w.writerow([d[n] for n in names])
    return buf.getvalue()


def measure_bench_costs(acts: Sequence[str], settings: BenchSettings, depth: int, width: int,
                        batch: int | None = None, repeats: int = 10, warmup: int = 2,
                        device: str = "cpu") -> dict[str, Any]:
    """Model-level (the bench's network at ``depth``/``width``) and activation-level costs of
    each activation relative to ReLU, as a JSON-ready dict."""
    acts = list(dict.fromkeys(["relu", *acts]))
    batch = batch or settings.batch_size

    def builder(act: str) -> Callable[[], Any]:
        return lambda: create_model(settings.model, num_classes=10, in_chans=1, act=act,
                                    init="he", depth=depth, width=width)

    # the bench's own recipe for the step (fp16 needs CUDA: timed in fp32 elsewhere)
    amp = settings.amp if settings.amp != "fp16" or device.startswith("cuda") else "none"
    recipe = TrainConfig(weight_decay=settings.weight_decay, amp=amp)
    model_costs = measure_model_costs({a: builder(a) for a in acts}, (batch, 1, 28, 28), 10,
                                      repeats=repeats, warmup=warmup, device=device,
                                      lr=settings.lr, recipe=recipe)
    act_shape = (batch, width, 14, 14)  # conv1 is 3x3/2: the first maps are 14x14
    act_costs = measure_activation_costs(acts, act_shape, repeats=2 * repeats, warmup=warmup,
                                         device=device)
    return {
        "meta": {"model": settings.model, "depth": depth, "width": width, "batch": batch,
                 "act_shape": list(act_shape), "device": device, "repeats": repeats,
                 "amp": amp},
        "model": [c.as_dict() for c in model_costs],
        "activation": [c.as_dict() for c in act_costs],
    }


def summarize_dir(out_dir: str | os.PathLike, baseline: str = "prelu", plots: bool = True,
                  cost: bool = False, cost_device: str = "cpu", cost_repeats: int = 10,
                  log: Callable[[str], None] = print, page: str | os.PathLike | None = None,
                  plots_dir: str | os.PathLike | None = None) -> list[CellSummary]:
    """Summarise the runs in ``out_dir`` and write summary.csv, summary.md and the plots.

    ``cost=True`` measures the per-activation costs (cached in cost.json; re-measured when
    activations are missing from it). ``page``: also write the results page there
    (:func:`.page.write_page`; its plots go to ``plots_dir``, default the folder next to
    the page named like it)."""
    out = Path(out_dir)
    rows = read_rows(out / CSV_NAME)
    if not rows:
        raise UserError(f"{out / CSV_NAME} has no finished runs; run `rectifiers bench "
                        f"--out-dir {out} ...` first")
    cells = summarize_rows(rows, baseline, preds_loader=lambda r: load_preds(out, r["preds"]))
    costs = load_costs(out)
    cost_path = out / COST_NAME
    acts = list(dict.fromkeys(c.act for c in cells))
    have = {c["name"] for c in (costs or {}).get("model", [])}
    if cost and not set(acts) <= have:
        stored = read_settings(out)
        if stored is None:
            raise UserError(f"{out / SETTINGS_NAME} is missing: the cost measurement needs the "
                            "recipe of the runs; rerun `rectifiers bench` on this directory")
        known = {f.name for f in fields(BenchSettings)}
        settings = BenchSettings(**{k: v for k, v in stored.items() if k in known})
        depth = max(c.depth for c in cells)
        width = max(c.width for c in cells)
        log(f"[bench] measuring step time and saved bytes of {len(acts)} activations "
            f"(depth {depth}, width {width})")
        costs = measure_bench_costs(acts, settings, depth, width, repeats=cost_repeats,
                                    device=cost_device)
        atomic_write_text(cost_path, json.dumps(costs, indent=2) + "\n")
    cells_csv = summary_csv_text(cells)
    atomic_write_text(out / "summary.csv", cells_csv)
    md = _markdown(cells, costs, baseline, out)
    atomic_write_text(out / "summary.md", md)
    if plots:
        for p in plot_cells(cells, out):
            log(f"[bench] wrote {p}")
    log(md)
    if page is not None:
        for p in write_page(page, out, rows, cells, read_settings(out), costs, baseline,
                            plots_dir=plots_dir, cells_csv=cells_csv):
            log(f"[bench] wrote {p}")
    return cells
