"""Few-Bit Backward (opt-in): keep a 1-4 bit code of each input instead of the input itself.

A smooth activation (GELU, SiLU, Mish, GoLU, ...) must keep its whole input for backward: one
fp32 tensor the size of the feature map, which a following conv does not already keep. Few-Bit
Backward (Novikov et al., "Few-Bit Backward: Quantized Gradients of Activation Functions for
Memory Footprint Reduction", ICML 2023) keeps instead a ``bits``-bit code of ``f'(x)``: the
backward multiplies the incoming gradient by a piecewise-constant derivative, ``levels[code]``.

The ``2**bits`` levels and the boundaries between them are fitted once per activation by
Lloyd-Max quantisation of ``f'(X)`` for ``X ~ N(0, 1)`` (the weighted squared error is
minimised; :func:`fewbit_levels` returns it as ``mse``). Codes are packed ``8 // slot`` to a
byte (slot = 1, 2 or 4 bits; 3 bits use 4-bit slots), so a 4-bit layer keeps 1/8 of an fp32
input's bytes, a 2-bit one 1/16, a 1-bit one 1/32.

What it costs and what it changes:

* the forward is the activation's own, bitwise; the input gradient is approximate (the
  derivative is quantised), the backward of the backward is not defined (no double backward:
  ``create_graph=True`` raises), and forward-mode AD is not supported;
* the forward also computes ``f'(x)`` (one extra forward+backward of the activation, through
  autograd) and the code (one pass, ``csrc/fewbit_cpu.cpp``; ATen ops without a compiler):
  about 2x the exact layer's fwd+bwd time, measured in ``benchmarks/fewbit.py``;
* the accuracy effect on Fashion-MNIST with the bench model is measured there too, over seeds,
  with a confidence interval (benchmarks/RESULTS.md).

Use :func:`use_fewbit` on a model, or wrap one activation: ``FewBit(make_activation("gelu"))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rectifiers._cpp import Extension

__all__ = ["FewBit", "fewbit_levels", "use_fewbit", "SMOOTH"]

# the zoo activations this is meant for: smooth, no learnable parameter, input kept for backward
SMOOTH = ("gelu", "gelu_tanh", "silu", "mish", "golu", "sau")
# one-pass encode/decode (csrc/fewbit_cpu.cpp); without a compiler the same in ATen ops
EXTENSION = Extension("fewbit_cpu.cpp")
_GRID = 24001  # points of the N(0, 1) quadrature on [-6, 6]
_ITERS = 200


def _derivative(act: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), f'(x))`` of an elementwise activation, through autograd."""
    # identity hooks: whatever saved-tensor hooks the caller has (memory counters, offloading)
    # never see this temporary graph, which is freed before the forward returns
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
        xr = x.detach().requires_grad_()
        y = act(xr)
        (d,) = torch.autograd.grad(y, xr, torch.ones_like(y))
    return y.detach(), d


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


_FITS: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, float]] = {}


def _fit(act: nn.Module, bits: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    x = torch.linspace(-6.0, 6.0, _GRID, dtype=torch.float64)
    w = torch.exp(-0.5 * x * x)
    w = w / w.sum()
    _, d = _derivative(act, x)
    d = d.detach()
    k = 2**bits
    # start from weighted quantiles of f'(X), then Lloyd-Max iterations (deterministic)
    order = torch.argsort(d)
    cdf = torch.cumsum(w[order], 0)
    levels = torch.stack([d[order][torch.searchsorted(cdf, (i + 0.5) / k).clamp(max=_GRID - 1)]
                          for i in range(k)])
    for _ in range(_ITERS):
        bounds = 0.5 * (levels[1:] + levels[:-1])
        code = torch.bucketize(d, bounds)
        mass = torch.zeros(k, dtype=torch.float64).index_add_(0, code, w)
        total = torch.zeros(k, dtype=torch.float64).index_add_(0, code, w * d)
        levels = torch.where(mass > 0, total / mass.clamp(min=1e-300), levels)
        levels, _ = torch.sort(levels)
    bounds = 0.5 * (levels[1:] + levels[:-1])
    mse = float((w * (d - levels[torch.bucketize(d, bounds)]) ** 2).sum())
    return bounds.float(), levels.float(), mse


def fewbit_levels(act: nn.Module, bits: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(boundaries, levels, mse)`` of the ``bits``-bit derivative code of ``act``: ``2**bits``
    increasing fp32 levels, the ``2**bits - 1`` boundaries between them (code = number of
    boundaries below ``f'(x)``), and the fitted mean squared error of the quantised derivative
    under ``x ~ N(0, 1)``. Cached per activation (its ``repr``) and ``bits``."""
    if bits not in (1, 2, 3, 4):
        raise ValueError(f"Few-Bit Backward keeps 1, 2, 3 or 4 bits per element, got {bits!r}")
    key = (f"{type(act).__module__}.{type(act).__qualname__}:{act!r}", bits)
    if key not in _FITS:
        _FITS[key] = _fit(act, bits)
    return _FITS[key]


def _slot(bits: int) -> int:
    return 4 if bits == 3 else bits


def _encode(d: torch.Tensor, bounds: torch.Tensor, bits: int) -> torch.Tensor:
    """Packed codes of the flat fp32 derivative ``d``: code = #{k : bounds[k] < d}, NaN 0."""
    if d.device.type == "cpu" and EXTENSION.available():
        return torch.ops.rectifiers_fewbit.encode(d, bounds, _slot(bits))
    code = torch.where(torch.isnan(d), 0, torch.bucketize(d, bounds))
    return _pack(code, bits)


def _decode(packed: torch.Tensor, levels: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """``levels[code]`` for the ``n`` codes in ``packed`` (flat fp32)."""
    if packed.device.type == "cpu" and EXTENSION.available():
        return torch.ops.rectifiers_fewbit.decode(packed, levels, _slot(bits), n)
    return levels[_unpack(packed, bits, n)]


def _pack(code: torch.Tensor, bits: int) -> torch.Tensor:
    slot = _slot(bits)
    per = 8 // slot
    flat = code.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    flat = flat.reshape(-1, per)
    packed = flat[:, 0].clone()
    for j in range(1, per):
        packed |= flat[:, j] << (j * slot)
    return packed


def _unpack(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    slot = _slot(bits)
    per = 8 // slot
    mask = (1 << slot) - 1
    parts = [(packed >> (j * slot)) & mask for j in range(per)]
    return torch.stack(parts, 1).reshape(-1)[:numel].long()


class _FewBitFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, act, bounds, levels, bits):
        y, d = _derivative(act, x)
        # logical (row-major) order whatever x's memory format
        packed = _encode(d.float().reshape(-1).contiguous(), bounds, bits)
        ctx.save_for_backward(packed, levels)
        ctx.meta = (x.shape, bits)
        return y

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "Few-Bit Backward has no double backward (its derivative is piecewise "
                "constant); use the exact activation for create_graph=True")
        packed, levels = ctx.saved_tensors
        shape, bits = ctx.meta
        # codes are packed in logical (row-major) order, whatever x's memory format
        d = _decode(packed, levels, bits, math.prod(shape)).to(g.dtype).reshape(shape)
        return g * d, None, None, None, None


class FewBit(nn.Module):
    """Wrap an elementwise activation: exact forward, ``bits``-bit quantised derivative in
    backward (see the module docstring). In eval mode or without grad it is ``act`` itself."""

    def __init__(self, act: nn.Module, bits: int = 4) -> None:
        super().__init__()
        bounds, levels, mse = fewbit_levels(act, bits)
        self.act = act
        self.bits = bits
        self.mse = mse
        self.register_buffer("boundaries", bounds, persistent=False)
        self.register_buffer("levels", levels, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return self.act(x)
        return _FewBitFunction.apply(x, self.act, self.boundaries, self.levels, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mse={self.mse:.3g}"


def use_fewbit(model: nn.Module, bits: int = 4, names: tuple[str, ...] = SMOOTH) -> int:
    """Wrap, in place, every activation module of ``model`` built by
    ``make_activation(name)`` for ``name`` in ``names`` (default: the smooth parameter-free
    ones) in :class:`FewBit`; returns how many were wrapped."""
    from rectifiers.nn.activations import make_activation

    types = tuple({type(make_activation(n)) for n in names})
    count = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) in types:
                setattr(parent, child_name, FewBit(child, bits))
                count += 1
    return count
