"""Small-input versions of the paper's models, for real experiments on a CPU (28x28 / 32x32).

Same rules as the ImageNet models (see :mod:`rectifiers.models.spp_net`): an activation after
every conv and after fc1/fc2, max pools between stages, SPP before three fc layers with dropout
after fc1 and fc2, channel-wise PReLU by default. Only widths, kernel sizes and strides are scaled
to the input size.

Init under ``init="he"``: Eq. 14 (``fan_out``) on every conv and on fc1/fc2, and std 0.01 on the
last fc. The paper's fixed fc stds (0.01/0.01/0.001) are tuned to raw 0-255 pixel inputs; these
models expect standardised inputs (zero mean, unit variance), for which He init keeps the
fc signal at unit scale, while the small last-layer std keeps the initial logits near zero (the
initial loss close to ln(num_classes)), as the paper's 0.001 does for its models.
"""

from __future__ import annotations

from typing import Any

from rectifiers.models.registry import register_model
from rectifiers.models.spp_net import Conv, Pool, SPPNet

SMALL_FC_STD = (0.01,)


def _check_input_size(input_size: int, minimum: int) -> None:
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < minimum:
        raise ValueError(f"input_size must be an int >= {minimum}, got {input_size!r}")


@register_model("prelunet_small")
def prelunet_small(num_classes: int = 10, in_chans: int = 1, act: str = "prelu",
                   act_kwargs: dict[str, Any] | None = None,
                   widths: tuple[int, int, int] = (32, 64, 128), fc_dim: int = 256,
                   drop_rate: float = 0.5, spp_levels: tuple[int, ...] = (3, 2, 1),
                   input_size: int = 28, spp_rule: str = "adaptive") -> SPPNet:
    """Model A's design at 28x28 (Fashion-MNIST) or 32x32 (CIFAR): 8 weight layers.

    ``conv1 3x3 w1 -> pool 2/2 -> 2x conv 3x3 w2 -> pool 2/2 -> 2x conv 3x3 w3 -> SPP -> fc
    fc_dim -> fc fc_dim -> fc num_classes``; all 3x3 convs pad 1, so maps are 28 -> 14 -> 7
    (32 -> 16 -> 8) and ``window`` is ``input_size // 4``. As in model A, the largest map gets
    a single conv and the depth goes to the smaller maps. About 22 M multiply-adds and 0.8 M
    parameters at 28x28 with the defaults; one epoch of Fashion-MNIST (batch 128, fp32) costs
    about 2 CPU-minutes on one core, about 1 minute on 2 idle cores.
    """
    _check_input_size(input_size, 8)
    if len(widths) != 3:
        raise ValueError(f"widths must give the 3 stage widths, got {widths!r}")
    w1, w2, w3 = widths
    plan: list[Conv | Pool] = [
        Conv("conv1", w1, 3, 1, 1), Pool("pool1", 2, 2),
        Conv("conv2_1", w2, 3, 1, 1), Conv("conv2_2", w2, 3, 1, 1), Pool("pool2", 2, 2),
        Conv("conv3_1", w3, 3, 1, 1), Conv("conv3_2", w3, 3, 1, 1),
    ]
    return SPPNet(plan, in_chans=in_chans, num_classes=num_classes, spp_levels=spp_levels,
                  fc_dims=(fc_dim, fc_dim), act=act, act_kwargs=act_kwargs, drop_rate=drop_rate,
                  default_input_size=(in_chans, input_size, input_size), spp_rule=spp_rule,
                  default_fc_std=SMALL_FC_STD)


@register_model("plain_small")
def plain_small(depth: int = 14, num_classes: int = 10, in_chans: int = 1, act: str = "prelu",
                act_kwargs: dict[str, Any] | None = None, width: int = 16, fc_dim: int = 256,
                drop_rate: float = 0.5, input_size: int = 28,
                spp_rule: str = "adaptive") -> SPPNet:
    """Plain rectifier nets (no batch norm, no skips) with ``depth`` weight layers, for Sec. 2.3.

    Mirrors the 14-layer model / ``plain_deep`` at 28x28: ``depth - 3`` convs + 3 fc layers.
    ``conv1 3x3 width`` and ``min(4, (depth - 4) // 2)`` 3x3 convs at ``width`` on 28x28,
    pool 2/2, then all remaining 3x3 convs at ``2 * width`` on 14x14, SPP {3, 2, 1}, fc
    ``fc_dim`` x2, fc ``num_classes``. So depth 14 has the 1 + 4 + 6 conv layout of Table 1,
    and deeper nets (22, 30) add their convs to the last stage, as in the paper's 30-layer net.
    The paper's Sec. 2.3 runs used ReLU: pass ``act="relu"``.

    Why the deep stage runs on 14x14 maps and not 7x7: zero padding shrinks a conv's response
    at the border; on a 7x7 map a 3x3 conv sees on average (19/21)^2 = 82 % of its taps, so a
    He-initialised ReLU stack loses >= 18 % of E[y^2] per layer, which would blur the init
    comparison. On 14x14 one layer sees 91 % of its taps (the paper's 2x2 convs on 18x18 maps:
    95 %); since the deficit spreads inwards layer by layer, measured E[y^2] of a He-initialised
    depth-30 ReLU net still falls ~20x over its 22 stage-3 convs, against ~1e7x with Xavier.
    ``width`` 16 costs about the same as 32 channels on 7x7.

    Raises:
        ValueError: ``depth`` is not an int >= 5 (at least 2 convs), or ``width`` < 1.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 5:
        raise ValueError(f"plain_small depth counts weight layers (convs + 3 fc) and must be an "
                         f"int >= 5, got {depth!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    _check_input_size(input_size, 8)
    n_conv = depth - 3
    n2 = min(4, (n_conv - 1) // 2)
    n3 = n_conv - 1 - n2
    plan: list[Conv | Pool] = [Conv("conv1", width, 3, 1, 1)]
    plan += [Conv(f"conv2_{i}", width, 3, 1, 1) for i in range(1, n2 + 1)]
    plan.append(Pool("pool2", 2, 2))
    plan += [Conv(f"conv3_{i}", 2 * width, 3, 1, 1) for i in range(1, n3 + 1)]
    return SPPNet(plan, in_chans=in_chans, num_classes=num_classes, spp_levels=(3, 2, 1),
                  fc_dims=(fc_dim, fc_dim), act=act, act_kwargs=act_kwargs, drop_rate=drop_rate,
                  default_input_size=(in_chans, input_size, input_size), spp_rule=spp_rule,
                  default_fc_std=SMALL_FC_STD)
