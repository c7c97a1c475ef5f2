"""`rectifiers bench` reporting: Holm adjustment, non-convergence, per-activation aggregates,
plots and the results page (`rectifiers bench summarize DIR --page PAGE.md`)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from rectifiers.experiments import bench
from rectifiers.experiments.bench import BenchSettings, RunOutcome, RunSpec
from rectifiers.experiments.bench.page import SUMMARY_BEGIN, SUMMARY_END
from rectifiers.experiments.bench.statistics import (
    holm_adjust,
    not_converged,
    not_converged_threshold,
    summarize_acts,
    summarize_rows,
)
from rectifiers.experiments.stats import wilson_interval

pytest.importorskip("scipy")


def _row(act, seed, acc, depth=2, init="he", **kw):
    row = {"act": act, "init": init, "depth": depth, "width": 8, "seed": seed, "epochs": 3,
           "subset": 64, "test_acc": acc, "test_err": 1 - acc, "test_acc_final": acc - 0.01,
           "val_err": 1 - acc, "best_epoch": 2, "train_loss": 0.5, "epochs_done": 3,
           "wall_s": 2.0, "diverged": False, "dead_rate": 0.1, "never_active": 0.0,
           "preds": "", "device": "cpu", "finished": "2026-11-25T10:00:00"}
    row.update(kw)
    return row


def _holm_by_definition(ps):
    """Holm's step-down procedure spelled out: the smallest alpha at which each hypothesis is
    rejected, found by scanning a fine grid of alphas (independent of the implementation)."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [1.0] * m
    for alpha in np.linspace(0.0005, 1.0, 2000):
        for k, i in enumerate(order):
            if ps[i] > alpha / (m - k):
                break
            out[i] = min(out[i], alpha)
    return out


def test_holm_adjustment_matches_the_step_down_procedure():
    ps = [0.01, 0.04, 0.03, 0.005, 0.5, 0.2]
    adj = holm_adjust(ps)
    # by hand: sorted 0.005 0.01 0.03 0.04 0.2 0.5 times 6..1 = 0.03 0.05 0.12 0.12 0.4 0.5
    assert adj == pytest.approx([0.05, 0.12, 0.12, 0.03, 0.5, 0.4])
    ref = _holm_by_definition(ps)
    assert all(abs(a - r) <= 0.0006 for a, r in zip(adj, ref, strict=True))
    assert all(a >= p for a, p in zip(adj, ps, strict=True))
    nan = holm_adjust([0.02, float("nan"), 0.01])  # NaN: not a member of the family
    assert nan[0] == pytest.approx(0.02) and nan[2] == pytest.approx(0.02)
    assert math.isnan(nan[1])
    assert holm_adjust([0.3, 0.4]) == pytest.approx([0.6, 0.6])  # never below an earlier one
    assert holm_adjust([0.9, 0.8]) == [1.0, 1.0]  # never above 1
    assert holm_adjust([]) == []


def test_holm_family_is_every_comparison_of_the_grid():
    rng = np.random.default_rng(1)
    rows = []
    for depth, init, act in itertools.product((2, 4), ("he", "xavier"),
                                              ("prelu", "relu", "gelu")):
        for seed in range(3):
            rows.append(_row(act, seed, 0.8 + 0.02 * rng.standard_normal(), depth, init))
    cells = summarize_rows(rows)
    compared = [c for c in cells if c.vs_baseline]
    assert len(compared) == 2 * 2 * 2  # relu and gelu at every init x depth
    expected = holm_adjust([c.p_value for c in compared])
    assert [c.p_holm for c in compared] == pytest.approx(expected)
    assert all(math.isnan(c.p_holm) for c in cells if c.act == "prelu")


def test_not_converged_is_diverged_or_within_ten_points_of_chance():
    assert not_converged_threshold(10) == pytest.approx(0.80)
    assert not_converged_threshold(2) == pytest.approx(0.40)
    assert not_converged(_row("relu", 0, 0.20))  # error exactly 0.80: not converged
    assert not not_converged(_row("relu", 0, 0.2001))
    assert not_converged(_row("relu", 0, 0.95, diverged=True))
    rows = [_row("relu", s, a) for s, a in enumerate((0.85, 0.15, 0.10))]
    rows[2]["diverged"] = True
    (cell,) = summarize_rows(rows)
    assert cell.not_converged == 2 and cell.diverged == 1 and cell.n == 3
    assert (cell.not_conv_ci_low, cell.not_conv_ci_high) == wilson_interval(2, 3)
    (ok,) = summarize_rows([_row("relu", s, 0.8) for s in range(3)])
    # Wilson for 0 of 3 by hand: [0, z^2 / (n + z^2)] = [0, 0.5615]
    assert ok.not_converged == 0 and ok.not_conv_ci_low == 0.0
    assert ok.not_conv_ci_high == pytest.approx(1.959964**2 / (3 + 1.959964**2), abs=1e-5)


def test_final_epoch_error_best_epoch_and_disagreement_among_converged_runs():
    rows = [_row("relu", 0, 0.80, test_acc_final=0.78, best_epoch=2),
            _row("relu", 1, 0.70, test_acc_final=0.70, best_epoch=3),
            _row("relu", 2, 0.12, test_acc_final=0.12, best_epoch=1),  # stuck near chance
            _row("relu", 3, 0.10, test_acc_final=0.10, best_epoch=0, diverged=True,
                 dead_rate=float("nan"))]
    preds = {0: np.array([0, 1, 2, 3]), 1: np.array([0, 1, 2, 0]), 2: np.zeros(4, int),
             3: np.full(4, -1)}
    (c,) = summarize_rows(rows, preds_loader=lambda r: preds[r["seed"]])
    assert c.err_mean == pytest.approx((0.2 + 0.3 + 0.88 + 0.9) / 4)
    assert c.err_final_mean == pytest.approx((0.22 + 0.3 + 0.88 + 0.9) / 4)
    assert c.best_epoch == pytest.approx(2.0)  # diverged run (epoch 0) left out
    assert c.disagreement == 0.25 and c.n_disagree == 2  # seeds 0 and 1 only
    assert c.dead_rate == pytest.approx(0.1) and c.not_converged == 2


def test_per_activation_aggregates():
    rows = [_row("prelu", s, 0.80 + 0.01 * s, d) for s in range(3) for d in (2, 4)]
    rows += [_row("relu", s, 0.60 + 0.001 * s, 2, dead_rate=0.5) for s in range(3)]
    rows += [_row("relu", s, 0.10, 4, diverged=True, dead_rate=float("nan")) for s in range(3)]
    cells = summarize_rows(rows)
    acts = {a.act: a for a in summarize_acts(cells, rows)}
    relu = acts["relu"]
    assert relu.runs == 6 and relu.cells == 2 and relu.not_converged == 3
    assert relu.dead_rate == pytest.approx(0.5)  # diverged runs have no dead rate
    assert relu.err_mean == pytest.approx(((0.4 - 0.001) + 0.9) / 2)
    assert relu.worse == 2 and relu.better == 0  # far worse on every seed, in both cells
    assert acts["prelu"].better == acts["prelu"].worse == 0


def test_log_axis_only_when_errors_span_a_decade(tmp_path):
    pytest.importorskip("matplotlib")
    from rectifiers.experiments.bench.plots import _error_lines, _pyplot

    plt = _pyplot()
    for accs, log in (((0.99, 0.5), True), ((0.85, 0.5), False)):
        rows = [_row("relu", s, acc, depth) for s in range(3)
                for depth, acc in zip((2, 4), accs, strict=True)]
        fig, ax = plt.subplots()
        assert _error_lines(ax, summarize_rows(rows), "act", ["relu"], [2, 4]) is log
        assert ax.get_yscale() == ("log" if log else "linear")
        plt.close(fig)


class _Runner:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec: RunSpec, settings: BenchSettings) -> RunOutcome:
        self.calls += 1
        rng = np.random.default_rng([spec.seed, spec.depth, len(spec.act)])
        bad = spec.act == "relu" and spec.depth == 6 and spec.seed == 1
        acc = 0.1 if bad else 0.6 + 0.01 * spec.depth + 0.002 * spec.seed
        return RunOutcome(test_acc=acc, test_acc_final=acc - 0.01, val_err=1 - acc,
                          best_epoch=0 if bad else 1, train_loss=float("nan") if bad else 0.5,
                          epochs_done=1, wall_s=1.5, diverged=bad, dead_rate=0.2,
                          predictions=np.full(40, -1) if bad else rng.integers(0, 10, 40))


@pytest.fixture
def bench_dir(tmp_path, monkeypatch):
    """A finished `--preset quick` directory written by the real grid loop (fake training)."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(bench.run, "run_cell", _Runner())
    out = tmp_path / "b"
    assert bench.main(["--preset", "quick", "--out-dir", str(out), "--no-cost",
                       "--no-plots"]) == 0
    return out


def test_page_has_every_section_and_its_files(bench_dir, tmp_path, capsys):
    page = tmp_path / "docs" / "bench-results.md"
    assert bench.main(["summarize", str(bench_dir), "--page", str(page), "--no-plots"]) == 0
    text = page.read_text()
    for heading in ("## Summary", "## What was run", "## How to read the numbers",
                    "## Test error vs depth", "## Runs that did not converge",
                    "## Significance against prelu", "### init = he", "## Per activation",
                    "## Every cell", "## Files"):
        assert heading in text, heading
    assert text.index(SUMMARY_BEGIN) < text.index("## Summary") < text.index(SUMMARY_END)
    assert text.index(SUMMARY_END) < text.index("## What was run")
    # the grid is the quick preset with its recipe: the command says so
    assert f"rectifiers bench --preset quick --out-dir {bench_dir}" in text
    assert f"rectifiers bench summarize {bench_dir} --page {page}" in text
    assert "8 runs" in text and "Holm" in text and "m = 2" in text  # relu at depths 5, 6
    assert "| relu | 0/2 | **1/2** | 1/4 |" in text  # the diverged seed
    assert "Machine: " in text and "Wall time: 0.2 min" in text
    # the assets: runs.csv copied byte for byte, cells.csv, plots linked relative to the page
    assets = page.parent / "bench-results"
    assert (assets / "runs.csv").read_bytes() == (bench_dir / "runs.csv").read_bytes()
    assert (assets / "cells.csv").read_text().startswith("act,init,depth")
    for name in ("err_vs_depth_he.png", "err_vs_depth_by_init.png", "converged_vs_depth.png"):
        assert (assets / name).read_bytes()[:4] == b"\x89PNG", name
        assert f"](bench-results/{name})" in text
    assert "](bench-results/runs.csv)" in text
    assert not (bench_dir / "err_vs_depth_he.png").exists()  # --no-plots: none in DIR
    # the recipe copied; no cost.json in DIR (--no-cost): none on the page either
    assert (assets / "bench.json").read_bytes() == (bench_dir / "bench.json").read_bytes()
    assert "](bench-results/bench.json)" in text
    assert not (assets / "cost.json").exists() and "](bench-results/cost.json)" not in text


def test_page_copies_the_cost_measurement_it_shows(bench_dir, tmp_path):
    cost = ('{"meta": {"model": "plain_small", "depth": 6, "width": 8, "batch": 64, '
            '"act_shape": [64, 8, 14, 14], "device": "cpu"}, "model": [{"name": "relu", '
            '"time_s": 0.04, "saved_bytes": 100, "time_rel": 1.0, "bytes_rel": 1.0}, '
            '{"name": "prelu", "time_s": 0.05, "saved_bytes": 100, "time_rel": 1.25, '
            '"bytes_rel": 1.0}], "activation": []}\n')
    (bench_dir / "cost.json").write_text(cost)
    page = tmp_path / "results.md"
    assert bench.main(["summarize", str(bench_dir), "--page", str(page), "--no-plots"]) == 0
    assert (tmp_path / "results" / "cost.json").read_text() == cost
    text = page.read_text()
    assert "](results/cost.json)" in text and "| prelu | 1.25 | 1.00 |" in text


def test_page_keeps_the_hand_written_summary(bench_dir, tmp_path):
    page = tmp_path / "bench-results.md"
    plots = tmp_path / "img" / "bench"
    argv = ["summarize", str(bench_dir), "--page", str(page), "--plots-dir", str(plots),
            "--no-plots"]
    assert bench.main(argv) == 0
    assert (plots / "err_vs_depth_he.png").exists()
    assert "](img/bench/err_vs_depth_he.png)" in page.read_text()
    mine = f"{SUMMARY_BEGIN}\n## Summary\n\nPReLU wins *everything*.\n\n{SUMMARY_END}"
    text = page.read_text()
    start, end = text.index(SUMMARY_BEGIN), text.index(SUMMARY_END) + len(SUMMARY_END)
    page.write_text(text[:start] + mine + text[end:].replace("## Files", "## Files (edited)"))
    assert bench.main(argv) == 0
    again = page.read_text()
    assert mine in again and again.count(SUMMARY_BEGIN) == 1
    assert "## Files (edited)" not in again and "## Files" in again  # the rest is regenerated


def test_page_generator_refuses_to_overwrite_a_page_without_markers(bench_dir, tmp_path,
                                                                    capsys):
    page = tmp_path / "results.md"
    page.write_text("# my own notes\n")
    assert bench.main(["summarize", str(bench_dir), "--page", str(page), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "<!-- summary -->" in err and err.count("\n") == 1
    assert page.read_text() == "# my own notes\n"
    assert bench.main(["summarize", str(bench_dir), "--plots-dir", str(tmp_path)]) == 2
    assert "--page" in capsys.readouterr().err
    assert bench.main(["summarize", str(bench_dir), "--page", str(tmp_path / "x.txt")]) == 2


def test_page_of_a_grid_still_running_copies_only_complete_rows(bench_dir, tmp_path):
    with open(bench_dir / "runs.csv", "a") as f:
        f.write("relu,he,5,4,2,1,256,0.6")  # a row being written right now
    page = tmp_path / "p.md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert bench.main(["summarize", str(bench_dir), "--page", str(page),
                           "--no-plots"]) == 0
    copy = (tmp_path / "p" / "runs.csv").read_text()
    assert copy.endswith("\n") and "0.6\n" not in copy and len(copy.splitlines()) == 9


def test_explicit_command_when_no_preset_matches(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(bench.run, "run_cell", _Runner())
    out = tmp_path / "b"
    assert bench.main(["--preset", "quick", "--depths", "5", "--lr", "0.1", "--val-size", "300",
                       "--out-dir", str(out), "--no-cost", "--no-plots"]) == 0
    page = tmp_path / "p.md"
    assert bench.main(["summarize", str(out), "--page", str(page), "--no-plots"]) == 0
    text = page.read_text()
    assert "--preset" not in text.split("```bash")[1].split("```")[0]
    for flag in ("--acts relu,prelu", "--depths 5", "--seeds 2", "--lr 0.1", "--val-size 300",
                 "--subset 256", "--test-subset 256"):
        assert flag in text, flag
