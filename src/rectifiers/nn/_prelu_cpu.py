"""The fused C++ CPU kernels of PReLU (``rectifiers/csrc/prelu_cpu.cpp``).

The library registers ``torch.ops.rectifiers_prelu.forward``, ``.backward`` and ``.apply`` (the
whole layer with a C++ autograd node: see :func:`apply`); it is built
on first use, cached per machine and loaded only from private directories by
:class:`rectifiers._cpp.Extension` (see there for the cache and its security checks).

If anything fails (no compiler, build error), :func:`available` returns ``False`` and
:func:`load_error` says why; ``rectifiers.nn.prelu`` then warns once and uses the eager path.
"""

from __future__ import annotations

import torch

from rectifiers._cpp import Extension
from rectifiers._cpp import compiler as _compiler  # noqa: F401  (tests: no-compiler message)
from rectifiers._cpp import kernel_layout as layout

__all__ = [
    "available", "load_error", "layout", "forward", "backward", "apply", "SUPPORTED_DTYPES",
]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
EXTENSION = Extension("prelu_cpu.cpp")


def available() -> bool:
    """Build (first call only, cached per machine) and load the extension; ``True`` if usable."""
    return EXTENSION.available()


def load_error() -> str | None:
    """Why the extension is unavailable (``None`` if it loaded or was not tried yet)."""
    return EXTENSION.load_error()


def forward(x: torch.Tensor, w: torch.Tensor, lay: tuple[int, int], out: torch.Tensor) -> None:
    """``out = x > 0 ? x : w_c * x`` (``out`` may be ``x``); ``w`` is ``(C,)`` in x's dtype."""
    torch.ops.rectifiers_prelu.forward(x, w, lay[0], lay[1], out)


def backward(
    g: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    mask: torch.Tensor | None,
    lay: tuple[int, int],
    divide: bool,
    grad_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, dE/da)`` in one pass; ``dE/da`` has shape ``(C,)`` and ``grad_dtype``.

    ``grad_input = pos ? g : w_c * g`` and ``dE/da_c = sum_{!pos} g * s`` (in fp32
    within a work item, the items' partial sums in fp64, in a fixed order; divided by
    ``w_c`` in fp64 if ``divide``: ``s`` is then the output ``y = w_c * x``, then
    rounded once) with ``pos = mask`` if given else ``s > 0``. ``g`` is made to match ``s``'s
    strides first.
    """
    if g.stride() != s.stride() or g.dtype != s.dtype:
        g = torch.empty_like(s).copy_(g)  # e.g. an expanded grad from .sum().backward()
    if mask is not None and mask.stride() != s.stride():
        mask = torch.empty_like(s, dtype=torch.bool).copy_(mask)
    return torch.ops.rectifiers_prelu.backward(g, s, w, mask, lay[0], lay[1], divide, grad_dtype)


_apply_op = None


def apply(x: torch.Tensor, weight: torch.Tensor, inplace: bool) -> torch.Tensor | None:
    """The layer in C++, autograd included, or ``None`` where the caller must take its path.

    Takes plain dense CPU or CUDA tensors (contiguous or channels_last, channel-wise or shared
    slopes; ATen's kernels on CUDA) with no forward-mode tangent and no dispatch mode active;
    records a C++ autograd node, so
    forward and backward run no Python (the per-call overhead that dominates small maps). It
    saves exactly what the Python path saves (input, or output [+ sign mask] in place) and uses
    the same kernels, so results are bitwise the same. ``None`` for anything else (including a
    leaf or a leaf's view in place, whose refusal the Python path words). Call only after
    :func:`available` returned ``True`` and with no ``torch.func`` transform active.
    """
    global _apply_op
    if _apply_op is None:
        _apply_op = torch.ops.rectifiers_prelu.apply.default._op  # the C++ callable itself
    return _apply_op(x, weight, inplace)
