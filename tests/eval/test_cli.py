from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from rectifiers.eval.cli import evaluate, main, open_eval_set
from rectifiers.eval.ensemble import Ensemble, load_member
from rectifiers.models import create_model
from rectifiers.train.checkpoint import save_checkpoint

KW = {"widths": [4, 8, 8], "fc_dim": 16}
NORM = {"kind": "standardize", "mean": [0.3], "std": [0.35], "scale": 1 / 255}


def _checkpoint(path, seed: int = 0, dataset: str = "synthetic"):
    torch.manual_seed(seed)
    m = create_model("prelunet_small", num_classes=10, in_chans=1, **KW)
    meta = {"model": "prelunet_small", "model_kwargs": KW, "num_classes": 10, "in_chans": 1,
            "act": "prelu", "init": "he", "image_size": 28, "normalization": NORM,
            "dataset": dataset, "config": {"synthetic_image_size": 28, "seed": 0}}
    return save_checkpoint(path, {"model": m.state_dict()}, meta)


def _assert_no_near_ties(scores: torch.Tensor, k: int = 5, gap: float = 1e-5) -> None:
    """Top-1 and top-k decisions are robust to last-bit differences in the scores."""
    top = scores.topk(k + 1, dim=1).values
    assert float((top[:, 0] - top[:, 1]).min()) > gap
    assert float((top[:, k - 1] - top[:, k]).min()) > gap


def test_cli_dense_writes_results_that_match_the_library(tmp_path, capsys):
    ck = _checkpoint(tmp_path / "a.safetensors")
    rc = main([str(ck), "--views", "dense", "--max-samples", "24", "--batch-size", "10",
               "--out-dir", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "top-1 error" in printed and "class_9" in printed
    res = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert res["metrics"]["n"] == 24 and res["members"][0]["scales"] == [28, 32, 36]
    # the same numbers straight from the library, in one batch
    member = load_member(ck, "dense")
    data = open_eval_set("synthetic", None, None, member.meta, max_samples=24)
    scores = Ensemble([member]).predict(data.images)
    top1 = 100 * float((scores.argmax(1) != data.labels).float().mean())
    # the CLI ran the model in batches of 10, the library in one batch of 24: the scores may
    # differ in the last bits (conv blocking depends on the batch), so equal counts hold
    # because no two top classes are that close (checked, not assumed)
    _assert_no_near_ties(scores)
    assert res["metrics"]["top1_error"] == pytest.approx(top1)
    assert (tmp_path / "out" / "eval_confusion.csv").is_file()


def test_cli_ensemble_of_the_same_checkpoint_twice_equals_it_once(tmp_path):
    ck = _checkpoint(tmp_path / "a.safetensors")
    for name, cks in (("one", [ck]), ("two", [ck, ck])):
        assert main([*map(str, cks), "--views", "ten_crop", "--max-samples", "16",
                     "--out-dir", str(tmp_path), "--prefix", name, "--no-progress"]) == 0
    one = json.loads((tmp_path / "one.json").read_text())["metrics"]
    two = json.loads((tmp_path / "two.json").read_text())["metrics"]
    assert one["confusion"] == two["confusion"] and one["top5_error"] == two["top5_error"]


def test_bf16_autocast_gives_nearly_the_fp32_scores(tmp_path):
    ck = _checkpoint(tmp_path / "a.safetensors")
    member = load_member(ck, "dense")
    data = open_eval_set("synthetic", None, None, member.meta, max_samples=16)
    ens = Ensemble([member])
    fp32 = ens.predict(data.images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = ens.predict(data.images)
    assert bf16.dtype == torch.float32  # scores averaged in fp32 even under autocast
    diff = float((bf16 - fp32).abs().max())
    assert 0 < diff < 0.02  # autocast really ran (not bitwise fp32) and bf16 stays close
    m = evaluate(ens, data, progress=False, amp="bf16")
    assert m.count == 16
    with pytest.raises(ValueError, match="amp"):
        evaluate(ens, data, progress=False, amp="fp8")


def test_cli_on_fashion_mnist_test_set(tmp_path, capsys):
    from rectifiers.data import DEFAULT_FASHION_MNIST_DIR

    if not os.path.isdir(DEFAULT_FASHION_MNIST_DIR):
        pytest.skip("Fashion-MNIST not installed")
    ck = _checkpoint(tmp_path / "f.safetensors", dataset="fashion_mnist")
    assert main([str(ck), "--max-samples", "32", "--no-progress"]) == 0
    assert "fashion_mnist/test" in capsys.readouterr().out


def test_cli_reports_bad_input(tmp_path, capsys):
    # user errors are printed once, by the top-level command line (exit 2)
    from rectifiers.cli import main as cli

    ck = _checkpoint(tmp_path / "a.safetensors")
    assert cli(["eval", str(tmp_path / "nope")]) == 2
    assert cli(["eval", str(ck), str(ck), "--weights", "1"]) == 2
    assert cli(["eval", str(ck), "--dataset", "folder"]) == 2
    assert cli(["eval", str(ck), "--data", "folder"]) == 2  # hidden deprecated alias
    err = capsys.readouterr().err
    assert "does not exist" in err and "one weight per checkpoint" in err and "--data-dir" in err
    assert err.count("--data-dir") == 2


def _ddp_worker(rank: int, world: int, port: int, ck: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    torch.set_num_threads(1)
    member = load_member(ck, "dense")
    data = open_eval_set("synthetic", None, None, member.meta, max_samples=21)
    m = evaluate(Ensemble([member]), data, batch_size=4, progress=False)
    if rank == 0:
        torch.save(m.confusion, out)
    dist.destroy_process_group()


@pytest.mark.slow  # spawns 2 fresh interpreters (torch import each): ~10-30 s
def test_ddp_two_processes_give_the_single_process_result(tmp_path):
    import torch.multiprocessing as mp

    ck = str(_checkpoint(tmp_path / "a.safetensors"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "conf.pt")
    mp.spawn(_ddp_worker, args=(2, port, ck, out), nprocs=2, join=True)
    member = load_member(ck, "dense")
    data = open_eval_set("synthetic", None, None, member.meta, max_samples=21)
    single = evaluate(Ensemble([member]), data, batch_size=5, progress=False)
    # ranks ran batches of 4, the single process batches of 5: the scores may differ in the
    # last bits on another CPU, so the exact equality of the counts rests on there being no
    # near-tie between classes, which is checked here rather than assumed
    _assert_no_near_ties(Ensemble([member]).predict(data.images))
    assert torch.equal(torch.load(out, weights_only=True), single.confusion)
    assert int(single.confusion.sum()) == 21


def test_cli_on_an_imagenet_layout_folder_with_mixed_sizes(tmp_path, capsys):
    pytest.importorskip("PIL")
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(30, 40), (28, 28), (50, 33)]
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = tmp_path / "data" / split / c
            d.mkdir(parents=True)
            for k, (h, w) in enumerate(sizes):
                Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(d / f"{k}.png")
    torch.manual_seed(0)
    m = create_model("prelunet_small", num_classes=2, in_chans=1, **KW)
    meta = {"model": "prelunet_small", "model_kwargs": KW, "num_classes": 2, "in_chans": 1,
            "act": "prelu", "init": "he", "normalization": NORM, "dataset": "folder"}
    ck = save_checkpoint(tmp_path / "f.safetensors", {"model": m.state_dict()}, meta)
    for views in ("center", "dense"):
        assert main([str(ck), "--views", views, "--data-dir", str(tmp_path / "data"),
                     "--batch-size", "4", "--no-progress", "--out-dir", str(tmp_path),
                     "--prefix", views]) == 0
        res = json.loads((tmp_path / f"{views}.json").read_text())["metrics"]
        assert res["n"] == 6 and [r["name"] for r in res["per_class"]] == ["cat", "dog"]
