"""The paper's PReLU-nets and their small-input versions, behind one registry.

- ``prelunet_a``, ``prelunet_b``, ``prelunet_c``: Table 3 (ImageNet, 224x224).
- ``prelunet_small14``: the 14-layer model of Table 1; ``plain_deep(depth=30)``: Sec. 2.3 / Fig. 3.
- ``prelunet_small``, ``plain_small(depth=...)``: 28x28 / 32x32 versions for CPU experiments.

All are :class:`SPPNet` s exposing ``features(x)``, ``head(fmap)``, ``window``,
``feature_stride`` and ``default_input_size`` for dense (feature-map) testing.

Example:
    >>> from rectifiers.models import create_model, complexity
    >>> m = create_model("prelunet_small", num_classes=10, in_chans=1, act="relu", init="he")
    >>> complexity(m)["slopes"]
    0
"""

from rectifiers.models import prelunet as _prelunet  # noqa: F401  (registers the models)
from rectifiers.models import small as _small  # noqa: F401
from rectifiers.models.complexity import complexity, count_slopes
from rectifiers.models.registry import create_model, list_models, register_model
from rectifiers.models.spp_net import SPPNet

__all__ = ["SPPNet", "complexity", "count_slopes", "create_model", "list_models",
           "register_model"]
