"""Exact resume after SIGKILL, divergence guard, and checkpoint errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import TINY_CLI, cli_env, run_cli, tiny_config

from rectifiers.train import CheckpointError, DivergenceError, load_checkpoint, train
from rectifiers.train.checkpoint import read_meta, save_checkpoint

# 3 epochs x 8 steps, a mid-epoch checkpoint every 3 steps, dropout and augmentation on: every
# source of randomness (dropout RNG, data order, crops/flips) must be restored exactly.
RUN = [*TINY_CLI, "--epochs", "3", "--checkpoint-every", "3", "--log-every", "1", "--dropout",
       "0.5", "--augment", "pad_crop_flip"]


def _last_step(log) -> int:
    if not log.exists():
        return 0
    steps = [0]
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    state, _ = load_checkpoint(run_dir / "checkpoint-last.safetensors")
    return state["model"]


def test_sigkill_mid_epoch_then_resume_is_bit_exact(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    done = run_cli([*RUN, "--out-dir", str(ref)])
    assert done.returncode == 0, done.stderr

    cmd = [sys.executable, "-m", "rectifiers", "train", *RUN, "--out-dir", str(killed)]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Step 11 is mid-epoch 2, after the mid-epoch checkpoint at step 9.
    while _last_step(killed / "log.jsonl") < 11 and proc.poll() is None:
        assert time.monotonic() < deadline, "training subprocess made no progress"
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    meta = read_meta(killed / "checkpoint-last.safetensors")
    assert meta["mid_epoch"] and 9 <= meta["step"] < 24  # really resuming inside an epoch

    resumed = run_cli([*RUN, "--out-dir", str(killed), "--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(ref), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The logs agree too: steps redone after the checkpoint were dropped, not duplicated.
    la = [json.loads(x)["loss"] for x in (ref / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (killed / "log.jsonl").read_text().splitlines()]
    assert la == lb
    assert (ref / "summary.csv").read_text().count("\n") == 4  # header + 3 epochs


def test_divergence_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny_config(epochs=2, lr=1e12, warmup_epochs=0, checkpoint_every=1,
                      out_dir=str(tmp_path))
    with pytest.raises(DivergenceError, match=r"at step (\d+)") as info:
        train(cfg)
    step = info.value.step
    assert step >= 2
    assert str(step) in str(info.value) and "checkpoint-last" in str(info.value)
    state, meta = load_checkpoint(tmp_path / "checkpoint-last.safetensors")
    assert meta["step"] == step - 1  # the last finished (good) step
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    # ...and the CLI reports it with its own exit code.
    r = run_cli([*TINY_CLI, "--lr", "1e12", "--warmup-epochs", "0", "--no-save"])
    assert r.returncode == 3 and "diverged" in r.stderr and "step" in r.stderr


def test_resume_into_another_model_names_both(tmp_path):
    train(tiny_config(epochs=1, out_dir=str(tmp_path)))
    other = tiny_config(epochs=2, model="plain_small", resume=str(tmp_path),
                        model_kwargs={"depth": 6, "width": 4, "fc_dim": 8, "input_size": 12})
    with pytest.raises(CheckpointError, match="prelunet_small.*plain_small"):
        train(other)
    wider = tiny_config(epochs=2, resume=str(tmp_path),
                        model_kwargs={"widths": [8, 8, 32], "fc_dim": 32, "input_size": 12})
    with pytest.raises(CheckpointError, match=r"shape of .* \(16, 8, 3, 3\) .* \(32, 8, 3, 3\)"):
        train(wider)


def test_checkpoint_roundtrip_types_and_bad_files(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3).t()},  # non-contiguous view
             "opt": {0: {"buf": torch.ones(2)}, 1: {"buf": None}},
             "groups": [{"lr": 0.1, "betas": (0.9, 0.99), "name": "decay"}],
             "rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "c.safetensors", state, {"model": "m", "epoch": 3})
    got, meta = load_checkpoint(path)
    assert meta == {"model": "m", "epoch": 3}
    assert torch.equal(got["model"]["w"], state["model"]["w"])
    assert set(got["opt"]) == {0, 1} and got["opt"][1]["buf"] is None
    assert got["groups"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(got["rng"], state["rng"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no checkpoint in directory"):
        load_checkpoint(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else None)
