"""Tests of `rectifiers reproduce`: each experiment end to end at a tiny size, plus the
behaviours the report's verdicts rest on (XOR solvable by one PReLU unit, signal std
matching the paper's closed form, dead ReLU outputs, determinism under a seed)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from rectifiers.experiments import (
    depth,
    prelu_runs,
    relu_vs_prelu,
    reproduce,
    signal_prop,
    table1,
    xor,
)
from rectifiers.experiments.report import VERDICTS, Section, markdown_table, write_report
from rectifiers.experiments.runs import (
    RunStore,
    heldout_batches,
    open_data,
    run_config,
    train_run,
)
from rectifiers.experiments.stats import wilson_interval

# --------------------------------------------------------------------------- XOR


def test_one_prelu_neuron_fits_xor_for_every_seed_at_lr_0_1():
    res = xor.train_grid("prelu_neuron", xor.XorSettings(lrs=(0.1,), seeds=32, steps=1000),
                         seed=0)
    assert bool(res["success"].all()), res["loss"]
    # The solution is non-monotonic: the learned slope must have turned negative.
    assert bool((res["a"] < 0).all())


def test_relu_mlp_fails_on_some_seeds_where_prelu_neuron_does_not():
    s = xor.XorSettings(lrs=(0.1,), seeds=64, steps=1000)
    mlp = xor.train_grid("relu_mlp", s, seed=0)["success"].float().mean()
    neuron = xor.train_grid("prelu_neuron", s, seed=0)["success"].float().mean()
    assert mlp < 1.0 and neuron == 1.0


def test_xor_grid_gives_each_model_its_own_gradient():
    # Summing the per-model losses must not mix models: the gradient of the sum restricted
    # to one (lr, seed) slice equals the gradient of that slice's loss alone.
    gen = torch.Generator().manual_seed(3)
    params = [p.requires_grad_() for p in xor._init("relu_mlp", (2, 3), gen)]
    x = xor.INPUTS["bipolar"]
    loss = ((xor._forward("relu_mlp", params, x) - xor.Y) ** 2).mean(-1)
    g_all = torch.autograd.grad(loss.sum(), params, retain_graph=True)
    g_one = torch.autograd.grad(loss[1, 2], params)
    for a, b in zip(g_all, g_one, strict=True):
        torch.testing.assert_close(a[1, 2], b[1, 2])
        assert float(b.abs().sum() - b[1, 2].abs().sum()) == 0.0


def test_xor_rejects_unknown_model_and_encoding():
    with pytest.raises(ValueError, match="unknown XOR model"):
        xor.train_grid("mlp", xor.PRESETS["smoke"])
    with pytest.raises(ValueError, match="encoding"):
        xor.train_grid("prelu_neuron", xor.PRESETS["smoke"], encoding="ternary")


# --------------------------------------------------------------------------- signal


@pytest.mark.parametrize("scheme, act", [("he", "relu"), ("he", "prelu"), ("xavier", "relu")])
def test_measured_signal_matches_closed_form_within_width_batch_tolerance(scheme, act):
    from rectifiers.analysis import predicted_signal, signal_propagation
    from rectifiers.init import initialize

    depth_, width, batch, size = 6, 64, 32, 8
    gen = torch.Generator().manual_seed(0)
    model = signal_prop.plain_chain(depth_, width, act)
    initialize(model, scheme, mode="fan_in", generator=gen)
    x = torch.randn(batch, 3, size, size, generator=gen)
    rows = signal_propagation(model, x, generator=1)
    pred = predicted_signal(model, input_second_moment=float((x.double() ** 2).mean()))
    for l, (r, p) in enumerate(zip(rows, pred, strict=True), start=1):
        # ln Var drifts by ~sqrt(2/d + 2/N) per layer (see log_tolerance); 4 sigma on ln std.
        d = r.fan_out // 9
        n = batch * size * size * d
        tol = 4 * 0.5 * math.sqrt(l * (2 / d + 2 / n))
        assert abs(math.log(r.forward_std / p["forward_std"])) < tol, (l, r, p)
    if scheme == "xavier":
        # and the textbook factor 2^(-1/2) per ReLU layer is visible end to end
        ratio = rows[-1].forward_std / rows[0].forward_std
        assert abs(math.log(ratio / 2 ** (-(depth_ - 1) / 2))) < 4 * 0.5 * math.sqrt(
            depth_ * (2 / width))


def test_signal_experiment_writes_table_and_plot(tmp_path):
    s = signal_prop.run(signal_prop.PRESETS["smoke"], tmp_path, "cmd", progress=lambda _m: None)
    assert (tmp_path / "signal.png").stat().st_size > 1000
    assert s.verdict in VERDICTS
    assert s.tables[0].count("\n") == 2 + len(signal_prop.CONFIGS) - 1
    he = s.data["He fan_in, ReLU"]
    xa = s.data["Xavier, ReLU"]
    assert he["measured_fwd_ratio"] > 10 * xa["measured_fwd_ratio"]


# --------------------------------------------------------------------------- training runs


def test_engine_runs_are_deterministic_under_a_seed_and_see_the_same_images():
    """Experiment runs go through the engine (rectifiers.train.train): one seed, one result."""
    train_set, test_set = open_data(64, 32, source="synthetic")
    assert open_data(64, 32, source="synthetic")[0] is train_set  # opened once per process
    cfg = run_config(model="plain_small", act="relu", init="he", seed=5, epochs=1,
                     batch_size=16, lr=0.01, sched="constant",
                     model_kwargs={"depth": 5, "width": 2})
    runs = [train_run(cfg, train_set, test_set) for _ in range(2)]
    assert runs[0].step_loss == runs[1].step_loss and len(runs[0].step_loss) == 4
    assert len(runs[0].test_err) == 2 and not runs[0].diverged
    other = train_run(dataclasses.replace(cfg, seed=6), train_set, test_set)
    assert other.step_loss != runs[0].step_loss
    # observers see the test images normalised exactly as the engine normalises them
    from rectifiers.train import train

    result = train(cfg, train_set=train_set, val_set=test_set)
    held = heldout_batches(train_set, test_set)
    assert sum(len(x) for x in held) == 32
    from rectifiers.data import build_loader

    ref = build_loader(test_set, 500, train=False, normalization=result.normalization)
    assert torch.equal(held[0], next(iter(ref))[0])


def test_depth_experiment_writes_curves_and_gradient_plot(tmp_path):
    st = dataclasses.replace(depth.PRESETS["smoke"], data_source="synthetic")
    s = depth.run(st, tmp_path, "cmd", progress=lambda _m: None)
    assert (tmp_path / "depth_curves.png").exists() and (tmp_path / "depth_grads.png").exists()
    assert s.verdict in VERDICTS
    for depth_ in st.depths:
        for init in depth.INITS:
            v = s.data[f"{depth_}/{init}"]
            assert len(v["test_err"]) == st.seeds
            assert all(len(c) == st.epochs + 1 for c in v["test_err"])
            lo, hi = v["converged_ci95"]
            assert 0 <= lo <= v["converged"] / v["runs"] <= hi <= 1
    # the lr sweep: every lr, init and depth has its seeds; the long runs have their epochs
    assert len(s.data["lr_range"]) == len(st.depths) * len(depth.INITS) * len(st.lrs)
    long = s.data[f"long/{min(st.depths)}/xavier"]["test_err"]
    assert len(long) == st.long_seeds and all(len(c) == st.long_epochs + 1 for c in long)
    for f in ("depth_lr.png", "depth_long.png"):
        assert (tmp_path / f).stat().st_size > 1000
    # Resumable: a second run reads every stored run back (nothing is trained: the train
    # function is replaced by one that fails) and gives the same numbers.
    stored = RunStore(tmp_path / "runs").count("depth")
    sweep = min(st.seeds, st.sweep_seeds)
    assert stored == len(st.depths) * 2 * (st.seeds + (len(st.lrs) - 1) * sweep) + 2 * st.long_seeds
    import rectifiers.experiments.depth as depth_mod

    def no_training(*a, **k):
        raise AssertionError("a stored run was trained again")

    orig = depth_mod.train_run
    depth_mod.train_run = no_training
    try:
        again = depth.run(st, tmp_path, "cmd", progress=lambda _m: None)
    finally:
        depth_mod.train_run = orig
    assert again.data == s.data


@pytest.mark.parametrize(("he_deep", "xa_deep", "he_sh", "xa_sh", "ahead", "want"), [
    (1.0, 0.0, 1.0, 1.0, True, "reproduced"),
    (1.0, 0.0, 1.0, 1.0, False, "partly reproduced"),  # He not ahead at the shallow depth
    (1.0, 0.0, 1.0, 0.0, True, "partly reproduced"),  # Xavier too slow at the shallow depth
    (0.5, 0.0, 1.0, 1.0, True, "partly reproduced"),
    # He itself stays at chance at the deep depth: the run cannot discriminate.
    (0.0, 0.0, 1.0, 0.0, True, "not testable at this scale"),
    # Xavier converges as often as He at the deep depth: contradicts Fig. 3.
    (1.0, 1.0, 1.0, 1.0, True, "not reproduced"),
    (0.0, 0.5, 1.0, 1.0, True, "not reproduced"),
])
def test_depth_verdict_separates_not_reproduced_from_not_testable(he_deep, xa_deep, he_sh,
                                                                   xa_sh, ahead, want):
    assert depth.depth_verdict(he_deep, xa_deep, he_sh, xa_sh, ahead) == want
    assert want in VERDICTS


def test_relu_vs_prelu_slopes_and_dead_units_sections(tmp_path):
    st = dataclasses.replace(prelu_runs.PRESETS["smoke"], data_source="synthetic")
    cmds = {k: k for k in ("relu-vs-prelu", "slopes", "dead")}
    secs = relu_vs_prelu.run(("relu-vs-prelu", "slopes", "dead"), st, tmp_path, cmds,
                             progress=lambda _m: None)
    assert [s.key for s in secs] == ["relu-vs-prelu", "slopes", "dead"]
    for f in ("relu_vs_prelu.png", "slopes.png", "dead_units.png"):
        assert (tmp_path / f).stat().st_size > 1000
    t2 = secs[0].data
    assert set(t2["paired_vs_relu"]) == {"prelu_shared", "prelu", "leaky_relu_0.25"}
    # slopes: one row per PReLU site (5 convs + fc1 + fc2) and values actually learned
    layers = secs[1].data["prelu"]["layers"]
    assert layers == ["conv1", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "fc1", "fc2"]
    assert any(v != 0.25 for per_seed in secs[1].data["prelu"]["per_seed"] for v in per_seed)
    # dead units: ReLU zeroes about half its outputs at init, PReLU/leaky never output 0
    dead = secs[2].data
    assert 0.3 < dead["relu"]["zero_fraction"][0][0] < 0.7
    assert dead["prelu"]["zero_fraction"][0][0] == 0.0
    assert dead["leaky_relu_0.25"]["zero_fraction"][0][-1] == 0.0
    # the slope trace: step 0 at the initial 0.25, then every trace_every steps, one column
    # per PReLU layer; the last row holds the final slopes of the run
    run0 = secs[1].data["prelu"]["traces"][0]
    assert run0[0] == [0.0] + [0.25] * len(layers)
    assert [r[0] for r in run0] == sorted({r[0] for r in run0})
    assert run0[-1][1:] == pytest.approx([row[0] for row in secs[1].data["prelu"]["per_seed"]])


def _trace(values_at):  # a slope trace with one layer, 101 points over 1000 steps
    return [[float(k), values_at(k / 1000)] for k in range(0, 1001, 10)]


@pytest.mark.parametrize(("curve", "settled"), [
    (lambda t: 0.25 - 0.2 * t, False),  # still drifting linearly: 25 % of its move at the end
    (lambda t: 0.05 + 0.2 * math.exp(-t / 0.05), True),  # saturated early
    (lambda t: 0.25 - 0.1 * t, False),  # slower, but still drifting: not settled either
    (lambda t: 0.25 - 0.1 * t + 0.05 * math.sin(400 * t), False),  # drifting under noise
    (lambda t: 0.1 + 0.05 * math.sin(400 * t), True),  # fluctuating around a fixed value
    (lambda t: 0.25, True),  # never moved: nothing left to move
])
def test_slope_settling_rule_tells_a_settled_slope_from_a_drifting_one(curve, settled):
    st = dataclasses.replace(prelu_runs.PRESETS["smoke"], sched="constant", epochs=10)
    runs = [prelu_runs.Run("prelu", s, [0.9], [], [], 1.0, slope_trace=_trace(curve))
            for s in range(2)]
    (row,) = table1.settling(runs, st)
    assert row["settled"] is settled
    # a step schedule is judged before its first decay, a cosine one in its first half
    st_step = dataclasses.replace(st, sched="step", decay_epochs=(5,))
    assert table1.settling(runs, st_step)[0]["end_step"] == 500
    assert table1.settling(runs, dataclasses.replace(st, sched="cosine"))[0][
        "end_step"] == 500


def test_slope_settling_needs_enough_recorded_steps():
    # quick mode records a few points per window: too short to tell, never "settled"
    st = dataclasses.replace(prelu_runs.PRESETS["smoke"], sched="constant", epochs=10)
    trace = [[float(k), 0.25] for k in range(0, 101, 25)]
    runs = [prelu_runs.Run("prelu", 0, [0.9], [], [], 1.0, slope_trace=trace)]
    (row,) = table1.settling(runs, st)
    assert row["too_short"] and not row["settled"]


def test_run_store_reads_back_only_the_exact_key_and_writes_atomically(tmp_path):
    store = RunStore(tmp_path / "runs")
    key = {"settings": {"n": 1, "lrs": (0.1, 0.2)}, "seed": 3}
    assert store.load("e", key) is None
    store.save("e", key, {"test_err": [0.9, 0.5]})
    assert store.load("e", key) == {"test_err": [0.9, 0.5]}
    assert store.load("e", {**key, "seed": 4}) is None
    assert store.load("other", key) is None
    # a damaged or foreign file reads as "not finished", never as a wrong run
    (path,) = (tmp_path / "runs" / "e").glob("*.json")
    path.write_text("{not json")
    assert store.load("e", key) is None
    path.write_text('{"key": {"seed": 3}, "record": {"test_err": [0.1]}}')
    assert store.load("e", key) is None
    assert not list((tmp_path / "runs" / "e").glob("*.tmp*"))
    assert RunStore(None).load("e", key) is None  # no store: always train


@pytest.mark.parametrize(("k", "n"), [(0, 5), (5, 5), (3, 5), (7, 20), (1, 1)])
def test_wilson_interval_covers_the_proportion_and_matches_the_closed_form(k, n):
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert lo == pytest.approx(max(0.0, centre - half), abs=1e-12)
    assert hi == pytest.approx(min(1.0, centre + half), abs=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(n + 1, n)


def test_first_seed_gives_an_independent_seed_set_with_the_same_verdict(tmp_path, capsys):
    # A reduced-size check of the verdict logic across seed sets: the signal experiment's
    # verdict must not depend on which seeds were drawn, while its numbers do.
    res = {}
    for first in (0, 100):
        out = tmp_path / f"s{first}"
        assert reproduce.main(["signal", "--smoke", "--first-seed", str(first),
                               "--out-dir", str(out)]) == 0
        res[first] = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    (a,), (b,) = res[0]["sections"], res[100]["sections"]
    assert a["verdict"] == b["verdict"] == "reproduced"
    assert a["data"] != b["data"]
    assert "--first-seed 100" in b["command"]


# --------------------------------------------------------------------------- report + CLI


def test_markdown_table_and_section_validate_input():
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="verdict"):
        Section(key="k", title="t", claim="c", result="r", verdict="maybe", verdict_note="",
                command="x")


def test_write_report_is_self_contained_and_atomic(tmp_path):
    s = Section(key="k", title="Thing", claim="paper says 1", result="we see 2",
                verdict="not reproduced", verdict_note="2 != 1", command="rectifiers x",
                tables=[markdown_table(["a"], [[1.5]])], plots=["p.png"], data={"v": [1, 2]})
    path = write_report([s], tmp_path, title="T", command="cmd", mode="quick", wall_seconds=3)
    text = path.read_text()
    assert "**Verdict: not reproduced.**" in text and "![p](p.png)" in text
    # the report numbers its sections itself (titles carry no number)
    assert "rectifiers x" in text and "(#1-thing)" in text and "## 1. Thing" in text
    assert json.loads((tmp_path / "results.json").read_text())["sections"][0]["data"] == {
        "v": [1, 2]}
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_runs_one_experiment_and_writes_report(tmp_path, capsys):
    rc = reproduce.main(["xor", "--smoke", "--out", str(tmp_path)])
    assert rc == 0
    report = (tmp_path / "report.md").read_text()
    assert "One PReLU neuron solves XOR" in report
    assert "rectifiers reproduce xor --smoke" in report
    assert (tmp_path / "xor.png").exists()
    out = capsys.readouterr().out
    assert "reproduction summary" in out and "[1/1] xor" in out


@pytest.mark.parametrize("argv, msg", [(["bogus"], "unknown experiment"),
                                       (["xor", "--seeds", "1"], "--seeds")])
def test_cli_rejects_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        reproduce.main(argv)
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_experiments_are_registered_by_name_with_every_preset():
    from rectifiers.experiments.registry import EXPERIMENTS, MODES

    assert list(EXPERIMENTS) == list(reproduce.EXPERIMENTS)
    for exp in EXPERIMENTS.values():
        assert set(MODES) <= set(exp.presets) and set(MODES) <= set(exp.estimate_s)


def test_report_numbers_sections_in_the_order_given(tmp_path):
    secs = [Section(key=k, title=t, claim="c", result="r", verdict="reproduced",
                    verdict_note="n", command="x") for k, t in (("a", "Alpha"), ("b", "Beta"))]
    text = write_report(secs[::-1], tmp_path, title="T", command="c", mode="quick",
                        wall_seconds=1).read_text()
    assert text.index("## 1. Beta") < text.index("## 2. Alpha")
    numbers = [s["number"] for s in json.loads((tmp_path / "results.json").read_text())[
        "sections"]]
    assert numbers == [1, 2]


@pytest.mark.parametrize("case", ["out_is_file", "no_data"])
def test_cli_bad_out_dir_or_missing_data_is_one_message_before_any_work(tmp_path, capsys, case):
    out = tmp_path / "out"
    argv = ["depth", "--quick", "--out-dir", str(out), "--data-dir", str(tmp_path / "nowhere")]
    if case == "out_is_file":
        out.write_text("x")
    assert reproduce.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert (str(out) if case == "out_is_file" else "nowhere") in err
    assert not (tmp_path / "out" / "report.md").exists() if case == "no_data" else True


def test_quick_depth_lr_is_the_measured_one_where_every_he_seed_converges():
    # The quick preset's lr must be backed by the recorded sweep: its 30-layer He row says
    # every seed converged; changing the lr without re-measuring fails here.
    q = depth.PRESETS["quick"]
    rows = [r.split("|")[1:-1] for r in depth.QUICK_LR_SWEEP.splitlines()[2:]]
    cells = {(int(r[0]), r[1].strip(), float(r[2])): r[3].strip() for r in rows}
    assert cells[(max(q.depths), "he", q.lr)] == f"{q.seeds}/{q.seeds}"
    assert cells[(max(q.depths), "xavier", q.lr)] == f"0/{q.seeds}"
    assert depth._is_quick_size(dataclasses.replace(q, seeds=5, data_source="synthetic"))
    assert not depth._is_quick_size(depth.PRESETS["smoke"])


def _row(w4, drift, settled):
    return {"window4": w4, "drift": drift, "settled": settled, "too_short": False}


def test_table1_claim_is_judged_only_where_the_remaining_drift_cannot_undo_it():
    conv = [0, 1, 2]
    checks = {"conv1_largest": False, "conv_depth_rank_corr": 0.5}
    final = [[0.2], [0.3], [0.5]]
    # conv3 is above conv1 by 0.3, far more than the two drifts (0.05 + 0.01): refuted,
    # although conv3 is still moving
    rows = [_row(0.2, 0.01, True), _row(0.15, 0.0, True), _row(0.5, 0.05, False)]
    assert table1._judge("conv1_largest", rows, final, conv, checks) is False
    # the same gap inside the drifts: cannot be judged
    rows[2] = _row(0.25, 0.05, False)
    assert table1._judge("conv1_largest", rows, final, conv, checks) is None
    # conv1 above every layer by more than the drifts: holds
    rows = [_row(0.6, 0.01, False), _row(0.1, 0.0, True), _row(0.2, 0.02, True)]
    assert table1._judge("conv1_largest", rows, final, conv, checks) is True
    # the trend counts only when stationary and final slopes give the same sign
    rows = [_row(0.3, 0.0, True), _row(0.2, 0.0, True), _row(0.1, 0.05, False)]
    assert table1._judge("trend", rows, [[0.3], [0.2], [0.1]], conv, checks) is True
    assert table1._judge("trend", rows, [[0.1], [0.2], [0.3]], conv, checks) is None
    # everything settled: the measured claim as it is
    rows = [_row(0.3, 0.0, True), _row(0.2, 0.0, True), _row(0.4, 0.0, True)]
    assert table1._judge("trend", rows, final, conv, checks) is False
    assert table1._judge("conv1_largest", rows, final, conv, checks) is False
    rows[0]["too_short"] = True
    assert table1._judge("conv1_largest", rows, final, conv, checks) is None
