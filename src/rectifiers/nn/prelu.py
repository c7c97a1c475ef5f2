"""Parametric ReLU (paper Eq. 1-4) as a registered PyTorch operator: exact, lean, a drop-in.

Forward (Eq. 1): ``f(x_i) = max(0, x_i) + a_c * min(0, x_i)`` with one slope ``a_c`` per
channel (channel-wise, ``num_parameters = C``, channel dim 1) or one per layer
(channel-shared, ``num_parameters = 1``; the slope may also be a 0-d tensor, as in ``F.prelu``).

Backward (Eq. 2-3):

* input:  ``df/dx = 1 if x > 0 else a_c``
* slope:  ``dE/da_c = sum over all positions of channel c with x <= 0 of g * x``

Operators (``torch.library``, namespace ``rectifiers``):

* ``torch.ops.rectifiers.prelu(x, weight) -> y`` (functional);
* ``torch.ops.rectifiers.prelu_(x, weight) -> x`` (in place; the schema declares ``x``
  mutated, ``Tensor(a!)``, tagged ``torch.Tag.inplace``).

Each has a CPU kernel (the fused C++ kernel of ``rectifiers/csrc/prelu_cpu.cpp`` where the
layout allows, else ATen's), a portable kernel for every other device
(``CompositeExplicitAutograd``: ATen's ``_prelu_kernel``, the CUDA path), a fake (meta)
kernel for tracing, a vmap rule, and an ``Autograd`` kernel:

* reverse mode, first order: one fused C++ pass computes the input gradient and the
  per-channel slope gradient with no full-size temporary (ATen materialises a full-size
  per-element slope gradient and reduces it afterwards, 4-5x an in-place ReLU on 2 cores);
* reverse mode with ``create_graph=True`` (gradient penalties, Hessian-vector products): the
  same formulas written with differentiable ATen ops, so double backward is exact for input
  *and* slope (``torch.is_grad_enabled()`` inside the backward tells which). One caveat: with
  ``inplace=True`` and only the output saved, the slope's second derivative is formed as
  ``d/da (sum g*y / a)``, which cancels to 0 only up to rounding: about 1e-5 relative at
  a = 0.25 in fp32, worse as a -> tiny. For Hessian products through the slopes, build the
  layer with ``inplace=False`` (exact for any slope);
* forward-mode AD and ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``, ``jvp``):
  ATen's own differentiable ``_prelu_kernel``, i.e. exactly ``torch.nn.PReLU``'s rules.

On CUDA the layer calls ATen's ``_prelu_kernel`` and its first-order backward is ATen's fused
``_prelu_kernel_backward`` plus one reduction of the slope terms (fp32 accumulation). In-place
layers on a GPU read their slopes from a host copy prefetched after every ``optimizer.step()``
(``csrc/slope_copies.h`` for the C++ path, ``rectifiers.nn._prelu_slopes`` for the Python one),
so a training forward does not synchronise with the GPU to pick what to save. Tested on an H100
and an H200 (``tests/test_cuda.py``; benchmarks/RESULTS.md for the costs).

The hot path is C++ end to end: for plain dense CPU or CUDA tensors (contiguous or
channels_last, no forward-mode tangent, no ``torch.func`` transform or dispatch mode)
:func:`prelu` and the module call ``torch.ops.rectifiers_prelu.apply``, which checks the input,
picks what to save, runs the forward (the fused kernel on the CPU, ATen's on CUDA) and records a
hand-written C++ autograd node whose backward is the fused kernel (ATen's on CUDA; or, when the
backward is itself differentiated or batched, the differentiable ATen formulas below), so a
training step runs no Python in the layer. It saves and computes exactly what the Python
autograd kernels below save and compute (same kernels, bitwise the same results); everything
else (other layouts, errors, transforms, the eager backend) takes those.

Backends (:func:`set_prelu_backend`): ``"cpp"`` (default; built on first use and cached per
machine, see ``rectifiers.nn._prelu_cpu``; without a compiler the layer warns once and uses
``"eager"``), ``"eager"`` (ATen ops only), ``"compile"`` (the first-order backward through
``torch.compile``).

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
the reduction's rounding error. Under forward-mode AD or a ``torch.func`` transform the
in-place form computes out of place and copies the result into ``x``.

Under tracing, scripting, ONNX export and ``torch.compile`` / ``torch.export`` the layer calls
``F.prelu``, so exported graphs contain the standard PReLU op (ONNX ``PRelu``) and Inductor
generates fused code for it: a compiled PReLU-net trains as fast as the compiled ReLU-net
(``benchmarks/prelu_cost.py --train ... --compiled``), but Inductor keeps the activation's input
*and* output for backward (``benchmarks/prelu_memory.py --compiled``: about 1.9x the compiled
ReLU-net's saved bytes), because a compiled graph cannot choose what to save from the slopes'
values. The registered operators themselves also compile (``fullgraph=True``), the in-place one
then keeping a copy of its input.

Exactness: forward and input gradient are bitwise equal to ``torch.nn.PReLU`` (fp32, fp64,
bf16, fp16), every backend; the slope gradient equals it up to summation order (the C++
kernel sums ATen's per-element terms in fp32 blocks and fp64 across blocks, in a fixed order:
bitwise reproducible for any thread count; the eager fallback sums with ATen, reproducible for
a fixed thread count only).

Errors: every input ``F.prelu`` rejects raises the exception type torch raises (RuntimeError
for shape and dtype mismatches, NotImplementedError for integer inputs, TypeError for
non-tensors) with a message that names the fix. Unlike ``torch.nn.PReLU``, a bf16/fp16 input
with an fp32 slope is accepted (the slope gradient is accumulated in fp32).
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad as _fwad

from rectifiers.nn import _prelu_cpu
from rectifiers.nn._prelu_math import (
    _backward_composite,
    _check,
    _reduce_dims,
    _view,
    _vmap_rule,
    _w1,
)
from rectifiers.nn._prelu_slopes import _prefetch, _save_mode
from rectifiers.nn.zoo_ops import _graph_mode

__all__ = ["PReLU", "prelu", "set_prelu_backend", "get_prelu_backend"]

_BACKENDS = ("cpp", "eager", "compile")
_backend = os.environ.get("RECTIFIERS_PRELU_BACKEND", "cpp")
_compiled: dict[str, object] = {}
_warned = False


def set_prelu_backend(name: str) -> None:
    """Choose the CPU kernels: ``"cpp"`` (default), ``"eager"`` or ``"compile"``.

    ``"cpp"``: fused C++ forward and backward (built on first use, ~10-30 s once per machine,
    then cached; see ``rectifiers.nn._prelu_cpu``); falls back to ``"eager"`` with a one-time
    warning if it cannot be built. ``"eager"``: ATen ops, no compiler needed. ``"compile"``:
    the first-order backward through ``torch.compile`` (~20-30 s per shape on first use).
    Also settable by the environment variable ``RECTIFIERS_PRELU_BACKEND``.
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


def _cpp_layout(x: torch.Tensor, shared: bool) -> tuple[int, int] | None:
    """``(C, inner)`` if the C++ kernels take ``x`` under the current backend, else ``None``."""
    if _backend != "cpp" or x.device.type != "cpu" or x.numel() == 0:
        return None
    if x.dtype not in _prelu_cpu.SUPPORTED_DTYPES or type(x) is not torch.Tensor:
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
                stacklevel=5,
            )
        return None
    return lay


# ----------------------------------------------------------- kernels (below autograd)


def _forward_portable(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch._prelu_kernel(x, _view(_w1(weight, x), x))


def _forward_cpu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    w1 = _w1(weight, x)
    lay = _cpp_layout(x, w1.numel() == 1)
    if lay is None:
        return torch._prelu_kernel(x, _view(w1, x))
    out = torch.empty_like(x)  # keeps x's memory format
    _prelu_cpu.forward(x, w1, lay, out)
    return out


def _forward_inplace(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Write ``prelu(x, weight)`` into ``x`` (any device); returns ``x``."""
    w1 = _w1(weight, x)
    lay = _cpp_layout(x, w1.numel() == 1)
    if lay is not None:
        _prelu_cpu.forward(x, w1, lay, x)
        return x
    if w1.numel() == 1 and x.device.type == "cpu" and type(x) is torch.Tensor:
        # leaky_relu_ computes x > 0 ? x : x * a in place, bitwise like the prelu kernel
        a = float(w1.reshape(()))
        if math.isfinite(a):
            with torch.autograd.graph.disable_saved_tensors_hooks("internal"), \
                    torch.no_grad():
                F.leaky_relu_(x, a)
            return x
    # no in-place channel-wise kernel in ATen: the transient result is freed at once
    x.copy_(torch._prelu_kernel(x, _view(w1, x)))
    return x


def _compiled_backward(g, s, weight, mode, mask):
    if "bwd" not in _compiled:
        _compiled["bwd"] = torch.compile(_backward_composite, dynamic=None)
    return _compiled["bwd"](g, s, weight, mode, mask)


def _backward(ctx, g, s, weight, mask):
    """Gradients for ``(x, weight)`` from the saved ``s`` (see :func:`_backward_composite`)."""
    mode = ctx.mode
    if torch.is_grad_enabled() or torch._C._are_functorch_transforms_active():
        # the backward is itself being differentiated (create_graph=True) or batched
        # (vmap over grad outputs, is_grads_batched): differentiable ATen ops only
        gi, gw = _backward_composite(g, s, weight, mode, mask)
    elif ctx.lay is not None and type(g) is torch.Tensor:
        # the fused C++ pass: the same selects as ATen's backward, exact for any slope
        # (nan/inf included): the slope term g * s does not involve a
        gi, gw = _prelu_cpu.backward(
            g, s, _w1(weight, s), mask, ctx.lay, mode != "input", weight.dtype
        )
    elif _backend == "compile" and s.device.type == "cpu":
        gi, gw = _compiled_backward(g, s, weight, mode, mask)
    elif mask is None:
        # ATen's own fused backward kernel (the CUDA path, and the eager backend): the input
        # gradient and the per-element slope terms in one pass, then one reduction (two
        # launches where the composite formulas take seven); the same selects, so the same
        # values. With the output saved (slopes in [tiny, 1]) y's sign is x's sign.
        w1 = _w1(weight, s)
        gi, terms = torch.ops.aten._prelu_kernel_backward(g, s, _view(w1, s))
        acc = torch.promote_types(weight.dtype, torch.float32)
        gw = terms.sum(_reduce_dims(s, w1.numel() == 1), dtype=acc)
        if mode != "input":
            gw = gw / w1.to(acc).reshape(gw.shape)
    else:
        gi, gw = _backward_composite(g, s, weight, mode, mask)
    gi = gi if ctx.needs_input_grad[0] else None
    gw = gw.to(weight.dtype).reshape(weight.shape) if ctx.needs_input_grad[1] else None
    return gi, gw


class _PReLUFunction(torch.autograd.Function):
    """Reverse-mode autograd of ``rectifiers::prelu``: saves the input and the slopes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.mode = "input"
        ctx.save_for_backward(x, weight)
        w1 = _w1(weight, x)
        ctx.lay = _cpp_layout(x, w1.numel() == 1)
        if ctx.lay is not None:  # the CPU kernel of the operator, without a redispatch
            out = torch.empty_like(x)
            _prelu_cpu.forward(x, w1, ctx.lay, out)
            return out
        if x.device.type == "cuda" and type(x) is torch.Tensor:
            _check(x, weight)  # the portable kernel, without a redispatch
            return torch._prelu_kernel(x, _view(w1, x))
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.rectifiers.prelu.default(x, weight)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        return _backward(ctx, g, x, weight, None)


class _PReLUInplaceFunction(torch.autograd.Function):
    """Reverse-mode autograd of ``rectifiers::prelu_`` for the slopes that let the output
    (``mode="output"``) or the output and a sign mask (``mode="mask"``) stand in for ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, w1: torch.Tensor,
                mode: str) -> torch.Tensor:
        ctx.mode = mode
        mask = x > 0 if mode == "mask" else None
        ctx.lay = _cpp_layout(x, w1.numel() == 1)
        if ctx.lay is not None:  # the CPU kernel of the operator, without a redispatch
            _prelu_cpu.forward(x, w1, ctx.lay, x)
        elif x.device.type == "cuda" and type(x) is torch.Tensor:
            _check(x, weight)  # the portable kernel, without a redispatch
            _forward_inplace(x, weight)
        else:
            with torch._C._AutoDispatchBelowAutograd():
                torch.ops.rectifiers.prelu_.default(x, weight)
        ctx.mark_dirty(x)
        if mask is not None:
            ctx.save_for_backward(x, weight, mask)
        else:
            ctx.save_for_backward(x, weight)
        return x

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        saved = ctx.saved_tensors
        mask = saved[2] if ctx.mode == "mask" else None
        return (*_backward(ctx, g, saved[0], saved[1], mask), None, None)


# ------------------------------------------------------------------- autograd kernels


def _has_tangent(t: torch.Tensor) -> bool:
    return _fwad._current_level >= 0 and _fwad.unpack_dual(t).tangent is not None


def _composite_mode(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Forward-mode AD or a torch.func transform: use ATen's differentiable op, exactly."""
    return (
        torch._C._are_functorch_transforms_active() or _has_tangent(x) or _has_tangent(weight)
    )


def _prelu_autograd(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The ``Autograd`` kernel of ``rectifiers::prelu``."""
    if _composite_mode(x, weight):
        return torch._prelu_kernel(x, _view(_w1(weight, x), x))
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _PReLUFunction.apply(x, weight)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.rectifiers.prelu.default(x, weight)


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


def _prelu_inplace_autograd(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The ``Autograd`` kernel of ``rectifiers::prelu_``."""
    _check_inplace_allowed(x)
    if _composite_mode(x, weight):
        # ATen's kernel saves its input for backward: give it a copy, x is overwritten
        return x.copy_(torch._prelu_kernel(x.clone(), _view(_w1(weight, x), x)))
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        # a tracer (torch.compile, export) cannot branch on the slopes' values: keep x there
        plain = type(x) is torch.Tensor and type(weight) in (torch.Tensor, nn.Parameter)
        w1 = _w1(weight.detach(), x)
        mode = _save_mode(weight, x.dtype) if plain else "input"
        if mode == "input":
            # y does not give x back: keep a copy of x, recorded by autograd so that double
            # backward reaches x through it, and write the result into x
            return x.copy_(_PReLUFunction.apply(x.clone(), weight))
        return _PReLUInplaceFunction.apply(x, weight, w1, mode)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.rectifiers.prelu_.default(x, weight)


# -------------------------------------------------------------------- registration


def _checked(fn):
    def kernel(x, weight):
        _check(x, weight)
        return fn(x, weight)

    kernel.__name__ = fn.__name__
    return kernel


def _inplace_kernel(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _check(x, weight)
    _forward_inplace(x, weight)
    torch.autograd.graph.increment_version(x)  # a Python kernel does not bump it itself
    return x


_LIB = torch.library.Library("rectifiers", "FRAGMENT")
_LIB.define("prelu(Tensor x, Tensor weight) -> Tensor")
# torch.Tag.inplace is missing from some releases (2.11 has none); the schema's (a!) says it
_INPLACE_TAGS = (torch.Tag.inplace,) if hasattr(torch.Tag, "inplace") else ()
_LIB.define("prelu_(Tensor(a!) x, Tensor weight) -> Tensor(a!)", tags=_INPLACE_TAGS)
_LIB.impl("prelu", _checked(_forward_cpu), "CPU")
_LIB.impl("prelu", _checked(_forward_portable), "CompositeExplicitAutograd")
_LIB.impl("prelu", _prelu_autograd, "Autograd")
_LIB.impl("prelu_", _inplace_kernel, "CPU")
_LIB.impl("prelu_", _inplace_kernel, "CompositeExplicitAutograd")
_LIB.impl("prelu_", _prelu_inplace_autograd, "Autograd")


@torch.library.register_fake("rectifiers::prelu", lib=_LIB)
def _prelu_fake(x, weight):
    _check(x, weight)
    return torch.empty_like(x)


@torch.library.register_fake("rectifiers::prelu_", lib=_LIB)
def _prelu_inplace_fake(x, weight):
    _check(x, weight)
    return x


torch.library.register_vmap("rectifiers::prelu", _vmap_rule(False), lib=_LIB)
torch.library.register_vmap("rectifiers::prelu_", _vmap_rule(True), lib=_LIB)


# ----------------------------------------------------------------------- public API


def _try_cpp(x, weight, inplace: bool) -> torch.Tensor | None:
    """The whole layer in C++ (:func:`rectifiers.nn._prelu_cpu.apply`) where it applies."""
    if (
        _backend == "cpp"
        and type(x) is torch.Tensor
        and x.device.type in ("cpu", "cuda")
        and isinstance(weight, torch.Tensor)
        and not torch._C._are_functorch_transforms_active()
        and _prelu_cpu.available()
    ):
        if inplace and x.device.type == "cuda":
            _prefetch.use_cpp()  # its host copies of the slopes, refreshed after each step
        return _prelu_cpu.apply(x, weight, inplace)
    return None


def prelu(x: torch.Tensor, weight: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Functional PReLU: ``max(0, x) + a * min(0, x)``, ``a = weight`` broadcast over dim 1.

    ``weight`` has shape ``()`` or ``(1,)`` (channel-shared) or ``(C,)`` with
    ``C = x.shape[1]`` (channel-wise). It may be fp32 while ``x`` is bf16/fp16 (autocast): the
    output has ``x``'s dtype and the slope gradient is accumulated in fp32 and returned in
    ``weight.dtype``. ``inplace=True`` overwrites ``x`` (see the module docstring). Calls the
    registered operators ``torch.ops.rectifiers.prelu`` / ``prelu_``.

    Example::

        >>> y = prelu(torch.randn(8, 3, 5, 5), torch.full((3,), 0.25))
    """
    if _graph_mode():
        return F.prelu(x, weight.to(x.dtype))
    y = _try_cpp(x, weight, inplace)
    if y is not None:
        return y
    _check(x, weight)
    if type(x) is torch.Tensor and torch._C._len_torch_dispatch_stack() == 0:
        # plain tensors: the operators' Autograd kernels directly (saves a dispatcher hop)
        return _prelu_inplace_autograd(x, weight) if inplace else _prelu_autograd(x, weight)
    if inplace:
        return torch.ops.rectifiers.prelu_(x, weight)
    return torch.ops.rectifiers.prelu(x, weight)


class PReLU(nn.Module):
    """Parametric ReLU (He et al. 2015, Eq. 1): ``f(x) = max(0, x) + a * min(0, x)``.

    Drop-in for ``torch.nn.PReLU``: same arguments, one ``weight`` Parameter of shape
    ``(num_parameters,)`` (same state_dict key), same outputs and gradients; works with
    ``torch.func``, forward-mode AD, double backward, ``torch.compile``, ``torch.export``,
    ONNX and ``torch.jit.script``.

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
    num_parameters: int
    inplace: bool

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
        if torch.jit.is_scripting():
            return F.prelu(x, self.weight.to(x.dtype))
        return self._forward(x)

    @torch.jit.unused
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return prelu(x, self.weight, inplace=self.inplace)

    def extra_repr(self) -> str:
        s = f"num_parameters={self.num_parameters}"
        if self.init != 0.25:
            s += f", init={self.init}"
        if self.inplace:
            s += ", inplace=True"
        return s
