"""Image transforms on tensors, applied to whole batches (torchvision is not a dependency).

Conventions: images are ``(C, H, W)`` or ``(N, C, H, W)`` tensors, uint8 in ``[0, 255]``
until :class:`Normalizer` turns them into float32 model inputs. A crop *box* is
``(top, left, height, width)``. Every random function takes an explicit
``torch.Generator``; per-sample random parameters are drawn separately from their
application (``sample_*`` vs. apply) so a loader can draw them for a whole global
batch and hand each DDP rank its slice - the augmentation a sample receives does not
depend on how the batch is sharded.

What is guaranteed, bit for bit: the augmented (and normalised) image of a sample is a
function of the sample and its drawn parameters only - the same in a batch of 1 or 512, on
any DDP rank, at any thread count, on a given machine (CPU kind and torch build). Every op
here is a gather/index (exact), elementwise arithmetic (one IEEE rounding per op, identical
in vector and scalar code paths), or a call on that one sample alone (the resize in
:func:`scale_jitter`); none is a matmul or a reduction over the batch dimension, whose
blocking can change with the batch size. Across CPU kinds only the exact ops (crops, flips,
padding, uint8 gathers) are guaranteed identical; float results (resize, colour noise,
normalisation) may differ in the last bits.

Paper recipe (He et al. 2015, Sec. 3, following VGG/AlexNet): resize so the shorter side
is ``s ~ U[256, 512]`` (scale jitter), take a random 224x224 crop, flip half of the
images horizontally, add AlexNet PCA colour noise, subtract the per-pixel mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Normalizer",
    "apply_crop_fractions",
    "batch_crop",
    "center_crop_box",
    "channel_stats",
    "crop",
    "five_crop_boxes",
    "flip_where",
    "pad",
    "pca_lighting",
    "pca_stats",
    "resize_shorter",
    "sample_crop_fractions",
    "sample_flips",
    "sample_pca_alphas",
    "sample_scales",
    "scale_jitter",
    "shorter_side_size",
]

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- geometry
def shorter_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Output ``(H', W')`` when resizing so the shorter side is ``size`` (aspect kept)."""
    if h <= w:
        return size, max(1, round(w * size / h))
    return max(1, round(h * size / w)), size


def resize_shorter(x: torch.Tensor, size: int, *, antialias: bool = True) -> torch.Tensor:
    """Resize ``x`` (``(C,H,W)`` or ``(N,C,H,W)``) so its shorter side equals ``size``.

    Bilinear, with antialiasing when downscaling (as PIL / torchvision do), so a
    512 -> 256 resize does not alias. uint8 input gives uint8 output (rounded, clamped);
    float input stays float. A no-op if the shorter side already equals ``size``.
    """
    if size < 1:
        raise ValueError(f"resize_shorter: size must be >= 1, got {size}")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"resize_shorter expects (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    oh, ow = shorter_side_size(h, w, size)
    if (oh, ow) != (h, w):
        dtype = x.dtype
        y = F.interpolate(x.float(), size=(oh, ow), mode="bilinear", align_corners=False,
                          antialias=antialias and (oh < h or ow < w))
        x = y.round_().clamp_(0, 255).to(dtype) if dtype == torch.uint8 else y.to(dtype)
    return x.squeeze(0) if squeeze else x


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop ``x[..., top:top+height, left:left+width]`` (a view), checking the box fits."""
    top, left, height, width = (int(v) for v in box)
    h, w = x.shape[-2:]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(f"crop box {box} (top, left, height, width) does not fit an image of "
                         f"size {h}x{w}")
    return x[..., top:top + height, left:left + width]


def center_crop_box(h: int, w: int, size: int | tuple[int, int]) -> Box:
    """Box of a ``size`` crop centred in an ``h x w`` image (offsets rounded as torchvision)."""
    ch, cw = (size, size) if isinstance(size, int) else size
    if ch > h or cw > w:
        raise ValueError(f"center crop {ch}x{cw} is larger than the image {h}x{w}")
    return (int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)


def five_crop_boxes(h: int, w: int, size: int) -> list[Box]:
    """The AlexNet views: top-left, top-right, bottom-left, bottom-right, centre.

    With their horizontal flips these are the paper's "10-view" test (Sec. 8).
    """
    if size > h or size > w:
        raise ValueError(f"crop {size} is larger than the image {h}x{w}")
    return [(0, 0, size, size), (0, w - size, size, size), (h - size, 0, size, size),
            (h - size, w - size, size, size), center_crop_box(h, w, size)]


def batch_crop(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,
               height: int, width: int, *, reflect_pad: int = 0,
               flips: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample crops of an ``(N,C,H,W)`` batch: ``out[i] = x[i, :, t_i:t_i+h, l_i:l_i+w]``.

    One ``gather`` over the flattened image (much faster than 4-D advanced indexing for
    small images). With ``reflect_pad = p`` the offsets refer to ``x`` reflect-padded by
    ``p`` on every side, and the padding is folded into the gather indices instead of
    being materialised. With ``flips`` (bool ``(N,)``) the crops of those samples are also
    mirrored horizontally - exactly ``flip_where(batch_crop(...), flips)`` in the same gather.
    """
    n, c, h, w = x.shape
    hp, wp = h + 2 * reflect_pad, w + 2 * reflect_pad
    if tops.numel() != n or lefts.numel() != n:
        raise ValueError(f"batch_crop: {tops.numel()} tops / {lefts.numel()} lefts for {n} images")
    if n and (int(tops.min()) < 0 or int(lefts.min()) < 0 or int(tops.max()) + height > hp
              or int(lefts.max()) + width > wp):
        raise ValueError(f"batch_crop: a {height}x{width} crop falls outside the {hp}x{wp} images")
    rows = tops.view(n, 1) + torch.arange(height)
    ar = torch.arange(width)
    if flips is not None:
        ar = torch.where(flips.view(n, 1), ar.flip(0), ar)
    cols = lefts.view(n, 1) + ar
    if reflect_pad:
        rows = _reflect_index(h, reflect_pad)[rows]
        cols = _reflect_index(w, reflect_pad)[cols]
    flat = (rows.view(n, height, 1) * w + cols.view(n, 1, width)).view(n, 1, height * width)
    out = x.reshape(n, c, h * w).gather(2, flat.expand(n, c, height * width))
    return out.view(n, c, height, width)


def pad(x: torch.Tensor, amount: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last two dims by ``amount`` pixels on every side.

    ``mode``: ``"reflect"`` (mirror without repeating the edge; default - no artificial
    black border for the net to learn) or ``"zeros"`` (as in the CIFAR ResNet recipe).
    """
    if amount == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (amount,) * 4, mode="constant", value=0)
    if mode != "reflect":
        raise ValueError(f"pad mode must be 'reflect' or 'zeros', got {mode!r}")
    if x.dtype == torch.uint8:  # reflect padding has no uint8 kernel; index instead (exact)
        h, w = x.shape[-2:]
        return x[..., _reflect_index(h, amount)[:, None], _reflect_index(w, amount)[None, :]]
    return F.pad(x, (amount,) * 4, mode="reflect")


def _reflect_index(n: int, p: int) -> torch.Tensor:
    if p >= n:
        raise ValueError(f"reflect padding {p} needs an image side > {p}, got {n}")
    i = torch.arange(-p, n + p).abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Horizontally flip the samples of an ``(N,C,H,W)`` batch where ``mask`` is True."""
    if not bool(mask.any()):
        return x
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


# ------------------------------------------------------------------- random parameters
def sample_flips(n: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Bernoulli(p) flip decisions, one per sample."""
    return torch.rand(n, generator=generator, dtype=torch.float64) < p


def sample_crop_fractions(n: int, generator: torch.Generator) -> torch.Tensor:
    """Crop positions as fractions ``u ~ U[0,1)``, shape ``(n, 2)`` (top, left).

    Fractions, not pixels, because the image size after decoding/resizing may not be
    known when the parameters are drawn; see :func:`apply_crop_fractions`.
    """
    return torch.rand(n, 2, generator=generator, dtype=torch.float64)


def apply_crop_fractions(u: torch.Tensor, h: int, w: int, ch: int, cw: int) -> torch.Tensor:
    """Pixel offsets ``floor(u * (H - crop + 1))``: uniform over all valid positions."""
    ranges = torch.tensor([h - ch + 1, w - cw + 1], dtype=torch.float64)
    if (ranges < 1).any():
        raise ValueError(f"crop {ch}x{cw} is larger than the image {h}x{w}")
    return torch.minimum((u * ranges).floor(), ranges - 1).to(torch.int64)


def sample_scales(n: int, lo: int, hi: int, generator: torch.Generator) -> torch.Tensor:
    """Shorter-side sizes ``s ~ U{lo, ..., hi}`` (integers, both ends included)."""
    if not 1 <= lo <= hi:
        raise ValueError(f"scale range must satisfy 1 <= lo <= hi, got [{lo}, {hi}]")
    return torch.randint(lo, hi + 1, (n,), generator=generator)


def sample_pca_alphas(n: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """AlexNet colour-noise coefficients ``alpha ~ N(0, std^2)``, shape ``(n, 3)``."""
    return torch.randn(n, 3, generator=generator) * std


# ------------------------------------------------------------------------ augmentations
def scale_jitter(x: torch.Tensor, scales: torch.Tensor, fractions: torch.Tensor,
                 crop_size: int) -> torch.Tensor:
    """Resize image ``i`` to shorter side ``scales[i]``, crop ``crop_size`` at ``fractions[i]``.

    ``x``: ``(N,C,H,W)`` batch of equal-size images. Each image is resized by its own call
    (shape ``(1,C,H,W)``), never grouped with others: the result for a sample is then the
    same whatever batch (or DDP rank) it arrives in, on any CPU (a grouped interpolate may
    pick another kernel or vector blocking for another group size). Returns
    ``(N, C, crop_size, crop_size)`` with ``x``'s dtype.
    """
    n, c = x.shape[:2]
    if n and int(scales.min()) < crop_size:
        raise ValueError(f"scale jitter: shorter side {int(scales.min())} < crop {crop_size}")
    out = torch.empty(n, c, crop_size, crop_size, dtype=x.dtype)
    for i, s in enumerate(scales.tolist()):
        r = resize_shorter(x[i:i + 1], int(s))
        off = apply_crop_fractions(fractions[i:i + 1], r.shape[-2], r.shape[-1], crop_size,
                                   crop_size)
        out[i] = crop(r[0], (int(off[0, 0]), int(off[0, 1]), crop_size, crop_size))
    return out


def pca_lighting(x: torch.Tensor, alphas: torch.Tensor, eigval: torch.Tensor,
                 eigvec: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """AlexNet PCA colour noise (Krizhevsky et al. 2012, Sec. 4.1).

    Adds to every RGB pixel of image ``i`` the same offset
    ``[p1, p2, p3] @ [a1*l1, a2*l2, a3*l3]^T`` where ``p_k, l_k`` are the eigenvectors
    (columns of ``eigvec``) and eigenvalues of the 3x3 covariance of RGB pixel values, and
    ``a_k = alphas[i, k] ~ N(0, 0.1^2)``. ``scale`` converts the eigen-basis units to
    ``x``'s units (e.g. 255 if the stats are in [0,1] and ``x`` in [0,255]).
    Float ``(N,3,H,W)`` in, same out (not in place).
    """
    if x.shape[1] != 3:
        raise ValueError(f"PCA colour noise needs 3 channels, got {x.shape[1]}")
    # The 3x3 product is written out as elementwise multiply-adds in a fixed order, not as a
    # matmul: a BLAS matmul over the batch may block differently for another batch size (seen
    # on AVX-512 CPUs), while elementwise ops give every sample the same bits in any batch.
    w = alphas.to(x.dtype) * eigval.to(x.dtype)  # (N, 3)
    v = eigvec.to(x.dtype)
    offset = w[:, 0:1] * v[:, 0] + w[:, 1:2] * v[:, 1] + w[:, 2:3] * v[:, 2]  # (N, 3)
    return x + (offset * scale).view(-1, 3, 1, 1)


# ---------------------------------------------------------------------------- statistics
def _pixels_in_chunks(images: torch.Tensor, chunk: int = 4096):
    for lo in range(0, images.shape[0], chunk):
        yield images[lo:lo + chunk].to(torch.float64) / 255.0


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population) of uint8 images ``(N,C,H,W)``, in [0,1] units.

    Exact: computed from a 256-bin histogram per channel (integer counts), which is also
    several times faster than float64 sums over the 47M pixels of Fashion-MNIST.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"channel_stats expects uint8 images, got {images.dtype}")
    v = torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = [], []
    for c in range(images.shape[1]):
        h = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = h.sum()
        m = (h * v).sum() / n
        mean.append(float(m))
        std.append(float(((h * (v - m) ** 2).sum() / n).sqrt()))
    return mean, std


def pca_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the RGB pixel covariance.

    ``images``: uint8 ``(N,3,H,W)``; the covariance is over all pixels, in [0,1] units.
    Returns ``l_k = sqrt(eig_k)``, the standard deviations along the principal axes, not
    the covariance eigenvalues the AlexNet text names: with literal eigenvalues the noise
    magnitude would depend on the pixel units (0-255 vs 0-1), while ``alpha * sqrt(eig)``
    is always ``alpha`` standard deviations. This is also what the widely used ImageNet
    constants (eigenvalues 0.2175, 0.0188, 0.0045 in [0,1] units) are.
    """
    if images.shape[1] != 3:
        raise ValueError(f"PCA colour statistics need 3 channels, got {images.shape[1]}")
    s = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    n = 0
    for xb in _pixels_in_chunks(images):
        p = xb.permute(1, 0, 2, 3).reshape(3, -1)
        s += p.sum(1)
        outer += p @ p.T
        n += p.shape[1]
    mean = s / n
    cov = outer / n - torch.outer(mean, mean)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)
    return evals[order].clamp_min(0).sqrt().float(), evecs[:, order].float()


# -------------------------------------------------------------------------- normalisation
class Normalizer:
    """uint8 images -> float32 model inputs: ``y = (x * scale - mean) / std``.

    Kinds (``kind``):

    * ``"standardize"``: per-channel mean and std (lists of length C).
    * ``"mean"``: per-channel mean only (``std = 1``).
    * ``"mean_image"``: per-pixel mean subtraction as in the paper (Sec. 3); ``mean`` is a
      ``C x H x W`` nested list. For inputs of another size (dense multi-scale testing) the
      mean image is bilinearly resized to the input, the usual Caffe-era practice.
    * ``"none"``: only the ``scale``.

    ``scale`` defaults to 1/255 so statistics are in [0,1] units. :meth:`to_dict` gives a
    JSON-serialisable description; :meth:`from_dict` rebuilds it, so evaluation and export
    preprocess exactly as training did.
    """

    KINDS = ("standardize", "mean", "mean_image", "none")

    def __init__(self, kind: str = "standardize", mean: Sequence | None = None,
                 std: Sequence[float] | None = None, scale: float = 1.0 / 255.0) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"normalization kind must be one of {self.KINDS}, got {kind!r}")
        if kind != "none" and mean is None:
            raise ValueError(f"normalization {kind!r} needs 'mean'")
        if kind == "standardize" and std is None:
            raise ValueError("normalization 'standardize' needs 'std'")
        self.kind = kind
        self.scale = float(scale)
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None or kind != "standardize" else torch.as_tensor(
            std, dtype=torch.float32)
        if self.std is not None and bool((self.std <= 0).any()):
            raise ValueError(f"normalization std must be > 0, got {self.std.tolist()}")
        if kind == "mean_image" and self.mean.dim() != 3:
            raise ValueError(f"mean_image needs a C x H x W mean, got {tuple(self.mean.shape)}")
        if kind in ("standardize", "mean") and self.mean.dim() != 1:
            raise ValueError(f"{kind} needs a per-channel mean list, got {tuple(self.mean.shape)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x.to(torch.float32) * self.scale
        if self.kind == "none":
            return y
        if self.kind == "mean_image":
            m = self.mean
            if m.shape[-2:] != y.shape[-2:]:
                m = F.interpolate(m[None], size=y.shape[-2:], mode="bilinear",
                                  align_corners=False)[0]
            return y.sub_(m)
        c = self.mean.numel()
        y.sub_(self.mean.view(c, 1, 1))
        if self.std is not None:
            y.div_(self.std.view(c, 1, 1))
        return y

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind, "scale": self.scale,
                   "formula": "y = (x_uint8 * scale - mean) / std"}
        if self.mean is not None:
            d["mean"] = self.mean.tolist()
        if self.std is not None:
            d["std"] = self.std.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(d["kind"], d.get("mean"), d.get("std"), d.get("scale", 1.0 / 255.0))

    def __repr__(self) -> str:
        return f"Normalizer(kind={self.kind!r}, scale={self.scale:.6g})"

