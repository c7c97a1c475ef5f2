"""A deterministic, learnable synthetic image dataset for tests and benchmarks.

Each class ``k`` owns a smooth random template ``T_k`` (low-frequency noise, upsampled).
A sample of class ``k`` is::

    x = clip(128 + 64 * c * roll(T_k, dy, dx) + sigma * eps, 0, 255)    (uint8)

with a random contrast ``c ~ U[0.7, 1.3]``, a random circular shift ``|dy|, |dx| <= 2``
and pixel noise ``eps ~ N(0, 1)``, ``sigma = 24``. The templates depend only on
``(seed, num_classes, image_size, in_chans)``, so ``split="train"`` and ``split="val"``
share classes but not samples; a tiny conv net separates the classes in a few hundred
steps, which is what tests of training loops need.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SyntheticDataset"]

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _generator(*key: int) -> torch.Generator:
    # SeedSequence mixes the key into a well-distributed 63-bit seed.
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(seed)


class SyntheticDataset:
    """Deterministic class-pattern images, held in memory as uint8 tensors.

    Args:
        num_samples: number of images.
        num_classes: number of classes (labels cycle ``0..K-1`` after a seeded shuffle,
            so class counts are balanced to within one).
        image_size: side of the square images.
        in_chans: channels.
        seed: all content is a function of the seed.
        split: ``"train"``, ``"val"`` or ``"test"``; same templates, different samples.

    Attributes: ``images`` uint8 ``(N, C, S, S)``, ``labels`` int64 ``(N,)``, ``num_classes``.
    """

    def __init__(
        self,
        num_samples: int = 1024,
        num_classes: int = 10,
        image_size: int = 32,
        in_chans: int = 3,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if num_samples < 1 or num_classes < 1 or image_size < 4 or in_chans < 1:
            raise ValueError(
                f"SyntheticDataset needs num_samples>=1, num_classes>=1, image_size>=4, "
                f"in_chans>=1; got {num_samples}, {num_classes}, {image_size}, {in_chans}"
            )
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.in_chans = in_chans
        self.seed = seed
        self.split = split
        self.classes = tuple(f"class_{k}" for k in range(num_classes))

        g = _generator(seed, num_classes, image_size, in_chans, 0xC1A55)
        low = max(2, image_size // 6)
        t = torch.randn(num_classes, in_chans, low, low, generator=g)
        t = F.interpolate(t, size=(image_size, image_size), mode="bicubic", align_corners=False)
        t = t / t.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        self.templates = t

        g = _generator(seed, num_samples, _SPLIT_IDS[split], 0x5A3)
        labels = torch.arange(num_samples) % num_classes
        labels = labels[torch.randperm(num_samples, generator=g)]
        contrast = torch.empty(num_samples).uniform_(0.7, 1.3, generator=g)
        shifts = torch.randint(-2, 3, (num_samples, 2), generator=g)
        images = torch.empty(num_samples, in_chans, image_size, image_size, dtype=torch.uint8)
        ar = torch.arange(image_size)
        ch = torch.arange(in_chans).view(1, -1, 1, 1)
        for lo in range(0, num_samples, 4096):  # chunked to bound the float32 working set
            sl = slice(lo, min(lo + 4096, num_samples))
            n = sl.stop - sl.start
            # circular shift by (dy, dx) as a gather: x[h, w] = T[(h - dy) % S, (w - dx) % S]
            rows = (ar.view(1, -1) - shifts[sl, :1]) % image_size
            cols = (ar.view(1, -1) - shifts[sl, 1:]) % image_size
            x = t[labels[sl].view(-1, 1, 1, 1), ch, rows.view(n, 1, -1, 1), cols.view(n, 1, 1, -1)]
            noise = torch.randn(n, in_chans, image_size, image_size, generator=g)
            x = 128 + 64 * contrast[sl].view(-1, 1, 1, 1) * x + 24 * noise
            images[sl] = x.round_().clamp_(0, 255).to(torch.uint8)
        self.images = images
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        return (f"SyntheticDataset(n={len(self)}, classes={self.num_classes}, "
                f"size={self.image_size}, chans={self.in_chans}, split={self.split!r})")
