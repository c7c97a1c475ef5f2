"""What the engine guards (issue 10) and what issue 12 made possible: data-dependent init in
`rectifiers train`, the exploded-loss stop, --max-steps runs that resume exactly, one message
for a bad --out-dir, a run without matplotlib, and the observer hooks."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from train_helpers import TINY_CLI, cli_env, run_cli, tiny_config

from rectifiers.train import DivergenceError, StepInfo, load_checkpoint, train
from rectifiers.train.checkpoint import read_meta


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint-last.safetensors")[0]["model"]


def _conv1(model) -> torch.nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _one_message(r) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_trains_with_lsuv_init(tmp_path):
    # LSUV needs a data batch: the engine builds the model, then initialises it with the first
    # training batch. It used to fail with "scheme 'lsuv' is data-dependent".
    r = run_cli([*TINY_CLI, "--epochs", "1", "--init", "lsuv", "--out-dir", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert "init=lsuv" in r.stdout
    assert read_meta(tmp_path / "checkpoint-last.safetensors")["init"] == "lsuv"


def test_lsuv_init_uses_a_batch_and_keeps_the_first_batch_for_training():
    seen = []
    res = train(tiny_config(epochs=1, init="lsuv", dropout=0.0),
                on_step=lambda s: seen.append(s.loss))
    he = train(tiny_config(epochs=1, init="he", dropout=0.0))
    assert res.steps == he.steps == 8  # drawing the init batch did not skip a batch
    assert len(seen) == 8 and all(math.isfinite(v) for v in seen)
    assert not torch.equal(_conv1(res.model).weight, _conv1(he.model).weight)


def test_loading_a_checkpoint_never_initialises(tmp_path, monkeypatch):
    from rectifiers import init as rinit
    from rectifiers.models import registry
    from rectifiers.train import load_model

    res = train(tiny_config(epochs=1, out_dir=str(tmp_path)))

    def boom(*a, **k):
        raise AssertionError("initialisation called while loading a checkpoint")

    monkeypatch.setattr(rinit, "initialize", boom)
    monkeypatch.setattr(registry._init, "initialize", boom)
    model, _ = load_model(tmp_path)
    x = torch.randn(3, 1, 12, 12)  # exact: tiny_config trains NCHW, as the loaded model is
    with torch.no_grad():
        assert torch.equal(model(x), res.model(x))


def test_exploding_loss_stops_keeps_last_good_checkpoint_and_says_so(tmp_path):
    # lr 10 without clipping: the loss goes 1.4 -> 9.6 -> 5e15 (finite!). It used to run on to
    # the end and exit 0 at chance accuracy.
    cfg = tiny_config(epochs=2, lr=10.0, grad_clip=None, warmup_epochs=0, checkpoint_every=1,
                      out_dir=str(tmp_path))
    with pytest.raises(DivergenceError, match=r"exploded .* at step (\d+)") as info:
        train(cfg)
    step = info.value.step
    assert info.value.checkpoint == tmp_path / "checkpoint-last.safetensors"
    assert "last good checkpoint" in str(info.value)
    meta = read_meta(tmp_path / "checkpoint-last.safetensors")
    assert meta["step"] == step - 1
    assert all(torch.isfinite(t).all() for t in _weights(tmp_path).values())
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert last["diverged"] and last["step"] == step


def test_cli_divergence_is_one_message_and_a_nonzero_exit(tmp_path):
    out = tmp_path / "run"
    r = run_cli([*TINY_CLI, "--lr", "100", "--warmup-epochs", "0", "--out-dir", str(out)])
    assert r.returncode == 3
    _one_message(r)
    assert "exploded" in r.stderr and "step 2" in r.stderr
    assert "No good checkpoint" in r.stderr  # none was written before step 2: never a NaN one
    assert not (out / "checkpoint-last.safetensors").exists()


def test_max_steps_then_resume_equals_the_uninterrupted_run(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run = [*TINY_CLI, "--epochs", "3", "--sched", "cosine", "--log-every", "1",
           "--dropout", "0.5", "--augment", "pad_crop_flip"]
    assert run_cli([*run, "--out-dir", str(ref)]).returncode == 0
    r = run_cli([*run, "--out-dir", str(cut), "--max-steps", "11"])  # mid-epoch 2 (8 steps/ep)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((cut / "summary.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # epoch 2 shown as it stands
    meta = read_meta(cut / "checkpoint-last.safetensors")
    assert meta["mid_epoch"] and meta["step"] == 11 and len(meta["history"]) == 1
    r = run_cli([*run, "--out-dir", str(cut), "--resume", "auto"])
    assert r.returncode == 0, r.stderr
    assert "changed settings" not in r.stdout
    a, b = _weights(ref), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    lr = [json.loads(x)["lr"] for x in (cut / "log.jsonl").read_text().splitlines()]
    lr_ref = [json.loads(x)["lr"] for x in (ref / "log.jsonl").read_text().splitlines()]
    assert lr == lr_ref  # the cosine was never shortened by --max-steps
    rows = list(csv.DictReader((cut / "summary.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # every epoch exactly once
    ref_rows = list(csv.DictReader((ref / "summary.csv").open()))
    assert [r["val_top1_err"] for r in rows] == [r["val_top1_err"] for r in ref_rows]


def test_resume_with_max_steps_already_reached_is_refused_and_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    run = [*TINY_CLI, "--epochs", "1", "--out-dir", str(out)]
    assert run_cli([*run, "--max-steps", "3"]).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = run_cli([*run, "--resume", "auto", "--max-steps", "2"])
    assert r.returncode == 2
    _one_message(r)
    assert "--max-steps 2" in r.stderr and "step 3" in r.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # final.json, args.yaml, checkpoints: byte-identical


def test_out_dir_that_is_a_file_is_one_message(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    r = run_cli([*TINY_CLI, "--epochs", "1", "--out-dir", str(f)])
    assert r.returncode == 2
    _one_message(r)
    assert str(f) in r.stderr and f.read_text() == "keep me"


def test_run_without_matplotlib_finishes_and_says_so(tmp_path):
    import subprocess
    import sys

    block = tmp_path / "block"
    (block / "matplotlib").mkdir(parents=True)
    (block / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = cli_env()
    env["PYTHONPATH"] = f"{block}:{env['PYTHONPATH']}"
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "rectifiers", "train", *TINY_CLI, "--epochs", "1",
                        "--out-dir", str(out)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "matplotlib is not installed" in r.stdout
    assert (out / "checkpoint-best.safetensors").is_file() and (out / "final.json").is_file()
    assert not (out / "curves.png").exists()


def test_hooks_see_every_step_before_the_update_and_every_epoch():
    infos: list[StepInfo] = []
    grads: list[float] = []
    rows = []

    def on_step(s: StepInfo) -> None:
        infos.append(s)
        grads.append(float(_conv1(s.model).weight.grad.norm()))

    res = train(tiny_config(epochs=2, grad_clip=None), on_step=on_step,
                on_epoch=lambda row, m: rows.append(row), eval_at_start=True)
    assert [s.step for s in infos] == list(range(1, 17))
    assert [s.epoch for s in infos] == [1] * 8 + [2] * 8
    assert all(g > 0 for g in grads)
    assert all(s.grad_norm >= g for s, g in zip(infos, grads, strict=True))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["val_top1_err"] == res.initial["val_top1_err"]
    assert rows[1:] == res.history


def test_train_accepts_a_built_model_and_in_memory_data():
    from rectifiers.data import open_dataset
    from rectifiers.models import create_model

    tr = open_dataset("synthetic", "train", subset=128, seed=3, in_chans=1, num_classes=4,
                      image_size=12, num_samples=256)
    te = open_dataset("synthetic", "test", seed=3, in_chans=1, num_classes=4, image_size=12,
                      num_samples=64)

    def model():
        return create_model("prelunet_small", num_classes=4, in_chans=1, init="xavier",
                            generator=torch.Generator().manual_seed(5), widths=[8, 8, 16],
                            fc_dim=32, input_size=12)

    a = train(tiny_config(epochs=1), model=model(), train_set=tr, val_set=te)
    b = train(tiny_config(epochs=1), model=model(), train_set=tr, val_set=te)
    assert a.steps == 128 // 32
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ValueError, match="subset"):
        train(tiny_config(epochs=1, max_train_samples=64), model=model(), train_set=tr,
              val_set=te)


def _image_folder(root, bad: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(
                    d / f"{i}.png")
    for i in range(bad):
        (root / "train" / "ab"[i % 2] / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")


def test_skip_bad_images_trains_and_lists_them(tmp_path):
    data = tmp_path / "data"
    _image_folder(data, bad=2)
    args = ["--dataset", "folder", "--data-dir", str(data), "--epochs", "1", "--batch-size", "2",
            "--threads", "1", "--amp", "none", "--no-channels-last", "--no-progress",
            "--model-kw", "widths=[4,4,8]", "--model-kw", "fc_dim=16"]
    r = run_cli([*args, "--out-dir", str(tmp_path / "strict")])
    assert r.returncode == 2
    _one_message(r)
    assert "bad" in r.stderr and "--skip-bad-images" in r.stderr
    out = tmp_path / "run"
    r = run_cli([*args, "--out-dir", str(out), "--skip-bad-images"])
    assert r.returncode == 0, r.stderr
    assert "skipped 2 unreadable image(s)" in r.stdout
    listed = (out / "skipped_images.txt").read_text().splitlines()
    assert [p.rsplit("/", 1)[-1] for p in listed] == ["bad0.jpg", "bad1.jpg"]


def test_resume_takes_the_saved_settings_and_refuses_changed_ones(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    run = [*TINY_CLI, "--epochs", "2", "--lr", "0.05", "--log-every", "1"]
    assert run_cli([*run, "--out-dir", str(ref)]).returncode == 0
    assert run_cli([*run, "--out-dir", str(cut), "--max-steps", "5"]).returncode == 0
    before = (cut / "checkpoint-last.safetensors").read_bytes()
    # --lr 100 would silently run at the saved schedule's lr (the optimiser state wins):
    # refused, naming the setting, and nothing is touched.
    r = run_cli(["--out-dir", str(cut), "--resume", "auto", "--lr", "100"])
    assert r.returncode == 2
    _one_message(r)
    assert "lr: 0.05 -> 100.0" in r.stderr
    assert (cut / "checkpoint-last.safetensors").read_bytes() == before
    # Without flags the saved settings are used: the run finishes as the uninterrupted one.
    r = run_cli(["--out-dir", str(cut), "--resume", "auto", "--no-progress"])
    assert r.returncode == 0, r.stderr
    a, b = _weights(ref), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
