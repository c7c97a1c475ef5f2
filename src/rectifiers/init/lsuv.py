"""Layer-sequential unit-variance init (Mishkin & Matas 2016): the data-dependent scheme.

Needs a batch of inputs: ``initialize(model, "lsuv", data=batch)`` or ``lsuv_(model, batch)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rectifiers.init.layers import weight_layers
from rectifiers.init.rules import Generator, _as_generator, orthogonal_

__all__ = ["lsuv_"]


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
