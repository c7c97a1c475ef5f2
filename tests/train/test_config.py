"""TrainConfig.validate: every bad setting is one ConfigError naming the flag and the fix."""

from __future__ import annotations

import pytest
import torch
from train_helpers import TINY_CLI, run_cli

from rectifiers.errors import ConfigError, UserError
from rectifiers.train.config import PAPER_RECIPE, RESUME_NEUTRAL, TrainConfig, flag


@pytest.mark.parametrize("bad, needles", [
    (dict(grad_clip=-1.0), ["--grad-clip must be >= 0", "0 or omitted turns clipping off"]),
    (dict(grad_clip=float("nan")), ["--grad-clip", "nan"]),
    (dict(sched="step", decay_epochs=(-5, 0)), ["--decay-epochs must be positive", "[-5, 0]"]),
    (dict(sched="step", decay_epochs=(60, 30)), ["--decay-epochs must be increasing",
                                                 "--decay-epochs 30 60"]),
    (dict(sched="step", decay_epochs=(3, 3)), ["without repeats"]),
    (dict(sched="step"), ["--sched step needs --decay-epochs"]),
    (dict(decay_epochs=(3,)), ["applies to --sched step only"]),
    (dict(lr=0.0), ["--lr must be > 0"]),
    (dict(lr=-1.0), ["--lr must be > 0", "-1"]),
    (dict(lr=float("inf")), ["--lr must be finite and > 0"]),
    (dict(epochs=0), ["--epochs must be a positive integer"]),
    (dict(epochs=-3), ["--epochs"]),
    (dict(batch_size=0), ["--batch-size must be a positive integer"]),
    (dict(batch_size=2.5), ["--batch-size"]),
    (dict(momentum=1.0), ["--momentum must be in [0, 1)"]),
    (dict(weight_decay=-1e-4), ["--weight-decay must be >= 0"]),
    (dict(lr_decay=1.5), ["--lr-decay must be in (0, 1)"]),
    (dict(dropout=1.0), ["--dropout"]),
    (dict(label_smoothing=-0.1), ["--label-smoothing"]),
    (dict(warmup_epochs=-1.0), ["--warmup-epochs"]),
    (dict(lr_min=0.5), ["--lr-min (0.5) must be below --lr"]),
    (dict(epochs=2, warmup_epochs=2.0), ["--warmup-epochs (2) must be shorter than --epochs (2)"]),
    (dict(max_steps=0), ["--max-steps must be a positive integer"]),
    (dict(checkpoint_every=-1), ["--checkpoint-every must be an integer >= 0"]),
    (dict(log_every=0), ["--log-every"]),
    (dict(workers=-1), ["--workers"]),
    (dict(seed=-1), ["--seed"]),
    (dict(sched="linear"), ["--sched 'linear' is not one of", "cosine"]),
    (dict(nesterov=True, momentum=0.0), ["--nesterov needs --momentum > 0"]),
    (dict(overwrite=True, resume="auto", out_dir="x"), ["--overwrite", "--resume", "only one"]),
    (dict(overwrite=True), ["--overwrite needs --out-dir"]),
    (dict(model="resnet50"), ["--model 'resnet50' is unknown", "prelunet_small"]),
    (dict(act="gelu2"), ["--act 'gelu2' is unknown", "prelu"]),
    (dict(init="magic"), ["--init 'magic' is unknown", "he"]),
    (dict(model_kwargs={"nonsense": 1}), ["--model-kw", "'prelunet_small' has no keyword(s) "
                                          "nonsense", "accepts: drop_rate, fc_dim"]),
    (dict(model_kwargs={"fc_dim": -5}), ["--model-kw fc_dim=-5", "rejects these values"]),
    (dict(model_kwargs={"widths": [8, -1]}), ["--model-kw widths=[8, -1]", "widths"]),
    (dict(model_kwargs={"drop_rate": 0.5}), ["--model-kw drop_rate", "use --dropout"]),
    (dict(model_kwargs={"num_classes": 3}), ["--model-kw num_classes", "the dataset sets it"]),
    (dict(model="plain_small", model_kwargs={"depth": 0}), ["--model-kw depth=0",
                                                            "'plain_small'"]),
])
def test_bad_settings_name_the_flag(bad, needles):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**bad)
    e = info.value
    assert isinstance(e, UserError) and isinstance(e, ValueError)  # ValueError: older callers
    for needle in needles:
        assert needle in str(e)
    assert "\n" not in str(e)


def test_boundary_values_that_are_valid():
    assert TrainConfig(grad_clip=0.0).grad_clip == 0.0  # 0 means off, as None
    assert TrainConfig(grad_clip=None).grad_clip is None
    assert TrainConfig(sched="step", decay_epochs=[30, 60]).decay_epochs == (30, 60)
    assert TrainConfig(momentum=0.0, weight_decay=0.0, dropout=None).momentum == 0.0
    TrainConfig(**PAPER_RECIPE, model="prelunet_a", dataset="folder", data_dir="x")
    TrainConfig(model="plain_small", model_kwargs={"depth": 6, "width": 4})
    TrainConfig(model_kwargs={"act_kwargs": {"init": 0.1}})  # PReLU's initial slope (Table 1)


def test_checking_the_model_draws_no_random_numbers_and_allocates_nothing():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    TrainConfig(model="prelunet_c")  # 300M parameters: built on the meta device
    assert torch.equal(before, torch.get_rng_state())


def test_flag_names():
    assert flag("grad_clip") == "--grad-clip" and flag("model_kwargs") == "--model-kw"
    assert flag("channels_last") == "--no-channels-last"


def test_resume_changes_lists_only_settings_that_change_results():
    old = TrainConfig(epochs=3, max_steps=5, out_dir="a").to_dict()
    same = TrainConfig(epochs=3, max_steps=None, out_dir="b", resume="auto", threads=2,
                       log_every=1, checkpoint_every=3, verbose=False)
    assert same.resume_changes(old) == []
    assert {"max_steps", "out_dir", "resume", "overwrite", "threads"} <= RESUME_NEUTRAL
    changed = TrainConfig(epochs=3, lr=0.1, seed=1).resume_changes(old)
    assert changed == ["lr: 0.03 -> 0.1", "seed: 0 -> 1"]
    # epochs sets the cosine schedule's length; under a step schedule it only says where to stop
    assert TrainConfig(epochs=5).resume_changes(old) == ["epochs: 3 -> 5"]
    step_old = TrainConfig(sched="step", decay_epochs=(2,), epochs=3).to_dict()
    assert TrainConfig(sched="step", decay_epochs=(2,), epochs=9).resume_changes(step_old) == []
    assert TrainConfig(sched="step", decay_epochs=[2, 4]).resume_changes(step_old) == [
        "decay_epochs: [2] -> [2, 4]"]
    # fields missing from an older checkpoint's config are not reported
    legacy = {k: v for k, v in old.items() if k != "overwrite"}
    assert TrainConfig(epochs=3, out_dir="a").resume_changes(legacy) == []


@pytest.mark.parametrize("argv, needle", [
    (["--grad-clip", "-1"], "--grad-clip must be >= 0"),
    (["--sched", "step", "--decay-epochs", "-5", "0"], "--decay-epochs must be positive"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--model-kw", "nonsense=1"], "accepts: drop_rate, fc_dim"),
    (["--model-kw", "fc_dim=-5"], "--model-kw fc_dim=-5"),
])
def test_cli_reports_bad_settings_in_one_line_with_exit_code_2(argv, needle, tmp_path):
    r = run_cli([*TINY_CLI, "--out-dir", str(tmp_path / "run"), *argv])
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out and needle in out
    assert not (tmp_path / "run").exists()  # nothing was created
