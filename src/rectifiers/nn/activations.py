"""Activation registry: one string picks the activation of a whole network. (placeholder)"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rectifiers.nn.prelu import PReLU

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_activation(name: str, factory: Callable[..., nn.Module]) -> None:
    _REGISTRY[name] = factory


def list_activations() -> list[str]:
    return sorted(_REGISTRY)


def make_activation(name: str, channels: int | None = None, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(list_activations())}")
    return _REGISTRY[name](channels=channels, **kwargs)


register_activation("relu", lambda channels=None, inplace=True: nn.ReLU(inplace=inplace))
register_activation("leaky_relu", lambda channels=None, negative_slope=0.01: nn.LeakyReLU(negative_slope))
register_activation("prelu", lambda channels=None, init=0.25: PReLU(channels or 1, init))
register_activation("prelu_shared", lambda channels=None, init=0.25: PReLU(1, init))
