"""Building blocks: PReLU (paper Eq. 1-4), the rectifier zoo registry, and SPP pooling."""

from rectifiers.nn import functional
from rectifiers.nn.activations import (
    SAU,
    GoLU,
    HeLU,
    SmeLU,
    Swish,
    init_slope,
    is_learnable_activation,
    list_activations,
    make_activation,
    register_activation,
)
from rectifiers.nn.pooling import SPP
from rectifiers.nn.prelu import PReLU, get_prelu_backend, set_prelu_backend

__all__ = [
    "SAU",
    "SPP",
    "GoLU",
    "HeLU",
    "PReLU",
    "SmeLU",
    "Swish",
    "functional",
    "get_prelu_backend",
    "init_slope",
    "is_learnable_activation",
    "list_activations",
    "make_activation",
    "register_activation",
    "set_prelu_backend",
]
