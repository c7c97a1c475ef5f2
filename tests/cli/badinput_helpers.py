"""Helpers of the CLI bad-input suite: run a command, make tiny data, snapshot files.

A uniquely named module (not ``conftest``): test directories share one module namespace.

Every command runs as a subprocess (``python -m rectifiers ...`` with the interpreter running
pytest, i.e. the venv's), exactly as a user would start it. Data are generated here (IDX files
of a few dozen 28x28 images, image folders of 16-px pictures), so nothing depends on the
installed Fashion-MNIST and nothing large is read.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

# A prelunet_small of ~4k parameters; 96 training images in batches of 16 = 6 steps per epoch.
TINY_TRAIN = ["--model-kw", "widths=[4,4,8]", "--model-kw", "fc_dim=16", "--batch-size", "16",
              "--epochs", "1", "--amp", "none", "--threads", "1", "--no-progress",
              "--no-channels-last", "-q"]

FM_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass
class Result:
    """What a command did: exit code and its stdout + stderr together."""

    argv: list[str]
    rc: int
    out: str

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        tail = self.out[-3000:]
        return f"$ rectifiers {' '.join(self.argv)}\n(rc {self.rc})\n{tail}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RECTIFIERS_DEBUG", "RECTIFIERS_DATA")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1",
               # the bad-input paths do not depend on the fused kernels; skip their build/load
               RECTIFIERS_NO_CPP="1")
    env.update(extra)
    return env


def rectifiers(*argv: str | os.PathLike, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: str | os.PathLike | None = None, preexec_fn=None) -> Result:
    """Run ``python -m rectifiers ARGV`` and capture everything it prints."""
    args = [str(a) for a in argv]
    p = subprocess.run([sys.executable, "-m", "rectifiers", *args], env=env or cli_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, cwd=cwd, preexec_fn=preexec_fn)
    return Result(args, p.returncode, p.stdout)


# ----------------------------------------------------------------------------- IDX data
def idx_bytes(arr: np.ndarray) -> bytes:
    """Raw (uncompressed) IDX encoding of a uint8 array."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.tobytes()


def tiny_fashion_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` learnable 28x28 images: a bright band whose row encodes the class."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 2 * y:2 * y + 6, :] += 150
    return images, labels


def write_fashion_mnist(root: Path, n_train: int = 96, n_test: int = 48) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = tiny_fashion_arrays(n, seed)
        img_name, lab_name = FM_FILES[split]
        (root / img_name).write_bytes(gzip.compress(idx_bytes(images), mtime=0))
        (root / lab_name).write_bytes(gzip.compress(idx_bytes(labels), mtime=0))
    return root


# ----------------------------------------------------------------------------- image folders
def write_image_folder(root: Path, train: dict[str, int] | None = None,
                       val: dict[str, int] | None = None, size: int = 16) -> Path:
    """An ImageNet-layout folder of small JPEGs: ``{class: count}`` per split."""
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, counts in (("train", train or {"cat": 3, "dog": 3}),
                          ("val", val or {"cat": 2, "dog": 2})):
        for k, (name, n) in enumerate(sorted(counts.items())):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                arr[..., k % 3] = 255
                pil.fromarray(arr).save(d / f"img{i}.jpg", quality=90)
    return root


def valid_jpeg_bytes(size: int = 16) -> bytes:
    import io

    pil = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    arr = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pil.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ----------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content), for byte-identity checks."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
