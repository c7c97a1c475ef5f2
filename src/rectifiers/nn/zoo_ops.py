"""The zoo's one kernel mechanism: eager formulas, one autograd Function, :func:`activation`.

The hot path is C++: for plain dense CPU tensors :func:`activation` first calls
``torch.ops.rectifiers_act.apply`` (``csrc/activations_autograd.h``), which runs the fused
forward and records a hand-written autograd node over the same kernels, saving what the Function
below saves (bitwise the same results); everything else takes the Function.

Every zoo activation but ``prelu``/``prelu_shared`` (:mod:`rectifiers.nn.prelu`) is one entry
of ``_SPECS`` (its eager formulas for ``f``, ``f'`` and, if learnable, ``df/dw``) and one
functor of ``rectifiers/csrc/activations_cpu.cpp`` (the same formulas, vectorised, run by one
fused elementwise template: a forward pass, and a backward pass that writes ``g * f'`` and
reduces the parameter gradient in a fixed order). One autograd Function (:class:`_ActFunction`)
runs either on the C++ kernels (CPU, dense contiguous or channels_last inputs) or on the eager
formulas (other devices and layouts, no compiler, ``RECTIFIERS_NO_CPP=1``: warned once unless
disabled on purpose), and gives

* double backward: when the backward itself is differentiated (``create_graph=True``) it is
  computed with the differentiable eager formulas, so gradient penalties and Hessian-vector
  products are exact (``gradgradcheck``);
* forward-mode AD (``torch.autograd.forward_ad``): tangent ``f'(x) t_x (+ df/dw t_w)``.

Numerics: no NaN or inf over the whole finite float range (gates are evaluated on clamped
arguments where they are saturated, products ordered so that no ``inf * 0`` appears). In fp64
the kernels use libm and equal the direct formulas; in fp32/bf16 exp, expm1 and erfc are
vectorised polynomial versions (exp within 1 ulp, expm1 within 2 ulp, erfc within 1.5e-7
absolute as ATen's own vectorised erf); every smooth activation's fp32 f and f' are within
4e-7 * max(|f64 value|, 1) of its fp64 value at the same input (a test measures it on a dense grid).
In bf16 and fp16 gelu, gelu_tanh, silu, swish with a shared beta, mish, golu and sau read ``f``
and ``f'`` (swish: ``sigmoid(-|beta x|)``, from which its backward computes ``f'`` and
``df/dbeta``) from 65536-entry tables that the kernels' own loops fill once per parameter set:
the same values as computing them (tested on every bit pattern), at the cost of a lookup (elu,
selu and smelu compute directly: measured faster than a lookup).
Under tracing, export and ``torch.compile`` the eager formulas are used as plain
ATen ops (exportable, differentiated by autograd).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd import forward_ad

from rectifiers._cpp import kernel_layout
from rectifiers.nn import _activations_cpu

__all__ = ["SELU_ALPHA", "SELU_SCALE", "activation", "rrelu_slopes"]

_RSQRT2 = 1 / math.sqrt(2.0)
_RSQRT2PI = 1 / math.sqrt(2 * math.pi)
_K0, _K1 = math.sqrt(2 / math.pi), 0.044715  # gelu tanh approximation
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


# ------------------------------------------------------------------ eager formulas (portable)
# Each is the same formula as the C++ functor of the same kind; they are differentiable, so
# they also serve double backward and forward-mode AD.
def _one_where(cond: torch.Tensor, like: torch.Tensor, other) -> torch.Tensor:
    """``cond ? 1 : other`` in ``like``'s dtype (``other`` a number or a tensor)."""
    one = like.new_ones(())
    if not isinstance(other, torch.Tensor):
        other = like.new_full((), float(other))
    return torch.where(cond, one, other)


def _ncdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.special.erfc(-t * _RSQRT2)  # erfc: accurate in the far left tail


def _npdf(t: torch.Tensor) -> torch.Tensor:
    tc = t.clamp(-1e4, 1e4)
    return torch.exp(-0.5 * tc * tc) * _RSQRT2PI


def _sig_q(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sigmoid(z) and sigmoid(z) (1 - sigmoid(z)) from e = exp(-|z|) (no overflow)."""
    e = torch.exp(-z.abs())
    sig = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return sig, e / ((1 + e) * (1 + e))


_GT_B = 9.8  # gelu_tanh's clamp (as activations_math.h: e^{-2u} and 1 / (1 + e^{-2u}) stay normal)


def _gelu_tanh_parts(x):
    """0.5 x (1 + tanh u) = x sigmoid(2u): clamp(x), sigmoid(2u) and sigmoid' (no overflow in
    any dtype: from exp(-|2u|), as ``_sig_q``)."""
    xc = x.clamp(-_GT_B, _GT_B)
    return (xc, *_sig_q(xc * (2 * _K0 + 2 * _K0 * _K1 * xc * xc)))


def _gelu_tanh_f(x, p, w):
    xc, sig, _ = _gelu_tanh_parts(x)
    return xc * sig + (x - xc).clamp(min=0)


def _gelu_tanh_d(x, p, w):
    xc, sig, q = _gelu_tanh_parts(x)
    d = sig + (xc * q) * (2 * _K0 + 6 * _K0 * _K1 * xc * xc)
    return torch.where(x < -_GT_B, x.new_zeros(()), d)


def _mish_parts(x):
    e = torch.exp(x.clamp(max=20.0))  # tanh(softplus(20)) == 1 in fp32 and fp64
    n = e * (e + 2)
    g = n / (n + 2)  # tanh(softplus(x))
    return g, (4 * (n + 1) / ((n + 2) * (n + 2))) * (e / (1 + e))


def _golu_parts(x):
    xc = x.clamp(-20.0, 100.0)  # below -20 the gate is exactly 0 in every float dtype
    e = torch.exp(-xc)
    return xc, e, torch.exp(-e)


def _smelu_f(x, p, w):
    b = p[0]
    xc = x.clamp(-b, b)
    return torch.where(x >= b, x, (xc + b) * (xc + b) / (4 * b))


def _smelu_d_out(y, p, w):
    b = p[0]
    # f' = (x + b) / (2b) = sqrt(y / b) inside; the inner where keeps sqrt'(0) out of the graph
    root = torch.sqrt(y.clamp(min=torch.finfo(y.dtype).tiny) / b)
    return torch.where(y >= b, y.new_ones(()), torch.where(y > 0, root, y.new_zeros(())))


_M32 = 0xFFFFFFFF


def _mix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def rrelu_slopes(like: torch.Tensor, lower: float, upper: float, seed: int) -> torch.Tensor:
    """The per-element rrelu slopes ``U(lower, upper)`` of seed ``seed`` for a tensor laid out
    as ``like``: a hash of (seed, memory offset), the same numbers the C++ kernel regenerates
    (up to fp32 rounding of ``lower + (upper - lower) u``)."""
    n = like.numel()
    stride = torch.empty_like(like, device="meta").stride()  # dense memory order
    off = torch.arange(n, device=like.device, dtype=torch.int64).as_strided(like.shape, stride)
    h = _mix32(((off * 0x9E3779B9) & _M32) ^ (int(seed) & _M32))
    u = (h >> 8).to(torch.float32) * (1.0 / 16777216.0)
    lo = torch.tensor(lower, dtype=torch.float32, device=like.device)
    span = torch.tensor(upper - lower, dtype=torch.float32, device=like.device)
    return (lo + span * u).to(like.dtype)


@dataclass(frozen=True)
class _Spec:
    """One activation for the kernel mechanism: its C++ functor id and eager formulas."""

    kind: int  # functor id in activations_cpu.cpp
    f: Callable  # f(x, p, w)
    d_in: Callable  # f'(x, p, w)
    d_out: Callable | None = None  # f' from the output (where the module keeps the output)
    d_w: Callable | None = None  # df/dw(x, p, w) for a learnable per-channel w
    mask: Callable | None = None  # mask(x, p): the bool mask saved in mode "mask"
    d_mask: Callable | None = None  # d_mask(m, p, like): f' from it (default: m as 0/1)


def _elu_f(x, p, w):
    return torch.where(x > 0, p[1] * x, (p[1] * p[0]) * torch.expm1(x.clamp(max=0)))


_SPECS: dict[str, _Spec] = {
    "relu": _Spec(0, lambda x, p, w: torch.relu(x), lambda x, p, w: (x > 0).to(x.dtype),
                  lambda y, p, w: (y > 0).to(y.dtype), mask=lambda x, p: x > 0),
    "leaky_relu": _Spec(1, lambda x, p, w: torch.where(x > 0, x, x * p[0]),
                        lambda x, p, w: _one_where(x > 0, x, p[0]),
                        lambda y, p, w: _one_where(y > 0, y, p[0]), mask=lambda x, p: x > 0,
                        d_mask=lambda m, p, like: _one_where(m, like, p[0])),
    "rrelu": _Spec(2, lambda x, p, w: torch.where(x > 0, x, x * rrelu_slopes(x, *p)),
                   lambda x, p, w: _one_where(x > 0, x, rrelu_slopes(x, *p)),
                   lambda y, p, w: _one_where(y > 0, y, rrelu_slopes(y, *p))),
    "elu": _Spec(3, _elu_f,
                 lambda x, p, w: torch.where(x > 0, x.new_full((), p[1]),
                                             (p[1] * p[0]) * torch.exp(x.clamp(max=0))),
                 lambda y, p, w: torch.where(y > 0, y.new_full((), p[1]), y + p[1] * p[0])),
    "gelu": _Spec(4, lambda x, p, w: x * _ncdf(x), lambda x, p, w: _ncdf(x) + x * _npdf(x)),
    "gelu_tanh": _Spec(5, _gelu_tanh_f, _gelu_tanh_d),
    "swish": _Spec(6, lambda x, p, w: x * _sig_q(w * x)[0],
                   lambda x, p, w: (lambda z, sq: sq[0] + z * sq[1])(w * x, _sig_q(w * x)),
                   d_w=lambda x, p, w: x * (x * _sig_q(w * x)[1])),
    "mish": _Spec(7, lambda x, p, w: x * _mish_parts(x)[0],
                  lambda x, p, w: (lambda gd: gd[0] + x.clamp(max=20.0) * gd[1])(_mish_parts(x))),
    "golu": _Spec(8, lambda x, p, w: x.clamp(min=-20.0) * _golu_parts(x)[2],
                  lambda x, p, w: (lambda xc, e, g: g * (1 + xc * e))(*_golu_parts(x))),
    "smelu": _Spec(9, _smelu_f,
                   lambda x, p, w: torch.where(x >= p[0], x.new_ones(()),
                                               (x.clamp(-p[0], p[0]) + p[0]) / (2 * p[0])),
                   _smelu_d_out),
    "sau": _Spec(10, lambda x, p, w: x * (p[0] + (1 - p[0]) * _ncdf(x / p[1]))
                 + ((1 - p[0]) * p[1]) * _npdf(x / p[1]),
                 lambda x, p, w: p[0] + (1 - p[0]) * _ncdf(x / p[1])),
    "helu": _Spec(11, lambda x, p, w: torch.relu(x), lambda x, p, w: (x > -p[0]).to(x.dtype),
                  mask=lambda x, p: x > -p[0]),
}


# ------------------------------------------------------------------------- the one Function
_warned = False
_UNIT_W: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _graph_mode() -> bool:
    """True when a tracer/exporter/compiler records (the zoo then uses its eager formulas,
    PReLU calls ``F.prelu``): the legacy ONNX exporter and ``torch.jit.trace`` trace, the
    dynamo ONNX exporter, ``torch.export`` and ``torch.compile`` count as compiling."""
    return torch._C._get_tracing_state() is not None or bool(torch.compiler.is_compiling())


def _use_cpp(x: torch.Tensor) -> bool:
    """The C++ kernels may serve ``x`` (CPU, a kernel dtype, the extension built). Its layout
    is checked where the kernels are called (``apply`` in C++, ``_layout`` here): not twice
    on the hot path."""
    if x.device.type != "cpu" or x.dtype not in _activations_cpu.SUPPORTED_DTYPES:
        return False
    if x.numel() == 0:
        return False
    if not _activations_cpu.available():
        global _warned
        err = _activations_cpu.load_error()
        if not _warned and "RECTIFIERS_NO_CPP" not in str(err):
            _warned = True
            warnings.warn(
                f"rectifiers: the fused C++ activation kernels are unavailable ({err}); using "
                "the slower eager formulas. Install a C++ compiler (Debian: apt-get install "
                "g++) or set RECTIFIERS_NO_CPP=1 to silence this warning.",
                RuntimeWarning,
                stacklevel=5,
            )
        return False
    return True


def _layout(x: torch.Tensor, w: torch.Tensor | None) -> tuple[int, int] | None:
    """``(C, inner)`` for the kernels: flat for one parameter, else channel dim 1."""
    return kernel_layout(x, w is None or w.numel() == 1)


def _kernel_w(w: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    wd = torch.float64 if x.dtype == torch.float64 else torch.float32
    if w is None:
        key = (wd, x.device)
        if key not in _UNIT_W:
            _UNIT_W[key] = torch.ones(1, dtype=wd, device=x.device)
        return _UNIT_W[key]
    return w.detach().to(wd).reshape(-1).contiguous()


def _w_view(w: torch.Tensor | None, x: torch.Tensor) -> Any:
    """``w`` cast to ``x``'s dtype and shaped to broadcast over channel dim 1 (1 if None)."""
    if w is None:
        return 1.0
    wx = w.to(x.dtype)
    if w.numel() == 1:
        return wx.reshape(())
    return wx.reshape([1, -1] + [1] * (x.ndim - 2))


def _sum_dims(x: torch.Tensor, w: torch.Tensor) -> list[int]:
    return list(range(x.ndim)) if w.numel() == 1 else [0] + list(range(2, x.ndim))


class _ActFunction(torch.autograd.Function):
    """``y = f(x; p, w)`` for one zoo activation; see the module docstring."""

    @staticmethod
    def forward(ctx, x, w, name: str, p: tuple, mode: str, inplace: bool):
        spec = _SPECS[name]
        lay = _layout(x, w) if not _graph_mode() and _use_cpp(x) else None
        if lay is None and mode == "mask" and _output_gives_mask(name, p):
            # a mask is kept for the C++ kernels' 1-bit form; the eager formulas would keep a
            # bool per element, more than the output (which the next layer usually keeps)
            mode = "output"
        ctx.name, ctx.p, ctx.mode, ctx.inplace = name, p, mode, inplace
        ctx.lay = lay
        mask = None
        if lay is not None:
            out = x if inplace else torch.empty_like(x)
            if mode == "mask":  # 1 bit per element, in x's memory order (flat layout)
                mask = torch.empty((x.numel() + 7) // 8, dtype=torch.uint8)
                ctx.x_layout = (tuple(x.shape), x.stride())
            _activations_cpu.forward(x, spec.kind, list(p), _kernel_w(w, x), lay, out, mask)
        else:
            if mode == "mask":
                mask = spec.mask(x, p)
            y = spec.f(x, p, _w_view(w, x))
            out = x.copy_(y) if inplace else y
        if inplace:
            ctx.mark_dirty(x)
        saved = {"input": x, "output": out, "mask": mask}[mode]
        ctx.save_for_backward(saved, w)
        ctx.save_for_forward(saved, w)
        return out

    @staticmethod
    def backward(ctx, g):
        s, w = ctx.saved_tensors
        spec = _SPECS[ctx.name]
        need_w = w is not None and ctx.needs_input_grad[1]
        if ctx.lay is not None and not torch.is_grad_enabled():
            mask = s if ctx.mode == "mask" else None
            if mask is not None:  # the kernel reads only the mask: g in x's layout
                shape, stride = ctx.x_layout
                s = g if g.stride() == stride else torch.empty_strided(
                    shape, stride, dtype=g.dtype).copy_(g)
                g = s
            gi, gw = _activations_cpu.backward(g, s, spec.kind, ctx.mode, list(ctx.p),
                                               _kernel_w(w, g), ctx.lay, mask, need_w)
            if need_w:
                gw = gw.to(w.dtype).reshape(w.shape)
        else:
            # differentiable formulas: exact double backward when create_graph=True
            gi, gw = _act_grad(g, _bool_mask(ctx, s), w, spec.kind, ctx.p, _MODE_IDS[ctx.mode],
                               need_w)
        return (gi if ctx.needs_input_grad[0] else None, gw if need_w else None,
                None, None, None, None)

    @staticmethod
    def jvp(ctx, tx, tw, *_):
        s, w = ctx.saved_tensors
        spec = _SPECS[ctx.name]
        d = _deriv(spec, ctx.mode, _bool_mask(ctx, s), ctx.p, w, tx)
        if ctx.inplace:
            return tx.mul_(d)
        ty = tx * d
        if tw is not None and w is not None:
            ty = ty + _w_view(tw, s) * spec.d_w(s, ctx.p, _w_view(w, s))
        return ty


def _output_gives_mask(name: str, p: tuple) -> bool:
    """The output determines the mask (relu; leaky_relu with a slope >= 0)."""
    return name == "relu" or (name == "leaky_relu" and p[0] >= 0)


def _bool_mask(ctx, s: torch.Tensor) -> torch.Tensor:
    """A saved 1-bit mask (the C++ kernels' uint8 bits) as the bool mask the eager formulas
    take; anything else as it is."""
    if ctx.mode == "mask" and s.dtype == torch.uint8:
        return torch.ops.rectifiers_act.unpack_mask(s, *ctx.x_layout)
    return s


def _deriv(spec: _Spec, mode: str, s, p, w, like) -> torch.Tensor:
    if mode == "mask":
        return spec.d_mask(s, p, like) if spec.d_mask else s.to(like.dtype)
    if mode == "output":
        return spec.d_out(s, p, _w_view(w, s))
    return spec.d_in(s, p, _w_view(w, s))


_MODE_IDS = _activations_cpu.MODES  # the C++ kernels' mode numbers
_MODE_NAMES = {i: name for name, i in _MODE_IDS.items()}
_BY_KIND = {spec.kind: spec for spec in _SPECS.values()}


def _act_grad(g, s, w, kind: int, p, mode: int, need_w: bool):
    """``(g * f'(s), dE/dw)`` with differentiable ATen ops (``dE/dw`` empty unless
    ``need_w``): the backward when it is itself differentiated (``create_graph=True``) or
    batched, for the Python Function and, as the operator ``rectifiers::act_grad``, for the
    C++ node (csrc/activations_autograd.h)."""
    spec, p = _BY_KIND[kind], tuple(p)
    gi = g * _deriv(spec, _MODE_NAMES[mode], s, p, w, g)
    if not need_w:
        return gi, g.new_empty(0)
    acc = torch.promote_types(w.dtype, torch.float32)
    dw = spec.d_w(s, p, _w_view(w, s))
    return gi, torch.sum(g * dw, _sum_dims(s, w), dtype=acc).to(w.dtype).reshape(w.shape)


_LIB = torch.library.Library("rectifiers", "FRAGMENT")
_LIB.define("act_grad(Tensor g, Tensor s, Tensor? w, int kind, float[] p, int mode, "
            "bool need_w) -> (Tensor, Tensor)")
_LIB.impl("act_grad", _act_grad, "CompositeImplicitAutograd")


def _check_inplace_allowed(x: torch.Tensor) -> None:
    """Refuse before writing, with torch's wording, where autograd would refuse after."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return
    base = x._base
    if x.is_leaf or (base is not None and base.is_leaf and base.requires_grad):
        raise RuntimeError(
            "a leaf Variable (or a view of one) that requires grad is being used in an in-place "
            "operation (activation with inplace=True); use inplace=False or apply it to a "
            "non-leaf tensor"
        )


def activation(
    x: torch.Tensor,
    name: str,
    p: tuple = (),
    w: torch.Tensor | None = None,
    mode: str = "input",
    inplace: bool = False,
) -> torch.Tensor:
    """Apply zoo activation ``name`` (a kernel of ``_SPECS``) with scalars ``p`` and optional
    learnable per-channel ``w``; ``mode`` says what backward keeps (``"input"``, ``"output"``
    or ``"mask"``); ``inplace`` needs mode ``"output"`` or ``"mask"``."""
    if type(x) is torch.Tensor and not _graph_mode() and _use_cpp(x):
        # the whole layer in C++ (csrc/activations_autograd.h) where it applies, else None
        y = _activations_cpu.apply(x, _SPECS[name].kind, p, w, _MODE_IDS[mode], inplace)
        if y is not None:
            return y
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"activation '{name}' needs a floating-point tensor input")
    if inplace and mode == "input":
        raise ValueError(f"activation '{name}' needs its input for backward: no in-place form")
    if w is not None and w.numel() > 1 and (x.ndim < 2 or x.shape[1] != w.numel()):
        raise ValueError(
            f"activation '{name}' has {w.numel()} per-channel parameters but the input has "
            f"shape {tuple(x.shape)}; pass an input with {w.numel()} channels in dim 1"
        )
    if inplace:
        _check_inplace_allowed(x)
    spec = _SPECS[name]
    graph = _graph_mode()
    if torch._C._are_functorch_transforms_active():
        # torch.func (vmap, grad, jvp, jacrev, ...): the transforms differentiate and batch
        # the plain ATen formulas exactly; the kernel and the Function stay outside them
        if name in ("helu", "rrelu"):
            raise NotImplementedError(
                f"activation '{name}' does not support torch.func transforms (its gradient is "
                "not the derivative of its ATen formula); use torch.autograd instead")
        y = spec.f(x, p, _w_view(w, x))
        return x.copy_(y) if inplace else y
    if graph and name not in ("helu", "rrelu"):
        # tracers, exporters and compilers see plain ATen ops (autograd differentiates them);
        # helu's surrogate gradient and rrelu's seeded slopes need the Function
        y = spec.f(x, p, _w_view(w, x))
        return x.copy_(y) if inplace else y
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or (w is not None and w.requires_grad))
    if needs_grad or forward_ad._current_level >= 0 or graph:
        return _ActFunction.apply(x, w, name, tuple(p), mode, inplace)
    lay = _layout(x, w) if _use_cpp(x) else None
    if lay is None:
        y = spec.f(x, p, _w_view(w, x))
        return x.copy_(y) if inplace else y
    out = x if inplace else torch.empty_like(x)
    _activations_cpu.forward(x, spec.kind, list(p), _kernel_w(w, x), lay, out)
    if inplace:
        torch.autograd.graph.increment_version(x)  # the custom op does not bump it itself
    return out
