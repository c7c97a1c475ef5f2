"""One way to open a data set by name: :func:`open_dataset`.

Every part of the package that needs "data set X, split Y, maybe a subset of n" calls this
function (training, evaluation, the experiments, the benchmarks), so a subset means the same
thing everywhere:

**subset** ``n`` = the ``n`` samples at the first ``n`` positions of a random permutation of the
split, drawn from a generator seeded with ``derive_seed(seed, 0x5B5E7, crc32(split))``, then
put back in the split's own order (indices sorted). So:

* it is a function of ``(data set, split, n, seed)`` only: the same on every DDP rank, on every
  resume, in every command;
* a larger ``n`` with the same seed contains the smaller one (the prefix of one permutation);
* train and test subsets of one seed are drawn from independent streams (the split name is
  part of the key);
* ``n >= len(split)`` (or ``None``) is the whole split; ``n < 1`` is a :class:`ConfigError`.

The subset seed is the *data* seed: callers that want the same images in every run (the
reproduction experiments) pass a fixed seed; ``rectifiers train`` passes its ``--seed``.

Example::

    from rectifiers.data import open_dataset
    train = open_dataset("fashion_mnist", "train", subset=5000, seed=0)
    train.images.shape   # (5000, 1, 28, 28) uint8; train.labels int64; train.classes
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from rectifiers.data.fashion_mnist import FashionMNIST
from rectifiers.data.folder import ImageFolder
from rectifiers.data.synthetic import SyntheticDataset
from rectifiers.errors import ConfigError

__all__ = ["DATASETS", "InMemoryDataset", "default_split", "derive_seed", "holdout_split",
           "open_dataset", "subset_indices", "take_subset"]

DATASETS: tuple[str, ...] = ("fashion_mnist", "synthetic", "folder")
_SUBSET = 0x5B5E7  # stream tag of the subset draw


def derive_seed(*key: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``); stable across versions."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in key])
               .generate_state(1, np.uint64)[0]) >> 1


@dataclass
class InMemoryDataset:
    """A split held in memory: uint8 ``images`` (N, C, H, W) and int64 ``labels`` (N,).

    ``indices``: positions in the full split (``None``: the whole split, in order).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    indices: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"InMemoryDataset({self.name}/{self.split}, n={len(self)}, "
                f"classes={self.num_classes}, shape={tuple(self.images.shape[1:])})")


def subset_indices(total: int, n: int | None, seed: int, split: str) -> torch.Tensor | None:
    """The subset rule of this module (see the module docstring); ``None`` = every sample."""
    if n is None:
        return None
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConfigError(f"a data subset must be a positive number of samples, got {n!r}")
    if n >= total:
        return None
    g = torch.Generator().manual_seed(derive_seed(seed, _SUBSET, zlib.crc32(split.encode())))
    return torch.randperm(total, generator=g)[: int(n)].sort().values


def default_split(name: str, train: bool) -> str:
    """``"train"`` for training; for testing ``"test"`` (Fashion-MNIST, synthetic) or
    ``"val"`` (folders: the ImageNet layout has ``train/`` and ``val/``)."""
    if train:
        return "train"
    return "val" if name == "folder" else "test"


def open_dataset(name: str, split: str, root: str | os.PathLike | None = None,
                 subset: int | None = None, seed: int = 0, *, skip_bad_images: bool = False,
                 in_chans: int | None = None, num_samples: int = 1024, num_classes: int = 10,
                 image_size: int = 32) -> InMemoryDataset | ImageFolder:
    """Open split ``split`` of data set ``name``, or its seeded ``subset`` of ``n`` samples.

    Args:
        name: ``"fashion_mnist"`` (the four IDX files in ``root``, default
            ``$RECTIFIERS_DATA`` or the Debian package's directory), ``"folder"`` (an
            ImageNet-layout folder ``root/<split>/<class>/<image>``, decoded lazily) or
            ``"synthetic"`` (:class:`SyntheticDataset`, generated from ``seed``).
        split: ``"train"`` / ``"test"`` (Fashion-MNIST), ``"train"`` / ``"val"`` / ``"test"``
            (synthetic), any sub-folder name (folder). See :func:`default_split`.
        root: where the files are (ignored by ``synthetic``).
        subset: keep ``subset`` samples by the module's one subset rule; ``None``: all.
        seed: the data seed: picks the subset and (synthetic) the images.
        skip_bad_images: folders: leave out unreadable images instead of failing on the
            first (the loader counts them and lists their paths).
        in_chans: folders: 3 (RGB, default) or 1 (grayscale); synthetic: default 3.
        num_samples, num_classes, image_size: the synthetic data set's size and shape.

    Returns:
        :class:`InMemoryDataset` (Fashion-MNIST, synthetic) or :class:`ImageFolder`; both have
        ``labels``, ``classes``, ``num_classes``, ``split`` and ``len()``.

    Raises:
        ConfigError for an unknown name/split or a bad subset; DatasetError (naming the path
        and the fix) for missing or damaged files.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}")
    if name == "fashion_mnist":
        if split not in ("train", "test"):
            raise ConfigError(f"Fashion-MNIST has the splits 'train' and 'test', not {split!r} "
                              f"(--split)")
        fm = FashionMNIST(root, split)
        data: InMemoryDataset | ImageFolder = InMemoryDataset(
            fm.images, fm.labels, tuple(fm.classes), name, split)
    elif name == "synthetic":
        try:
            syn = SyntheticDataset(num_samples, num_classes, image_size, in_chans or 3, seed,
                                   split)
        except ValueError as e:
            raise ConfigError(f"synthetic data: {e}") from e
        data = InMemoryDataset(syn.images, syn.labels, syn.classes, name, split)
    else:
        if root is None:
            raise ConfigError("data set 'folder' needs a root directory (--data-dir DIR, the "
                              "folder holding train/<class>/ and val/<class>/)")
        data = ImageFolder(root, split, on_error="skip" if skip_bad_images else "raise",
                           in_chans=in_chans or 3)
    keep = subset_indices(len(data), subset, seed, split)
    if keep is None:
        return data
    if isinstance(data, ImageFolder):
        return data.select(keep)
    return InMemoryDataset(data.images.index_select(0, keep), data.labels.index_select(0, keep),
                           data.classes, data.name, data.split, keep)


def holdout_split(data: InMemoryDataset, n_val: int, seed: int = 0,
                  ) -> tuple[InMemoryDataset, InMemoryDataset]:
    """``(rest, held_out)``: ``n_val`` samples of ``data`` set aside for model selection.

    The held-out samples are the subset rule's ``n_val`` samples of ``data`` under the split
    name ``"<split>/holdout"`` (an independent stream), drawn with ``seed``; ``rest`` is every
    other sample, in the split's order. A fixed ``seed`` gives every run the same validation
    images, and no sample is in both parts. ``held_out.split`` is ``"<split>/holdout"``.
    """
    if isinstance(n_val, bool) or int(n_val) != n_val or not 1 <= n_val < len(data):
        raise ConfigError(f"a held-out validation split needs 1 <= n < {len(data)} samples, "
                          f"got {n_val!r}")
    held = subset_indices(len(data), int(n_val), seed, f"{data.split}/holdout")
    assert held is not None
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[held] = False
    rest = mask.nonzero().flatten()
    base = data.indices

    def take(idx: torch.Tensor, split: str) -> InMemoryDataset:
        return InMemoryDataset(data.images.index_select(0, idx), data.labels.index_select(0, idx),
                               data.classes, data.name, split,
                               idx if base is None else base.index_select(0, idx))

    return take(rest, data.split), take(held, f"{data.split}/holdout")


def take_subset(data: InMemoryDataset, n: int | None, seed: int) -> InMemoryDataset:
    """``data``'s subset of ``n`` samples by the subset rule (``None`` or ``n >= len``: all)."""
    keep = subset_indices(len(data), n, seed, data.split)
    if keep is None:
        return data
    base = data.indices
    return InMemoryDataset(data.images.index_select(0, keep), data.labels.index_select(0, keep),
                           data.classes, data.name, data.split,
                           keep if base is None else base.index_select(0, keep))
