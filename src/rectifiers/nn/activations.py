"""The rectifier zoo and its registry: one string picks the activation of a whole network.

Every activation is built by :func:`make_activation` ``(name, channels=None, inplace=None,
**kwargs)`` so models never hard-code one (as timm's ``create_act``; unlike timm, ``"prelu"`` is
channel-wise, the paper's choice). Formulas are in each class docstring and in
``docs/rectifier-zoo.md``. Learnable activations carry ``no_weight_decay = True`` (paper Sec.
2.1: decay would pull the slope towards ReLU); :func:`init_slope` gives the initial negative
slope ``a`` for He init (Eq. 15).

The activations other than ``prelu``/``prelu_shared`` (:mod:`rectifiers.nn.prelu`) run on one
kernel mechanism, :mod:`rectifiers.nn.zoo_ops` (fused C++ kernels, exact double backward,
forward-mode AD; eager formulas as the portable fallback).

What is kept for backward (at most one input-sized tensor each):

=======================================  ==========================================
activation                               saved
=======================================  ==========================================
relu, leaky_relu (a >= 0) in place or    the output (in place: the input buffer
in bf16/fp16; elu/selu (alpha >= 0),     itself, zero extra bytes); rrelu's slopes
smelu, rrelu (train)                     are regenerated from a seed, never stored
relu, leaky_relu (a >= 0) not in place   a 1-bit mask (``x > 0``, ``x > -alpha``):
in fp32/fp64; leaky_relu (a < 0); helu   1/32 of an fp32 input's bytes, which the
                                         backward reads instead of a whole map (on
                                         the eager fallback relu and leaky_relu
                                         (a >= 0) keep their output, the others a
                                         bool mask)
gelu, gelu_tanh, silu, swish, mish,      the input (``inplace=True`` is a documented
golu, sau                                no-op: the input is needed)
=======================================  ==========================================
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rectifiers.nn.prelu import PReLU
from rectifiers.nn.zoo_ops import SELU_ALPHA, SELU_SCALE, activation

__all__ = [
    "ELU",
    "GELU",
    "SAU",
    "SELU",
    "GELUTanh",
    "GoLU",
    "HeLU",
    "LeakyReLU",
    "Mish",
    "RReLU",
    "ReLU",
    "SiLU",
    "SmeLU",
    "Swish",
    "init_slope",
    "list_activations",
    "make_activation",
    "register_activation",
]


# ------------------------------------------------------------------------------- the modules
def _mask_or_output(x: torch.Tensor, inplace: bool) -> str:
    """What relu and leaky_relu (slope >= 0) keep: a 1-bit mask where reading it instead of
    the output pays (fp32/fp64 not in place: forward+backward 21-29 % less time in fp32,
    measured); in place (the input buffer: nothing extra) or in 16 bits (writing the bits costs
    the forward more than the backward saves) their output."""
    return "output" if inplace or x.element_size() < 4 else "mask"


class ReLU(nn.ReLU):
    """``max(0, x)`` on the zoo kernel. Keeps a 1-bit mask ``x > 0`` (fp32/fp64 not in place:
    the backward reads 1/32 of an fp32 output's bytes), else its output (in place: the input
    buffer, nothing extra)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "relu", (), None, _mask_or_output(x, self.inplace), self.inplace)


class LeakyReLU(nn.LeakyReLU):
    """``x > 0 ? x : a x``. Keeps what :class:`ReLU` keeps for ``a >= 0``, a 1-bit mask
    ``x > 0`` for ``a < 0`` (whose output does not give the input's sign; in place too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.negative_slope)
        mode = _mask_or_output(x, self.inplace) if a >= 0 else "mask"
        return activation(x, "leaky_relu", (a,), None, mode, self.inplace)


class RReLU(nn.RReLU):
    """Randomized leaky ReLU: slope ``a ~ U(lower, upper)`` per element in training, the mean
    ``(lower + upper) / 2`` in eval (defaults 1/8, 1/3). Unlike ``torch.nn.RReLU`` the slopes
    are never stored: they are regenerated in backward from a seed drawn from torch's generator
    at each forward, so backward keeps only the output (in place: nothing extra). Keeps the
    input's memory format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = float(self.lower), float(self.upper)
        ok = lo >= 0
        if not self.training:
            a = (lo + hi) / 2
            mode = "output" if a >= 0 else "input"
            return activation(x, "leaky_relu", (a,), None, mode, self.inplace and a >= 0)
        seed = int(torch.randint(0, 2**31 - 1, ()))
        mode = "output" if ok else "input"
        return activation(x, "rrelu", (lo, hi, seed), None, mode, self.inplace and ok)


class ELU(nn.ELU):
    """``x > 0 ? x : alpha (e^x - 1)``; keeps its output for ``alpha >= 0`` (in place
    possible: ``f' = y + alpha`` on the negative side)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.alpha)
        mode = "output" if a >= 0 else "input"
        return activation(x, "elu", (a, 1.0), None, mode, self.inplace and a >= 0)


class SELU(nn.SELU):
    """``scale * elu_alpha(x)`` with alpha 1.6733, scale 1.0507 (pairs with LeCun init); keeps
    its output (in place possible)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "elu", (SELU_ALPHA, SELU_SCALE), None, "output", self.inplace)


class GELU(nn.GELU):
    """``x Phi(x)`` (``approximate="none"``, erf) or its tanh approximation; keeps its input.
    ``inplace`` is accepted and ignored (the backward needs the input)."""

    def __init__(self, approximate: str = "none", inplace: bool = False) -> None:
        super().__init__(approximate)
        self.inplace = bool(inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "gelu" if self.approximate == "none" else "gelu_tanh")


class GELUTanh(GELU):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Equal to ``max(0, x)`` in fp32/fp64 for ``|x| >= 10`` (the tanh saturates), so the cubic is
    evaluated on ``clamp(x, -10, 10)`` only: torch's own op returns a NaN gradient at
    ``|x| = 1e38`` because ``x^3`` overflows.
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__("tanh", inplace)


class SiLU(nn.SiLU):
    """``x sigmoid(x)``; keeps its input (``inplace`` is accepted and ignored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "swish")


class Mish(nn.Mish):
    """``x tanh(softplus(x))``; keeps its input (``inplace`` is accepted and ignored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "mish")


class HeLU(nn.Module):
    """Hysteresis ReLU: forward ``max(0, x)``, backward ``dy/dx := 1[x > -alpha]``.

    The gradient also flows for slightly negative inputs (``-alpha < x <= 0``), which keeps
    units from dying; inference costs exactly a ReLU. Keeps a 1-bit mask (a bool per element
    on the eager fallback), written in the forward pass itself; in place possible.
    """

    def __init__(self, alpha: float = 0.05, inplace: bool = False) -> None:
        super().__init__()
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"helu: alpha must be a finite number >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.inplace = bool(inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "helu", (self.alpha,), None, "mask", self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GoLU(nn.Module):
    """Gompertz linear unit: ``x * exp(-exp(-x))`` (gate evaluated on ``clamp(x, -20, 100)``,
    where it is exactly 0 resp. 1: no NaN/inf). Keeps its input."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)  # accepted and ignored: backward needs the input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "golu")


class SmeLU(nn.Module):
    """Smooth ReLU: ``0`` for ``x <= -beta``; ``(x + beta)^2 / (4 beta)`` for ``|x| <= beta``;
    ``x`` for ``x >= beta``. Value and slope are continuous at ``+-beta``. The output gives the
    derivative (``min(sqrt(y / beta), 1)``), so it keeps only its output; in place possible."""

    def __init__(self, beta: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"smelu: beta (half-width) must be a finite number > 0, got {beta}")
        self.beta = float(beta)
        self.inplace = bool(inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "smelu", (self.beta,), None, "output", self.inplace)

    def extra_repr(self) -> str:
        return f"beta={self.beta}" + (", inplace=True" if self.inplace else "")


class Swish(nn.Module):
    """Swish with a learnable ``beta`` (init 1): ``x * sigmoid(beta * x)``.

    ``num_parameters`` = 1 (one beta per layer) or C (per channel, dim 1). Keeps its input; with
    the C++ kernel the beta gradient is reduced in the backward pass itself, in a fixed order
    (deterministic for any thread count), accumulated in fp64 and returned in beta's dtype; the
    eager fallback (no compiler, ``RECTIFIERS_NO_CPP=1``, other devices) reduces it with
    ``torch.sum``, whose order may depend on the thread count."""

    no_weight_decay = True

    def __init__(self, num_parameters: int = 1, init: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"swish: num_parameters must be >= 1, got {num_parameters}")
        self.num_parameters = num_parameters
        self.inplace = bool(inplace)  # accepted and ignored: backward needs the input
        self.beta = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "swish", (), self.beta)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class SAU(nn.Module):
    """Smooth approximation unit: leaky_relu_alpha convolved with N(0, sigma^2),

    ``((1+a)/2) x + ((1-a)/2) x erf(x / (sqrt(2) sigma)) + ((1-a) sigma / sqrt(2 pi))
    exp(-x^2 / (2 sigma^2))`` = ``x (a + (1-a) Phi(x/sigma)) + (1-a) sigma phi(x/sigma)``,
    derivative ``a + (1-a) Phi(x/sigma)`` (the ``x phi`` terms cancel). Tends to
    leaky_relu_alpha as sigma -> 0. Defaults (alpha 0.01, sigma 1) are ours: the original
    paper's are unverified (zoo doc). Keeps its input."""

    def __init__(self, alpha: float = 0.01, sigma: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sau: sigma must be a finite number > 0, got {sigma}")
        if not math.isfinite(alpha):
            raise ValueError(f"sau: alpha must be finite, got {alpha}")
        self.alpha, self.sigma = float(alpha), float(sigma)
        self.inplace = bool(inplace)  # accepted and ignored: backward needs the input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(x, "sau", (self.alpha, self.sigma))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, sigma={self.sigma}"


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
    return ReLU(inplace=inplace)


def _leaky(channels=None, negative_slope: float = 0.01, inplace: bool = False) -> nn.Module:
    # in place saves only the output, exact for slope >= 0; a negative slope loses the sign,
    # so inplace is then a no-op
    return LeakyReLU(negative_slope, inplace=inplace)


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
    return ELU(alpha, inplace=inplace)


def _selu(channels=None, inplace: bool = False) -> nn.Module:
    return SELU(inplace=inplace)


def _gelu(channels=None, inplace: bool = False) -> nn.Module:
    return GELU(inplace=inplace)


def _gelu_tanh(channels=None, inplace: bool = False) -> nn.Module:
    return GELUTanh(inplace=inplace)


def _silu(channels=None, inplace: bool = False) -> nn.Module:
    return SiLU(inplace=inplace)


def _swish(channels=None, init: float = 1.0, channel_wise: bool = False,
           inplace: bool = False) -> nn.Module:
    return Swish(_needs_channels("swish", channels) if channel_wise else 1, init=init,
                 inplace=inplace)


def _mish(channels=None, inplace: bool = False) -> nn.Module:
    return Mish(inplace=inplace)


def _golu(channels=None, inplace: bool = False) -> nn.Module:
    return GoLU(inplace=inplace)


def _smelu(channels=None, beta: float = 1.0, inplace: bool = False) -> nn.Module:
    return SmeLU(beta, inplace=inplace)


def _helu(channels=None, alpha: float = 0.05, inplace: bool = False) -> nn.Module:
    return HeLU(alpha, inplace=inplace)


def _sau(channels=None, alpha: float = 0.01, sigma: float = 1.0,
         inplace: bool = False) -> nn.Module:
    return SAU(alpha, sigma, inplace=inplace)


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
