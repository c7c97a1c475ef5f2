"""Dense multi-scale testing on feature maps (paper Sec. 3 "Testing", after SPP-net/OverFeat).

Per scale s:

1. resize the whole image so its shorter side is s;
2. run the convolutional trunk ``model.features`` ONCE on it (and once on its horizontal flip;
   both go through the trunk in one batch);
3. take every ``window x window`` window of the last feature map at stride 1 (``window`` = the
   map side for the training crop, 14 for models A/B/C at 224: a window "corresponds to a
   224x224 view");
4. pool each window with the SPP head and score it with the fc layers (``model.head``), many
   windows per call;
5. average the softmax scores over all windows of the image and of its flip.

Multi-scale: average the per-scale scores over the scales (paper: 256, 384, 480).

When a map side is smaller than ``window`` (an image smaller than the training crop), the
whole extent of that side is used as one window: SPP accepts any map size.

Cost: the trunk, which holds nearly all the conv FLOPs, runs once per scale and flip however
many windows there are; only SPP + fc run per window. ``naive_window_scores`` is the reference
that crops each view from the image and runs the whole network on it.

When the two are equal. A map window at (i, j) and the image crop at (i*S, j*S) of the matching
size (S = the trunk's total stride) give the same trunk output exactly when the trunk is
translation-equivariant at stride S over that crop: no zero padding (padding is applied at the
crop's border, where the full image has real pixels) and every pooling/stride aligned (offsets
multiples of S). For such a trunk the two agree to float rounding; for padded trunks (the
paper's models) they differ near crop borders and dense testing is the paper's cheaper
approximation of per-view testing, not an identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rectifiers.eval.views import Normalize, prepare, softmax_scores


def _require_dense_api(model: nn.Module) -> int:
    missing = [a for a in ("features", "head", "window") if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"dense testing needs a model with features(x), head(fmap) and window (an SPP "
            f"model such as prelunet_a or prelunet_small); {type(model).__name__} lacks "
            f"{', '.join(missing)}. Use --views center or ten_crop for this model."
        )
    window = int(model.window)
    if window < 1:
        raise ValueError(f"model.window must be >= 1, got {window}")
    return window


def _resized_with_flip(images: torch.Tensor, scale: int, flip: bool,
                       normalize: Normalize | None) -> torch.Tensor:
    """Resized images, then (if ``flip``) their mirror images, normalised last.

    Flipping before normalising matches training (flip augmentation acts on raw pixels), which
    matters for a per-pixel mean image, whose left and right halves differ.
    """
    x = prepare(images, scale)
    if flip:
        x = torch.cat([x, x.flip(-1)])
    return normalize(x) if normalize is not None else x


def window_starts(size: int, window: int) -> range:
    """Top/left offsets of the stride-1 windows along a map side (one window if it is small)."""
    return range(max(size - window, 0) + 1)


@torch.no_grad()
def score_windows(
    head: nn.Module, fmap: torch.Tensor, window: int, window_batch: int = 512
) -> torch.Tensor:
    """Mean softmax score (B, K) over all ``window x window`` windows (stride 1) of ``fmap``.

    ``fmap`` is (B, C, H, W); windows are gathered one window-row at a time and scored in
    chunks of about ``window_batch`` windows, so memory is bounded whatever the map size.
    """
    b, c, h, w = fmap.shape
    kh, kw = min(window, h), min(window, w)
    rows = window_starts(h, kh)
    n_w = w - kw + 1
    if b > 1 and b * n_w > window_batch:  # one window-row of all images is already too many
        step = max(1, window_batch // n_w)
        return torch.cat([score_windows(head, fmap[i : i + step], window, window_batch)
                          for i in range(0, b, step)])
    total: torch.Tensor | None = None
    # several window-rows per head call, about window_batch windows in total
    rows_per_call = max(1, window_batch // max(1, b * n_w))
    starts = list(rows)
    for r0 in range(0, len(starts), rows_per_call):
        chunk = []
        for i in starts[r0 : r0 + rows_per_call]:
            band = fmap[:, :, i : i + kh, :]  # (B, C, kh, W)
            win = band.unfold(3, kw, 1)  # (B, C, kh, n_w, kw)
            chunk.append(win.permute(0, 3, 1, 2, 4))  # (B, n_w, C, kh, kw)
        x = torch.cat(chunk, 1)  # (B, rows*n_w, C, kh, kw)
        n = x.shape[1]
        p = softmax_scores(head(x.reshape(b * n, c, kh, kw)))
        s = p.view(b, n, -1).sum(1)
        total = s if total is None else total + s
    assert total is not None
    return total / (len(starts) * n_w)


@torch.no_grad()
def dense_scores(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[int],
    flip: bool = True,
    window_batch: int = 512,
    normalize: Normalize | None = None,
) -> torch.Tensor:
    """The paper's dense (multi-scale) testing: softmax scores (B, K).

    ``score = mean_s mean_{f in {id, flip}} mean_{windows w of trunk(f(resize_s(x)))}
    softmax(head(w))`` -- the trunk runs once per scale (image and flip in one batch).
    """
    window = _require_dense_api(model)
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    b = images.shape[0]
    acc: torch.Tensor | None = None
    for s in scales:
        x = _resized_with_flip(images, int(s), flip, normalize)
        fmap = model.features(x)
        p = score_windows(model.head, fmap, window, window_batch)
        if flip:
            # both halves have the same number of windows: a plain mean is the paper's average
            p = (p[:b] + p[b:]) / 2
        acc = p if acc is None else acc + p
    assert acc is not None
    return acc / len(scales)


@torch.no_grad()
def naive_window_scores(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[int],
    crop: int,
    stride: int,
    flip: bool = True,
    batch: int = 64,
    normalize: Normalize | None = None,
) -> torch.Tensor:
    """Reference for :func:`dense_scores`: crop every view from the image, run the whole net.

    For each scale (and the flipped image) the views are the ``crop x crop`` boxes at offsets
    ``(i * stride, j * stride)`` for every window position (i, j) of the trunk's map, so there
    is one view per dense window; each view goes through ``model(view)`` on its own
    (``batch`` views per call). Costs one trunk pass per view.
    """
    window = _require_dense_api(model)
    b = images.shape[0]
    acc: torch.Tensor | None = None
    for s in scales:
        x = _resized_with_flip(images, int(s), flip, normalize)
        # positions from the trunk's map size (computed on one image only: shape inference)
        mh, mw = model.features(x[:1]).shape[-2:]
        kh, kw = min(window, mh), min(window, mw)
        offs = [(i * stride, j * stride) for i in window_starts(mh, kh)
                for j in window_starts(mw, kw)]
        ch = crop if kh == window else x.shape[-2]
        cw = crop if kw == window else x.shape[-1]
        total = None
        step = max(1, batch // x.shape[0])  # views of all images at `step` offsets per call
        for k in range(0, len(offs), step):
            part = offs[k : k + step]
            views = torch.cat([x[:, :, t : t + ch, l : l + cw] for t, l in part])
            if views.shape[-2:] != (ch, cw):
                raise ValueError(
                    f"view of {ch}x{cw} at stride {stride} leaves the {tuple(x.shape[-2:])} "
                    "image; crop/stride do not match the model's trunk"
                )
            p = softmax_scores(model(views))
            s_ = p.view(len(part), x.shape[0], -1).sum(0)
            total = s_ if total is None else total + s_
        assert total is not None
        p = total / len(offs)
        if flip:
            p = (p[:b] + p[b:]) / 2
        acc = p if acc is None else acc + p
    assert acc is not None
    return acc / len(scales)
