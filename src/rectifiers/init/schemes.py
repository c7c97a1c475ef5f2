"""Model-level initialisation: a named scheme applied to every conv and linear layer.

``initialize(model, scheme, mode=..., generator=..., data=...)`` is the one entry point the
model registry and training use; ``list_init_schemes()`` names the schemes. Building a model
and initialising it are separate steps: training calls ``initialize`` (with a data batch for
the data-dependent ``lsuv``), loading a checkpoint never does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rectifiers.init.gain import activation_gain
from rectifiers.init.layers import weight_layers
from rectifiers.init.lsuv import lsuv_
from rectifiers.init.rules import (
    FAN_MODES,
    Generator,
    _as_generator,
    _fill_random_,
    calculate_fan,
    default_,
    he_normal_,
    he_uniform_,
    lecun_normal_,
    orthogonal_,
    xavier_normal_,
    xavier_uniform_,
)
from rectifiers.nn import init_slope

__all__ = ["DATA_DEPENDENT_SCHEMES", "initialize", "list_init_schemes"]


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


# Schemes that measure the model on a batch of inputs: ``initialize`` needs ``data`` for them.
DATA_DEPENDENT_SCHEMES: frozenset[str] = frozenset({"lsuv"})


def list_init_schemes() -> list[str]:
    """Names accepted by :func:`initialize`."""
    return list(_SCHEMES)


def initialize(
    model: nn.Module,
    scheme: str = "he",
    mode: str = "fan_out",
    fc_std: Sequence[float] | None = None,
    generator: Generator = None,
    data: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> nn.Module:
    r"""Initialise every Conv1d/2d/3d and Linear of ``model`` in place with a named scheme.

    Schemes (see :func:`list_init_schemes`): ``he`` (default; Eq. 14 with the default
    ``mode="fan_out"`` as the paper did for its large models, Eq. 10 with ``"fan_in"``),
    ``he_uniform``, ``xavier`` (N(0, 1/n)), ``glorot``, ``lecun``, ``orthogonal``, ``lsuv``
    (needs ``data``), ``aware`` and ``default``. Biases are set to 0 except with
    ``default``. Other modules (norm layers, PReLU slopes) are left alone.

    The slope ``a`` (``he``) or the activation (``aware``, ``orthogonal``) of a layer is read from
    the first activation registered after it, before the next weight layer (see
    :func:`weight_layers`). A layer with no activation after it (the classifier) uses the one
    before it, which feeds it (Eq. 8); failing that, ReLU. A non-rectifier (GELU, ...) has no
    slope: ``he`` then uses ``a = 0`` - use ``aware`` for a fair start.

    ``fc_std``: the paper's fully-connected special case. ``fc_std=(0.01, 0.01, 0.001)`` draws
    the last three Linear layers (fc1, fc2, fc3) from N(0, std^2) with bias 0, overriding the
    scheme there; the paper uses it to absorb raw [-128, 128] pixel input.

    ``data``: a batch of inputs (a tensor, or an ``(inputs, targets, ...)`` tuple as a loader
    yields it) for the data-dependent schemes (:data:`DATA_DEPENDENT_SCHEMES`); it is moved to
    the model's device and ignored by the other schemes, so a caller may always pass one.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.Flatten(), nn.Linear(72, 10))
        >>> initialize(net, "he", mode="fan_out", fc_std=(0.001,), generator=0)
        >>> initialize(net, "lsuv", data=torch.randn(64, 3, 5, 5), generator=0)
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
    if scheme in DATA_DEPENDENT_SCHEMES:
        lsuv_(model, _input_batch(model, data, scheme), generator=g)

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


def _input_batch(model: nn.Module, data: torch.Tensor | Sequence[torch.Tensor] | None,
                 scheme: str) -> torch.Tensor:
    """The input tensor of ``data`` (a batch or a loader's ``(x, y)``) on the model's device."""
    if isinstance(data, (tuple, list)) and data:
        data = data[0]
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"scheme {scheme!r} is data-dependent: pass data=<a batch of inputs>")
    param = next(model.parameters(), None)
    return data.to(param.device) if param is not None else data
