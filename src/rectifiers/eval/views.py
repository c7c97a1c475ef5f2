"""Test-time views (paper Sec. 3 / 4.3 and SPP-net): centre crop, 10-view, dense multi-scale.

Pipeline per view, as in training: raw image (uint8 or float in 0..255 units) -> float ->
resize the shorter side to ``s`` (bilinear, antialiased when shrinking; see
:func:`rectifiers.data.transforms.resize_shorter`) -> crop -> ``normalize`` (the checkpoint's
:class:`~rectifiers.data.transforms.Normalizer`, applied last so a per-pixel mean image is
resized to the input it is subtracted from) -> model. ``normalize=None`` feeds the model the
geometric views unchanged (inputs already normalised, e.g. in tests).

View modes (``ViewSpec.mode``):

* ``center``: resize the shorter side to ``s``, take the central ``crop x crop`` box.
* ``ten_crop``: AlexNet's 10 views: 4 corner boxes + the centre box, and the same 5 boxes of
  the horizontally flipped image (Tables 2 and 5; the paper uses ``s = 256`` for 224 crops).
* ``dense``: the paper's "multi-view testing on feature maps" (see :mod:`rectifiers.eval.dense`).

For each mode the softmax scores of all views of one scale are averaged, then the scales are
averaged with equal weight (SPP-net's multi-scale combination).

Default scales (``default_scales``), from the model's training crop ``c``:

* paper models (``c = 224``): centre and 10-view at ``s = 256``, dense at {256, 384, 480};
* small models (e.g. ``c = 28``, Fashion-MNIST): the default training (pad-and-crop + flip)
  sees the native 28x28 frame, and the ``scale_jitter_small`` preset jitters the shorter side
  in [28, 36], the analogue of the paper's [256, 512]. The paper's test scales lie inside its
  jitter range, so the defaults do too: centre at ``s = c`` (the whole image), 10-view at
  ``s = round(8c/7)`` (the paper's 256/224 ratio: 32) and dense at
  ``{c, round(8c/7), round(9c/7)}`` = {28, 32, 36}. Up-scaling by the paper's 480/224 = 2.1
  would leave the training distribution. Override with ``--scales``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rectifiers.data.transforms import Box, center_crop_box, five_crop_boxes
from rectifiers.data.transforms import crop as crop_box
from rectifiers.errors import ConfigError
from rectifiers.eval.common import Normalize, prepare, softmax_scores
from rectifiers.eval.dense import dense_scores

MODES = ("center", "ten_crop", "dense")
PAPER_CROP = 224
PAPER_TEN_CROP_SCALE = 256
PAPER_DENSE_SCALES = (256, 384, 480)


def ten_crop_boxes(h: int, w: int, crop: int) -> list[tuple[Box, bool]]:
    """AlexNet's 10 views as ``(box, flipped)``: TL, TR, BL, BR, centre, then the same flipped.

    Boxes are ``(top, left, height, width)`` in the (resized) image. A flipped view is the box
    cut from the horizontally flipped image: flipping maps column ``x`` to ``w - 1 - x``, so the
    flipped top-left view shows the original top-right corner, mirrored.
    """
    boxes = five_crop_boxes(h, w, crop)
    return [(b, False) for b in boxes] + [(b, True) for b in boxes]


def ten_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """The 10 views of a (B, C, H, W) batch stacked as (10, B, C, crop, crop)."""
    h, w = x.shape[-2:]
    flipped = x.flip(-1)
    return torch.stack([crop_box(flipped if f else x, b) for b, f in ten_crop_boxes(h, w, crop)])


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` box (offsets rounded as torchvision)."""
    h, w = x.shape[-2:]
    return crop_box(x, center_crop_box(h, w, size))


@dataclass(frozen=True)
class ViewSpec:
    """How to look at each test image.

    Args:
        mode: ``center``, ``ten_crop`` or ``dense``.
        crop: side of a view in pixels (centre / 10-view); ignored by ``dense``, whose view is
            the model's ``window`` on the feature map.
        scales: shorter sides to resize to; scores are averaged over them.
        flip: dense only: also score the horizontally flipped image (the paper does).
        window_batch: dense only: windows scored per head call (bounds memory, not results).
    """

    mode: str = "center"
    crop: int = PAPER_CROP
    scales: tuple[int, ...] = (PAPER_TEN_CROP_SCALE,)
    flip: bool = True
    window_batch: int = 512
    window: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"view mode (--views) must be one of {', '.join(MODES)}, "
                              f"got {self.mode!r}")
        if self.crop < 1:
            raise ConfigError(f"the view side (--crop) must be >= 1, got {self.crop}")
        if not self.scales or any(int(s) < 1 for s in self.scales):
            raise ConfigError(f"scales (--scales) must be positive shorter sides, "
                              f"got {tuple(self.scales)}")
        if self.mode != "dense" and any(int(s) < self.crop for s in self.scales):
            raise ConfigError(
                f"every scale (--scales) must be >= the crop {self.crop} (--crop) for views "
                f"{self.mode!r}, got scales {tuple(self.scales)}"
            )
        if self.window_batch < 1:
            raise ConfigError(f"--window-batch must be >= 1, got {self.window_batch}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"the dense window must be >= 1, got {self.window}")


def model_crop(model: nn.Module, meta: dict[str, Any] | None = None) -> int:
    """The training crop side: the checkpoint's ``image_size`` (what training fed the model),
    else the model's ``default_input_size``, else 224.

    The checkpoint comes first: a small model trained on a 224-px image folder is tested at
    224, not at its class default of 28.
    """
    size = (meta or {}).get("image_size")
    if size:
        return int(size[-1] if isinstance(size, (list, tuple)) else size)
    size = getattr(model, "default_input_size", None)
    return int(size[-1]) if size else PAPER_CROP


def dense_window(model: nn.Module, crop: int) -> int | None:
    """Side of the feature-map window that corresponds to a ``crop x crop`` view, from the
    model's shape arithmetic (``feature_size``); ``None``: use ``model.window``."""
    feature_size = getattr(model, "feature_size", None)
    if not callable(feature_size):
        return None
    try:
        return int(min(feature_size((crop, crop))))
    except (RuntimeError, ValueError):
        return None  # too small for the trunk: check_view_fits reports it


def check_view_fits(model: nn.Module, in_chans: int, side: int, flag: str,
                    trained_at: int | None = None) -> None:
    """Raise :class:`ConfigError` (naming ``flag``) if a ``side x side`` input is too small
    for the model's trunk (convolutions/pools with no output, SPP levels larger than the map).
    """
    spp = getattr(model, "spp", None)
    levels = max(getattr(spp, "levels", (1,))) if getattr(spp, "rule", "") == "sppnet" else 1
    try:
        feature_size = getattr(model, "feature_size", None)
        if callable(feature_size):
            h, w = feature_size((side, side))
        else:
            p = next(model.parameters(), None)
            with torch.no_grad():
                h, w = 1, 1
                model(torch.zeros(1, in_chans, side, side,
                                  device=p.device if p is not None else "cpu",
                                  dtype=p.dtype if p is not None else torch.float32))
        ok = min(h, w) >= levels
        why = f"its last feature map would be {h}x{w}"
    except (RuntimeError, ValueError) as e:
        ok, why = False, str(e).splitlines()[0][:160]
    if not ok:
        hint = f" (it was trained at {trained_at})" if trained_at else ""
        raise ConfigError(f"{flag} {side} is too small for {type(model).__name__}{hint}: {why}. "
                          f"Use a larger {flag}.")


def default_scales(mode: str, crop: int) -> tuple[int, ...]:
    """Default shorter sides for a view mode and training crop (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"view mode must be one of {', '.join(MODES)}, got {mode!r}")
    if crop >= PAPER_CROP:
        r = crop / PAPER_CROP
        if mode == "dense":
            return tuple(round(s * r) for s in PAPER_DENSE_SCALES)
        return (round(PAPER_TEN_CROP_SCALE * r),)
    if mode == "center":
        return (crop,)
    if mode == "ten_crop":
        return (round(crop * 8 / 7),)
    return tuple(sorted({crop, round(crop * 8 / 7), round(crop * 9 / 7)}))


def default_view(model: nn.Module, mode: str = "center", meta: dict[str, Any] | None = None,
                 **overrides: Any) -> ViewSpec:
    """A ``ViewSpec`` with the defaults for ``model`` trained as ``meta`` (a checkpoint's
    metadata) says: its training crop, the centre view at its evaluation resize
    (``eval_resize``, e.g. 256 for 224 crops), else :func:`default_scales`; the dense window
    is the feature-map side of a training-crop view."""
    crop = int(overrides.pop("crop", None) or model_crop(model, meta))
    scales = overrides.pop("scales", None)
    if not scales:
        resize = (meta or {}).get("eval_resize")
        scales = (int(resize),) if mode == "center" and resize else default_scales(mode, crop)
    window = overrides.pop("window", None) or dense_window(model, crop)
    return ViewSpec(mode=mode, crop=crop, scales=tuple(int(s) for s in scales), window=window,
                    **overrides)


def _probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return softmax_scores(model(x))


@torch.no_grad()
def center_scores(model: nn.Module, x: torch.Tensor, crop: int, scale: int,
                  normalize: Normalize | None = None) -> torch.Tensor:
    """Softmax scores (B, K) of the centre crop at one scale."""
    v = center_crop(prepare(x, scale), crop)
    return _probs(model, normalize(v) if normalize is not None else v)


@torch.no_grad()
def ten_crop_scores(model: nn.Module, x: torch.Tensor, crop: int, scale: int,
                    normalize: Normalize | None = None) -> torch.Tensor:
    """Softmax scores (B, K) averaged over the 10 views at one scale (one forward pass)."""
    views = ten_crop(prepare(x, scale), crop)  # (10, B, C, crop, crop)
    b = x.shape[0]
    v = views.reshape(10 * b, *views.shape[2:])
    p = _probs(model, normalize(v) if normalize is not None else v)
    return p.view(10, b, -1).mean(0)


def _as_groups(
    images: torch.Tensor | Sequence[torch.Tensor],
) -> list[tuple[list[int], torch.Tensor]]:
    """Group images by shape so each group is one batch: [(indices, (b, C, H, W))]."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
        return [(list(range(images.shape[0])), images)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        if im.ndim != 3:
            raise ValueError(f"image {i} must be (C, H, W), got shape {tuple(im.shape)}")
        groups.setdefault(tuple(im.shape), []).append(i)
    return [(idx, torch.stack([images[i] for i in idx])) for idx in groups.values()]


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    view: ViewSpec,
    normalize: Normalize | None = None,
) -> torch.Tensor:
    """Softmax scores (B, K) of ``images`` under ``view``, averaged over views and scales.

    ``images`` is a (B, C, H, W) batch or a list of (C, H, W) images of different sizes (an
    ImageNet-layout folder); images of equal size are evaluated together.
    """
    out: torch.Tensor | None = None
    n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
    for idx, x in _as_groups(images):
        acc = None
        for s in view.scales:
            if view.mode == "center":
                p = center_scores(model, x, view.crop, int(s), normalize)
            elif view.mode == "ten_crop":
                p = ten_crop_scores(model, x, view.crop, int(s), normalize)
            else:
                p = dense_scores(model, x, scales=(int(s),), flip=view.flip,
                                 window_batch=view.window_batch, normalize=normalize,
                                 window=view.window)
            acc = p if acc is None else acc + p
        p = acc / len(view.scales)
        if out is None:
            out = p.new_zeros(n, p.shape[1])
        out[idx] = p
    assert out is not None
    return out
