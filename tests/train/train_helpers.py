"""Shared settings for the training tests: a tiny, fast, learnable synthetic problem.

A uniquely named module (not ``conftest``): test directories share one module namespace, and
``from conftest import ...`` would pick up another directory's conftest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rectifiers.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]

# 12x12 one-channel synthetic images of 4 classes; an 8-layer net of ~13k parameters.
TINY_MODEL = {"widths": [8, 8, 16], "fc_dim": 32, "input_size": 12}
TINY = dict(dataset="synthetic", synthetic_size=256, synthetic_image_size=12, synthetic_classes=4,
            batch_size=32, lr=0.02, amp="none", channels_last=False, threads=1,
            model_kwargs=TINY_MODEL, verbose=False, progress=False)

TINY_CLI = ["--dataset", "synthetic", "--synthetic-size", "256", "--synthetic-image-size", "12",
            "--synthetic-classes", "4", "--batch-size", "32", "--lr", "0.02", "--amp", "none",
            "--no-channels-last", "--threads", "1", "--model-kw", "widths=[8,8,16]",
            "--model-kw", "fc_dim=32", "--model-kw", "input_size=12", "--no-progress"]


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rectifiers", "train", *args], env=cli_env(),
                          capture_output=True, text=True, timeout=300, **kw)
