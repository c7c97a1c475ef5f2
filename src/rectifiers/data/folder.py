"""A user's image folder in the ImageNet layout, decoded with Pillow.

Layout::

    root/train/<class>/<image>.jpg|.jpeg|.png|.bmp|.webp|...
    root/val/<class>/<image>...

The class index is the position of the class folder name in the sorted list, identical
for both splits; a class present in one split but not in the other, an empty class
folder, or a missing split folder is a :class:`~rectifiers.data.idx.DatasetError` that
says what to fix. Decoding uses Pillow's ``Image.draft`` so a JPEG that will be resized
to a shorter side of ``s`` is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still
has a shorter side ``>= s`` - several times faster for ImageNet-sized photos.

A corrupt or unreadable image (truncated, zero bytes, not an image, unreadable), or a
broken or self-looping symbolic link, raises ``DatasetError`` naming its path and the fix
when ``on_error="raise"`` (default). With ``on_error="skip"`` (``skip_bad_images=True`` in
:func:`rectifiers.data.open_dataset`, ``--skip-bad-images`` on the command line) a broken
link is left out of the listing and recorded in :attr:`ImageFolder.bad_paths`, and
:meth:`ImageFolder.load` returns ``None`` for an undecodable file; the loader drops the
sample, counts it and can write the list of skipped paths
(:meth:`rectifiers.data.BatchLoader.write_skipped`).

16-bit images (PNG/TIFF modes ``I;16`` and ``I``) are scaled to 8 bits
(``round(v * 255 / 65535)``), not clipped: Pillow's ``convert`` would turn them into 0/255
masks.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

try:  # Pillow is the optional extra "images"; without it folders cannot be read at all
    from PIL import Image
except ImportError:  # pragma: no cover - depends on the install
    Image = None  # type: ignore[assignment]

from rectifiers.data.idx import DatasetError, DatasetNotFoundError
from rectifiers.data.transforms import (
    apply_crop_fractions,
    center_crop_box,
    crop,
    resize_shorter,
)

__all__ = ["IMG_EXTENSIONS", "ImageFolder"]

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif",
                                   ".tiff", ".webp", ".gif")


_SKIP_HINT = ("or pass --skip-bad-images (skip_bad_images=True) to skip unreadable images; the "
              "skipped paths are then listed in the run's output directory")


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except OSError as e:
        raise DatasetError(f"{path}: cannot list the folder ({e.strerror or e}). Check the path "
                           f"and its permissions.") from e


def _broken_link(entry: os.DirEntry) -> str | None:
    """Why a symbolic link cannot be followed ('self-looping', 'broken'), or None if fine."""
    if not entry.is_symlink():
        return None
    try:
        os.stat(entry.path)
    except OSError as e:
        return "self-looping" if e.errno == errno.ELOOP else "broken"
    return None


def _class_dirs(split_dir: Path) -> list[str]:
    entries = _scandir(split_dir)
    for e in entries:
        why = _broken_link(e)
        if why and not e.name.startswith("."):
            raise DatasetError(f"{e.path}: {why} symbolic link where a class folder is expected. "
                               f"Remove the link or point it at a real folder.")
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _to_array(im: Image.Image, mode: str) -> np.ndarray:
    """Decoded pixels as uint8 ``(H, W)`` (``mode="L"``) or ``(H, W, 3)`` (``"RGB"``)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        v = np.asarray(im).astype(np.int64)
        gray = ((np.clip(v, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return gray if mode == "L" else np.repeat(gray[..., None], 3, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. palette-with-transparency notices
        return np.asarray(im.convert(mode))


class ImageFolder:
    """Images of one split of an ImageNet-layout folder.

    Args:
        root: the folder holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"`` (any sub-folder name works).
        extensions: accepted file suffixes (case-insensitive).
        on_error: ``"raise"`` (fail on the first unreadable image, naming it) or ``"skip"``
            (drop it; the loader counts and logs the skipped paths).
        in_chans: 3 decodes as RGB, 1 as grayscale ("L").
        check_splits: if the sibling split (train <-> val) exists, require the same classes.

    Attributes: ``classes`` (sorted names), ``class_to_idx``, ``samples`` (list of
    ``(path, class_index)``), ``labels`` (int64 tensor), ``num_classes``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *,
                 extensions: tuple[str, ...] = IMG_EXTENSIONS, on_error: str = "raise",
                 in_chans: int = 3, check_splits: bool = True) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        if Image is None:
            raise DatasetError("reading an image folder needs Pillow; install it with "
                               "`pip install 'rectifiers[images]'` (or `pip install pillow`).")
        self.root = Path(root)
        self.split = split
        self.on_error = on_error
        self.in_chans = in_chans
        self.bad_paths: list[str] = []  # broken links left out of the listing (on_error="skip")
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise DatasetNotFoundError(
                f"{split_dir}: split folder not found. An image folder dataset needs the "
                f"ImageNet layout {self.root}/train/<class>/*.jpg and "
                f"{self.root}/val/<class>/*.jpg; fix the path (--data-dir) or create the folder."
            )
        classes = _class_dirs(split_dir)
        if not classes:
            raise DatasetError(f"{split_dir}: no class sub-folders; expected {split_dir}/<class>/"
                               f"<image>. Put each class's images in its own folder.")
        other = {"train": "val", "val": "train"}.get(split)
        if check_splits and other and (self.root / other).is_dir():
            other_classes = _class_dirs(self.root / other)
            if other_classes != classes:
                only_here = sorted(set(classes) - set(other_classes))
                only_there = sorted(set(other_classes) - set(classes))
                raise DatasetError(
                    f"{self.root}: train and val class folders differ (class indices would not "
                    f"match): only in {split}/: {only_here[:10]}, only in {other}/: "
                    f"{only_there[:10]}. Make both splits contain the same class folders."
                )
        exts = tuple(e.lower() for e in extensions)
        samples: list[tuple[str, int]] = []
        for k, name in enumerate(classes):
            files = []
            for e in _scandir(split_dir / name):
                if not e.name.lower().endswith(exts):
                    continue
                why = _broken_link(e)
                if why:
                    if on_error == "skip":
                        self.bad_paths.append(e.path)
                        continue
                    raise DatasetError(f"{e.path}: {why} symbolic link. Remove it or fix its "
                                       f"target, {_SKIP_HINT}.")
                if e.is_file():
                    files.append(e.path)
            if not files:
                raise DatasetError(
                    f"{split_dir / name}: empty class folder (no readable files with extensions "
                    f"{', '.join(exts)}). Add images or remove the folder from both splits."
                )
            samples.extend((f, k) for f in sorted(files))
        self.bad_paths.sort()
        self.classes = tuple(classes)
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples = samples
        self.labels = torch.tensor([k for _, k in samples], dtype=torch.int64)

    def select(self, indices: Sequence[int] | torch.Tensor) -> ImageFolder:
        """A view of the samples at ``indices`` (same classes and class indices)."""
        idx = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor)
                                else indices)]
        sub = object.__new__(ImageFolder)
        sub.__dict__.update(self.__dict__)
        sub.samples = [self.samples[i] for i in idx]
        sub.labels = self.labels[torch.as_tensor(idx, dtype=torch.int64)]
        return sub

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.num_classes})")

    def load(self, index: int, shorter_side: int | None = None) -> torch.Tensor | None:
        """Decode image ``index`` to uint8 ``(C, H, W)``.

        With ``shorter_side`` the JPEG decoder may downscale (``Image.draft``) to any size
        whose shorter side is still ``>= shorter_side``; the caller resizes exactly.
        Returns ``None`` for an unreadable image when ``on_error="skip"``.
        """
        path = self.samples[index][0]
        mode = "RGB" if self.in_chans == 3 else "L"
        try:
            with Image.open(path) as im:
                if shorter_side is not None:
                    im.draft(mode, (shorter_side, shorter_side))
                arr = _to_array(im, mode)
        except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError)
            if self.on_error == "skip":
                return None
            what = "empty file (0 bytes)" if _size(path) == 0 else "cannot decode image"
            raise DatasetError(
                f"{path}: {what} ({type(e).__name__}: {e}). Remove or replace the file, "
                f"{_SKIP_HINT} (on_error='skip')."
            ) from e
        t = torch.from_numpy(arr.copy())
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()

    def load_view(self, index: int, *, resize: int, crop_size: int,
                  fraction: torch.Tensor | None = None, flip: bool = False) -> torch.Tensor | None:
        """Decode, resize the shorter side to ``resize``, crop ``crop_size`` and maybe flip.

        ``fraction``: ``(2,)`` crop position in [0,1) (see
        :func:`~rectifiers.data.transforms.apply_crop_fractions`); ``None`` = centre crop.
        """
        img = self.load(index, shorter_side=resize)
        if img is None:
            return None
        img = resize_shorter(img, resize)
        h, w = img.shape[-2:]
        if fraction is None:
            box = center_crop_box(h, w, crop_size)
        else:
            off = apply_crop_fractions(fraction.view(1, 2), h, w, crop_size, crop_size)[0]
            box = (int(off[0]), int(off[1]), crop_size, crop_size)
        img = crop(img, box)
        return img.flip(-1) if flip else img.contiguous()
