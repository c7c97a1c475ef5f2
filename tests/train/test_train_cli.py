"""`rectifiers train` flags: help, clear errors, mapping onto TrainConfig."""

from __future__ import annotations

import dataclasses

import pytest

from rectifiers.train import PAPER_RECIPE, TrainConfig
from rectifiers.train.cli import build_parser, config_from_args, main


def test_help_documents_every_config_field(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    flags = {a.dest for a in build_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in flags, f"--{f.name.replace('_', '-')} missing from the CLI"
    assert "torchrun" in text and "--resume" in text and "momentum 0.9" in text


def test_no_arguments_is_the_small_fashion_mnist_job():
    cfg = config_from_args([])
    assert (cfg.model, cfg.act, cfg.dataset) == ("prelunet_small", "prelu", "fashion_mnist")
    assert cfg.out_dir.startswith("runs/prelunet_small-prelu-")
    assert (cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.9, 5e-4, 128)


def test_paper_recipe_and_explicit_flags_override_it():
    cfg = config_from_args(["--paper-recipe", "--epochs", "5", "--model-kw", "fc_dim=64",
                            "--model-kw", "widths=[4,4,8]", "--no-save"])
    assert cfg.lr == PAPER_RECIPE["lr"] == 0.01 and cfg.sched == "plateau"
    assert cfg.max_lr_drops == 2 and cfg.dropout == 0.5 and cfg.epochs == 5
    assert cfg.model_kwargs == {"fc_dim": 64, "widths": [4, 4, 8]} and cfg.out_dir is None


def test_resume_from_a_run_writes_into_that_run_with_its_settings(tmp_path):
    import torch

    from rectifiers.train import CheckpointError, save_checkpoint

    with pytest.raises(CheckpointError, match="no checkpoint"):
        config_from_args(["--resume", str(tmp_path)])
    saved = {"lr": 0.05, "epochs": 7, "threads": 3, "out_dir": "elsewhere"}
    save_checkpoint(tmp_path / "checkpoint-last.safetensors",
                    {"model": torch.nn.Linear(1, 1).state_dict()}, {"config": saved})
    cfg = config_from_args(["--resume", str(tmp_path), "--epochs", "9"])
    assert cfg.out_dir == str(tmp_path)
    # result-changing settings not given come from the checkpoint, and so does the thread count
    # (it changes the last bits of reductions); given ones and paths do not
    assert (cfg.lr, cfg.epochs, cfg.threads) == (0.05, 9, 3)
    cfg = config_from_args(["--resume", str(tmp_path), "--threads", "1"])
    assert cfg.threads == 1  # a resume may change it (on another machine, say)
    assert config_from_args(["--resume", "auto", "--experiment", "x"]).out_dir == "runs/x"


@pytest.mark.parametrize("argv, needle", [
    (["--model", "resnet50"], "prelunet_small"),  # lists the known models
    (["--act", "gelu2"], "prelu"),
    (["--init", "magic"], "he"),
    (["--amp", "fp16", "--device", "cpu", "--no-save"], "CUDA"),
    (["--model-kw", "depth"], "KEY=VALUE"),
    (["--resume", "auto"], "--out-dir"),
    (["--lr", "-1"], "lr must be > 0"),
])
def test_bad_flags_give_clear_errors(argv, needle, capsys):
    from rectifiers.cli import main as rectifiers_main  # user errors end there, as one line

    assert rectifiers_main(["train", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_unknown_choice_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--sched", "linear"])
    assert e.value.code == 2
    assert "plateau" in capsys.readouterr().err
