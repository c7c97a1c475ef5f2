"""Data: Fashion-MNIST (IDX), ImageNet-layout folders, synthetic data, tensor transforms, loader.

One way to open a data set by name, with one meaning of "subset": :func:`open_dataset`.
Typical use (see :func:`build_loader`)::

    from rectifiers.data import build_loader, open_dataset
    train = build_loader("fashion_mnist", 128, train=True, seed=0)
    test = build_loader("fashion_mnist", 512, train=False)
    train.normalization   # JSON dict: evaluation preprocesses identically
    few = build_loader(open_dataset("fashion_mnist", "train", subset=5000, seed=0), 128,
                       train=True)

Randomness is counter-based (seed, epoch, batch), so ``state_dict()`` = (epoch, position)
resumes bit-exactly, and DDP ranks see disjoint slices of the same global batches.
"""

from rectifiers.data.augment import AUGMENT_PRESETS, AugmentConfig
from rectifiers.data.datasets import (
    DATASETS,
    InMemoryDataset,
    default_split,
    derive_seed,
    holdout_split,
    open_dataset,
    subset_indices,
    take_subset,
)
from rectifiers.data.fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FashionMNIST,
    load_fashion_mnist,
)
from rectifiers.data.folder import IMG_EXTENSIONS, ImageFolder
from rectifiers.data.idx import DatasetError, DatasetNotFoundError, read_idx, write_idx
from rectifiers.data.loader import SKIPPED_LIST, BatchLoader, DataConfig, build_loader
from rectifiers.data.synthetic import SyntheticDataset
from rectifiers.data.transforms import (
    Normalizer,
    center_crop_box,
    crop,
    five_crop_boxes,
    resize_shorter,
)

__all__ = [
    "AUGMENT_PRESETS",
    "DATASETS",
    "SKIPPED_LIST",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "IMG_EXTENSIONS",
    "AugmentConfig",
    "BatchLoader",
    "DataConfig",
    "DatasetError",
    "DatasetNotFoundError",
    "FashionMNIST",
    "ImageFolder",
    "InMemoryDataset",
    "Normalizer",
    "SyntheticDataset",
    "build_loader",
    "center_crop_box",
    "crop",
    "default_split",
    "derive_seed",
    "five_crop_boxes",
    "load_fashion_mnist",
    "open_dataset",
    "read_idx",
    "resize_shorter",
    "holdout_split",
    "subset_indices",
    "take_subset",
    "write_idx",
]
