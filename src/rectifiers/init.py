"""Weight initialisation: the paper's rectifier-aware rule (Sec. 2.2) and its neighbours.

Reads like ``torch.nn.init``: one in-place function per rule (names end in ``_``), each
docstring states the variance it draws from. Notation follows the paper:

* ``n = k^2 c``   the fan-in of a conv weight (``c`` input channels per group), the
  "forward case" of Eq. 10;
* ``n^ = k^2 d``  the fan-out (``d`` filters per group), the "backward case" of Eq. 14;
* ``a``           the *initial* negative slope of the rectifier that follows the layer
  (0 for ReLU, the slope for leaky ReLU, ``init`` = 0.25 for PReLU), Eq. 15.

``initialize(model, scheme=...)`` applies a named scheme to every conv and linear layer of a
model, reading ``a`` (or the whole activation) from the activation registered right after each
layer; ``list_init_schemes()`` lists the schemes.

Every function takes ``generator`` (a ``torch.Generator`` or an int seed) and is then fully
deterministic; a CPU generator also works for weights on another device (the draw is made on
the CPU and copied), so seeded runs give the same weights on CPU and GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "FAN_MODES",
    "activation_gain",
    "activation_types",
    "calculate_fan",
    "default_",
    "gaussian_moment",
    "he_normal_",
    "he_uniform_",
    "initialize",
    "init_slope",
    "is_activation",
    "lecun_normal_",
    "list_init_schemes",
    "lsuv_",
    "orthogonal_",
    "weight_layers",
    "xavier_normal_",
    "xavier_uniform_",
]

FAN_MODES = ("fan_in", "fan_out")
_XAVIER_MODES = ("fan_in", "fan_out", "fan_avg")
WEIGHT_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

Generator = torch.Generator | int | None


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _as_generator(generator: Generator) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(
        f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}"
    )


def _check_weight(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 2:
        raise ValueError(
            f"{name}: fan-in/fan-out need a weight with at least 2 dimensions "
            f"(linear: (out, in), conv: (out, in/groups, *kernel)); got shape {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise TypeError(f"{name}: weight must be floating point, got {tensor.dtype}")


def _fill_random_(
    tensor: torch.Tensor, kind: str, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Fill with N(0, scale^2) (kind 'normal') or U(-scale, scale) (kind 'uniform')."""
    with torch.no_grad():
        if generator is not None and generator.device != tensor.device:
            # Draw where the generator lives so a seed means the same weights on every device.
            src = torch.empty(tensor.shape, dtype=torch.float32, device=generator.device)
            _fill_random_(src, kind, scale, generator)
            return tensor.copy_(src)
        if kind == "normal":
            return tensor.normal_(0.0, scale, generator=generator)
        return tensor.uniform_(-scale, scale, generator=generator)


def calculate_fan(tensor: torch.Tensor, mode: str = "fan_in", groups: int = 1) -> int:
    """Fan of a linear ``(out, in)`` or conv ``(out, in/groups, *kernel)`` weight.

    ``fan_in = (c_in/groups) * prod(kernel)`` is Eq. 10's ``n = k^2 c``: the number of inputs one
    output sums. ``fan_out = (c_out/groups) * prod(kernel)`` is Eq. 14's ``n^ = k^2 d``: the
    number of outputs one input feeds. For a grouped conv pass ``groups`` so the fan-out counts
    only the filters of the input's own group (``torch.nn.init`` uses ``c_out * prod(kernel)``
    there, which overstates it by the group count). Strides are ignored, as in the paper.

    Example:
        >>> calculate_fan(torch.empty(64, 3, 7, 7), "fan_out")
        3136
    """
    _check_weight(tensor, "calculate_fan")
    if mode not in FAN_MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {FAN_MODES}")
    if groups < 1 or tensor.shape[0] % groups != 0:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide the output channels ({tensor.shape[0]})"
        )
    receptive = math.prod(tensor.shape[2:])
    if mode == "fan_in":
        return int(tensor.shape[1] * receptive)
    return int(tensor.shape[0] // groups * receptive)


def _fan(tensor: torch.Tensor, mode: str, groups: int, allowed: Sequence[str], name: str) -> float:
    if mode not in allowed:
        raise ValueError(f"{name}: unknown mode {mode!r}; use one of {tuple(allowed)}")
    _check_weight(tensor, name)
    if mode == "fan_avg":
        fan_in = calculate_fan(tensor, "fan_in", groups)
        return (fan_in + calculate_fan(tensor, "fan_out", groups)) / 2
    return calculate_fan(tensor, mode, groups)


# --------------------------------------------------------------------------------------
# the paper's rule
# --------------------------------------------------------------------------------------
def he_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""He et al. 2015 (Eq. 10 / 14 / 15): fill ``tensor`` with N(0, std^2),

    ``std = sqrt(2 / ((1 + a^2) n))``,

    with ``n = k^2 c_in`` for ``mode="fan_in"`` (forward case, Eq. 10: keeps Var[y_l] constant)
    or ``n = k^2 c_out`` for ``mode="fan_out"`` (backward case, Eq. 14: keeps Var[dx_l]
    constant; the paper used it for its large models). ``a`` is the initial negative slope of
    the rectifier after the layer (Eq. 15: ``1/2 (1 + a^2) n Var[w] = 1``; ``a = 0`` is ReLU,
    ``a = 1`` the linear case = Xavier's forward rule). ``groups``: see :func:`calculate_fan`.

    Example:
        >>> w = torch.empty(128, 64, 3, 3)
        >>> he_normal_(w, a=0.25, mode="fan_out")  # PReLU(0.25), std = sqrt(2/1.0625/1152)
    """
    fan = _fan(tensor, mode, groups, FAN_MODES, "he_normal_")
    std = math.sqrt(2.0 / ((1.0 + a * a) * fan))
    return _fill_random_(tensor, "normal", std, _as_generator(generator))


def he_uniform_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""He rule with a uniform draw: U(-b, b), ``b = sqrt(3) * std = sqrt(6 / ((1 + a^2) n))``.

    Same variance as :func:`he_normal_` (Eq. 10 / 14 / 15); only the distribution differs.

    Example:
        >>> w = torch.empty(256, 512)
        >>> he_uniform_(w)  # bound sqrt(6/512)
    """
    fan = _fan(tensor, mode, groups, FAN_MODES, "he_uniform_")
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan))
    return _fill_random_(tensor, "uniform", bound, _as_generator(generator))


# --------------------------------------------------------------------------------------
# neighbours
# --------------------------------------------------------------------------------------
def xavier_normal_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    mode: str = "fan_avg",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""Xavier / Glorot normal: N(0, gain^2 / n).

    * ``mode="fan_avg"`` (default): Glorot & Bengio's rule, ``Var = 2 / (fan_in + fan_out)``.
    * ``mode="fan_in"`` / ``"fan_out"``: the paper's Gaussian, one-direction adaptation
      ``N(0, 1/n)`` (Sec. 2.2, footnote 3), which under ReLU shrinks the signal by ``2^(-1/2)``
      per layer (Eq. 8 with ``n Var[w] = 1``).

    Example:
        >>> w = torch.empty(256, 256, 2, 2)
        >>> xavier_normal_(w, mode="fan_in")  # the paper's "Xavier" of Figs. 2-3
    """
    n = _fan(tensor, mode, groups, _XAVIER_MODES, "xavier_normal_")
    return _fill_random_(tensor, "normal", gain / math.sqrt(n), _as_generator(generator))


def xavier_uniform_(
    tensor: torch.Tensor,
    gain: float = 1.0,
    mode: str = "fan_avg",
    generator: Generator = None,
    *,
    groups: int = 1,
) -> torch.Tensor:
    r"""Xavier / Glorot uniform: U(-b, b), ``b = gain * sqrt(3 / n)`` (variance ``gain^2/n``).

    With the default ``mode="fan_avg"`` this is Glorot & Bengio's own rule,
    ``b = gain * sqrt(6 / (fan_in + fan_out))``; ``"fan_in"`` gives Caffe's ``xavier`` filler.

    Example:
        >>> w = torch.empty(10, 4096)
        >>> xavier_uniform_(w)  # bound sqrt(6/4106)
    """
    n = _fan(tensor, mode, groups, _XAVIER_MODES, "xavier_uniform_")
    return _fill_random_(tensor, "uniform", gain * math.sqrt(3.0 / n), _as_generator(generator))


def lecun_normal_(tensor: torch.Tensor, generator: Generator = None) -> torch.Tensor:
    r"""LeCun normal: N(0, 1 / fan_in), the init SELU's self-normalisation assumes.

    Example:
        >>> w = torch.empty(64, 32)
        >>> lecun_normal_(w)  # std 1/sqrt(32)
    """
    n = _fan(tensor, "fan_in", 1, FAN_MODES, "lecun_normal_")
    return _fill_random_(tensor, "normal", 1.0 / math.sqrt(n), _as_generator(generator))


def default_(
    tensor: torch.Tensor, bias: torch.Tensor | None = None, generator: Generator = None
) -> torch.Tensor:
    r"""PyTorch's Conv/Linear ``reset_parameters``: weight, bias ~ U(-b, b), b = 1/sqrt(fan_in).

    (``kaiming_uniform_(a=sqrt(5))`` reduces to this bound.) Variance ``1/(3 fan_in)``, so its
    std is ``sqrt(6)`` below He's: what most users get without thinking. Reimplemented here so a
    ``generator`` makes it deterministic.

    Example:
        >>> lin = nn.Linear(20, 30)
        >>> default_(lin.weight, lin.bias, generator=0)
    """
    g = _as_generator(generator)
    bound = 1.0 / math.sqrt(_fan(tensor, "fan_in", 1, FAN_MODES, "default_"))
    _fill_random_(tensor, "uniform", bound, g)
    if bias is not None:
        _fill_random_(bias, "uniform", bound, g)
    return tensor


def orthogonal_(
    tensor: torch.Tensor,
    gain: float | str | nn.Module | Callable[..., torch.Tensor] = 1.0,
    generator: Generator = None,
) -> torch.Tensor:
    r"""Fill with ``gain * Q``, Q a (semi-)orthogonal matrix (Saxe et al. 2014).

    The weight is viewed as ``(out, in*prod(kernel))``; Q comes from the QR decomposition of a
    Gaussian matrix with the signs of R's diagonal folded in, so Q is Haar-distributed. ``gain``
    is a number or an activation (registry name, module, callable); an activation is turned into
    :func:`activation_gain` ``= 1/sqrt(E[phi(z)^2])`` (sqrt(2) for ReLU: the paper's factor).

    Example:
        >>> w = torch.empty(256, 128, 3, 3)
        >>> orthogonal_(w, gain="relu")
    """
    _check_weight(tensor, "orthogonal_")
    if not isinstance(gain, (int, float)):
        gain = activation_gain(gain)
    g = _as_generator(generator)
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    device = g.device if g is not None else tensor.device
    flat = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float64, device=device)
    flat.normal_(0.0, 1.0, generator=g)
    q, r = torch.linalg.qr(flat)
    # QR is unique only up to column signs; fixing sign(diag R) makes Q uniform (Haar).
    q = q * torch.where(torch.diagonal(r) >= 0, 1.0, -1.0)
    if rows < cols:
        q = q.T
    with torch.no_grad():
        tensor.copy_((gain * q).reshape(tensor.shape))
    return tensor


# --------------------------------------------------------------------------------------
# activation-aware gain
# --------------------------------------------------------------------------------------
# Composite 16-point Gauss-Legendre on [-12, 12] in panels of width 1/8. Rectifier kinks sit at
# 0 (and SmeLU's at +-beta, e.g. 0.5, 1, 2), all panel edges, so each panel integrates a smooth
# function and the quadrature is accurate to ~1e-12. Beyond |z| = 12 the Gaussian weight is
# below 1e-31, negligible for any activation of polynomial growth.
_Q_RANGE, _Q_PANELS, _Q_ORDER = 12.0, 192, 16


def _quadrature() -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(_Q_ORDER)
    edges = np.linspace(-_Q_RANGE, _Q_RANGE, _Q_PANELS + 1)
    half = (edges[1] - edges[0]) / 2
    mids = (edges[:-1] + edges[1:]) / 2
    nodes = (mids[:, None] + half * x[None, :]).ravel()
    weights = (half * w[None, :] * np.exp(-0.5 * nodes.reshape(_Q_PANELS, -1) ** 2)).ravel()
    weights = weights / math.sqrt(2 * math.pi)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


_NODES, _WEIGHTS = _quadrature()


def _as_function(act: Any, kwargs: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Turn a registry name, module or callable into a float64 elementwise function."""
    if isinstance(act, str):
        from rectifiers.nn import make_activation

        try:
            act = make_activation(act, **kwargs)
        except ValueError:
            if "channels" in kwargs:
                raise
            # channel-wise activations need a channel count; at init every channel is equal
            act = make_activation(act, channels=1, **kwargs)
        kwargs = {}
    if isinstance(act, nn.Module):
        if kwargs:
            raise TypeError(f"keyword arguments {sorted(kwargs)} only apply to a registry name")
        import copy

        # A CPU copy in eval mode: RReLU uses its mean slope, and the caller's module (maybe on
        # a GPU, maybe training) is left untouched.
        module = copy.deepcopy(act).cpu().eval()
        try:
            module = module.double()
        except (RuntimeError, TypeError):  # a module that cannot change dtype runs as is
            pass
        params = [p for p in module.parameters()]
        channels = max((p.numel() for p in params), default=1)

        def fn(x: torch.Tensor) -> torch.Tensor:
            dtype = params[0].dtype if params else torch.float64
            x = x.to(dtype)
            try:
                return module(x.clone()).to(torch.float64)
            except (RuntimeError, ValueError):
                # Channel-wise modules need a channel dim; average phi^2 over the channels.
                y = module(x[:, None].repeat(1, channels))
                return y.to(torch.float64)

        return fn
    if callable(act):
        return lambda x: torch.as_tensor(act(x.clone(), **kwargs), dtype=torch.float64)
    raise TypeError(
        f"activation must be a registry name, an nn.Module or a callable, got {type(act).__name__}"
    )


def gaussian_moment(
    act: str | nn.Module | Callable[..., torch.Tensor],
    power: int = 2,
    std: float = 1.0,
    derivative: bool = False,
    **kwargs: Any,
) -> float:
    r"""``E[phi(s z)^p]`` (``E[phi'(s z)^p]`` if ``derivative``), z ~ N(0, 1), s = ``std``.

    Deterministic composite Gauss-Legendre quadrature in float64. ``phi'`` comes from autograd,
    so it is the activation's own backward (for HeLU, the hysteresis gradient). For channel-wise
    modules the moment is averaged over channels.

    Example:
        >>> gaussian_moment("relu")  # 0.5
        >>> gaussian_moment("prelu", derivative=True)  # (1 + 0.25^2) / 2
    """
    fn = _as_function(act, dict(kwargs))
    x = std * _NODES
    with torch.no_grad():
        probe = fn(x)
    if probe.dim() == 2:
        # Channel-wise: give every channel its own copy of the nodes, so that the derivative of
        # channel c is not summed with the others' (x shared by all channels would add them up).
        x = x[:, None].repeat(1, probe.shape[1])
    x = x.clone().requires_grad_(derivative)
    with torch.set_grad_enabled(derivative):
        y = fn(x)
        if derivative:
            (d,) = torch.autograd.grad(y.sum(), x)
            y = d
        y = y.detach()
    if y.dim() == 2:  # channel-wise: (nodes, channels)
        vals = (y**power).mean(dim=1)
    else:
        vals = y.reshape(-1) ** power
    if vals.shape != _WEIGHTS.shape:
        raise ValueError("activation must be elementwise (output shape must equal input shape)")
    return float((vals * _WEIGHTS).sum())


def activation_gain(act: str | nn.Module | Callable[..., torch.Tensor], **kwargs: Any) -> float:
    r"""Activation-aware gain ``g = 1 / sqrt(E[phi(z)^2])``, z ~ N(0, 1).

    With ``Var[w] = g^2 / n`` the second moment of a layer's input is kept at the variance of the
    previous pre-activation (Eq. 7: ``Var[y_l] = n Var[w] E[x^2]``), for any activation. For
    PReLU/leaky ReLU with slope a, ``E[phi(z)^2] = (1 + a^2)/2`` and g is exactly the paper's
    ``sqrt(2/(1+a^2))`` (Eq. 15); ReLU gives sqrt(2), SELU 1, GELU 1.5335, SiLU 1.6765.
    ``act`` is a registry name (``kwargs`` go to ``make_activation``), a module (its current
    parameters are used), or a callable on tensors (``kwargs`` are passed to it).

    Example:
        >>> activation_gain("leaky_relu", negative_slope=0.25)  # 1.3720
        >>> activation_gain(torch.nn.functional.gelu)  # 1.5335
    """
    m2 = gaussian_moment(act, 2, **kwargs)
    if not (m2 > 0 and math.isfinite(m2)):
        raise ValueError(f"E[phi(z)^2] = {m2} for this activation; no finite gain exists")
    return 1.0 / math.sqrt(m2)


# --------------------------------------------------------------------------------------
# model-level
# --------------------------------------------------------------------------------------
_NOT_ACTIVATIONS = {"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d"}


def activation_types() -> tuple[type, ...]:
    """Module types counted as activations: torch.nn's and every type in the zoo registry."""
    types = {
        cls
        for name, cls in vars(torch.nn.modules.activation).items()
        if isinstance(cls, type) and issubclass(cls, nn.Module) and name not in _NOT_ACTIVATIONS
        and cls is not nn.Module
    }
    try:  # everything in the zoo registry counts as an activation
        from rectifiers.nn import list_activations, make_activation

        for name in list_activations():
            try:
                module = make_activation(name, channels=1)
            except Exception:  # a factory needing extra arguments is simply skipped
                continue
            if not list(module.children()):
                types.add(type(module))
    except ImportError:  # pragma: no cover - rectifiers.nn always ships with the package
        pass
    return tuple(types)


def is_activation(module: nn.Module, _types: tuple[type, ...] | None = None) -> bool:
    """True for torch.nn activation modules and every module type in the activation registry."""
    return isinstance(module, _types if _types is not None else activation_types())


def init_slope(module: nn.Module | None) -> float | None:
    """Initial negative slope ``a`` of a rectifier module (Eq. 15), or None if it has none.

    Delegates to ``rectifiers.nn.init_slope`` when present, with a local fallback for ReLU (0),
    LeakyReLU (its slope), RReLU (mean slope) and PReLU (its ``init``).
    """
    if module is None:
        return None
    try:
        from rectifiers.nn import init_slope as nn_init_slope  # type: ignore[attr-defined]
    except ImportError:
        nn_init_slope = None
    if nn_init_slope is not None:
        value = nn_init_slope(module)
        if value is not None:
            return float(value)
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return 0.0
    if isinstance(module, nn.LeakyReLU):
        return float(module.negative_slope)
    if isinstance(module, nn.RReLU):
        return (module.lower + module.upper) / 2
    if hasattr(module, "init") and isinstance(module.init, (int, float)):
        return float(module.init)  # torch.nn.PReLU and rectifiers.nn.PReLU keep their init
    return None


def weight_layers(
    model: nn.Module,
) -> list[tuple[str, nn.Module, nn.Module | None, nn.Module | None]]:
    """Conv/linear layers in ``model.modules()`` order with the activations around them.

    Returns ``(name, layer, act_after, act_before)``: ``act_after`` is the first activation
    registered after the layer and before the next weight layer (the one applied to its output:
    its slope enters Eq. 12/15); ``act_before`` is the last one registered before the layer
    and after the previous weight layer (the one producing its input: Eq. 8). None where absent.
    """
    types = activation_types()
    out: list[list[Any]] = []
    pending_act: nn.Module | None = None
    for name, m in model.named_modules():
        if isinstance(m, WEIGHT_LAYER_TYPES):
            out.append([name, m, None, pending_act])
            pending_act = None
        elif is_activation(m, types):
            if out and out[-1][2] is None and pending_act is None:
                out[-1][2] = m
            pending_act = m
    return [tuple(row) for row in out]  # type: ignore[misc]


def _groups(layer: nn.Module) -> int:
    return int(getattr(layer, "groups", 1))


_SCHEMES: dict[str, str] = {
    "he": "He et al. Eq. 10/14/15: N(0, 2/((1+a^2) n)), a = following activation's initial slope",
    "he_uniform": "He rule, uniform distribution with the same variance",
    "xavier": "the paper's Gaussian Xavier: N(0, 1/n) (n by `mode`)",
    "glorot": "Glorot & Bengio's own: U(+-sqrt(6/(fan_in+fan_out)))",
    "lecun": "N(0, 1/fan_in) (for SELU); ignores `mode`",
    "orthogonal": "orthogonal matrix times the following activation's gain",
    "lsuv": "orthonormal, then rescaled to unit output variance on `data` (Mishkin & Matas)",
    "aware": "N(0, g^2/n), g = 1/sqrt(E[phi(z)^2]) of the following activation",
    "default": "PyTorch's reset_parameters: U(+-1/sqrt(fan_in)) for weight and bias",
}


def list_init_schemes() -> list[str]:
    """Names accepted by :func:`initialize`."""
    return list(_SCHEMES)


def initialize(
    model: nn.Module,
    scheme: str = "he",
    mode: str = "fan_out",
    fc_std: Sequence[float] | None = None,
    generator: Generator = None,
    data: torch.Tensor | None = None,
) -> nn.Module:
    r"""Initialise every Conv1d/2d/3d and Linear of ``model`` in place with a named scheme.

    Schemes (see :func:`list_init_schemes`): ``he`` (default; Eq. 14 with the default
    ``mode="fan_out"`` as the paper did for its large models, Eq. 10 with ``"fan_in"``),
    ``he_uniform``, ``xavier`` (N(0, 1/n)), ``glorot``, ``lecun``, ``orthogonal``, ``lsuv``
    (needs ``data``, a batch), ``aware`` and ``default``. Biases are set to 0 except with
    ``default``. Other modules (norm layers, PReLU slopes) are left alone.

    The slope ``a`` (``he``) or the activation (``aware``, ``orthogonal``) of a layer is read from
    the first activation registered after it, before the next weight layer (see
    :func:`weight_layers`). A layer with no activation after it (the classifier) uses the one
    before it, which feeds it (Eq. 8); failing that, ReLU. A non-rectifier (GELU, ...) has no
    slope: ``he`` then uses ``a = 0`` - use ``aware`` for a fair start.

    ``fc_std``: the paper's fully-connected special case. ``fc_std=(0.01, 0.01, 0.001)`` draws
    the last three Linear layers (fc1, fc2, fc3) from N(0, std^2) with bias 0, overriding the
    scheme there; the paper uses it to absorb raw [-128, 128] pixel input.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.Flatten(), nn.Linear(72, 10))
        >>> initialize(net, "he", mode="fan_out", fc_std=(0.001,), generator=0)
    """
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(_SCHEMES)}")
    if mode not in FAN_MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {FAN_MODES}")
    g = _as_generator(generator)
    layers = weight_layers(model)
    if any(
        isinstance(p, nn.parameter.UninitializedParameter)
        for _, m, _, _ in layers
        for p in m.parameters(recurse=False)
    ):
        raise ValueError("model has uninitialised lazy layers: run one forward pass first")
    if scheme == "lsuv":
        if data is None:
            raise ValueError("scheme 'lsuv' is data-dependent: pass data=<a batch of inputs>")
        lsuv_(model, data, generator=g)

    fc_map: dict[nn.Module, float] = {}
    if fc_std is not None:
        linears = [m for _, m, _, _ in layers if isinstance(m, nn.Linear)]
        stds = [float(s) for s in fc_std]
        if len(stds) > len(linears):
            raise ValueError(
                f"fc_std has {len(stds)} values but the model has only {len(linears)} Linear layers"
            )
        if any(not (s >= 0 and math.isfinite(s)) for s in stds):
            raise ValueError(f"fc_std values must be finite and >= 0, got {tuple(stds)}")
        if stds:
            fc_map = dict(zip(linears[-len(stds) :], stds, strict=True))

    for _, layer, after, before in layers:
        weight, bias = layer.weight, layer.bias
        act = after if after is not None else before
        groups = _groups(layer)
        if layer in fc_map:
            _fill_random_(weight, "normal", fc_map[layer], g)
        elif scheme == "lsuv":
            continue  # already done, biases included
        elif scheme == "default":
            default_(weight, bias, generator=g)
            continue
        elif scheme in ("he", "he_uniform"):
            a = init_slope(act) if act is not None else 0.0
            fill = he_normal_ if scheme == "he" else he_uniform_
            fill(weight, a=a or 0.0, mode=mode, generator=g, groups=groups)
        elif scheme == "xavier":
            xavier_normal_(weight, mode=mode, generator=g, groups=groups)
        elif scheme == "glorot":
            xavier_uniform_(weight, mode="fan_avg", generator=g, groups=groups)
        elif scheme == "lecun":
            lecun_normal_(weight, generator=g)
        elif scheme == "orthogonal":
            gain = activation_gain(act if act is not None else "relu")
            orthogonal_(weight, gain=gain, generator=g)
        elif scheme == "aware":
            gain = activation_gain(act if act is not None else "relu")
            n = calculate_fan(weight, mode, groups)
            _fill_random_(weight, "normal", gain / math.sqrt(n), g)
        if bias is not None:
            with torch.no_grad():
                bias.zero_()
    return model


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the measured layer has run."""


def _output_variance(model: nn.Module, layer: nn.Module, name: str, batch: torch.Tensor) -> float:
    """Variance of ``layer``'s output on ``batch``; the forward stops right after the layer."""
    captured: dict[str, float] = {}

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        captured["var"] = float(out.detach().double().var())
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        model(batch)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if "var" not in captured:
        raise RuntimeError(f"lsuv_: layer {name!r} is not used in the model's forward pass")
    return captured["var"]


def lsuv_(
    model: nn.Module,
    batch: torch.Tensor,
    tol: float = 0.1,
    max_iter: int = 10,
    generator: Generator = None,
) -> list[dict[str, Any]]:
    r"""Layer-sequential unit-variance init (Mishkin & Matas 2016), in place.

    Every Conv/Linear gets an orthonormal weight (:func:`orthogonal_`, gain 1) and zero bias;
    then, layer by layer in ``model.modules()`` order, the layer's output variance ``v`` on
    ``batch`` is measured and its weight scaled by ``1/sqrt(v)`` until ``|v - 1| <= tol``, at
    most ``max_iter`` rescalings per layer. The forward pass stops right after the measured
    layer, and runs in eval mode (dropout off) under no_grad; the model's mode is restored.

    Returns one dict per layer: ``layer`` (name), ``iterations`` (rescalings done),
    ``variance`` (final output variance), ``converged`` (``|variance - 1| <= tol``).

    Example:
        >>> report = lsuv_(net, torch.randn(256, 3, 32, 32), generator=0)
        >>> all(r["converged"] for r in report)
    """
    if tol <= 0 or max_iter < 0:
        raise ValueError(f"need tol > 0 and max_iter >= 0, got tol={tol}, max_iter={max_iter}")
    g = _as_generator(generator)
    layers = [(name, m) for name, m, _, _ in weight_layers(model)]
    if not layers:
        raise ValueError("lsuv_: the model has no Conv/Linear layer to initialise")
    for _, m in layers:
        orthogonal_(m.weight, 1.0, generator=g)
        if m.bias is not None:
            with torch.no_grad():
                m.bias.zero_()

    modes = {m: m.training for m in model.modules()}
    model.eval()
    report = []
    try:
        for name, layer in layers:
            with torch.no_grad():
                var = _output_variance(model, layer, name, batch)
                it = 0
                while abs(var - 1.0) > tol and it < max_iter and math.isfinite(var) and var > 0:
                    layer.weight.mul_(1.0 / math.sqrt(var))
                    it += 1
                    var = _output_variance(model, layer, name, batch)
            report.append(
                {"layer": name, "iterations": it, "variance": var, "converged": abs(var - 1) <= tol}
            )
    finally:
        for m, was_training in modes.items():
            m.train(was_training)
    return report
