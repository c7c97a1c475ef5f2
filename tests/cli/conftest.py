"""Session fixtures of the CLI bad-input suite: tiny Fashion-MNIST files, one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
from badinput_helpers import TINY_TRAIN, rectifiers, write_fashion_mnist


@pytest.fixture(scope="session")
def fm_dir(tmp_path_factory) -> Path:
    """A valid tiny Fashion-MNIST directory (96 train, 48 test images). Do not modify."""
    return write_fashion_mnist(tmp_path_factory.mktemp("fm") / "fashion-mnist")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fm_dir) -> Path:
    """One tiny trained run (1 epoch, 6 steps) shared by the session. Copy before modifying."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = rectifiers("train", "--data-dir", fm_dir, *TINY_TRAIN, "--out-dir", out)
    assert r.rc == 0, str(r)
    assert (out / "checkpoint-best.safetensors").is_file(), str(r)
    return out
