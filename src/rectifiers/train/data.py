"""The training run's data: a train and a validation loader and their description.

``build_data`` turns ``TrainConfig``'s data fields (or in-memory datasets given to
:func:`rectifiers.train.train`) into :class:`rectifiers.data.BatchLoader` objects sharded for
DDP; ``TrainData.metadata`` is what checkpoints store so that evaluation and export
preprocess exactly like training (the loader's own ``metadata()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rectifiers import data as rdata
from rectifiers.errors import ConfigError
from rectifiers.init import DATA_DEPENDENT_SCHEMES
from rectifiers.train.config import TrainConfig
from rectifiers.train.distributed import DistInfo


@dataclass
class TrainData:
    train: Any  # BatchLoader: iterable of (x float32 NCHW, y int64), set_epoch, state_dict
    val: Any
    metadata: dict[str, Any]  # dataset, num_classes, in_chans, image_size, normalization, ...

    @property
    def num_classes(self) -> int:
        return int(self.metadata["num_classes"])

    @property
    def in_chans(self) -> int:
        return int(self.metadata["in_chans"])

    @property
    def normalization(self) -> dict[str, Any]:
        return self.metadata["normalization"]


def build_data(cfg: TrainConfig, info: DistInfo, train_set: Any = None,
               val_set: Any = None) -> TrainData:
    if cfg.batch_size % info.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} (global) is not divisible by the "
                          f"world size {info.world_size}; pick a multiple of {info.world_size}")
    per_rank = cfg.batch_size // info.world_size
    eval_batch = max(per_rank, 256 // info.world_size)  # no gradients: bigger batches are free
    common = {"rank": info.rank, "world_size": info.world_size, "seed": cfg.seed}
    augment = cfg.augment if cfg.augment != "none" else None
    if augment == "auto":
        augment = "default" if cfg.dataset == "folder" else "flip"
    name = cfg.dataset
    if (train_set is None) != (val_set is None):
        raise ValueError("train() needs both train_set and val_set, or neither")
    if train_set is not None:  # the caller's in-memory data, used as it is
        if cfg.max_train_samples or cfg.max_val_samples:
            raise ValueError("max_train_samples/max_val_samples do not apply to data passed to "
                             "train(): pass open_dataset(..., subset=n) instead")
        name = getattr(train_set, "name", None) or type(train_set).__name__
        if augment == "default":
            augment = "flip"
    else:
        kw: dict[str, Any] = {}
        if cfg.dataset == "folder":
            if not cfg.data_dir:
                raise ConfigError("--dataset folder needs --data-dir (a directory with train/ "
                                  "and val/)")
            kw["skip_bad_images"] = cfg.skip_bad_images
        elif cfg.dataset == "synthetic":
            kw = {"in_chans": cfg.synthetic_chans, "num_classes": cfg.synthetic_classes,
                  "image_size": cfg.synthetic_image_size}
        train_set = rdata.open_dataset(cfg.dataset, "train", cfg.data_dir,
                                       cfg.max_train_samples, cfg.seed,
                                       num_samples=cfg.synthetic_size, **kw)
        val_set = rdata.open_dataset(cfg.dataset, rdata.default_split(cfg.dataset, False),
                                     cfg.data_dir, cfg.max_val_samples, cfg.seed,
                                     num_samples=max(cfg.synthetic_size // 4,
                                                     cfg.synthetic_classes), **kw)
    workers = {"num_workers": cfg.workers} if cfg.dataset == "folder" else {}
    train = rdata.build_loader(train_set, per_rank, train=True, augment=augment, **workers,
                               **common)
    val = rdata.build_loader(val_set, eval_batch, train=False,
                             normalization=train.normalization, **workers, **common)
    return TrainData(train, val, _metadata(train, name))


def _metadata(loader: Any, dataset: str) -> dict[str, Any]:
    meta = _jsonable(loader.metadata())
    meta["dataset"] = dataset
    return meta


def first_batch(loader: Any, scheme: str) -> torch.Tensor | None:
    """The first training batch's inputs for a data-dependent init scheme (else None); the
    loader's position is restored, so training still starts with that batch."""
    if scheme not in DATA_DEPENDENT_SCHEMES:
        return None
    state = loader.state_dict()
    x, _ = next(iter(loader))
    loader.load_state_dict(state)
    return x


def _jsonable(x: Any) -> Any:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
