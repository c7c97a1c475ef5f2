"""The fused C++ CPU kernels of PReLU (``rectifiers/csrc/prelu_cpu.cpp``).

The library registers ``torch.ops.rectifiers_prelu.forward`` and ``.backward``; it is built
on first use, cached per machine and loaded only from private directories by
:class:`rectifiers._cpp.Extension` (see there for the cache and its security checks).

If anything fails (no compiler, build error), :func:`available` returns ``False`` and
:func:`load_error` says why; ``rectifiers.nn.prelu`` then warns once and uses the eager path.
"""

from __future__ import annotations

import torch

from rectifiers._cpp import Extension
from rectifiers._cpp import compiler as _compiler  # noqa: F401  (tests: no-compiler message)

__all__ = ["available", "load_error", "layout", "forward", "backward", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
EXTENSION = Extension("prelu_cpu.cpp")


def available() -> bool:
    """Build (first call only, cached per machine) and load the extension; ``True`` if usable."""
    return EXTENSION.available()


def load_error() -> str | None:
    """Why the extension is unavailable (``None`` if it loaded or was not tried yet)."""
    return EXTENSION.load_error()


def layout(x: torch.Tensor, shared: bool) -> tuple[int, int] | None:
    """``(C, inner)`` viewing ``x`` as ``[outer][C][inner]`` in memory, or ``None``.

    Channel-shared: ``C = 1``, ``inner = numel`` for any dense tensor. Channel-wise (dim 1):
    NCHW-contiguous gives ``inner = prod(shape[2:])``; channels_last (rank 4/5, channel dim
    innermost) gives ``inner = 1``. Other layouts return ``None`` (the caller falls back).
    """
    if shared:
        return (1, max(x.numel(), 1)) if x.is_contiguous() or _channels_last(x) else None
    c = x.shape[1]
    if x.is_contiguous():
        inner = 1
        for d in x.shape[2:]:
            inner *= d
        return c, max(inner, 1)
    if _channels_last(x):
        return c, 1
    return None


def _channels_last(x: torch.Tensor) -> bool:
    if x.ndim == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    if x.ndim == 5:
        return x.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def forward(x: torch.Tensor, w: torch.Tensor, lay: tuple[int, int], out: torch.Tensor) -> None:
    """``out = x > 0 ? x : w_c * x`` (``out`` may be ``x``); ``w`` is ``(C,)`` in x's dtype."""
    torch.ops.rectifiers_prelu.forward(x, w, lay[0], lay[1], out)


def backward(
    g: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    mask: torch.Tensor | None,
    lay: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, dE/da)`` in one pass; ``dE/da`` is fp64, shape ``(C,)``.

    ``grad_input = pos ? g : w_c * g`` and ``dE/da_c = sum_{!pos} g * s`` with
    ``pos = mask`` if given else ``s > 0``. ``g`` is made to match ``s``'s strides first.
    """
    if g.stride() != s.stride() or g.dtype != s.dtype:
        g = torch.empty_like(s).copy_(g)  # e.g. an expanded grad from .sum().backward()
    if mask is not None and mask.stride() != s.stride():
        mask = torch.empty_like(s, dtype=torch.bool).copy_(mask)
    return torch.ops.rectifiers_prelu.backward(g, s, w, mask, lay[0], lay[1])
