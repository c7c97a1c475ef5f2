"""Training augmentation settings: :class:`AugmentConfig` and the named presets.

The ops themselves live in :mod:`rectifiers.data.transforms`; the loader draws their random
parameters per global batch (:class:`rectifiers.data.BatchLoader`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from rectifiers.errors import ConfigError

__all__ = ["AUGMENT_PRESETS", "AugmentConfig", "resolve_augment"]


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
            raise ConfigError(f"augment pad must be >= 0, got {self.pad}")
        if self.pad_mode not in ("reflect", "zeros"):
            raise ConfigError(f"augment pad_mode must be 'reflect' or 'zeros', "
                             f"got {self.pad_mode!r}")
        if self.scale_range is not None:
            lo, hi = self.scale_range
            if not 1 <= lo <= hi:
                raise ConfigError(f"augment scale_range must be (lo, hi) with 1 <= lo <= hi, "
                                 f"got {self.scale_range}")
            if self.crop_size is not None and lo < self.crop_size:
                raise ConfigError(f"augment scale_range lower end {lo} is smaller than the crop "
                                 f"{self.crop_size}; every rescaled image must contain the crop")
        if self.pca_std < 0:
            raise ConfigError(f"augment pca_std must be >= 0, got {self.pca_std}")


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


def resolve_augment(augment: Any, kind: str) -> AugmentConfig:
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        d = dict(augment)
        if d.get("scale_range") is not None:
            d["scale_range"] = tuple(d["scale_range"])
        names = {f.name for f in fields(AugmentConfig)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown augment option(s) {sorted(unknown)}; "
                              f"valid: {sorted(names)}")
        return AugmentConfig(**d)
    if augment is None or augment is False:
        return AUGMENT_PRESETS["none"]
    if augment == "default":
        return AUGMENT_PRESETS["paper" if kind == "folder" else "pad_crop_flip"]
    if augment in AUGMENT_PRESETS:
        return AUGMENT_PRESETS[augment]
    raise ConfigError(f"unknown augment {augment!r}; use one of {sorted(AUGMENT_PRESETS)}, "
                     f"'default', an AugmentConfig or a dict of its fields")
