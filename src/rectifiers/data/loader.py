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
from pathlib import Path
from typing import Any

import torch

from rectifiers.data.augment import AUGMENT_PRESETS, AugmentConfig, resolve_augment
from rectifiers.data.datasets import (
    InMemoryDataset,
    default_split,
    derive_seed,
    open_dataset,
)
from rectifiers.data.folder import ImageFolder
from rectifiers.data.idx import DatasetError
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
from rectifiers.errors import ConfigError
from rectifiers.files import atomic_write_text

__all__ = ["AUGMENT_PRESETS", "AugmentConfig", "BatchLoader", "DataConfig", "build_loader",
           "derive_seed"]

SKIPPED_LIST = "skipped_images.txt"  # file name of BatchLoader.write_skipped

log = logging.getLogger(__name__)


_ORDER, _AUG = 0x0D, 0xA6  # stream tags so order and augmentation never share a generator


@dataclass
class DataConfig:
    """What to load. ``dataset``: ``"fashion_mnist"``, ``"synthetic"`` or ``"folder"``.

    The split is opened with :func:`rectifiers.data.open_dataset` (``subset``: its one
    seeded-subset rule, seeded by ``data_seed``). ``split`` defaults to
    :func:`~rectifiers.data.default_split` (``"train"`` for training loaders, else ``"test"``
    for Fashion-MNIST and synthetic data, ``"val"`` for folders). ``skip_bad_images`` (or
    ``on_error="skip"``): folders drop undecodable images, counted and listed by
    :meth:`BatchLoader.write_skipped`. ``normalize`` is
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
    subset: int | None = None
    # folder
    crop_size: int = 224
    eval_resize: int = 256
    on_error: str = "raise"
    skip_bad_images: bool = False
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
        # broken links an ImageFolder left out of its listing count as skipped from the start
        self.skipped_paths: list[str] = list(getattr(data, "bad_paths", []))
        self._skipped_set = set(self.skipped_paths)
        self.skipped = len(self.skipped_paths)

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
            for p in bad:
                if p not in self._skipped_set:
                    self._skipped_set.add(p)
                    self.skipped_paths.append(p)
            log.warning("skipped %d unreadable image(s) (total %d), e.g. %s", len(bad),
                        self.skipped, bad[0])

    def write_skipped(self, directory: str | os.PathLike, name: str = SKIPPED_LIST) -> Path | None:
        """Write the skipped paths (one per line, sorted) to ``directory/name``, atomically.

        Returns the file, or ``None`` (and writes nothing) when no image was skipped.
        """
        if not self.skipped_paths:
            return None
        return atomic_write_text(Path(directory) / name,
                                 "".join(p + "\n" for p in sorted(self.skipped_paths)))

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
def _stats_sample(folder: ImageFolder, n: int, size: int, resize: int, seed: int) -> torch.Tensor:
    """Centre crops of ``n`` seeded random training images, for normalisation/PCA statistics."""
    g = torch.Generator().manual_seed(derive_seed(seed, 0x57A7))
    pick = torch.randperm(len(folder), generator=g)[:n].tolist()
    imgs = [folder.load_view(k, resize=resize, crop_size=size) for k in pick]
    imgs = [im for im in imgs if im is not None]
    if not imgs:
        raise DatasetError(f"{folder.root}: none of the {len(pick)} images sampled for the "
                           f"normalisation statistics could be decoded. Check the image files.")
    return torch.stack(imgs)


def _normalizer(kind: str, images: torch.Tensor | None) -> Normalizer:
    if kind == "none" or images is None:
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
            or a data set object (from :func:`rectifiers.data.open_dataset`: an
            :class:`ImageFolder`, or anything with uint8 ``images`` ``(N,C,H,W)`` and int64
            ``labels``).
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
    kw = dict(batch_size=batch_size, train=train, seed=seed, rank=rank, world_size=world_size,
              drop_last=drop_last, num_workers=num_workers, shuffle=shuffle,
              pin_memory=pin_memory)
    if isinstance(dataset, (str, DataConfig)):
        cfg = dataset if isinstance(dataset, DataConfig) else DataConfig(dataset=dataset)
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
            raise ConfigError(f"unknown data option(s) {sorted(unknown)}; valid: {sorted(names)}")
        return _build_from_config(replace(cfg, **over), augment=augment, **kw)
    if options:
        raise ConfigError(f"options {sorted(options)} only apply to a named dataset/DataConfig")
    if isinstance(dataset, ImageFolder):
        aug = resolve_augment(augment, "folder")
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
    aug = resolve_augment(augment, "memory")
    norm = (Normalizer.from_dict(normalization) if normalization
            else _normalizer("standardize", mem.images))
    pca = pca_stats(mem.images) if train and aug.pca_std > 0 and mem.images.shape[1] == 3 else None
    name = getattr(dataset, "name", None) or type(dataset).__name__
    return BatchLoader(mem, augment=aug, normalizer=norm, num_classes=num_classes, classes=classes,
                       pca=pca, name=name, **kw)


def _build_from_config(cfg: DataConfig, *, train: bool, seed: int, augment: Any,
                       **kw: Any) -> BatchLoader:
    kind = cfg.dataset
    norm_kind = cfg.normalize
    if norm_kind == "default":
        norm_kind = "mean_image" if kind == "folder" else "standardize"
    if norm_kind not in Normalizer.KINDS:
        raise ConfigError(f"normalize must be 'default' or one of {Normalizer.KINDS}, "
                          f"got {norm_kind!r}")
    aug = resolve_augment(augment, "folder" if kind == "folder" else "memory")
    pca = None
    if cfg.pca is not None:
        pca = (torch.tensor(cfg.pca["eigval"], dtype=torch.float32),
               torch.tensor(cfg.pca["eigvec"], dtype=torch.float32))
    split = cfg.split or default_split(kind, train)

    def opener(sp: str, subset: int | None) -> InMemoryDataset | ImageFolder:
        return open_dataset(kind, sp, cfg.root, subset, cfg.data_seed,
                            skip_bad_images=cfg.skip_bad_images or cfg.on_error == "skip",
                            in_chans=cfg.in_chans, num_samples=cfg.num_samples,
                            num_classes=cfg.num_classes, image_size=cfg.image_size)

    data = opener(split, cfg.subset)
    sample: torch.Tensor | None = None
    # statistics come from the train split: the opened one, or the whole train split
    if isinstance(data, ImageFolder):
        crop_size = aug.crop_size if (train and aug.crop_size) else cfg.crop_size
        if ((cfg.normalization is None and norm_kind != "none")
                or (train and aug.pca_std > 0 and pca is None)):
            ref = data if split == "train" else opener("train", None)
            sample = _stats_sample(ref, cfg.stats_samples, crop_size, cfg.eval_resize,
                                   cfg.data_seed)
        extra = dict(crop_size=crop_size, eval_resize=cfg.eval_resize)
    else:
        if cfg.normalization is None or (train and aug.pca_std > 0 and pca is None):
            sample = data.images if split == "train" else opener("train", None).images
        extra = {}
    if cfg.normalization is not None:
        norm = Normalizer.from_dict(cfg.normalization)
    else:
        norm = _normalizer(norm_kind, sample)  # sample is None only for kind "none"
    if pca is None and train and aug.pca_std > 0 and data.in_chans == 3:
        pca = pca_stats(sample)
    source = data if isinstance(data, ImageFolder) else _InMemory(data.images, data.labels)
    return BatchLoader(source, train=train, seed=seed, augment=aug, normalizer=norm,
                       num_classes=data.num_classes, classes=data.classes, pca=pca, name=kind,
                       **extra, **kw)
