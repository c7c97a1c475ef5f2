"""torchrun with 2 gloo processes on CPU follows the 1-process trajectory (same global batch)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from train_helpers import TINY_CLI, cli_env, run_cli

from rectifiers.train import load_checkpoint

# Dropout off: each rank draws its own dropout masks, which a single process cannot match.
# Augmentation stays on: the loader slices the global batch's crops/flips across ranks.
RUN = [*TINY_CLI, "--epochs", "2", "--log-every", "1", "--dropout", "0", "--augment",
       "pad_crop_flip"]


def _losses(run_dir) -> list[float]:
    return [json.loads(x)["loss"] for x in (run_dir / "log.jsonl").read_text().splitlines()]


def test_two_gloo_ranks_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run_cli([*RUN, "--out-dir", str(one)])
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "rectifiers", "train", *RUN, "--out-dir", str(two)],
        env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "x2 ranks" in r2.stdout  # it really ran data parallel
    assert r2.stdout.count("epoch   1/2") == 1  # only rank 0 prints

    l1, l2 = torch.tensor(_losses(one)), torch.tensor(_losses(two))
    assert l1.numel() == l2.numel() == 16
    # Same samples, same augmentation, averaged gradients: only float summation order differs.
    torch.testing.assert_close(l2, l1, rtol=1e-4, atol=1e-5)
    w1, w2 = (load_checkpoint(d / "checkpoint-last.safetensors")[0]["model"] for d in (one, two))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)
    assert load_checkpoint(two / "checkpoint-last.safetensors")[1]["world_size"] == 2
