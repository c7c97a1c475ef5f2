"""Fashion-MNIST from its four (gzipped) IDX files.

The default location is Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``); any directory with the standard file names
works, chosen with ``root=``, the ``--data-dir`` flag or the ``RECTIFIERS_DATA``
environment variable. Decoding all 70k images takes well under a second, so nothing
is cached on disk (``/usr/share`` is read-only anyway); decoded arrays are cached in
memory per (file, size, mtime).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rectifiers.data.idx import DatasetError, DatasetNotFoundError, read_idx

__all__ = [
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "FashionMNIST",
    "load_fashion_mnist",
]

DEFAULT_FASHION_MNIST_DIR: str = os.environ.get(
    "RECTIFIERS_DATA", "/usr/share/datasets/fashion-mnist"
)

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_FIX = (
    "Fix: on Debian/Ubuntu `sudo apt-get install dataset-fashion-mnist`; otherwise put the four "
    "standard files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and pass "
    "--data-dir DIR or set RECTIFIERS_DATA=DIR."
)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        p = root / name
        if p.is_file():
            return p
    if not root.is_dir():
        raise DatasetNotFoundError(f"Fashion-MNIST directory {root} does not exist. {_FIX}")
    raise DatasetNotFoundError(f"{root / (stem + '.gz')}: file not found (nor {stem}). {_FIX}")


@lru_cache(maxsize=4)
def _load_cached(images_path: str, labels_path: str, _key: tuple) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, expected_ndim=3, expected_dtype=np.uint8,
                      expected_shape=(None, 28, 28), fix=_FIX)
    labels = read_idx(labels_path, expected_ndim=1, expected_dtype=np.uint8, fix=_FIX)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; the files belong to different splits/datasets. {_FIX}"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(
            f"{labels_path}: label {int(labels.max())} out of range 0..9; not a Fashion-MNIST "
            f"labels file. {_FIX}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(
    root: str | os.PathLike | None = None, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of Fashion-MNIST.

    Args:
        root: directory with the IDX files (``.gz`` or plain); default
            :data:`DEFAULT_FASHION_MNIST_DIR` (``$RECTIFIERS_DATA`` or the Debian path).
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).

    Returns:
        ``(images, labels)``: uint8 tensor ``(N, 1, 28, 28)`` and int64 tensor ``(N,)``.
        Fresh tensors each call (the in-memory cache is never handed out mutably).

    Raises:
        DatasetNotFoundError / DatasetError naming the file, the problem and the fix.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root if root is not None else os.environ.get("RECTIFIERS_DATA",
                                                            DEFAULT_FASHION_MNIST_DIR))
    ip, lp = (_find(root, stem) for stem in _FILES[split])
    key = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (ip, lp))
    images, labels = _load_cached(str(ip), str(lp), key)
    return (torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)))


class FashionMNIST:
    """In-memory Fashion-MNIST split: ``images`` uint8 (N, 1, 28, 28), ``labels`` int64 (N,)."""

    classes = FASHION_MNIST_CLASSES

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train") -> None:
        self.root = root
        self.split = split
        self.images, self.labels = load_fashion_mnist(root, split)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        return f"FashionMNIST(split={self.split!r}, n={len(self)})"
