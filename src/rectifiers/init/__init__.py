"""Weight initialisation: the paper's rectifier-aware rule (Sec. 2.2) and its neighbours.

Reads like ``torch.nn.init``: one in-place function per rule (names end in ``_``), each
docstring states the variance it draws from. Notation follows the paper:

* ``n = k^2 c``   the fan-in of a conv weight (``c`` input channels per group), the
  "forward case" of Eq. 10;
* ``n^ = k^2 d``  the fan-out (``d`` filters per group), the "backward case" of Eq. 14;
* ``a``           the *initial* negative slope of the rectifier that follows the layer
  (0 for ReLU, the slope for leaky ReLU, ``init`` = 0.25 for PReLU), Eq. 15; read with
  :func:`rectifiers.nn.init_slope` (the one definition, re-exported here).

``initialize(model, scheme=..., data=...)`` applies a named scheme to every conv and linear
layer of a model, reading ``a`` (or the whole activation) from the activation registered right
after each layer; ``list_init_schemes()`` lists the schemes.

Modules: :mod:`~rectifiers.init.rules` (the per-tensor rules), :mod:`~rectifiers.init.gain`
(Gaussian moments and activation-aware gains), :mod:`~rectifiers.init.layers` (weight layers
and the activations around them), :mod:`~rectifiers.init.lsuv` (the data-dependent LSUV) and
:mod:`~rectifiers.init.schemes` (``initialize``).

Every function takes ``generator`` (a ``torch.Generator`` or an int seed) and is then fully
deterministic; a CPU generator also works for weights on another device (the draw is made on
the CPU and copied), so seeded runs give the same weights on CPU and GPU.
"""

from rectifiers.init.gain import activation_gain, gaussian_moment
from rectifiers.init.layers import (
    WEIGHT_LAYER_TYPES,
    activation_types,
    is_activation,
    weight_layers,
)
from rectifiers.init.lsuv import lsuv_
from rectifiers.init.rules import (
    FAN_MODES,
    calculate_fan,
    default_,
    he_normal_,
    he_uniform_,
    lecun_normal_,
    orthogonal_,
    xavier_normal_,
    xavier_uniform_,
)
from rectifiers.init.schemes import DATA_DEPENDENT_SCHEMES, initialize, list_init_schemes
from rectifiers.nn import init_slope

__all__ = [
    "DATA_DEPENDENT_SCHEMES",
    "FAN_MODES",
    "WEIGHT_LAYER_TYPES",
    "activation_gain",
    "activation_types",
    "calculate_fan",
    "default_",
    "gaussian_moment",
    "he_normal_",
    "he_uniform_",
    "init_slope",
    "initialize",
    "is_activation",
    "lecun_normal_",
    "list_init_schemes",
    "lsuv_",
    "orthogonal_",
    "weight_layers",
    "xavier_normal_",
    "xavier_uniform_",
]
