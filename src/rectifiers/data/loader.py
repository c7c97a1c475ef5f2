"""The batch loader: deterministic order, per-batch tensor augmentation, exact resume, DDP shards.

Design (why it is built this way):

* **Counter-based randomness.** The sample order of epoch ``e`` is a permutation drawn
  from a generator seeded by ``(seed, e)``; the augmentation parameters of global batch
  ``j`` come from a generator seeded by ``(seed, e, j)``. No generator state is carried
  from batch to batch, so the loader's whole state is ``(epoch, position)``: a run
  resumed mid-epoch from :meth:`BatchLoader.state_dict` sees exactly the batches and
  augmentations an uninterrupted run would, whatever ``num_workers`` is.
* **Global batches, sharded.** With ``world_size = W`` and per-rank ``batch_size = B`` the
  global batch ``j`` is ``perm[j*W*B:(j+1)*W*B]``; rank ``r`` takes the contiguous slice
  ``[r*B:(r+1)*B]`` of it *and of its augmentation parameters*. So W ranks with batch B
  process exactly the samples (and crops, flips, colour noise) of one process with batch
  ``W*B``, and the mean of the per-rank mean losses equals the single-process loss.
* **In-memory data stays uint8** (Fashion-MNIST: 47 MB) and is augmented per batch with
  gathers on tensors; only the batch is converted to float32.
* **Folders** are decoded per sample (Pillow, ``Image.draft``), in ``torch.utils.data``
  worker processes when ``num_workers > 0``; each worker builds whole batches.

``for x, y in loader`` yields float32 NCHW images and int64 labels. When an epoch is
exhausted the loader moves to the next epoch by itself (so forgetting ``set_epoch`` never
repeats an order); ``set_epoch(e)`` jumps to epoch ``e`` (position 0) unless ``e`` is the
current epoch, in which case a resumed position is kept.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from rectifiers.data.fashion_mnist import FashionMNIST
from rectifiers.data.folder import ImageFolder
from rectifiers.data.synthetic import SyntheticDataset
from rectifiers.data.transforms import (
    Normalizer,
    apply_crop_fractions,
    batch_crop,
    center_crop_box,
    channel_stats,
    crop,
    flip_where,
    pad,
    pca_lighting,
    pca_stats,
    sample_crop_fractions,
    sample_flips,
    sample_pca_alphas,
    sample_scales,
    scale_jitter,
)

__all__ = ["AUGMENT_PRESETS", "AugmentConfig", "BatchLoader", "DataConfig", "build_loader",
           "derive_seed"]

log = logging.getLogger(__name__)


def derive_seed(*key: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``); stable across versions."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in key])
               .generate_state(1, np.uint64)[0]) >> 1


_ORDER, _AUG = 0x0D, 0xA6  # stream tags so order and augmentation never share a generator


# ------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. Order: geometry (scale jitter *or* pad+crop), flip, colour.

    Attributes:
        crop_size: output side; ``None`` keeps the input size (pad-and-crop back to it).
        pad: pixels padded on each side before a random crop (small images).
        pad_mode: ``"reflect"`` or ``"zeros"``.
        scale_range: ``(lo, hi)``: shorter side ``s ~ U{lo..hi}`` before a random
            ``crop_size`` crop (the paper: ``(256, 512)`` -> 224; small images e.g.
            ``(28, 36)`` -> 28). ``None``: no rescaling.
        flip: horizontal flip with probability 1/2.
        pca_std: std of AlexNet PCA colour noise (paper/AlexNet: 0.1); 0 disables.
    """

    crop_size: int | None = None
    pad: int = 0
    pad_mode: str = "reflect"
    scale_range: tuple[int, int] | None = None
    flip: bool = True
    pca_std: float = 0.0

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"augment pad must be >= 0, got {self.pad}")
        if self.pad_mode not in ("reflect", "zeros"):
            raise ValueError(f"augment pad_mode must be 'reflect' or 'zeros', "
                             f"got {self.pad_mode!r}")
        if self.scale_range is not None:
            lo, hi = self.scale_range
            if not 1 <= lo <= hi:
                raise ValueError(f"augment scale_range must be (lo, hi) with 1 <= lo <= hi, "
                                 f"got {self.scale_range}")
            if self.crop_size is not None and lo < self.crop_size:
                raise ValueError(f"augment scale_range lower end {lo} is smaller than the crop "
                                 f"{self.crop_size}; every rescaled image must contain the crop")
        if self.pca_std < 0:
            raise ValueError(f"augment pca_std must be >= 0, got {self.pca_std}")


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(flip=False),
    "flip": AugmentConfig(flip=True),
    # Small images (Fashion-MNIST default): 2-px reflect pad, random crop back, flip.
    "pad_crop_flip": AugmentConfig(pad=2, flip=True),
    # Scale jitter for 28-px images, the small-image analogue of the paper's [256, 512] -> 224.
    "scale_jitter_small": AugmentConfig(crop_size=28, scale_range=(28, 36), flip=True),
    # The paper (Sec. 3): shorter side ~ U[256, 512], random 224 crop, flip, AlexNet colour.
    "paper": AugmentConfig(crop_size=224, scale_range=(256, 512), flip=True, pca_std=0.1),
}


@dataclass
class DataConfig:
    """What to load. ``dataset``: ``"fashion_mnist"``, ``"synthetic"`` or ``"folder"``.

    ``split`` defaults to ``"train"`` for training loaders and to ``"test"``
    (Fashion-MNIST) / ``"val"`` (folder, synthetic) otherwise. ``normalize`` is
    ``"default"`` (standardize for Fashion-MNIST/synthetic, the paper's per-pixel
    ``"mean_image"`` for folders), ``"standardize"``, ``"mean"``, ``"mean_image"`` or
    ``"none"``; statistics always come from the *train* split (folders: estimated from
    ``stats_samples`` seeded random images). ``normalization`` (a dict from
    :meth:`Normalizer.to_dict`, e.g. a checkpoint's) overrides both.
    """

    dataset: str = "fashion_mnist"
    root: str | None = None
    split: str | None = None
    # synthetic
    num_samples: int = 1024
    num_classes: int = 10
    image_size: int = 32
    in_chans: int = 3
    data_seed: int = 0
    # folder
    crop_size: int = 224
    eval_resize: int = 256
    on_error: str = "raise"
    stats_samples: int = 512
    # normalisation
    normalize: str = "default"
    normalization: dict | None = None
    pca: dict | None = None  # {"eigval": [3], "eigvec": [[3]*3]}; default: from the data

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ sources
class _InMemory:
    """uint8 (N,C,H,W) images + labels; batches are built by gathering rows."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"in-memory images must be uint8 (N,C,H,W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match "
                             f"{images.shape[0]} images")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)


class _BatchTasks(torch.utils.data.Dataset):
    """Map-style 'dataset of batches' for folders: item ``j`` is this rank's part of batch ``j``.

    Lives in worker processes; all randomness is recomputed from ``(seed, epoch, j)``.
    """

    def __init__(self, loader: BatchLoader, epoch: int, perm: torch.Tensor) -> None:
        self.loader = loader
        self.epoch = epoch
        self.perm = perm

    def __len__(self) -> int:
        return self.loader.num_batches

    def __getitem__(self, j: int):
        idx, params = self.loader._batch_plan(self.epoch, self.perm, j)
        return self.loader._decode_folder_batch(idx, params)


def _identity(batch):
    return batch  # each task already is a batch; module-level so it pickles


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # N workers x M intra-op threads would oversubscribe the CPU


# ------------------------------------------------------------------------------- loader
class BatchLoader:
    """Deterministic, resumable, shardable batch iterator. Build it with :func:`build_loader`.

    Attributes: ``num_classes``, ``in_chans``, ``image_size``, ``classes``,
    ``normalization`` (JSON dict for evaluation), ``batch_size`` (per rank),
    ``global_batch_size``, ``num_samples``, ``epoch``, ``position`` (global batches
    already yielded in this epoch), ``skipped`` (unreadable images dropped so far).
    """

    def __init__(self, data: ImageFolder | _InMemory, *, batch_size: int, train: bool, seed: int,
                 augment: AugmentConfig | None, normalizer: Normalizer, rank: int = 0,
                 world_size: int = 1, drop_last: bool | None = None, shuffle: bool | None = None,
                 num_workers: int = 0, pin_memory: bool = False, num_classes: int,
                 classes: tuple[str, ...] | None = None, crop_size: int | None = None,
                 eval_resize: int | None = None,
                 pca: tuple[torch.Tensor, torch.Tensor] | None = None,
                 name: str = "custom") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.data = data
        self.is_folder = isinstance(data, ImageFolder)
        self.train = train
        self.seed = int(seed)
        self.augment = augment if train else None
        self.normalizer = normalizer
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.global_batch_size = batch_size * world_size
        self.drop_last = train if drop_last is None else drop_last
        self.shuffle = train if shuffle is None else shuffle
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.num_classes = num_classes
        self.classes = classes
        self.name = name
        self.pca = pca
        self.num_samples = len(data) if self.is_folder else data.labels.shape[0]
        if self.is_folder:
            self.in_chans = data.in_chans
            self.crop_size = crop_size or 224
            self.eval_resize = eval_resize or self.crop_size
            if self.augment is not None and self.augment.scale_range is None:
                raise ValueError("folder images have different sizes: a training augmentation "
                                 "for folders needs scale_range (e.g. the 'paper' preset)")
        else:
            _, self.in_chans, h, w = data.images.shape
            size = crop_size or (self.augment.crop_size if self.augment else None) or min(h, w)
            self.crop_size = size
            self.eval_resize = None
        if self.augment is not None and self.augment.crop_size not in (None, self.crop_size):
            self.crop_size = self.augment.crop_size
        self.image_size = self.crop_size
        if self.augment is not None and self.augment.pca_std > 0:
            if self.in_chans != 3:
                raise ValueError(f"PCA colour noise needs RGB images, this dataset has "
                                 f"{self.in_chans} channel(s); use pca_std=0")
            if pca is None:
                raise ValueError("pca_std > 0 needs PCA statistics (eigval, eigvec)")
        self.num_batches = (self.num_samples // self.global_batch_size if self.drop_last
                            else math.ceil(self.num_samples / self.global_batch_size))
        if self.num_batches == 0:
            raise ValueError(
                f"{name}: {self.num_samples} samples give no full global batch of "
                f"{self.global_batch_size} (batch_size {batch_size} x world_size {world_size}) "
                f"with drop_last=True; use a smaller batch or drop_last=False"
            )
        self.epoch = 0
        self.position = 0
        self.skipped = 0
        self.skipped_paths: list[str] = []

    # ---------------------------------------------------------------- metadata
    @property
    def normalization(self) -> dict:
        """JSON-serialisable description of the input normalisation (see :class:`Normalizer`)."""
        return self.normalizer.to_dict()

    def metadata(self) -> dict:
        """Everything evaluation/export need to preprocess like training (JSON-serialisable)."""
        return {"dataset": self.name, "num_classes": self.num_classes, "in_chans": self.in_chans,
                "image_size": self.image_size, "classes": list(self.classes or []),
                "normalization": self.normalization,
                "eval_resize": self.eval_resize}

    def __len__(self) -> int:
        return self.num_batches

    @property
    def batches_remaining(self) -> int:
        return max(0, self.num_batches - self.position)

    def __repr__(self) -> str:
        return (f"BatchLoader({self.name}, n={self.num_samples}, batch={self.batch_size}x"
                f"{self.world_size}, train={self.train}, epoch={self.epoch}, "
                f"position={self.position}/{self.num_batches})")

    # ------------------------------------------------------------------- state
    def set_epoch(self, epoch: int) -> None:
        """Go to the start of ``epoch``; no-op if already in it (keeps a resumed position)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def state_dict(self) -> dict[str, Any]:
        """Loader position: resuming from it continues with exactly the same batches."""
        return {"version": 1, "epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_samples": self.num_samples, "global_batch_size": self.global_batch_size,
                "drop_last": self.drop_last, "shuffle": self.shuffle, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. The world size may differ if the global batch is equal."""
        for key in ("seed", "num_samples", "global_batch_size", "drop_last", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"loader state mismatch: checkpoint has {key}={state[key]!r}, this loader "
                    f"{key}={getattr(self, key)!r}; resume with the same data, seed and global "
                    f"batch size (batch_size x world_size) as the interrupted run"
                )
        if not 0 <= state["position"] <= self.num_batches:
            raise ValueError(f"loader state position {state['position']} outside "
                             f"0..{self.num_batches}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.skipped = int(state.get("skipped", 0))

    # -------------------------------------------------------------- planning
    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Sample indices of ``epoch`` in visiting order (all ranks compute the same)."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        g = torch.Generator().manual_seed(derive_seed(self.seed, _ORDER, epoch))
        return torch.randperm(self.num_samples, generator=g)

    def _rank_slice(self, m: int) -> slice:
        if m == self.global_batch_size:
            return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        # last, partial global batch (drop_last=False): near-equal contiguous parts
        bounds = [m * r // self.world_size for r in range(self.world_size + 1)]
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def _batch_plan(self, epoch: int, perm: torch.Tensor, j: int):
        """This rank's sample indices and augmentation parameters for global batch ``j``."""
        gidx = perm[j * self.global_batch_size:(j + 1) * self.global_batch_size]
        m = gidx.numel()
        params: dict[str, torch.Tensor] = {}
        a = self.augment
        if a is not None:
            g = torch.Generator().manual_seed(derive_seed(self.seed, _AUG, epoch, j))
            # drawn for the whole global batch, in a fixed order, then sliced per rank
            if a.scale_range is not None:
                params["scales"] = sample_scales(m, *a.scale_range, g)
            if a.scale_range is not None or a.pad > 0 or (a.crop_size or 0) > 0:
                params["fractions"] = sample_crop_fractions(m, g)
            if a.flip:
                params["flips"] = sample_flips(m, g)
            if a.pca_std > 0:
                params["alphas"] = sample_pca_alphas(m, a.pca_std, g)
        sl = self._rank_slice(m)
        return gidx[sl], {k: v[sl] for k, v in params.items()}

    # ------------------------------------------------------------- building
    def _finish(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Colour noise and normalisation (float32 from here on)."""
        if "alphas" in params:
            eigval, eigvec = self.pca
            x = pca_lighting(x.float(), params["alphas"], eigval, eigvec, scale=255.0)
        return self.normalizer(x)

    def _memory_batch(self, idx: torch.Tensor, params: dict[str, torch.Tensor]):
        data = self.data
        x = data.images.index_select(0, idx)
        y = data.labels.index_select(0, idx)
        a = self.augment
        s = self.crop_size
        if a is not None:
            if "scales" in params:
                x = scale_jitter(x, params["scales"], params["fractions"], s)
            elif "fractions" in params:
                h, w = x.shape[-2] + 2 * a.pad, x.shape[-1] + 2 * a.pad
                off = apply_crop_fractions(params["fractions"], h, w, s, s)
                # pad, crop and flip in one gather: the batch is touched once before float
                flips = params.get("flips")
                if a.pad_mode == "reflect":
                    x = batch_crop(x, off[:, 0], off[:, 1], s, s, reflect_pad=a.pad, flips=flips)
                else:
                    x = batch_crop(pad(x, a.pad, "zeros"), off[:, 0], off[:, 1], s, s, flips=flips)
            elif "flips" in params:
                x = flip_where(x, params["flips"])
            if "scales" in params and "flips" in params:
                x = flip_where(x, params["flips"])
        elif x.shape[-2:] != (s, s):
            x = crop(x, center_crop_box(x.shape[-2], x.shape[-1], s))
        return self._finish(x, params), y

    def _decode_folder_batch(self, idx: torch.Tensor, params: dict[str, torch.Tensor]):
        data: ImageFolder = self.data
        imgs, keep, bad = [], [], []
        for i, k in enumerate(idx.tolist()):
            if "scales" in params:
                img = data.load_view(k, resize=int(params["scales"][i]), crop_size=self.crop_size,
                                     fraction=params["fractions"][i],
                                     flip=bool(params["flips"][i]) if "flips" in params else False)
            else:
                img = data.load_view(k, resize=self.eval_resize, crop_size=self.crop_size)
            if img is None:
                bad.append(data.samples[k][0])
            else:
                imgs.append(img)
                keep.append(i)
        c, s = data.in_chans, self.crop_size
        x = torch.stack(imgs) if imgs else torch.empty(0, c, s, s, dtype=torch.uint8)
        keep_t = torch.tensor(keep, dtype=torch.int64)
        y = data.labels.index_select(0, idx.index_select(0, keep_t))
        kept = {k: v.index_select(0, keep_t) for k, v in params.items()}
        return x, y, kept, bad

    def _record_skips(self, bad: list[str]) -> None:
        if bad:
            self.skipped += len(bad)
            if len(self.skipped_paths) < 1000:
                self.skipped_paths.extend(bad[:1000 - len(self.skipped_paths)])
            log.warning("skipped %d unreadable image(s) (total %d), e.g. %s", len(bad),
                        self.skipped, bad[0])

    # ------------------------------------------------------------- iteration
    def __iter__(self):
        epoch, start = self.epoch, self.position
        perm = self.epoch_order(epoch)
        if self.is_folder and self.num_workers > 0 and start < self.num_batches:
            dl = torch.utils.data.DataLoader(
                _BatchTasks(self, epoch, perm), batch_size=None,
                sampler=range(start, self.num_batches), num_workers=self.num_workers,
                worker_init_fn=_worker_init, persistent_workers=False,
                prefetch_factor=2, collate_fn=_identity,
            )
            source = iter(dl)
        else:
            source = None
        for j in range(start, self.num_batches):
            if source is not None:
                x, y, params, bad = next(source)
            else:
                idx, params = self._batch_plan(epoch, perm, j)
                if self.is_folder:
                    x, y, params, bad = self._decode_folder_batch(idx, params)
                else:
                    x, y = self._memory_batch(idx, params)
                    bad = []
            if self.is_folder:
                self._record_skips(bad)
                x = self._finish(x, params)
            if self.pin_memory:
                x, y = x.pin_memory(), y.pin_memory()
            # the position counts batches handed out: a checkpoint taken after training on
            # this batch resumes with the next one
            self.position = j + 1
            yield x, y
        if self.epoch == epoch:
            self.epoch, self.position = epoch + 1, 0


# ------------------------------------------------------------------------ construction
def _resolve_augment(augment: Any, kind: str) -> AugmentConfig:
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        d = dict(augment)
        if d.get("scale_range") is not None:
            d["scale_range"] = tuple(d["scale_range"])
        names = {f.name for f in fields(AugmentConfig)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown augment option(s) {sorted(unknown)}; valid: {sorted(names)}")
        return AugmentConfig(**d)
    if augment is None or augment is False:
        return AUGMENT_PRESETS["none"]
    if augment == "default":
        return AUGMENT_PRESETS["paper" if kind == "folder" else "pad_crop_flip"]
    if augment in AUGMENT_PRESETS:
        return AUGMENT_PRESETS[augment]
    raise ValueError(f"unknown augment {augment!r}; use one of {sorted(AUGMENT_PRESETS)}, "
                     f"'default', an AugmentConfig or a dict of its fields")


def _stats_sample(folder: ImageFolder, n: int, size: int, resize: int, seed: int) -> torch.Tensor:
    """Centre crops of ``n`` seeded random training images, for normalisation/PCA statistics."""
    g = torch.Generator().manual_seed(derive_seed(seed, 0x57A7))
    pick = torch.randperm(len(folder), generator=g)[:n].tolist()
    imgs = [folder.load_view(k, resize=resize, crop_size=size) for k in pick]
    imgs = [im for im in imgs if im is not None]
    if not imgs:
        raise ValueError(f"{folder.root}: no readable image among {n} sampled for statistics")
    return torch.stack(imgs)


def _normalizer(kind: str, images: torch.Tensor) -> Normalizer:
    if kind == "none":
        return Normalizer("none")
    if kind == "mean_image":
        return Normalizer("mean_image", (images.double().mean(0) / 255.0).tolist())
    mean, std = channel_stats(images)
    return Normalizer(kind, mean, std if kind == "standardize" else None)


def _in_memory_from(obj: Any) -> tuple[_InMemory, int, tuple[str, ...] | None]:
    images, labels = obj.images, obj.labels
    num_classes = getattr(obj, "num_classes", None) or int(labels.max()) + 1
    return _InMemory(images, labels), num_classes, getattr(obj, "classes", None)


def build_loader(dataset: str | DataConfig | Any, batch_size: int, *, train: bool,
                 seed: int = 0, augment: str | AugmentConfig | dict | None = "default",
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None,
                 num_workers: int = 0, shuffle: bool | None = None, pin_memory: bool = False,
                 root: str | os.PathLike | None = None, split: str | None = None,
                 normalization: dict | None = None, **options: Any) -> BatchLoader:
    """Build a :class:`BatchLoader`.

    Args:
        dataset: ``"fashion_mnist"``, ``"synthetic"``, ``"folder"``, a :class:`DataConfig`,
            or a dataset object (:class:`ImageFolder`, or anything with uint8 ``images``
            ``(N,C,H,W)`` and int64 ``labels``, e.g. :class:`SyntheticDataset`).
        batch_size: per-rank batch; the global batch is ``batch_size * world_size``.
        train: training loader (shuffled, augmented, ``drop_last``) or evaluation loader
            (fixed order, no augmentation, keeps the last partial batch).
        seed: the data seed; order and augmentation are functions of (seed, epoch, batch).
        augment: preset name (``"default"``, ``"none"``, ``"flip"``, ``"pad_crop_flip"``,
            ``"scale_jitter_small"``, ``"paper"``), :class:`AugmentConfig` or a dict.
            Ignored when ``train=False``.
        rank, world_size: DDP shard (``torch.distributed`` rank / world size).
        drop_last, shuffle: default to ``train``.
        num_workers: decoding processes for folders (in-memory data ignores it).
        root, split, normalization, **options: override the :class:`DataConfig` fields.

    Example::

        train = build_loader("fashion_mnist", 128, train=True, seed=0)
        test = build_loader("fashion_mnist", 512, train=False)
        for epoch in range(10):
            train.set_epoch(epoch)
            for x, y in train: ...
    """
    if isinstance(dataset, DataConfig):
        cfg = dataset
    elif isinstance(dataset, str):
        cfg = DataConfig(dataset=dataset)
    else:
        cfg = None
    if cfg is not None:
        over = dict(options)
        if root is not None:
            over["root"] = str(root)
        if split is not None:
            over["split"] = split
        if normalization is not None:
            over["normalization"] = normalization
        names = {f.name for f in fields(DataConfig)}
        unknown = set(over) - names
        if unknown:
            raise ValueError(f"unknown data option(s) {sorted(unknown)}; valid: {sorted(names)}")
        cfg = replace(cfg, **over)
        return _build_from_config(cfg, batch_size, train=train, seed=seed, augment=augment,
                                  rank=rank, world_size=world_size, drop_last=drop_last,
                                  num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory)
    if options:
        raise ValueError(f"options {sorted(options)} only apply to a named dataset/DataConfig")
    kw = dict(batch_size=batch_size, train=train, seed=seed, rank=rank, world_size=world_size,
              drop_last=drop_last, num_workers=num_workers, shuffle=shuffle,
              pin_memory=pin_memory)
    if isinstance(dataset, ImageFolder):
        aug = _resolve_augment(augment, "folder")
        norm = Normalizer.from_dict(normalization) if normalization else None
        pca = None
        if norm is None or (train and aug.pca_std > 0):
            sample = _stats_sample(dataset, 256, 224 if aug.crop_size is None else aug.crop_size,
                                   256, seed)
            norm = norm or _normalizer("mean_image", sample)
            pca = pca_stats(sample) if dataset.in_chans == 3 else None
        return BatchLoader(dataset, augment=aug, normalizer=norm, num_classes=dataset.num_classes,
                           classes=dataset.classes, crop_size=aug.crop_size or 224,
                           eval_resize=256, pca=pca, name="folder", **kw)
    if not (hasattr(dataset, "images") and hasattr(dataset, "labels")):
        raise TypeError(f"dataset must be a name, DataConfig, ImageFolder or an object with "
                        f"uint8 `images` and `labels` tensors; got {type(dataset).__name__}")
    mem, num_classes, classes = _in_memory_from(dataset)
    aug = _resolve_augment(augment, "memory")
    norm = (Normalizer.from_dict(normalization) if normalization
            else _normalizer("standardize", mem.images))
    pca = pca_stats(mem.images) if train and aug.pca_std > 0 and mem.images.shape[1] == 3 else None
    return BatchLoader(mem, augment=aug, normalizer=norm, num_classes=num_classes, classes=classes,
                       pca=pca, name=type(dataset).__name__, **kw)


def _build_from_config(cfg: DataConfig, batch_size: int, *, train: bool, seed: int, augment: Any,
                       **kw: Any) -> BatchLoader:
    kind = cfg.dataset
    norm_kind = cfg.normalize
    if norm_kind == "default":
        norm_kind = "mean_image" if kind == "folder" else "standardize"
    if norm_kind not in Normalizer.KINDS:
        raise ValueError(f"normalize must be 'default' or one of {Normalizer.KINDS}, "
                         f"got {norm_kind!r}")
    aug = _resolve_augment(augment, "folder" if kind == "folder" else "memory")
    pca = None
    if cfg.pca is not None:
        pca = (torch.tensor(cfg.pca["eigval"], dtype=torch.float32),
               torch.tensor(cfg.pca["eigvec"], dtype=torch.float32))
    if kind in ("fashion_mnist", "synthetic"):
        if kind == "fashion_mnist":
            split = cfg.split or ("train" if train else "test")
            data = FashionMNIST(cfg.root, split)
            ref = data if split == "train" else (FashionMNIST(cfg.root, "train")
                                                 if cfg.normalization is None else None)
        else:
            split = cfg.split or ("train" if train else "val")

            def make(sp: str) -> SyntheticDataset:
                return SyntheticDataset(cfg.num_samples, cfg.num_classes, cfg.image_size,
                                        cfg.in_chans, cfg.data_seed, sp)
            data = make(split)
            ref = data if split == "train" else (make("train") if cfg.normalization is None
                                                 else None)
        mem, num_classes, classes = _in_memory_from(data)
        if cfg.normalization is not None:
            norm = Normalizer.from_dict(cfg.normalization)
        else:
            norm = _normalizer(norm_kind, ref.images)
        if pca is None and train and aug.pca_std > 0 and mem.images.shape[1] == 3:
            pca = pca_stats(ref.images if ref is not None else mem.images)
        return BatchLoader(mem, batch_size=batch_size, train=train, seed=seed, augment=aug,
                           normalizer=norm, num_classes=num_classes, classes=classes, pca=pca,
                           name=kind, **kw)
    if kind == "folder":
        if cfg.root is None:
            raise ValueError("dataset 'folder' needs root= (the folder holding train/ and val/)")
        split = cfg.split or ("train" if train else "val")
        data = ImageFolder(cfg.root, split, on_error=cfg.on_error, in_chans=cfg.in_chans)
        crop_size = aug.crop_size if (train and aug.crop_size) else cfg.crop_size
        need_stats = ((cfg.normalization is None and norm_kind != "none")
                      or (train and aug.pca_std > 0 and pca is None))
        if need_stats:
            ref = data if split == "train" else ImageFolder(cfg.root, "train",
                                                            on_error=cfg.on_error,
                                                            in_chans=cfg.in_chans)
            sample = _stats_sample(ref, cfg.stats_samples, crop_size, cfg.eval_resize,
                                   cfg.data_seed)
        if cfg.normalization is not None:
            norm = Normalizer.from_dict(cfg.normalization)
        else:
            norm = Normalizer("none") if norm_kind == "none" else _normalizer(norm_kind, sample)
        if pca is None and train and aug.pca_std > 0 and data.in_chans == 3:
            pca = pca_stats(sample)
        return BatchLoader(data, batch_size=batch_size, train=train, seed=seed, augment=aug,
                           normalizer=norm, num_classes=data.num_classes, classes=data.classes,
                           crop_size=crop_size, eval_resize=cfg.eval_resize, pca=pca,
                           name="folder", **kw)
    raise ValueError(f"unknown dataset {kind!r}; use 'fashion_mnist', 'synthetic' or 'folder'")
