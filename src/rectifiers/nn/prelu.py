"""Parametric ReLU (paper Eq. 1-4), exact and lean: a drop-in for ``torch.nn.PReLU``.

Forward (Eq. 1): ``f(x_i) = max(0, x_i) + a_c * min(0, x_i)`` with one slope ``a_c`` per
channel (channel-wise, ``num_parameters = C``, channel dim 1) or one per layer
(channel-shared, ``num_parameters = 1``).

Backward (Eq. 2-3):

* input:  ``df/dx = 1 if x > 0 else a_c``
* slope:  ``dE/da_c = sum over all positions of channel c with x <= 0 of g * x``

Why a custom autograd Function instead of ``F.prelu``: ATen's PReLU backward materialises a
full-size per-element slope gradient and reduces it afterwards (about 4-5x an in-place ReLU
on a 2-core CPU). Here, on CPU, the default ``"cpp"`` backend runs a fused C++ kernel
(``rectifiers/csrc/prelu_cpu.cpp``, built on first use and cached per machine): one pass for
the forward (in place or not) and one pass for the backward that writes the input gradient
and reduces the slope gradient per channel, with no full-size temporary, for NCHW-contiguous
and channels_last inputs of any rank. If it cannot be built (no compiler) the layer warns
once and uses the ``"eager"`` backend (a few fused ATen ops); ``"compile"`` runs the backward
through ``torch.compile``. Other devices and layouts use the eager path.

``inplace=True`` overwrites the input and, in the common case, saves *only the output* for
backward (PyTorch has no in-place PReLU, pytorch/pytorch#7611): for a slope ``0 < a <= 1``
the sign of ``y`` equals the sign of ``x`` (input gradient) and ``x = y / a`` on the
negative side, so ``dE/da = (sum_{y<=0} g * y) / a`` (slope gradient). Where that is not
exact the layer detects it at forward time (one scalar check of the slopes) and saves what is
needed instead, so a gradient is never wrong:

=====================================  =====================================================
slopes (all channels)                  saved for backward
=====================================  =====================================================
``tiny <= a <= 1``                     the output only (zero extra bytes)
``-1 <= a <= -tiny``, some negative    the output + a bool mask ``x > 0`` (1 byte/element):
                                       ``y``'s sign no longer gives ``x``'s (non-monotonic)
``a == 0``, ``|a| < tiny``,            a copy of the input: ``y = 0`` (or a denormal) on the
``|a| > 1``, ``nan``/``inf``           negative side loses ``x``; ``|a| > 1`` may overflow
=====================================  =====================================================

``tiny`` is ``finfo(dtype).tiny ** 0.25`` (3e-10 in fp32/bf16): above it ``a * x`` is
subnormal only for ``|x| < tiny ** 0.75``, whose contribution to the slope gradient is below
the reduction's rounding error.

Under tracing, ONNX export and ``torch.compile`` / ``torch.export`` the layer calls
``F.prelu`` so the graph contains the standard PReLU op (ONNX ``PRelu``).

Exactness: forward and input gradient are bitwise equal to ``torch.nn.PReLU`` (fp32, fp64,
bf16, fp16); the slope gradient equals it up to summation order (the C++ kernel sums ATen's
per-element terms in fp32 blocks and fp64 across blocks, in a fixed order: bitwise
reproducible for any thread count). One documented difference of the ``"eager"`` backend
only: with a non-finite *upstream* gradient or an infinite *input* it may return ``nan``
where the reference returns ``inf`` (both non-finite); ``"cpp"`` and ``"compile"`` have none.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.nn import _prelu_cpu

__all__ = ["PReLU", "prelu", "set_prelu_backend", "get_prelu_backend"]

_BACKENDS = ("cpp", "eager", "compile")
_backend = os.environ.get("RECTIFIERS_PRELU_BACKEND", "cpp")
_compiled: dict[str, object] = {}
_warned = False


def set_prelu_backend(name: str) -> None:
    """Choose the CPU kernels: ``"cpp"`` (default), ``"eager"`` or ``"compile"``.

    ``"cpp"``: fused C++ forward and backward (built on first use, ~10-30 s once per machine,
    then cached; see ``rectifiers.nn._prelu_cpu``); falls back to ``"eager"`` with a one-time
    warning if it cannot be built. ``"eager"``: a few fused ATen ops, no compiler needed.
    ``"compile"``: the backward through ``torch.compile`` (costs ~20-30 s per shape on first
    use). Also settable by the environment variable ``RECTIFIERS_PRELU_BACKEND``.
    """
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"unknown PReLU backend {name!r}; choose one of {_BACKENDS}")
    _backend = name


def get_prelu_backend() -> str:
    """The backend set by :func:`set_prelu_backend` (``"cpp"`` unless changed)."""
    if _backend not in _BACKENDS:
        raise ValueError(
            f"RECTIFIERS_PRELU_BACKEND={_backend!r} is not a backend; use one of {_BACKENDS}"
        )
    return _backend


def _graph_mode() -> bool:
    """True when a tracer/exporter/compiler is recording: use the plain ATen op there."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    return bool(torch.compiler.is_compiling())


def _cpp_layout(x: torch.Tensor, shared: bool) -> tuple[int, int] | None:
    """``(C, inner)`` if the C++ kernels take ``x`` under the current backend, else ``None``."""
    if get_prelu_backend() != "cpp" or x.device.type != "cpu" or x.numel() == 0:
        return None
    if x.dtype not in _prelu_cpu.SUPPORTED_DTYPES:
        return None
    lay = _prelu_cpu.layout(x, shared)
    if lay is None:
        return None
    if not _prelu_cpu.available():
        global _warned
        if not _warned:
            _warned = True
            warnings.warn(
                f"rectifiers: the fused C++ PReLU kernel is unavailable "
                f"({_prelu_cpu.load_error()}); using the slower eager path. Install a C++ "
                "compiler (Debian: apt-get install g++) or set RECTIFIERS_PRELU_BACKEND=eager "
                "to silence this warning.",
                RuntimeWarning,
                stacklevel=4,
            )
        return None
    return lay


def _slope_view(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape (C,) slopes to broadcast over channel dim 1 of ``x``; validates C."""
    c = weight.numel()
    if weight.ndim != 1:
        raise ValueError(
            f"PReLU weight must be 1-D (num_parameters,), got shape {tuple(weight.shape)}"
        )
    if c == 1:
        return weight.reshape([1] * max(x.ndim, 1)) if x.ndim else weight.reshape(())
    if x.ndim < 2:
        raise ValueError(
            f"PReLU has num_parameters={c} (channel-wise) but the input has shape "
            f"{tuple(x.shape)} with no channel dim 1; pass an input shaped (N, {c}, ...) or "
            "use num_parameters=1 (channel-shared)"
        )
    if x.shape[1] != c:
        raise ValueError(
            f"PReLU expects {c} channels (num_parameters={c}) but the input has "
            f"{x.shape[1]} channels in dim 1 (shape {tuple(x.shape)}); construct "
            f"PReLU(num_parameters={x.shape[1]}) or use num_parameters=1 (channel-shared)"
        )
    return weight.reshape([1, c] + [1] * (x.ndim - 2))


def _reduce_dims(x: torch.Tensor, shared: bool) -> list[int]:
    if shared:
        return list(range(x.ndim))
    return [0] + list(range(2, x.ndim))


def _save_mode(weight: torch.Tensor, dtype: torch.dtype) -> str:
    """What in-place mode must keep for an exact backward (see module docstring)."""
    # compare in the slope's own dtype: a Python float threshold would be rounded to the
    # tensor's dtype (fp64's 1e-77 becomes 0 in fp32 and would let a = 0 through)
    w = weight.detach().to(dtype)
    tiny = torch.finfo(dtype).tiny ** 0.25
    mag = w.abs()
    # one host sync for all facts
    ok, any_neg = torch.stack(
        [(torch.isfinite(w) & (mag > 0) & (mag >= tiny) & (mag <= 1.0)).all(), (w < 0).any()]
    ).tolist()
    if not ok:
        return "input"
    return "mask" if any_neg else "output"


def _inplace_forward(x: torch.Tensor, w_x: torch.Tensor, wv: torch.Tensor) -> None:
    lay = _cpp_layout(x, w_x.numel() == 1)
    if lay is not None:
        _prelu_cpu.forward(x, w_x, lay, x)
        return
    if w_x.numel() == 1 and x.is_floating_point():
        # leaky_relu_ computes x > 0 ? x : x * a in place, bitwise like the prelu kernel
        a = float(w_x.reshape(()))
        if math.isfinite(a):
            F.leaky_relu_(x, a)
            return
    # no in-place channel-wise kernel in ATen: the transient copy is freed immediately and
    # never saved for backward
    x.copy_(torch._prelu_kernel(x, wv))


def _eager_backward(g, s, v, wv, shared, pos_mask, acc_dtype):
    """Input and slope gradients for finite slopes.

    ``s`` decides the side (``s > 0`` is the positive side) unless ``pos_mask`` is given;
    ``v`` is the value whose non-positive part times ``g`` sums to the slope gradient.
    """
    dims = _reduce_dims(g, shared)
    if pos_mask is not None:
        tb = g * pos_mask
        gn = g - tb
        gi = torch.addcmul(tb, gn, wv)
        gw = torch.sum(g * v.masked_fill(pos_mask, 0), dims, dtype=acc_dtype)
        return gi, gw
    if shared:
        a = float(wv.reshape(()))
        # s > 0 ? g : g * a, one fused pass (the same select as ATen's prelu backward)
        gi = torch.ops.aten.leaky_relu_backward(g, s, a, False)
        gw = torch.sum(g * v.clamp(max=0), dims, dtype=acc_dtype)
        return gi, gw
    # tb = s > 0 ? g : 0 ; gn = the negative-side part of g (exact for finite g)
    tb = torch.ops.aten.leaky_relu_backward(g, s, 0.0, False)
    gn = g - tb
    gi = torch.addcmul(tb, gn, wv)  # g + a*0 on the positive side, 0 + a*g on the negative
    gw = torch.sum(gn * v, dims, dtype=acc_dtype)
    return gi, gw


def _compiled_kernel(g, s, v, wv, shared, acc_dtype):
    dims = tuple(_reduce_dims(g, shared))
    key = "bwd"
    if key not in _compiled:

        def bwd(g, s, v, wv, dims: tuple[int, ...], acc_dtype: torch.dtype):
            pos = s > 0
            gi = torch.where(pos, g, g * wv)
            gw = torch.where(pos, torch.zeros((), dtype=g.dtype), g * v).sum(dims, dtype=acc_dtype)
            return gi, gw

        _compiled[key] = torch.compile(bwd, dynamic=None)
    return _compiled[key](g, s, v, wv, dims, acc_dtype)


def _reference_backward(g, x, wv, shared, acc_dtype):
    """ATen's own formula: used for non-finite slopes, where the fused algebra would mix nan."""
    gi, gwe = torch.ops.aten._prelu_kernel_backward(g, x, wv.to(g.dtype))
    gw = torch.sum(gwe, _reduce_dims(g, shared), dtype=acc_dtype)
    return gi, gw


def _out_of_place(x: torch.Tensor, w_x: torch.Tensor, wv: torch.Tensor) -> torch.Tensor:
    lay = _cpp_layout(x, w_x.numel() == 1)
    if lay is None:
        return torch._prelu_kernel(x, wv)
    out = torch.empty_like(x)  # keeps x's memory format
    _prelu_cpu.forward(x, w_x, lay, out)
    return out


class _PReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, inplace: bool) -> torch.Tensor:
        w_x = weight.detach().to(x.dtype)
        wv = _slope_view(w_x, x)
        ctx.shared = weight.numel() == 1
        ctx.weight_dtype = weight.dtype
        ctx.inplace = inplace
        if not inplace:
            ctx.mode = "input"
            ctx.save_for_backward(x, w_x)
            return _out_of_place(x, w_x, wv)
        mode = _save_mode(w_x, x.dtype)
        ctx.mode = mode
        if mode == "input":
            saved = x.clone()  # before it is overwritten: nothing else recovers x here
            _inplace_forward(x, w_x, wv)
            ctx.mark_dirty(x)
            ctx.save_for_backward(saved, w_x)
        elif mode == "mask":
            mask = x > 0
            _inplace_forward(x, w_x, wv)
            ctx.mark_dirty(x)
            ctx.save_for_backward(x, w_x, mask)
        else:
            _inplace_forward(x, w_x, wv)
            ctx.mark_dirty(x)
            ctx.save_for_backward(x, w_x)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        saved = ctx.saved_tensors
        s, w_x = saved[0], saved[1]
        wv = _slope_view(w_x, s)
        acc = torch.promote_types(ctx.weight_dtype, torch.float32)
        lay = _cpp_layout(s, ctx.shared)
        if lay is not None:
            # the same selects as ATen's backward, exact for any slope (nan/inf included):
            # the slope term g * x does not involve a
            mask = saved[2] if ctx.mode == "mask" else None
            gi, gw = _prelu_cpu.backward(g, s, w_x, mask, lay)  # gw in fp64
        # w_x shares weight's version counter: autograd refuses a backward after the slopes
        # changed, so checking finiteness here (not in forward) sees the same values
        elif ctx.mode == "input" and not bool(torch.isfinite(w_x).all()):
            gi, gw = _reference_backward(g, s, wv, ctx.shared, acc)
        elif ctx.mode == "mask":
            gi, gw = _eager_backward(g, s, s, wv, ctx.shared, saved[2], acc)
        elif get_prelu_backend() == "compile":
            gi, gw = _compiled_kernel(g, s, s, wv, ctx.shared, acc)
        else:
            gi, gw = _eager_backward(g, s, s, wv, ctx.shared, None, acc)
        if ctx.mode != "input":
            # saved value is y = a * x on the negative side: divide the sum by a (in the
            # sum's dtype: fp64 from the C++ kernel, else the accumulation dtype)
            gw = gw / w_x.to(gw.dtype).reshape(gw.shape)
        if not ctx.needs_input_grad[0]:
            gi = None
        gw = gw.reshape(-1).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gi, gw, None


def _check_inplace_allowed(x: torch.Tensor) -> None:
    """Refuse before writing, with torch's own wording, where autograd would refuse after."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return
    if x.is_leaf:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation "
            "(PReLU(inplace=True)); use inplace=False or apply it to a non-leaf tensor"
        )
    base = x._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place "
            "operation (PReLU(inplace=True)); use inplace=False"
        )


def prelu(x: torch.Tensor, weight: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Functional PReLU: ``max(0, x) + a * min(0, x)``, ``a = weight`` broadcast over dim 1.

    ``weight`` has shape ``(1,)`` (channel-shared) or ``(C,)`` with ``C = x.shape[1]``
    (channel-wise). It may be fp32 while ``x`` is bf16/fp16 (autocast): the output has
    ``x``'s dtype and the slope gradient is accumulated in fp32 and returned in
    ``weight.dtype``. ``inplace=True`` overwrites ``x`` (see the module docstring).

    Example::

        >>> y = prelu(torch.randn(8, 3, 5, 5), torch.full((3,), 0.25))
    """
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError("prelu(x, weight) expects tensors for both x and weight")
    if not x.is_floating_point():
        raise TypeError(f"PReLU needs a floating-point input, got {x.dtype}; cast it with .float()")
    if _graph_mode():
        return F.prelu(x, weight.to(x.dtype))
    _slope_view(weight, x)  # validate before any in-place write
    if inplace:
        _check_inplace_allowed(x)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if not needs_grad:
        w_x = weight.detach().to(x.dtype)
        wv = _slope_view(w_x, x)
        if inplace:
            _inplace_forward(x, w_x, wv)
            torch.autograd.graph.increment_version(x)  # a custom op does not bump it itself
            return x
        return _out_of_place(x, w_x, wv)
    return _PReLUFunction.apply(x, weight, inplace)


class PReLU(nn.Module):
    """Parametric ReLU (He et al. 2015, Eq. 1): ``f(x) = max(0, x) + a * min(0, x)``.

    Drop-in for ``torch.nn.PReLU``: same arguments, one ``weight`` Parameter of shape
    ``(num_parameters,)`` (same state_dict key), same outputs and gradients.

    Args:
        num_parameters: 1 for one slope shared by all channels, or C for one slope per
            channel (dim 1 of the input; the paper's large models use channel-wise).
        init: initial slope ``a`` (the paper uses 0.25 throughout).
        inplace: overwrite the input and keep only the output for backward (exact in every
            case; see the module docstring for the fall-backs).

    Differences from ``torch.nn.PReLU``: a bf16/fp16 input with an fp32 slope works with and
    without autocast, and the slope gradient is accumulated in fp32 (torch 2.13 raises
    "prelu: Type promoting not supported" without autocast, and under CPU autocast casts the
    slope to bf16 so its gradient is rounded to 8 significant bits).

    Slopes must not get weight decay (paper Sec. 2.1): ``no_weight_decay = True`` tells
    ``rectifiers.optim.param_groups`` so.

    Example::

        >>> act = PReLU(64)  # channel-wise, a = 0.25
        >>> y = act(torch.randn(2, 64, 8, 8))
    """

    no_weight_decay = True
    __constants__ = ["num_parameters", "inplace"]

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.25,
        inplace: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        bad = not isinstance(num_parameters, int) or isinstance(num_parameters, bool)
        if bad or num_parameters < 1:
            raise ValueError(
                f"PReLU num_parameters must be a positive int (1 = channel-shared, C = "
                f"channel-wise), got {num_parameters!r}"
            )
        self.num_parameters = num_parameters
        self.init = float(init)
        self.inplace = bool(inplace)
        self.weight = nn.Parameter(torch.empty(num_parameters, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every slope to ``init``."""
        nn.init.constant_(self.weight, self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return prelu(x, self.weight, inplace=self.inplace)

    def extra_repr(self) -> str:
        s = f"num_parameters={self.num_parameters}"
        if self.init != 0.25:
            s += f", init={self.init}"
        if self.inplace:
            s += ", inplace=True"
        return s
