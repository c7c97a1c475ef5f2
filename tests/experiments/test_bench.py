"""`rectifiers bench`: resume without recomputation, crash-safe CSV, statistics, disagreement."""

from __future__ import annotations

import csv
import io
import math
import warnings

import numpy as np
import pytest
import torch

from rectifiers.errors import ConfigError
from rectifiers.experiments import bench
from rectifiers.experiments.bench import (
    CSV_FIELDS,
    BenchSettings,
    Grid,
    RunOutcome,
    RunSpec,
    append_row,
    prediction_disagreement,
    read_rows,
    run_grid,
    summarize_rows,
)

# t quantile for df = 2 in closed form: F(t) = 1/2 + t / (2 sqrt(t^2 + 2)) => t^2 = 2c^2/(1-c^2)
T975_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))


def _grid(**kw) -> Grid:
    base = dict(acts=("relu", "prelu"), inits=("he",), depths=(2, 4), widths=(8,), seeds=3,
                epochs=1, subset=64)
    base.update(kw)
    return Grid(**base)


class FakeRunner:
    """Deterministic stand-in for a training run; counts calls per key."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_on = fail_on

    def __call__(self, spec: RunSpec, settings: BenchSettings) -> RunOutcome:
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt  # a run killed half-way: nothing may be recorded for it
        self.calls.append(spec.key)
        rng = np.random.default_rng([spec.seed, spec.depth, len(spec.act)])
        acc = 0.5 + 0.01 * spec.depth + 0.001 * spec.seed + (0.02 if spec.act == "prelu" else 0)
        return RunOutcome(test_acc=acc, test_acc_final=acc - 0.01, val_err=1.0 - acc,
                          best_epoch=spec.epochs, train_loss=1.0 - acc, epochs_done=spec.epochs,
                          wall_s=0.01, diverged=False, dead_rate=0.1,
                          predictions=rng.integers(0, 10, size=50))


@pytest.fixture
def fake(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(bench.run, "run_cell", runner)
    return runner


def _quiet(msg: str) -> None:
    pass


def test_resume_never_recomputes_finished_runs(tmp_path, fake):
    grid = _grid()
    n = len(grid.specs())
    assert n == 2 * 2 * 3
    run_grid(grid, BenchSettings(), tmp_path, max_runs=5, log=_quiet)
    assert len(fake.calls) == 5
    rows = run_grid(grid, BenchSettings(), tmp_path, log=_quiet)
    assert len(fake.calls) == n  # only the 7 missing ones were run the second time
    assert len(set(fake.calls)) == n  # and none twice
    assert len(rows) == n and len(read_rows(tmp_path / "runs.csv")) == n
    run_grid(grid, BenchSettings(), tmp_path, log=_quiet)
    assert len(fake.calls) == n  # nothing left to do
    # a bigger grid (one more seed) runs only the new seed
    run_grid(_grid(seeds=4), BenchSettings(), tmp_path, log=_quiet)
    assert len(fake.calls) == n + 4
    assert all(k[4] == 3 for k in fake.calls[n:])


def test_grid_is_seed_major_so_a_partial_grid_covers_every_cell(tmp_path, fake):
    run_grid(_grid(), BenchSettings(), tmp_path, max_runs=4, log=_quiet)
    cells = {(k[0], k[2]) for k in fake.calls}
    assert cells == {("relu", 2), ("prelu", 2), ("relu", 4), ("prelu", 4)}
    assert {k[4] for k in fake.calls} == {0}


def test_interrupted_run_leaves_no_row_and_is_redone(tmp_path, monkeypatch):
    crashing = FakeRunner(fail_on=3)
    monkeypatch.setattr(bench.run, "run_cell", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_grid(_grid(), BenchSettings(), tmp_path, log=_quiet)
    assert len(read_rows(tmp_path / "runs.csv")) == 3
    again = FakeRunner()
    monkeypatch.setattr(bench.run, "run_cell", again)
    run_grid(_grid(), BenchSettings(), tmp_path, log=_quiet)
    assert len(again.calls) == len(_grid().specs()) - 3
    assert set(again.calls).isdisjoint(crashing.calls)


def test_half_written_last_line_is_ignored_and_cut_before_appending(tmp_path, fake):
    grid = _grid()
    run_grid(grid, BenchSettings(), tmp_path, max_runs=2, log=_quiet)
    path = tmp_path / "runs.csv"
    # a crash in the middle of writing the third row: no newline at the end
    with open(path, "a") as f:
        f.write("relu,he,4,8,0,1,64,0.54")
    with pytest.warns(UserWarning, match="half-written"):
        rows = read_rows(path)
    assert len(rows) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_grid(grid, BenchSettings(), tmp_path, log=_quiet)
    text = path.read_text()
    assert "0.54\n" not in text and text.endswith("\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the repaired file reads back without any warning
        rows = read_rows(path)
    assert len(rows) == len(grid.specs())
    assert len({tuple(r[k] for k in bench.KEY_FIELDS) for r in rows}) == len(rows)


def test_malformed_row_in_the_middle_is_skipped_with_warning(tmp_path):
    path = tmp_path / "runs.csv"
    good = {**dict(zip(bench.KEY_FIELDS, ("relu", "he", 2, 8, 0, 1, 64), strict=True)),
            "test_acc": 0.5, "test_err": 0.5, "test_acc_final": 0.5, "val_err": 0.9,
            "best_epoch": 0, "train_loss": float("nan"), "epochs_done": 1,
            "wall_s": 1.0, "diverged": True, "dead_rate": 0.2, "never_active": 0.0,
            "preds": "preds/x.npy",
            "device": "cpu", "finished": "t"}
    append_row(path, good)
    with open(path, "a") as f:
        f.write("relu,he,oops\n")
    append_row(path, {**good, "seed": 1})
    with pytest.warns(UserWarning, match="malformed"):
        rows = read_rows(path)
    assert [r["seed"] for r in rows] == [0, 1]
    assert rows[0]["diverged"] is True and math.isnan(rows[0]["train_loss"])
    assert rows[0]["test_acc"] == 0.5 and rows[0]["depth"] == 2


def test_foreign_header_is_an_error(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="header"):
        read_rows(path)


def test_resume_with_another_recipe_is_refused(tmp_path, fake):
    run_grid(_grid(), BenchSettings(lr=0.02), tmp_path, max_runs=1, log=_quiet)
    with pytest.raises(ValueError, match="lr: stored 0.02, now 0.1"):
        run_grid(_grid(), BenchSettings(lr=0.1), tmp_path, log=_quiet)
    # the device is not part of the recipe: a CPU grid may be finished on a GPU
    run_grid(_grid(), BenchSettings(lr=0.02, device="cuda"), tmp_path, max_runs=1, log=_quiet)


def test_predictions_are_stored_per_run(tmp_path, fake):
    rows = run_grid(_grid(seeds=1), BenchSettings(), tmp_path, log=_quiet)
    for r in rows:
        p = np.load(tmp_path / r["preds"], allow_pickle=False)
        assert p.shape == (50,)


def test_disagreement_on_hand_made_predictions():
    a = np.array([0, 1, 2, 3])
    b = np.array([0, 1, 2, 0])  # differs from a at 1 of 4
    c = np.array([1, 1, 2, 0])  # differs from a at 2, from b at 1
    assert prediction_disagreement([a, b]) == 0.25
    assert math.isclose(prediction_disagreement([a, b, c]), (0.25 + 0.5 + 0.25) / 3)
    assert prediction_disagreement([a, a, a]) == 0.0
    assert math.isnan(prediction_disagreement([a]))
    with pytest.raises(ValueError, match="length"):
        prediction_disagreement([a, a[:3]])


def _row(act, seed, acc, depth=2):
    return {"act": act, "init": "he", "depth": depth, "width": 8, "seed": seed, "epochs": 1,
            "subset": 64, "test_acc": acc, "test_err": 1 - acc, "test_acc_final": acc,
            "val_err": 1 - acc, "best_epoch": 1, "train_loss": 0.5,
            "epochs_done": 1, "wall_s": 2.0, "diverged": False, "dead_rate": 0.1,
            "never_active": 0.0, "preds": "", "device": "cpu", "finished": ""}


def test_statistics_match_a_hand_computed_example():
    prelu = [0.80, 0.82, 0.84]
    relu = [0.78, 0.81, 0.81]  # relu - prelu per seed: -0.02, -0.01, -0.03
    rows = [_row("prelu", s, a) for s, a in enumerate(prelu)]
    rows += [_row("relu", s, a) for s, a in enumerate(relu)]
    rows.append(_row("relu", 0, 0.9, depth=4))  # another cell: no baseline, one seed
    cells = {(c.act, c.depth): c for c in summarize_rows(rows, baseline="prelu")}

    p = cells[("prelu", 2)]
    assert p.n == 3 and math.isclose(p.err_mean, 0.18) and math.isclose(p.err_std, 0.02)
    half = T975_DF2 * 0.02 / math.sqrt(3)  # = 0.049683
    assert math.isclose(p.err_ci_low, 0.18 - half) and math.isclose(p.err_ci_high, 0.18 + half)
    assert p.vs_baseline == "" and math.isnan(p.p_value) and math.isnan(p.p_holm)

    r = cells[("relu", 2)]
    assert r.vs_baseline == "prelu"
    # in test error: relu - prelu = +0.02 (relu is worse)
    assert math.isclose(r.d_err, 0.02, abs_tol=1e-12) and r.n_paired == 3
    se = 0.01 / math.sqrt(3)  # std of the differences is exactly 0.01
    assert math.isclose(r.d_err_ci_low, 0.02 - T975_DF2 * se, rel_tol=1e-9)
    assert math.isclose(r.d_err_ci_high, 0.02 + T975_DF2 * se, rel_tol=1e-9)
    t = 0.02 / se  # two-sided p for df = 2: 1 - |t| / sqrt(t^2 + 2)
    assert math.isclose(r.p_value, 1 - t / math.sqrt(t * t + 2), rel_tol=1e-6)  # ~0.0742
    assert r.p_holm == r.p_value  # the only comparison: a family of one

    lone = cells[("relu", 4)]
    assert lone.n == 1 and math.isnan(lone.err_std) and lone.vs_baseline == ""


def test_baseline_comparison_pairs_only_common_seeds():
    rows = [_row("prelu", s, 0.8 + 0.01 * s) for s in (0, 1, 2)]
    rows += [_row("relu", s, 0.79 + 0.01 * s + 0.001 * (s == 3)) for s in (1, 2, 3)]
    relu = next(c for c in summarize_rows(rows) if c.act == "relu")
    # seeds 1 and 2 are common; relu - prelu = -0.01 on both: zero spread, certain difference
    assert math.isclose(relu.d_err, 0.01) and relu.p_value == 0.0 and relu.n_paired == 2
    assert relu.n == 3


def test_cli_end_to_end_with_fake_runner(tmp_path, fake, capsys):
    out = tmp_path / "b"
    argv = ["--preset", "quick", "--out", str(out), "--no-cost", "--seeds", "3"]
    assert bench.main(argv) == 0
    n = len(fake.calls)
    assert n == 2 * 1 * 2 * 1 * 3
    assert bench.main(argv) == 0
    assert len(fake.calls) == n  # the same command again resumes and has nothing to do
    for name in ("runs.csv", "bench.json", "summary.csv", "summary.md",
                 "err_vs_depth_he.png", "err_vs_depth_by_init.png", "converged_vs_depth.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "summary.md").read_text()
    assert "| relu | he | 5 | 4 | 3 |" in md and "Δ err vs prelu" in md and "p Holm" in md
    assert bench.main(["summarize", str(out), "--no-plots"]) == 0
    cells = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert len(cells) == 4 and all(0 < float(c["disagreement"]) < 1 for c in cells)
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"err_mean", "err_ci_low", "err_final_mean", "best_epoch", "p_value", "p_holm",
            "not_converged", "not_conv_ci_high", "disagreement", "dead_rate"} <= set(header)


def test_cli_bad_input_is_a_clear_error(tmp_path, fake, capsys):
    assert bench.main(["--preset", "quick", "--acts", "relu,nope", "--out", str(tmp_path)]) == 2
    assert "unknown activation" in capsys.readouterr().err
    assert bench.main(["--preset", "quick", "--depths", "2,2", "--out", str(tmp_path)]) == 2
    assert "duplicates" in capsys.readouterr().err
    assert bench.main(["summarize", str(tmp_path / "empty")]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert fake.calls == []


def test_csv_field_order_is_stable():
    # runs.csv files written by earlier runs must stay readable: extend, never reorder
    assert CSV_FIELDS[:7] == ("act", "init", "depth", "width", "seed", "epochs", "subset")


def test_diverged_runs_are_left_out_of_disagreement(tmp_path):
    a, b, c = np.array([0, 1, 2, 3]), np.array([0, 1, 2, 0]), np.full(4, -1)
    rows = [_row("relu", s, acc) for s, acc in enumerate((0.8, 0.7, 0.1))]
    rows[2]["diverged"] = True
    preds = {0: a, 1: b, 2: c}
    (cell,) = summarize_rows(rows, preds_loader=lambda r: preds[r["seed"]])
    assert cell.disagreement == 0.25 and cell.diverged == 1
    assert math.isclose(cell.err_mean, (0.2 + 0.3 + 0.9) / 3)  # counted, at chance level
    assert cell.not_converged == 1


def test_real_tiny_grid_trains_resumes_and_measures(tmp_path, monkeypatch):
    """The real runner end to end at toy size: Fashion-MNIST, 2 activations x 2 seeds."""
    pytest.importorskip("scipy")
    from rectifiers.data import DatasetNotFoundError

    calls = []
    real = bench.run_cell

    def counting(spec, settings):
        calls.append(spec.key)
        return real(spec, settings)

    monkeypatch.setattr(bench.run, "run_cell", counting)
    grid = Grid(acts=("relu", "prelu"), inits=("he",), depths=(5,), widths=(4,), seeds=2,
                epochs=1, subset=128)
    settings = BenchSettings(batch_size=32, test_subset=100, val_size=100, device="cpu")
    try:
        rows = run_grid(grid, settings, tmp_path, log=_quiet)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed")
    assert len(calls) == 4
    run_grid(grid, settings, tmp_path, log=_quiet)
    assert len(calls) == 4  # resumed: nothing recomputed
    by = {(r["act"], r["seed"]): r for r in rows}
    for r in rows:
        p = np.load(tmp_path / r["preds"], allow_pickle=False)
        assert p.shape == (100,) and p.min() >= 0 and p.max() <= 9
        assert 0.0 <= r["test_acc"] <= 1.0 and not r["diverged"] and r["epochs_done"] == 1
    # ReLU outputs exact zeros on about half its inputs; PReLU only where the input is 0
    assert 0.2 < by[("relu", 0)]["dead_rate"] < 0.8
    assert by[("prelu", 0)]["dead_rate"] < 0.01
    cells = bench.summarize_dir(tmp_path, plots=False, log=_quiet)
    assert {c.act for c in cells} == {"relu", "prelu"}
    relu = next(c for c in cells if c.act == "relu")
    assert relu.vs_baseline == "prelu" and relu.n_paired == 2
    # one epoch on 128 images may stay near chance: disagreement only among converged runs
    ok = [r for r in rows if r["act"] == "relu" and r["test_acc"] > 0.2]
    assert relu.n_disagree == len(ok)
    assert (0.0 <= relu.disagreement <= 1.0) if len(ok) == 2 else math.isnan(relu.disagreement)


def test_missing_dataset_is_a_clear_error_not_a_trace(tmp_path, capsys):
    argv = ["--preset", "quick", "--out", str(tmp_path / "o"), "--data-dir",
            str(tmp_path / "nowhere"), "--no-cost", "--device", "cpu"]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--data-dir" in err
    assert read_rows(tmp_path / "o" / "runs.csv") == []


@pytest.mark.parametrize("case", ["file", "bad_recipe"])
def test_bad_out_dir_is_one_message_and_exit_2(tmp_path, capsys, fake, case):
    out = tmp_path / "o"
    if case == "file":
        out.write_text("not a directory")
    else:
        out.mkdir()
        (out / "bench.json").write_text("{not json")
    argv = ["--preset", "quick", "--out-dir", str(out), "--no-cost", "--no-plots"]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and str(out) in err
    assert fake.calls == []


@pytest.mark.parametrize("flags", [["--sched", "bogus"], ["--depths", "2"],
                                   ["--inits", "nope"], ["--epochs", "0"], ["--lr", "-1"]])
def test_bad_recipe_is_refused_before_anything_is_written(tmp_path, capsys, fake, flags):
    out = tmp_path / "o"
    argv = ["--preset", "quick", "--out-dir", str(out), "--no-cost", "--no-plots", *flags]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists() and fake.calls == []


def test_resume_with_another_val_size_is_refused(tmp_path, fake):
    run_grid(_grid(), BenchSettings(val_size=100), tmp_path, max_runs=1, log=_quiet)
    with pytest.raises(ConfigError, match="val_size: stored 100, now 200"):
        run_grid(_grid(), BenchSettings(val_size=200), tmp_path, log=_quiet)
    assert len(fake.calls) == 1


def test_new_result_columns_round_trip_through_the_csv(tmp_path, fake):
    rows = run_grid(_grid(seeds=1), BenchSettings(), tmp_path, log=_quiet)
    back = read_rows(tmp_path / "runs.csv")
    assert [r["test_acc_final"] for r in back] == [r["test_acc_final"] for r in rows]
    assert all(r["best_epoch"] == 1 and isinstance(r["best_epoch"], int) for r in back)
    assert all(r["val_err"] == 1.0 - r["test_acc"] for r in back)


def _fashion_mnist_or_skip():
    from rectifiers.data import DatasetNotFoundError, open_dataset

    try:
        open_dataset("fashion_mnist", "test", subset=1)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST not installed")


def test_validation_split_is_the_same_for_every_run_and_disjoint_from_training():
    _fashion_mnist_or_skip()
    settings = BenchSettings(val_size=300)
    spec = RunSpec("relu", "he", 5, 4, 0, 1, 500)
    tr0, val0 = bench.run._datasets(spec, settings)
    tr1, val1 = bench.run._datasets(RunSpec("gelu", "xavier", 8, 4, 1, 1, 500), settings)
    assert len(val0) == 300 and len(tr0) == 500 == len(tr1)
    assert torch.equal(val0.indices, val1.indices)  # another seed, act, init: the same images
    assert torch.equal(val0.images, val1.images)
    held = set(val0.indices.tolist())
    assert held.isdisjoint(tr0.indices.tolist()) and held.isdisjoint(tr1.indices.tolist())
    assert not torch.equal(tr0.indices, tr1.indices)  # the training draw follows the seed
    full, _ = bench.run._datasets(RunSpec("relu", "he", 5, 4, 0, 1, 0), settings)
    assert len(full) == 60000 - 300  # subset 0: every training example not held out


def test_real_run_reports_the_test_numbers_of_the_best_validation_epoch(tmp_path, monkeypatch):
    """A real 3-epoch run whose validation curve is replaced (for seed 0) by one whose minimum
    is epoch 2: the reported accuracy and the stored predictions must be those of the weights
    after epoch 2, test_acc_final those after epoch 3. Seed 1 keeps its real curve: best_epoch
    is its argmin."""
    pytest.importorskip("scipy")
    _fashion_mnist_or_skip()
    from rectifiers.data import build_loader

    real_train = bench.run.train
    seen: dict[int, dict] = {}
    fake_curve = {1: 0.30, 2: 0.20, 3: 0.40}

    def observing(cfg, *, on_epoch, **kw):
        rec = seen.setdefault(cfg.seed, {"states": {}, "curve": {}})

        def spy(row, model):
            rec["states"][row["epoch"]] = {k: v.detach().clone()
                                           for k, v in model.state_dict().items()}
            rec["curve"][row["epoch"]] = row["val_top1_err"]
            if cfg.seed == 0:
                row = {**row, "val_top1_err": fake_curve[row["epoch"]]}
            on_epoch(row, model)

        result = real_train(cfg, on_epoch=spy, **kw)
        rec["result"] = result
        return result

    monkeypatch.setattr(bench.run, "train", observing)
    grid = Grid(acts=("prelu",), inits=("he",), depths=(5,), widths=(4,), seeds=2, epochs=3,
                subset=192)
    settings = BenchSettings(batch_size=32, test_subset=200, val_size=200, device="cpu")
    rows = {r["seed"]: r for r in run_grid(grid, settings, tmp_path, log=_quiet)}
    assert set(seen) == {0, 1}

    test = bench.run._test_set(settings)
    labels = test.labels.numpy()

    def test_preds(seed: int, epoch: int) -> np.ndarray:
        result = seen[seed]["result"]
        model = result.model
        model.load_state_dict(seen[seed]["states"][epoch])
        loader = build_loader(test, 500, train=False, normalization=result.normalization)
        return bench.run._predict(model, loader, torch.device("cpu"), settings)[0]

    r0 = rows[0]
    assert r0["best_epoch"] == 2 and r0["val_err"] == 0.20 and r0["epochs_done"] == 3
    stored = np.load(tmp_path / r0["preds"], allow_pickle=False)
    p2, p3 = test_preds(0, 2), test_preds(0, 3)
    assert np.array_equal(stored, p2)
    assert r0["test_acc"] == float((p2 == labels).mean())
    assert r0["test_acc_final"] == float((p3 == labels).mean())
    assert not np.array_equal(p2, p3)  # the two epochs are distinguishable at all

    r1, curve = rows[1], seen[1]["curve"]
    best = min(curve, key=lambda e: (curve[e], e))  # the first epoch on ties
    assert r1["best_epoch"] == best and r1["val_err"] == curve[best]
    stored = np.load(tmp_path / r1["preds"], allow_pickle=False)
    assert r1["test_acc"] == float((stored == labels).mean())
    assert r1["test_acc_final"] == float((test_preds(1, 3) == labels).mean())


def test_eta_scales_unseen_depths_instead_of_reusing_the_shallow_runs_time():
    left = [RunSpec("relu", "he", 8, 4, 1, 1, 64), RunSpec("relu", "he", 20, 4, 0, 1, 64)]
    walls = [(8, 4.0), (8, 6.0)]  # median 5 s at depth 8, 0.625 s per layer
    assert bench.run._eta(walls, left) == pytest.approx(5.0 + 0.625 * 20)
    assert bench.run._eta([*walls, (20, 30.0)], left) == pytest.approx(5.0 + 30.0)
    assert bench.run._eta(walls, []) == 0
