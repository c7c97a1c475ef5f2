"""The rectifier zoo and its registry: one string picks the activation of a whole network.

Every activation is built by :func:`make_activation` ``(name, channels=None, **kwargs)`` so
models never hard-code one (as timm's ``create_act``; unlike timm, ``"prelu"`` is channel-wise,
the paper's choice). Formulas are in each class docstring and in
``docs/rectifier-zoo.md``. Learnable activations carry ``no_weight_decay = True`` (paper Sec.
2.1: decay would pull the slope towards ReLU); :func:`init_slope` gives the initial negative
slope ``a`` for He init (Eq. 15).

Memory-lean backward ("Few-Bit Backward"): ``relu`` (in-place) and ``leaky_relu`` with
``inplace=True`` keep only their output; ``helu`` keeps a 1-byte bool mask instead of the
4-byte input; ``prelu(inplace=True)`` keeps only its output (see :mod:`rectifiers.nn.prelu`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.nn.prelu import PReLU

__all__ = [
    "GELUTanh",
    "GoLU",
    "HeLU",
    "RReLU",
    "SAU",
    "SmeLU",
    "Swish",
    "init_slope",
    "list_activations",
    "make_activation",
    "register_activation",
]


# ---------------------------------------------------------------- activations without torch twin


class _HeLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, inplace: bool) -> torch.Tensor:
        # 1 byte per element instead of the 4-byte input: all backward needs
        ctx.save_for_backward(x > -alpha)
        if inplace:
            ctx.mark_dirty(x)
            return x.relu_()
        return torch.relu(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return g * mask, None, None


class HeLU(nn.Module):
    """Hysteresis ReLU: forward ``max(0, x)``, backward ``dy/dx := 1[x > -alpha]``.

    The gradient also flows for slightly negative inputs (``-alpha < x <= 0``), which keeps
    units from dying; inference costs exactly a ReLU. Saves a bool mask (1 byte/element).
    """

    def __init__(self, alpha: float = 0.05, inplace: bool = False) -> None:
        super().__init__()
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"helu: alpha must be a finite number >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.inplace = bool(inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _HeLUFunction.apply(x, self.alpha, self.inplace)
        return torch.relu_(x) if self.inplace else torch.relu(x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class _GoLUFunction(torch.autograd.Function):
    # below -20 the gate exp(-exp(20)) = exp(-4.85e8) is exactly 0 in every float dtype, so
    # clamping there changes no value but keeps exp(-x) and x * exp(-x) from overflowing
    LO, HI = -20.0, 100.0

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        gate = torch.exp(-torch.exp(-x.clamp(_GoLUFunction.LO, _GoLUFunction.HI)))
        return x.clamp(min=_GoLUFunction.LO) * gate

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        xc = x.clamp(_GoLUFunction.LO, _GoLUFunction.HI)
        e = torch.exp(-xc)
        gate = torch.exp(-e)
        # d/dx x*exp(-exp(-x)) = gate * (1 + x * exp(-x))
        return g * (gate * (1 + xc * e))


class GoLU(nn.Module):
    """Gompertz linear unit: ``x * exp(-exp(-x))`` (hand-written backward, no NaN/inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GoLUFunction.apply(x)


class SmeLU(nn.Module):
    """Smooth ReLU: ``0`` for ``x <= -beta``; ``(x + beta)^2 / (4 beta)`` for ``|x| <= beta``;
    ``x`` for ``x >= beta``. Value and slope are continuous at ``+-beta``."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"smelu: beta (half-width) must be a finite number > 0, got {beta}")
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.beta
        quad = (x.clamp(-b, b) + b).square() / (4 * b)  # clamp: no overflow in the unused branch
        return torch.where(x >= b, x, quad)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class Swish(nn.Module):
    """Swish with a learnable ``beta`` (init 1): ``x * sigmoid(beta * x)``.

    ``num_parameters`` = 1 (one beta per layer) or C (per channel, dim 1)."""

    no_weight_decay = True

    def __init__(self, num_parameters: int = 1, init: float = 1.0) -> None:
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"swish: num_parameters must be >= 1, got {num_parameters}")
        self.num_parameters = num_parameters
        self.beta = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.to(x.dtype)
        if self.num_parameters > 1:
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise ValueError(
                    f"swish expects {self.num_parameters} channels in dim 1, got shape "
                    f"{tuple(x.shape)}; use num_parameters={x.shape[1] if x.ndim > 1 else 1}"
                )
            beta = beta.reshape([1, -1] + [1] * (x.ndim - 2))
        return x * torch.sigmoid(beta * x)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class _SAUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha, ctx.sigma = alpha, sigma
        t = x / sigma
        cdf = 0.5 * torch.special.erfc(-t / math.sqrt(2))  # erfc: accurate far left
        pdf = torch.exp(-0.5 * t.clamp(-1e4, 1e4).square()) / math.sqrt(2 * math.pi)
        return x * (alpha + (1 - alpha) * cdf) + (1 - alpha) * sigma * pdf

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        # the x*pdf terms cancel: dy/dx = alpha + (1 - alpha) * Phi(x / sigma)
        cdf = 0.5 * torch.special.erfc(-(x / ctx.sigma) / math.sqrt(2))
        return g * (ctx.alpha + (1 - ctx.alpha) * cdf), None, None


class SAU(nn.Module):
    """Smooth approximation unit: leaky_relu_alpha convolved with N(0, sigma^2),

    ``((1+a)/2) x + ((1-a)/2) x erf(x / (sqrt(2) sigma)) + ((1-a) sigma / sqrt(2 pi))
    exp(-x^2 / (2 sigma^2))`` = ``x (a + (1-a) Phi(x/sigma)) + (1-a) sigma phi(x/sigma)``.
    Tends to leaky_relu_alpha as sigma -> 0. Defaults (alpha 0.01, sigma 1) are ours: the
    original paper's are unverified (zoo doc)."""

    def __init__(self, alpha: float = 0.01, sigma: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sau: sigma must be a finite number > 0, got {sigma}")
        if not math.isfinite(alpha):
            raise ValueError(f"sau: alpha must be finite, got {alpha}")
        self.alpha, self.sigma = float(alpha), float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SAUFunction.apply(x, self.alpha, self.sigma)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, sigma={self.sigma}"


class GELUTanh(nn.Module):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Equal to ``max(0, x)`` in fp32/fp64 for ``|x| >= 10`` (the tanh saturates), so the cubic is
    evaluated on ``clamp(x, -10, 10)`` only: torch's own op returns a NaN gradient at
    ``|x| = 1e38`` because ``x^3`` overflows.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.clamp(-10.0, 10.0)
        return F.gelu(xc, approximate="tanh") + (x - xc).clamp(min=0)


class RReLU(nn.RReLU):
    """Randomized leaky ReLU: slope ``a ~ U(lower, upper)`` per element in training, the mean
    ``(lower + upper) / 2`` in eval (defaults 1/8, 1/3). Same as ``torch.nn.RReLU`` but keeps
    the input's memory format (torch's eval path returns NCHW for a channels_last input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.leaky_relu(x, (self.lower + self.upper) / 2, self.inplace)
        y = F.rrelu(x, self.lower, self.upper, True, self.inplace)
        if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
            y = y.contiguous(memory_format=torch.channels_last)
        return y


# ---------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_activation(
    name: str, factory: Callable[..., nn.Module], *, overwrite: bool = False
) -> None:
    """Register ``factory(channels=None, **kwargs) -> nn.Module`` under ``name``.

    The factory's keyword arguments are the activation's accepted kwargs (shown in errors).
    Re-registering a name raises unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"activation name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory for activation '{name}' must be callable")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"activation '{name}' is already registered; pass overwrite=True")
    _REGISTRY[name] = factory


def list_activations() -> list[str]:
    """Sorted names accepted by :func:`make_activation`."""
    return sorted(_REGISTRY)


def _accepted(factory: Callable[..., nn.Module]) -> tuple[list[str], bool]:
    params = inspect.signature(factory).parameters.values()
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    return [n for n in names if n != "channels"], var_kw


def make_activation(
    name: str, channels: int | None = None, inplace: bool | None = None, **kwargs: Any
) -> nn.Module:
    """Build activation ``name`` (see :func:`list_activations`) for ``channels`` channels.

    ``inplace`` is accepted for every activation: ``True`` overwrites the input where the
    backward can be computed from the output or a mask (relu, leaky_relu, prelu, rrelu, elu,
    selu, smelu, helu); for the others (gelu, silu, mish, ...) it is a documented no-op: they
    need their input for backward, so an in-place write would only add a copy. ``None`` keeps
    the activation's default (``relu`` is in place by default, the others are not). Models may
    pass ``inplace=True`` wherever the activation's input is not used by anything else.

    Example::

        >>> act = make_activation("prelu", channels=64)        # channel-wise, a0 = 0.25
        >>> act = make_activation("leaky_relu", negative_slope=0.25, inplace=True)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(list_activations())}")
    factory = _REGISTRY[name]
    accepted, var_kw = _accepted(factory)
    bad = sorted(k for k in kwargs if k not in accepted)
    if bad and not var_kw:
        raise TypeError(
            f"activation '{name}' got unexpected keyword argument(s) {bad}; it accepts "
            f"{[a for a in accepted if a != 'inplace'] or 'no keyword arguments'} "
            "(and channels=, inplace=)"
        )
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int)
                                 or channels < 1):
        raise ValueError(f"channels must be a positive int or None, got {channels!r}")
    if inplace is not None:
        if not isinstance(inplace, bool):
            raise TypeError(f"inplace must be True, False or None, got {inplace!r}")
        if "inplace" in accepted or var_kw:
            kwargs["inplace"] = inplace
        # a user-registered factory without an inplace argument: a no-op, as documented
    return factory(channels=channels, **kwargs)


def _needs_channels(name: str, channels: int | None) -> int:
    if channels is None:
        raise ValueError(
            f"activation '{name}' is channel-wise and needs channels=C (the number of channels "
            f"in dim 1); use '{name}_shared' for one parameter per layer"
        )
    return channels


def _relu(channels=None, inplace: bool = True) -> nn.Module:
    return nn.ReLU(inplace=inplace)


def _leaky(channels=None, negative_slope: float = 0.01, inplace: bool = False) -> nn.Module:
    # torch's in-place leaky_relu saves only its output, exact for slope >= 0; a negative slope
    # loses the sign, so inplace is then a no-op
    return nn.LeakyReLU(negative_slope, inplace=inplace and negative_slope >= 0)


def _prelu(channels=None, init: float = 0.25, inplace: bool = False) -> nn.Module:
    return PReLU(_needs_channels("prelu", channels), init=init, inplace=inplace)


def _prelu_shared(channels=None, init: float = 0.25, inplace: bool = False) -> nn.Module:
    return PReLU(1, init=init, inplace=inplace)


def _rrelu(channels=None, lower: float = 1 / 8, upper: float = 1 / 3,
           inplace: bool = False) -> nn.Module:
    if not 0 <= lower <= upper:
        raise ValueError(f"rrelu: need 0 <= lower <= upper, got lower={lower}, upper={upper}")
    return RReLU(lower, upper, inplace=inplace)


def _elu(channels=None, alpha: float = 1.0, inplace: bool = False) -> nn.Module:
    return nn.ELU(alpha, inplace=inplace and alpha >= 0)


def _selu(channels=None, inplace: bool = False) -> nn.Module:
    return nn.SELU(inplace=inplace)


def _gelu(channels=None, inplace: bool = False) -> nn.Module:
    return nn.GELU()


def _gelu_tanh(channels=None, inplace: bool = False) -> nn.Module:
    return GELUTanh()


def _silu(channels=None, inplace: bool = False) -> nn.Module:
    return nn.SiLU()


def _swish(channels=None, init: float = 1.0, channel_wise: bool = False,
           inplace: bool = False) -> nn.Module:
    return Swish(_needs_channels("swish", channels) if channel_wise else 1, init=init)


def _mish(channels=None, inplace: bool = False) -> nn.Module:
    return nn.Mish()


def _golu(channels=None, inplace: bool = False) -> nn.Module:
    return GoLU()


def _smelu(channels=None, beta: float = 1.0, inplace: bool = False) -> nn.Module:
    return SmeLU(beta)


def _helu(channels=None, alpha: float = 0.05, inplace: bool = False) -> nn.Module:
    return HeLU(alpha, inplace=inplace)


def _sau(channels=None, alpha: float = 0.01, sigma: float = 1.0,
         inplace: bool = False) -> nn.Module:
    return SAU(alpha, sigma)


for _name, _factory in [
    ("relu", _relu),
    ("leaky_relu", _leaky),
    ("prelu", _prelu),
    ("prelu_shared", _prelu_shared),
    ("rrelu", _rrelu),
    ("elu", _elu),
    ("selu", _selu),
    ("gelu", _gelu),
    ("gelu_tanh", _gelu_tanh),
    ("silu", _silu),
    ("swish", _swish),
    ("mish", _mish),
    ("golu", _golu),
    ("smelu", _smelu),
    ("helu", _helu),
    ("sau", _sau),
]:
    register_activation(_name, _factory)


def init_slope(module: nn.Module | None) -> float | None:
    """Initial negative slope ``a`` of a rectifier, for He init (paper Eq. 15).

    ReLU, ReLU6 and HeLU 0, LeakyReLU its ``negative_slope``, PReLU (ours or torch's) its
    ``init``, RReLU the mean ``(l + u) / 2``; ``None`` for non-rectifiers (ELU, GELU, ...).
    This is the one definition; ``rectifiers.init`` uses it.
    """
    if module is None:
        return None
    if isinstance(module, (nn.ReLU, nn.ReLU6, HeLU)):
        return 0.0
    if isinstance(module, nn.LeakyReLU):
        return float(module.negative_slope)
    if isinstance(module, (PReLU, nn.PReLU)):
        return float(module.init)
    if isinstance(module, nn.RReLU):
        return (float(module.lower) + float(module.upper)) / 2
    return None


def is_learnable_activation(module: nn.Module) -> bool:
    """True if ``module`` is an activation with learnable parameters (PReLU slopes, a learnable
    swish beta, ...): the paper's "slopes" (Sec. 2.1), counted apart from the weights and never
    weight-decayed (Eq. 4). The one definition; ``optim``, ``models.complexity`` and
    ``analysis.slopes`` use it. Contract: such modules of ``rectifiers.nn`` set the class
    attribute ``no_weight_decay = True``; ``torch.nn.PReLU`` is recognised too.
    """
    return isinstance(module, nn.PReLU) or bool(getattr(type(module), "no_weight_decay", False))
