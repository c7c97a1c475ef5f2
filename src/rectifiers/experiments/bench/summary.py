"""``summary.csv``, ``summary.md`` and ``cost.json`` of a bench directory."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from rectifiers.analysis.cost import measure_activation_costs, measure_model_costs
from rectifiers.errors import UserError
from rectifiers.experiments.bench.grid import BenchSettings
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
from rectifiers.files import atomic_write_text
from rectifiers.models import create_model
from rectifiers.train import TrainConfig

__all__ = ["measure_bench_costs", "summarize_dir"]


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
                  log: Callable[[str], None] = print) -> list[CellSummary]:
    """Summarise the runs in ``out_dir`` and write summary.csv, summary.md and the plots.

    ``cost=True`` measures the per-activation costs (cached in cost.json; re-measured when
    activations are missing from it)."""
    out = Path(out_dir)
    rows = read_rows(out / CSV_NAME)
    if not rows:
        raise UserError(f"{out / CSV_NAME} has no finished runs; run `rectifiers bench "
                        f"--out-dir {out} ...` first")
    cells = summarize_rows(rows, baseline, preds_loader=lambda r: load_preds(out, r["preds"]))
    costs = None
    cost_path = out / COST_NAME
    if cost_path.exists():
        costs = json.loads(cost_path.read_text())
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
    _write_summary_csv(out / "summary.csv", cells)
    md = _markdown(cells, costs, baseline, out)
    atomic_write_text(out / "summary.md", md)
    if plots:
        for p in plot_cells(cells, out):
            log(f"[bench] wrote {p}")
    log(md)
    return cells
