"""Data: Fashion-MNIST (IDX), ImageNet-layout folders, synthetic data, tensor transforms, loader.

Typical use (see :func:`build_loader`)::

    from rectifiers.data import build_loader
    train = build_loader("fashion_mnist", 128, train=True, seed=0)
    test = build_loader("fashion_mnist", 512, train=False)
    train.normalization   # JSON dict: evaluation preprocesses identically

Randomness is counter-based (seed, epoch, batch), so ``state_dict()`` = (epoch, position)
resumes bit-exactly, and DDP ranks see disjoint slices of the same global batches.
"""

from rectifiers.data.fashion_mnist import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_CLASSES,
    FashionMNIST,
    load_fashion_mnist,
)
from rectifiers.data.folder import IMG_EXTENSIONS, ImageFolder
from rectifiers.data.idx import DatasetError, DatasetNotFoundError, read_idx, write_idx
from rectifiers.data.loader import (
    AUGMENT_PRESETS,
    AugmentConfig,
    BatchLoader,
    DataConfig,
    build_loader,
    derive_seed,
)
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
    "Normalizer",
    "SyntheticDataset",
    "build_loader",
    "center_crop_box",
    "crop",
    "derive_seed",
    "five_crop_boxes",
    "load_fashion_mnist",
    "read_idx",
    "resize_shorter",
    "write_idx",
]
