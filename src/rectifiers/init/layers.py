"""Which modules are weight layers and activations, and which activation follows each layer.

:func:`weight_layers` is how every model-level scheme (:func:`rectifiers.init.initialize`,
:func:`rectifiers.init.lsuv_`) and the signal analysis find the slope ``a`` of Eq. 15 for a
layer: the first activation registered after it in ``model.modules()`` order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rectifiers.nn import list_activations, make_activation

__all__ = ["WEIGHT_LAYER_TYPES", "activation_types", "is_activation", "weight_layers"]

WEIGHT_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

_NOT_ACTIVATIONS = {"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d"}


def activation_types() -> tuple[type, ...]:
    """Module types counted as activations: torch.nn's and every type in the zoo registry."""
    types = {
        cls
        for name, cls in vars(torch.nn.modules.activation).items()
        if isinstance(cls, type) and issubclass(cls, nn.Module) and name not in _NOT_ACTIVATIONS
        and cls is not nn.Module
    }
    for name in list_activations():  # everything in the zoo registry counts as an activation
        try:
            module = make_activation(name, channels=1)
        except Exception:  # a factory needing extra arguments is simply skipped
            continue
        if not list(module.children()):
            types.add(type(module))
    return tuple(types)


def is_activation(module: nn.Module, _types: tuple[type, ...] | None = None) -> bool:
    """True for torch.nn activation modules and every module type in the activation registry."""
    return isinstance(module, _types if _types is not None else activation_types())



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

