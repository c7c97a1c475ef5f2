"""Activation-aware gains: Gaussian moments of any activation by deterministic quadrature.

``gaussian_moment(act, p)`` is ``E[phi(z)^p]`` (or of ``phi'``) for z ~ N(0, s^2);
``activation_gain(act)`` the gain ``1 / sqrt(E[phi(z)^2])`` that keeps the second moment of
a layer's input at the variance of the previous pre-activation (Eq. 7), for any activation;
for a rectifier of slope a it is the paper's ``sqrt(2 / (1 + a^2))`` (Eq. 15).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from rectifiers.nn import make_activation

__all__ = ["activation_gain", "gaussian_moment"]

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
