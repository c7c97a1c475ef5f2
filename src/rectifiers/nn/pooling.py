"""Spatial pyramid pooling (SPP-net, He et al. 2014), the pooling layer of the paper's models.

SPP turns a feature map of *any* spatial size ``a x a`` into a fixed-length vector: for each
pyramid level ``n`` the map is divided into ``n x n`` bins and each bin is max-pooled, giving
``C * sum(n * n)`` features. Model A/B/C use levels {7, 3, 2, 1} (63 bins, paper Table 3); the
14-layer model of Table 1 uses {6, 3, 2, 1} (50 bins).

Bin rule (the paper does not restate it; two choices are offered):

``rule="adaptive"`` (default)
    PyTorch's adaptive pooling: bin ``i`` of ``n`` covers rows ``[floor(i*a/n), ceil((i+1)*a/n))``.
    Bins tile the whole map (neighbours may overlap by one row when ``n`` does not divide ``a``),
    and any ``a >= 1`` works. On the 14x14 training map the {7, 2, 1} levels are exact
    non-overlapping tilings; the 3x3 level uses windows of 5 rows starting at 0, 4, 9.

``rule="sppnet"``
    The SPP-net paper's rule: window ``ceil(a/n)``, stride ``floor(a/n)``. This yields at least
    ``n`` windows per axis (more when ``a mod n`` is large); the first ``n`` are kept, so the
    bottom/right rows may be left uncovered (on a 14x14 map the 3x3 level uses windows 0-4, 4-8,
    8-12 and never sees row 13). Needs ``a >= n``.

Both rules agree on the levels that divide the map size (7, 2 and 1 on a 14x14 map).

16-bit maps on the CPU: ATen's NCHW max pooling of bf16/fp16 is slow and depends on the data
(a branch per comparison); its channels_last kernels are not. For a bf16/fp16 NCHW-contiguous
map on the CPU, :class:`SPP` and :class:`MaxPool2d` pool a channels_last copy and return NCHW
(bitwise the same values, gradients and output layout; forward+backward 1.4-2.5x faster on the
PReLU-nets' maps, ``benchmarks/prelu_cost.py --train ... --pools``). Not under tracing,
export or ``torch.compile`` (their graphs keep the plain op).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_RULES = ("adaptive", "sppnet")
_POOLS = ("max", "avg")


def _via_channels_last(x: torch.Tensor) -> bool:
    """A bf16/fp16 NCHW-contiguous CPU map, outside tracing: max-pool it in channels_last."""
    from rectifiers.nn.zoo_ops import _graph_mode

    return (x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)
            and x.dim() == 4 and x.is_contiguous()
            and not x.is_contiguous(memory_format=torch.channels_last) and not _graph_mode())


class MaxPool2d(nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` that max-pools a bf16/fp16 NCHW CPU map in channels_last (see
    the module docstring): the same values, gradients and output layout, faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or self.return_indices:
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                ceil_mode=self.ceil_mode, return_indices=self.return_indices)
        return self._pool(x)

    @torch.jit.unused
    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not _via_channels_last(x):
            return super().forward(x)
        y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), self.kernel_size,
                         self.stride, self.padding, self.dilation, self.ceil_mode)
        return y.contiguous()


class SPP(nn.Module):
    """Spatial pyramid pooling: ``(N, C, H, W) -> (N, C * sum(n*n for n in levels))``.

    Output layout: levels in the given order, each flattened as ``(C, n, n)`` (channel-major),
    concatenated along dim 1 — the same layout as ``torch.cat([adaptive_max_pool2d(x, n)
    .flatten(1) for n in levels], 1)``.

    Args:
        levels: bins per side of each pyramid level, e.g. ``(7, 3, 2, 1)`` (paper Table 3).
        rule: ``"adaptive"`` or ``"sppnet"`` (see the module docstring).
        pool: ``"max"`` (SPP-net and the paper) or ``"avg"``.

    Example:
        >>> spp = SPP((7, 3, 2, 1))
        >>> spp(torch.randn(2, 512, 14, 14)).shape
        torch.Size([2, 32256])
    """

    def __init__(self, levels: tuple[int, ...] = (7, 3, 2, 1), rule: str = "adaptive",
                 pool: str = "max") -> None:
        super().__init__()
        levels = tuple(int(n) for n in levels)
        if not levels or any(n < 1 for n in levels):
            raise ValueError(
                f"SPP levels must be a non-empty sequence of positive ints, got {levels}")
        if rule not in _RULES:
            raise ValueError(f"unknown SPP rule '{rule}'; known: {', '.join(_RULES)}")
        if pool not in _POOLS:
            raise ValueError(f"unknown SPP pool '{pool}'; known: {', '.join(_POOLS)}")
        self.levels = levels
        self.rule = rule
        self.pool = pool

    @property
    def num_bins(self) -> int:
        """Total number of bins, ``sum(n * n)`` (63 for {7, 3, 2, 1})."""
        return sum(n * n for n in self.levels)

    def output_features(self, channels: int) -> int:
        """Length of the output vector for a ``channels``-channel input map."""
        return channels * self.num_bins

    def _level(self, x: torch.Tensor, n: int) -> torch.Tensor:
        if self.rule == "adaptive":
            f = F.adaptive_max_pool2d if self.pool == "max" else F.adaptive_avg_pool2d
            return f(x, n)
        h, w = x.shape[-2:]
        if h < n or w < n:
            raise ValueError(
                f"SPP rule 'sppnet' needs a feature map of at least {n}x{n} for level {n}, "
                f"got {h}x{w}; use a larger input or rule='adaptive'")
        kernel = (math.ceil(h / n), math.ceil(w / n))
        stride = (h // n, w // n)
        f = F.max_pool2d if self.pool == "max" else F.avg_pool2d
        # The rule can produce more than n windows per axis; SPP-net keeps n bins per side.
        return f(x, kernel, stride)[..., :n, :n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"SPP expects a (N, C, H, W) feature map, got shape {tuple(x.shape)}")
        if self.pool == "max" and _via_channels_last(x):
            x = x.contiguous(memory_format=torch.channels_last)  # flatten(1) keeps (C, n, n)
        return torch.cat([self._level(x, n).flatten(1) for n in self.levels], 1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, rule={self.rule!r}, pool={self.pool!r}"
