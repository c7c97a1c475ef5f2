"""`rectifiers eval`: every bad input ends in one message naming the flag or file, exit 2.

Most cases run the real command line in-process (``rectifiers.cli.main``: the same code that
prints a user error as one line); a few run as subprocesses, exactly as a user starts them,
to check that no traceback reaches the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rectifiers.cli import main as cli
from rectifiers.models import create_model
from rectifiers.train.checkpoint import save_checkpoint

KW = {"widths": [4, 8, 8], "fc_dim": 16}
NORM = {"kind": "standardize", "mean": [0.3], "std": [0.35], "scale": 1 / 255}
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _checkpoint(path, meta_extra=None, in_chans=1, num_classes=10):
    torch.manual_seed(0)
    m = create_model("prelunet_small", num_classes=num_classes, in_chans=in_chans, **KW)
    meta = {"model": "prelunet_small", "model_kwargs": KW, "num_classes": num_classes,
            "in_chans": in_chans, "act": "prelu", "init": "he", "image_size": 28,
            "normalization": NORM, "dataset": "synthetic",
            "config": {"synthetic_image_size": 28, "seed": 0}}
    meta.update(meta_extra or {})
    return save_checkpoint(path, {"model": m.state_dict()}, meta)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ck") / "a.safetensors")


def _run(capsys, *argv):
    rc = cli(["eval", *map(str, argv), "--no-progress"])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("argv, needle", [
    (["--crop", "1"], "--crop 1 is too small"),
    (["--crop", "3"], "--crop 3 is too small"),
    (["--views", "dense", "--scales", "2"], "--scales 2 is too small"),
    (["--weights", "nan"], "--weights must be finite"),
    (["--weights", "inf"], "--weights must be finite"),
    (["--weights", "-1"], "--weights must be finite numbers > 0"),
    (["--max-samples", "0"], "--max-samples must be >= 1"),
    (["--max-samples", "-1"], "--max-samples must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--scales", "0"], "--scales must be positive"),
    (["--views", "ten_crop", "--crop", "28", "--scales", "20"], "--scales"),
    (["--dataset", "folder"], "--data-dir"),
    (["--amp", "fp16", "--device", "cpu"], "--amp fp16"),
])
def test_bad_flag_is_one_message_naming_it(ck, capsys, argv, needle):
    rc, err = _run(capsys, ck, *argv)
    assert rc == 2 and needle in err, err
    assert err.startswith("rectifiers eval: error:") and err.count("\n") == 1


def test_bad_output_dir_is_refused_before_evaluating(ck, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    rc, err = _run(capsys, ck, "--out-dir", f)
    assert rc == 2 and f"--out-dir {f} is an existing file" in err
    rc, err = _run(capsys, ck, "--out-dir", f / "below")
    assert rc == 2 and f"--out-dir {f / 'below'}: {f} is a file, not a directory" in err
    assert f.read_text() == "keep me"
    rc, err = _run(capsys, ck, "--out-dir", tmp_path / "new" / "ev", "--crop", "2")
    assert rc == 2 and not (tmp_path / "new").exists()  # a refused command creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_dir(ck, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = _run(capsys, ck, "--out-dir", ro)
    finally:
        ro.chmod(0o755)
    assert rc == 2 and f"--out-dir {ro}: {ro} is not writable" in err


def test_checkpoint_without_model_or_with_a_missing_tensor(tmp_path, capsys):
    from rectifiers.train.checkpoint import CheckpointError, load_model

    bad = save_checkpoint(tmp_path / "nomodel.safetensors",
                          {"model": {"w": torch.zeros(2)}}, {"num_classes": 10, "in_chans": 1})
    with pytest.raises(CheckpointError):
        load_model(bad)
    rc, err = _run(capsys, bad)
    assert rc == 2 and str(bad) in err and err.count("\n") == 1


def test_data_set_of_another_class_count(tmp_path, capsys):
    ck3 = _checkpoint(tmp_path / "k3.safetensors", num_classes=3,
                      meta_extra={"dataset": "fashion_mnist"})
    fm = tmp_path / "fm"
    from rectifiers.data import write_idx

    for stem, n in (("t10k", 5), ("train", 5)):
        write_idx(fm / f"{stem}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8))
        write_idx(fm / f"{stem}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
    rc, err = _run(capsys, ck3, "--data-dir", fm)
    assert rc == 2 and "scores 3 classes" in err and "--dataset" in err


def _folder(root: Path, bad: bool) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(3):
                Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(d / f"{k}.png")
    if not bad:
        return []
    (root / "val" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "val" / "dog" / "notes.jpg").write_text("not a picture")
    return sorted(str(root / "val" / c / n) for c, n in (("cat", "empty.jpg"),
                                                          ("dog", "notes.jpg")))


def test_skip_bad_images_counts_and_lists_them(tmp_path, capsys):
    bad = _folder(tmp_path / "img", bad=True)
    ck2 = _checkpoint(tmp_path / "f.safetensors", num_classes=2,
                      meta_extra={"dataset": "folder"})
    rc, err = _run(capsys, ck2, "--data-dir", tmp_path / "img", "--workers", "1")
    assert rc == 2 and bad[0] in err and "--skip-bad-images" in err
    out = tmp_path / "out"
    rc = cli(["eval", str(ck2), "--data-dir", str(tmp_path / "img"), "--skip-bad-images",
              "--out-dir", str(out), "--no-progress", "--batch-size", "3"])
    printed = capsys.readouterr().out
    assert rc == 0 and "skipped 2 unreadable image(s)" in printed
    assert (out / "eval_skipped_images.txt").read_text().splitlines() == bad
    res = json.loads((out / "eval.json").read_text())
    assert res["metrics"]["n"] == 6 and res["skipped_images"] == 2


def test_defaults_come_from_the_checkpoint_not_the_model_class(tmp_path, capsys):
    """A prelunet_small (class default 28 px) trained at 36 px is tested at 36 (and its dense
    window is the 36-px map), with the checkpoint's eval resize for the centre view."""
    from rectifiers.eval.ensemble import load_member

    ck36 = _checkpoint(tmp_path / "s.safetensors",
                       meta_extra={"image_size": 36, "eval_resize": 40,
                                   "config": {"synthetic_image_size": 44, "seed": 0}})
    center = load_member(ck36, "center")
    assert center.view.crop == 36 and center.view.scales == (40,)
    dense = load_member(ck36, "dense")
    assert dense.view.window == max(dense.model.feature_size((36, 36)))
    assert dense.view.window != dense.model.window  # the class default (28 px) differs
    rc = cli(["eval", str(ck36), "--max-samples", "8", "--no-progress"])
    assert rc == 0 and "crop=36 scales=[40]" in capsys.readouterr().out


def test_max_samples_is_the_open_dataset_subset(ck, tmp_path):
    from rectifiers.data import open_dataset
    from rectifiers.eval.cli import open_eval_set
    from rectifiers.train.checkpoint import read_meta

    meta = read_meta(ck)
    es = open_eval_set("synthetic", None, None, meta, max_samples=10)
    ref = open_dataset("synthetic", "test", subset=10, seed=0, num_samples=256,
                       num_classes=10, image_size=28, in_chans=1)
    assert torch.equal(es.images, ref.images) and torch.equal(es.labels, ref.labels)


@pytest.mark.parametrize("argv, needle", [
    (["--crop", "2"], "--crop 2 is too small"),
    (["--weights", "nan"], "--weights"),
    (["--max-samples", "0"], "--max-samples"),
])
def test_subprocess_user_error_has_no_traceback(ck, argv, needle):
    env = {**os.environ, "PYTHONPATH": SRC, "RECTIFIERS_NO_CPP": "1"}
    env.pop("RECTIFIERS_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "rectifiers", "eval", str(ck), *argv,
                        "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out and needle in out, out
