"""prepare_run_dir: nothing a user saved is lost when a run starts in an existing directory."""

from __future__ import annotations

import json
import os

import pytest
import torch

from rectifiers.errors import UserError
from rectifiers.files import FileWriteError
from rectifiers.train import checkpoint as ckpt
from rectifiers.train.checkpoint import CheckpointError
from rectifiers.train.rundir import prepare_run_dir, repair_steplog

STATE = {"model": {"w": torch.ones(2)}, "optimizer": {"state": {}}}


def _run(d, step=8, best=True):
    """A finished-looking run directory."""
    d.mkdir(parents=True, exist_ok=True)
    ckpt.save_checkpoint(d / ckpt.LAST, STATE, {"model": "m", "step": step})
    if best:
        ckpt.copy_checkpoint(d / ckpt.LAST, d / ckpt.BEST)
    (d / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n"
                                         for s in range(1, step + 1)))
    (d / "summary.csv").write_text("epoch,train_loss\n1,0.5\n")
    (d / "args.yaml").write_text("lr: 0.03\n")
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_a_fresh_directory_is_created(tmp_path):
    rd = prepare_run_dir(tmp_path / "a" / "b")
    assert rd.path.is_dir() and rd.resume_path is None and rd.step == 0
    assert list(rd.path.iterdir()) == []  # the write probe leaves nothing


def test_rerunning_into_a_run_without_resume_is_refused_and_changes_nothing(tmp_path):
    before = _run(tmp_path)
    with pytest.raises(UserError) as info:
        prepare_run_dir(tmp_path)
    msg = str(info.value)
    for needle in (str(tmp_path), "--resume auto", "new --out-dir", "--overwrite",
                   "checkpoint-best.safetensors", "Nothing was changed"):
        assert needle in msg
    assert _snapshot(tmp_path) == before  # byte-identical


def test_overwrite_replaces_only_the_runs_files(tmp_path):
    _run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    rd = prepare_run_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert {p.name for p in rd.removed} >= {ckpt.LAST, ckpt.BEST, "log.jsonl", "summary.csv"}
    with pytest.raises(UserError, match="only one of them"):
        prepare_run_dir(tmp_path, resume="auto", overwrite=True)


def test_a_directory_with_unrelated_files_is_accepted(tmp_path):
    (tmp_path / "data.csv").write_text("x")
    prepare_run_dir(tmp_path)
    assert (tmp_path / "data.csv").read_text() == "x"


def test_resume_auto_continues_and_repairs_the_log_to_the_checkpoint(tmp_path):
    _run(tmp_path, step=8)
    with open(tmp_path / "log.jsonl", "a") as f:  # steps after the checkpoint, then a kill
        f.write(json.dumps({"step": 9}) + "\n" + json.dumps({"step": 10}) + "\n{\"step\": 1")
    rd = prepare_run_dir(tmp_path, resume="auto")
    assert rd.resume_path == tmp_path / ckpt.LAST and rd.step == 8
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    # an explicit checkpoint in the run directory works the same way
    assert prepare_run_dir(tmp_path, resume=str(tmp_path)).resume_path == tmp_path / ckpt.LAST


def test_orphaned_temporaries_of_killed_writes_are_removed(tmp_path):
    _run(tmp_path)
    orphans = [tmp_path / ".checkpoint-last.k3j_x9a1.tmp.safetensors",
               tmp_path / ".checkpoint-best.abcdefgh.tmp.safetensors",
               tmp_path / ".summary.12345678.tmp.csv"]
    keep = [tmp_path / ".hidden.tmp.safetensors", tmp_path / ".mydata.abcdefgh.tmp.npz"]
    for p in orphans + keep:
        p.write_bytes(b"partial")
    rd = prepare_run_dir(tmp_path, resume="auto")
    assert all(not p.exists() for p in orphans) and all(p.exists() for p in keep)
    assert set(orphans) <= set(rd.removed)


def test_kill_during_the_first_checkpoint_write_leaves_no_duplicate_log_lines(tmp_path):
    # The first attempt logged steps 1-5 and was killed while writing its first checkpoint.
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"step": s}) + "\n"
                                                for s in range(1, 6)))
    (tmp_path / ".checkpoint-last.qwertyui.tmp.safetensors").write_bytes(b"half")
    rd = prepare_run_dir(tmp_path, resume="auto")
    assert rd.resume_path is None and rd.step == 0
    assert (tmp_path / "log.jsonl").read_text() == ""  # the fresh start logs from step 1 again
    assert not (tmp_path / ".checkpoint-last.qwertyui.tmp.safetensors").exists()


def test_repair_steplog_drops_an_abandoned_attempt_and_cut_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"step": s, "a": 1} for s in (1, 2, 3)] + [{"step": s, "a": 2} for s in (1, 2, 3, 4)]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 5, "lo')
    assert repair_steplog(log, step=4)
    got = [json.loads(x) for x in log.read_text().splitlines()]
    assert got == [{"step": s, "a": 2} for s in (1, 2, 3, 4)]
    mtime = os.stat(log).st_mtime_ns
    assert not repair_steplog(log, step=4)  # already clean: not rewritten
    assert os.stat(log).st_mtime_ns == mtime


def test_resume_auto_without_last_but_with_best_is_refused(tmp_path):
    _run(tmp_path)
    (tmp_path / ckpt.LAST).unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="no checkpoint-last.safetensors"):
        prepare_run_dir(tmp_path, resume="auto")
    assert _snapshot(tmp_path) == before


def test_resuming_another_run_into_a_directory_with_a_run_is_refused(tmp_path):
    _run(tmp_path / "a")
    before = _run(tmp_path / "b")
    with pytest.raises(UserError, match="would mix two runs"):
        prepare_run_dir(tmp_path / "b", resume=str(tmp_path / "a"))
    assert _snapshot(tmp_path / "b") == before
    rd = prepare_run_dir(tmp_path / "c", resume=str(tmp_path / "a"))  # into a new dir: fine
    assert rd.resume_path == tmp_path / "a" / ckpt.LAST and rd.step == 8


def test_resuming_from_a_weights_only_best_checkpoint_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(CheckpointError, match="weights only.*checkpoint-last"):
        prepare_run_dir(tmp_path, resume=str(tmp_path / ckpt.BEST))


def test_out_dir_that_is_a_file_names_it(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    with pytest.raises(FileWriteError, match=rf"--out-dir {f} is an existing file"):
        prepare_run_dir(f)
    assert f.read_text() == "keep"
    with pytest.raises(FileWriteError, match="cannot be written"):
        prepare_run_dir(f / "sub")  # a parent that is a file


def test_unwritable_out_dir_names_it(tmp_path, monkeypatch):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:  # a real read-only directory (root ignores permissions)
        d.chmod(0o555)
        try:
            with pytest.raises(FileWriteError, match=rf"--out-dir {d} cannot be written"):
                prepare_run_dir(d)
        finally:
            d.chmod(0o755)
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(FileWriteError, match=rf"--out-dir {d} cannot be written: Permission"):
        prepare_run_dir(d)


def test_a_run_stopped_before_its_first_checkpoint_is_refused_with_the_way_out(tmp_path):
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 1}) + "\n")
    (tmp_path / "args.yaml").write_text("lr: 0.03\n")
    before = _snapshot(tmp_path)
    with pytest.raises(UserError, match="before its first checkpoint; --resume auto starts it"):
        prepare_run_dir(tmp_path)
    assert _snapshot(tmp_path) == before


def test_a_checkpoint_without_a_step_leaves_the_log_alone(tmp_path):
    ckpt.save_checkpoint(tmp_path / ckpt.LAST, STATE, {"model": "m"})
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 3}) + "\n")
    before = _snapshot(tmp_path)
    rd = prepare_run_dir(tmp_path, resume="auto")
    assert rd.resume_path == tmp_path / ckpt.LAST and rd.step == 0
    assert _snapshot(tmp_path) == before
