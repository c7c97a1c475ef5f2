"""Building blocks: PReLU (paper Eq. 1-4), the rectifier zoo registry, and SPP pooling."""

from rectifiers.nn.activations import list_activations, make_activation, register_activation
from rectifiers.nn.pooling import SPP
from rectifiers.nn.prelu import PReLU

__all__ = ["PReLU", "SPP", "list_activations", "make_activation", "register_activation"]
