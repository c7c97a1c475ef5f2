"""Nothing a user saved is lost, end to end: ``rectifiers train`` into an existing run, a full
disk during a checkpoint write, the restart after a kill in the first checkpoint write.

Subprocess tests run the command as a user would and assert exit code 2, no traceback, a
message naming the path and the fix, and that the earlier files are byte-identical.
"""

from __future__ import annotations

import errno
import json

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY_CLI, run_cli, tiny_config

from rectifiers.cli import main as rectifiers_main
from rectifiers.files import DiskFullError
from rectifiers.train import checkpoint as ckpt
from rectifiers.train import train

ONE_EPOCH = [*TINY_CLI, "--epochs", "1", "--log-every", "1", "-q"]


def _snapshot(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    r = run_cli([*ONE_EPOCH, "--out-dir", str(out)])
    assert r.returncode == 0, r.stderr
    return out


def test_training_again_into_a_run_is_refused_and_the_run_is_byte_identical(finished_run,
                                                                              tmp_path):
    before = _snapshot(finished_run)
    assert {ckpt.LAST, ckpt.BEST, "log.jsonl", "summary.csv"} <= set(before)
    r = run_cli([*ONE_EPOCH, "--lr", "0.5", "--out-dir", str(finished_run)])
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out
    for needle in (str(finished_run), "--resume auto", "--out-dir", "--overwrite"):
        assert needle in out
    assert _snapshot(finished_run) == before


def test_best_is_weights_only_and_last_holds_the_training_state(finished_run):
    best = set(load_file(str(finished_run / ckpt.BEST)))
    last = set(load_file(str(finished_run / ckpt.LAST)))
    assert best and all(k.startswith("/model/") for k in best)
    assert any(k.startswith("/optimizer/") for k in last) and best < last
    a, _ = ckpt.load_model(finished_run / ckpt.BEST)
    b, _ = ckpt.load_model(finished_run / ckpt.LAST)  # both kinds load for eval/export
    for k, v in a.state_dict().items():  # one epoch: best == last
        assert torch.equal(v, b.state_dict()[k]), k


def test_overwrite_replaces_the_run(finished_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("mine")
    old_best = (run / ckpt.BEST).read_bytes()
    r = run_cli([*ONE_EPOCH, "--seed", "1", "--out-dir", str(run), "--overwrite"])
    assert r.returncode == 0, r.stderr
    assert (run / ckpt.BEST).read_bytes() != old_best
    assert (run / "notes.txt").read_text() == "mine"
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # a new log, not appended to the old one


def test_out_dir_that_is_a_file_is_one_clear_error(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("precious")
    r = run_cli([*ONE_EPOCH, "--out-dir", str(f)])
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    assert f"--out-dir {f} is an existing file" in out
    assert f.read_text() == "precious"


def test_restart_after_a_kill_in_the_first_checkpoint_write(tmp_path):
    """The first attempt logged steps and was killed while writing its first checkpoint (a
    temporary and no checkpoint-last): the restart logs every step once and removes the
    temporary."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n"
                                           for s in range(1, 6)) + '{"step": 6, "lo')
    orphan = out / ".checkpoint-last.a1b2c3d4.tmp.safetensors"
    orphan.write_bytes(b"\x00" * 100)
    r = run_cli([*ONE_EPOCH, "--out-dir", str(out), "--resume", "auto"])
    assert r.returncode == 0, r.stderr
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 8  # 256 / 32
    assert not orphan.exists()
    assert not list(out.glob(".*.tmp*"))


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch,
                                                                       capsys):
    real = ckpt._write_safetensors
    calls = {"n": 0}

    def fill_the_disk_on_the_third_write(path, tensors, metadata):
        calls["n"] += 1
        if calls["n"] == 3:  # writes: last@3, last@6, ... -> the third one fails half-way
            path.write_bytes(b"\x00" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, tensors, metadata)

    out = tmp_path / "run"
    snapshots = []

    def save_and_snapshot(*a, **k):
        result = real_save(*a, **k)
        snapshots.append((out / ckpt.LAST).read_bytes())
        return result

    real_save = ckpt.save_checkpoint
    monkeypatch.setattr(ckpt, "_write_safetensors", fill_the_disk_on_the_third_write)
    monkeypatch.setattr(ckpt, "save_checkpoint", save_and_snapshot)
    with pytest.raises(DiskFullError, match=r"no space left on the device while writing .*"
                       r"checkpoint-last\.safetensors"):
        train(tiny_config(epochs=2, checkpoint_every=3, out_dir=str(out)))
    assert (out / ckpt.LAST).read_bytes() == snapshots[-1]  # the previous checkpoint, intact
    assert not list(out.glob(".*.tmp*"))  # nothing half-written left behind
    monkeypatch.setattr(ckpt, "save_checkpoint", real_save)
    meta = ckpt.read_meta(out / ckpt.LAST)
    assert meta["step"] == 6 and meta["mid_epoch"]

    # Through the command line: one line, exit code 2, no traceback.
    calls["n"] = 0
    code = rectifiers_main(["train", *TINY_CLI, "--epochs", "1", "--checkpoint-every", "3",
                            "--out-dir", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "no space left on the device" in err and len(err.strip().splitlines()) == 1

