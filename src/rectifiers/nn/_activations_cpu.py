"""The fused C++ CPU kernels of the activation zoo (``rectifiers/csrc/activations_cpu.cpp``).

One library registers ``torch.ops.rectifiers_act.forward`` and ``.backward`` for every zoo
activation (a functor per activation inside one elementwise template; bf16/fp16 smooth
activations read f and f' from 65536-entry tables, ``torch.ops.rectifiers_act.set_tables(False)``
switches them off for comparisons and returns the previous setting); it is built on first
use, cached per machine and loaded only from private directories by
:class:`rectifiers._cpp.Extension`. If it cannot be built, :func:`available` returns ``False``
and :func:`load_error` says why; :mod:`rectifiers.nn.activations` then warns once and uses its
portable eager formulas.
"""

from __future__ import annotations

import torch

from rectifiers._cpp import Extension

__all__ = [
    "available", "load_error", "forward", "backward", "apply", "SUPPORTED_DTYPES", "MODES",
]

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
MODES = {"input": 0, "output": 1, "mask": 2}
# -fno-math-errno: nothing reads errno, and with it g++ cannot vectorise std::sqrt (smelu)
EXTENSION = Extension("activations_cpu.cpp", extra_flags=("-fno-math-errno",))


_fakes_registered = False


def available() -> bool:
    """Build (first call only, cached per machine) and load the extension; ``True`` if usable."""
    ok = EXTENSION.available()
    if ok and not _fakes_registered:
        _register_fakes()
    return ok


def _register_fakes() -> None:
    """Shape-only implementations, so the ops also run under FakeTensor / ``torch.compile``."""
    global _fakes_registered
    _fakes_registered = True

    @torch.library.register_fake("rectifiers_act::forward")
    def _forward_fake(x, kind, p, w, C, inner, out, mask):  # noqa: ARG001
        return None

    @torch.library.register_fake("rectifiers_act::backward")
    def _backward_fake(g, s, kind, mode, p, w, C, inner, mask, need_w):  # noqa: ARG001
        return torch.empty_like(s), s.new_empty((C if need_w else 0,), dtype=torch.float64)

    @torch.library.register_fake("rectifiers_act::unpack_mask")
    def _unpack_mask_fake(mask, sizes, strides):
        return mask.new_empty_strided(sizes, strides, dtype=torch.bool)


def load_error() -> str | None:
    """Why the extension is unavailable (``None`` if it loaded or was not tried yet)."""
    return EXTENSION.load_error()


def forward(x: torch.Tensor, kind: int, p: list[float], w: torch.Tensor, lay: tuple[int, int],
            out: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """``out = f(x)`` (``out`` may be ``x``); ``mask`` (uint8, ``ceil(numel / 8)`` bytes, flat
    layout ``lay == (1, numel)``) gets the 1-bit mask of the activations that keep one: element
    ``i`` of x's memory order is bit ``i % 8`` of byte ``i // 8``
    (``torch.ops.rectifiers_act.unpack_mask(mask, shape, stride)`` gives it as a bool tensor).
    ``w``: ``(C,)`` fp32 (fp64 for fp64 ``x``)."""
    torch.ops.rectifiers_act.forward(x, kind, p, w, lay[0], lay[1], out, mask)


def backward(g: torch.Tensor, s: torch.Tensor, kind: int, mode: str, p: list[float],
             w: torch.Tensor, lay: tuple[int, int], mask: torch.Tensor | None,
             need_w: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, dE/dw)``: ``g * f'(s)`` with ``s`` the saved input or output (mode
    ``"mask"``: ``mask`` holds the bits, ``s`` in the forward input's strides only gives the
    layout); ``dE/dw`` (fp64, ``(C,)``, summed in a fixed order) when ``need_w``."""
    if g.stride() != s.stride() or g.dtype != s.dtype:
        g = torch.empty_like(s).copy_(g)  # e.g. an expanded grad from .sum().backward()
    return torch.ops.rectifiers_act.backward(g, s, kind, MODES[mode], p, w, lay[0], lay[1],
                                             mask, need_w)


_apply_op = None


def apply(x: torch.Tensor, kind: int, p, w: torch.Tensor | None, mode: int,
          inplace: bool) -> torch.Tensor | None:
    """The layer in C++, autograd included (``csrc/activations_autograd.h``), or ``None`` where
    the caller must take its Python path (other devices and layouts, a forward-mode tangent, a
    ``torch.func`` transform or dispatch mode, invalid arguments, a leaf written in place).
    Call only after :func:`available` returned ``True``."""
    global _apply_op
    if _apply_op is None:
        _apply_op = torch.ops.rectifiers_act.apply.default._op  # the C++ callable itself
    return _apply_op(x, kind, p, w, mode, inplace)
