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
many windows there are; only SPP + fc run per window. For SPP-net heads the SPP vectors of all
windows are read off a few stride-1 sliding maxima of the whole map (:func:`spp_all_windows`),
so no window is ever copied out; other heads get the windows gathered and batched.
``naive_window_scores`` is the reference that crops each view from the image and runs the
whole network on it.

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

from rectifiers.eval.common import Normalize, adaptive_bins, prepare, softmax_scores


def _require_dense_api(model: nn.Module, window: int | None = None) -> int:
    missing = [a for a in ("features", "head") + (("window",) if window is None else ())
               if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"dense testing needs a model with features(x), head(fmap) and window (an SPP "
            f"model such as prelunet_a or prelunet_small); {type(model).__name__} lacks "
            f"{', '.join(missing)}. Use --views center or ten_crop for this model."
        )
    window = int(model.window if window is None else window)
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


def spp_head_parts(model: nn.Module) -> tuple[tuple[int, ...], nn.Module] | None:
    """``(levels, classifier)`` when ``model.head`` is exactly ``classifier(SPP-max(fmap))``.

    Asked of the model (:meth:`rectifiers.models.spp_net.SPPNet.spp_classifier`); then every
    window's SPP vector can be read off a few stride-1 max-pools of the whole map
    (:func:`spp_all_windows`) instead of pooling each window separately. ``None`` for models
    without that method.
    """
    parts = getattr(model, "spp_classifier", None)
    return parts() if callable(parts) else None


def sliding_max(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """``out[i] = max(x[i : i + k])`` along ``dim`` (stride 1, length ``L - k + 1``).

    Doubling: after step t, ``m[i] = max(x[i : i + 2^t])``; a window of ``k <= 2p`` is the
    union of ``[i, i + p)`` and ``[i + k - p, i + k)``. About log2(k) elementwise maxima
    instead of k compares per output (``max_pool2d`` with a stride-1 k x 1 kernel).
    """
    if k == 1:
        return x
    m, p = x, 1
    while 2 * p <= k:
        n = m.shape[dim] - p
        m = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, p, n))
        p *= 2
    if p == k:
        return m
    n = x.shape[dim] - k + 1
    return torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, k - p, n))


def spp_all_windows(fmap: torch.Tensor, levels: Sequence[int], kh: int, kw: int) -> torch.Tensor:
    """SPP vectors of every ``kh x kw`` window (stride 1) of ``fmap``: (B, nH, nW, C*sum n^2).

    Bin ``(r0:r1, c0:c1)`` of the window at ``(i, j)`` is ``fmap[i+r0:i+r1, j+c0:j+c1]``, so
    its max over all windows is ``max_pool2d(fmap, (r1-r0, c1-c0), stride=1)`` read at
    ``(i+r0, j+c0)``: one (separable) pool per distinct bin size, no per-window copies.
    Equal (max is exact) to ``SPP(levels)`` applied to each window; layout as ``SPP``: per
    level (C, n, n).
    """
    b, c, h, w = fmap.shape
    nh, nw = h - kh + 1, w - kw + 1
    # Box max = row max then column max (separable), each a sliding max in O(log k) passes.
    rows: dict[int, torch.Tensor] = {}
    pooled: dict[tuple[int, int], torch.Tensor] = {}

    def box_max(kr: int, kc: int) -> torch.Tensor:
        if (kr, kc) not in pooled:
            if kr not in rows:
                rows[kr] = sliding_max(fmap, kr, 2)
            pooled[kr, kc] = sliding_max(rows[kr], kc, 3)
        return pooled[kr, kc]

    out = []
    for n in levels:
        cells = []
        for r0, r1 in adaptive_bins(kh, n):
            for c0, c1 in adaptive_bins(kw, n):
                cells.append(box_max(r1 - r0, c1 - c0)[:, :, r0 : r0 + nh, c0 : c0 + nw])
        out.append(torch.stack(cells, 2).reshape(b, c * n * n, nh, nw))
    return torch.cat(out, 1).permute(0, 2, 3, 1)


@torch.no_grad()
def score_windows_spp(
    levels: Sequence[int], classifier: nn.Module, fmap: torch.Tensor, window: int,
    window_batch: int = 512,
) -> torch.Tensor:
    """:func:`score_windows` for an SPP + classifier head, via :func:`spp_all_windows`."""
    b, c, h, w = fmap.shape
    kh, kw = min(window, h), min(window, w)
    per_image = (h - kh + 1) * (w - kw + 1)
    step = max(1, window_batch // per_image)  # images whose SPP vectors are held at once
    outs = []
    for i in range(0, b, step):
        f = fmap[i : i + step]
        feats = spp_all_windows(f, levels, kh, kw).reshape(f.shape[0] * per_image, -1)
        probs = torch.cat([softmax_scores(classifier(feats[j : j + window_batch]))
                           for j in range(0, feats.shape[0], window_batch)])
        outs.append(probs.view(f.shape[0], per_image, -1).mean(1))
    return torch.cat(outs)


@torch.no_grad()
def dense_scores(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[int],
    flip: bool = True,
    window_batch: int = 512,
    normalize: Normalize | None = None,
    fast_spp: bool = True,
    window: int | None = None,
) -> torch.Tensor:
    """The paper's dense (multi-scale) testing: softmax scores (B, K).

    ``score = mean_s mean_{f in {id, flip}} mean_{windows w of trunk(f(resize_s(x)))}
    softmax(head(w))`` -- the trunk runs once per scale (image and flip in one batch).
    With ``fast_spp`` and an SPP-net head, window SPP vectors come from stride-1 max-pools of
    the whole map (:func:`spp_all_windows`); otherwise each window goes through ``head``.
    ``window``: map side of one view; default ``model.window`` (the map of the model's default
    input); :func:`rectifiers.eval.views.default_view` passes the map side of the crop the
    checkpoint was trained at.
    """
    window = _require_dense_api(model, window)
    parts = spp_head_parts(model) if fast_spp else None
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(images.shape)}")
    b = images.shape[0]
    acc: torch.Tensor | None = None
    for s in scales:
        x = _resized_with_flip(images, int(s), flip, normalize)
        fmap = model.features(x)
        if parts is not None:
            p = score_windows_spp(parts[0], parts[1], fmap, window, window_batch)
        else:
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
