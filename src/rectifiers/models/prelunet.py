"""The paper's ImageNet models: A, B, C (Table 3), the 14-layer model (Table 1), Sec. 2.3 nets.

Choices the paper leaves open, and what we do (paper-spec Sec. 6 and 12):

- **Padding.** Table 3's map sizes (224 -> 112 -> 56 -> 28 -> 14) imply pad 3 on conv1 (7x7/2)
  and pad 1 on every 3x3 conv; pools are 2x2/2 without padding. The 14-layer model's conv1 is
  unpadded (224 -> 109), pool1 3x3/3 gives 36, as He & Sun's "dominantly 36x36" maps say.
- **2x2 convs** (14-layer model) cannot be size-preserving with symmetric padding. We pad one
  pixel on the right/bottom for odd-numbered convs of a stage and on the left/top for even ones,
  so every map in a stage keeps its size (36, then 18) and each pair of 2x2 convs is centred
  like one 3x3 conv (receptive field grows symmetrically).
- **Pooling rounding.** Floor mode (PyTorch's default; Caffe used ceil). At 224 the Table 3
  pools are exact (112, 56, 28 are even) so floor and ceil agree; for the 14-layer model floor
  gives 109 -> 36 (ceil would give 37 with a one-row last window), matching the 36x36 maps.
  Inputs with odd intermediate sizes lose the last row/column at a pool.
- **SPP bins.** ``spp_rule="adaptive"`` (default, covers the whole map) or ``"sppnet"`` (SPP-net's
  ceil/floor windows); see :mod:`rectifiers.nn.pooling`.
- **Init** (``init="he"``): conv weights N(0, 2/((1+a^2) k^2 c_out)) (Eq. 14, "backward case"),
  fc1/fc2 std 0.01, fc3 std 0.001, biases 0 (Sec. 3). The fixed fc stds assume raw 0-255 inputs
  minus the mean image, as in the paper.

Keywords shared by the builders: ``width_mult`` scales every conv width (for cheap tests of the
same stage logic), ``fc_dim`` the two hidden fc layers, ``drop_rate`` the dropout,
``spp_rule`` the SPP bin rule.
"""

from __future__ import annotations

from typing import Any

from rectifiers.models.registry import register_model
from rectifiers.models.spp_net import Conv, Pool, SPPNet

PAPER_FC_STD = (0.01, 0.01, 0.001)


def _scale(width: int, mult: float) -> int:
    if mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {mult}")
    return max(1, round(width * mult))


def _table3_plan(stage_widths: tuple[int, int, int], convs_per_stage: int,
                 width_mult: float) -> list[Conv | Pool]:
    """Table 3: conv 7x7/2 96 -> pool -> [3x3 convs at 56] -> pool -> [at 28] -> pool -> [at 14]."""
    plan: list[Conv | Pool] = [Conv("conv1", _scale(96, width_mult), 7, 2, 3), Pool("pool1", 2, 2)]
    for s, width in enumerate(stage_widths, start=2):
        if s > 2:
            plan.append(Pool(f"pool{s - 1}", 2, 2))
        plan += [Conv(f"conv{s}_{i}", _scale(width, width_mult), 3, 1, 1)
                 for i in range(1, convs_per_stage + 1)]
    return plan


def _table3(stage_widths: tuple[int, int, int], convs_per_stage: int, *, num_classes: int,
            in_chans: int, act: str, act_kwargs: dict[str, Any], width_mult: float,
            fc_dim: int, drop_rate: float, spp_rule: str) -> SPPNet:
    return SPPNet(_table3_plan(stage_widths, convs_per_stage, width_mult), in_chans=in_chans,
                  num_classes=num_classes, spp_levels=(7, 3, 2, 1), fc_dims=(fc_dim, fc_dim),
                  act=act, act_kwargs=act_kwargs, drop_rate=drop_rate,
                  default_input_size=(in_chans, 224, 224), spp_rule=spp_rule,
                  default_fc_std=PAPER_FC_STD)


@register_model("prelunet_a")
def prelunet_a(num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
               act_kwargs: dict[str, Any] | None = None, width_mult: float = 1.0,
               fc_dim: int = 4096, drop_rate: float = 0.5, spp_rule: str = "adaptive") -> SPPNet:
    """Model A (Table 3): 19 weight layers, 3x3 convs 5 per stage at 256/512/512.

    1.90e10 multiply-adds at 224x224, 178.0 M weights, 14,688 channel-wise PReLU slopes.
    """
    return _table3((256, 512, 512), 5, num_classes=num_classes, in_chans=in_chans, act=act,
                   act_kwargs=act_kwargs or {}, width_mult=width_mult, fc_dim=fc_dim,
                   drop_rate=drop_rate, spp_rule=spp_rule)


@register_model("prelunet_b")
def prelunet_b(num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
               act_kwargs: dict[str, Any] | None = None, width_mult: float = 1.0,
               fc_dim: int = 4096, drop_rate: float = 0.5, spp_rule: str = "adaptive") -> SPPNet:
    """Model B (Table 3): A deepened, 22 weight layers, 6 convs per stage at 256/512/512.

    2.32e10 multiply-adds, 183.3 M weights, 15,968 slopes.
    """
    return _table3((256, 512, 512), 6, num_classes=num_classes, in_chans=in_chans, act=act,
                   act_kwargs=act_kwargs or {}, width_mult=width_mult, fc_dim=fc_dim,
                   drop_rate=drop_rate, spp_rule=spp_rule)


@register_model("prelunet_c")
def prelunet_c(num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
               act_kwargs: dict[str, Any] | None = None, width_mult: float = 1.0,
               fc_dim: int = 4096, drop_rate: float = 0.5, spp_rule: str = "adaptive") -> SPPNet:
    """Model C (Table 3): B widened, 22 weight layers, 6 convs per stage at 384/768/896.

    5.30e10 multiply-adds, 330.6 M weights, 20,576 slopes.
    """
    return _table3((384, 768, 896), 6, num_classes=num_classes, in_chans=in_chans, act=act,
                   act_kwargs=act_kwargs or {}, width_mult=width_mult, fc_dim=fc_dim,
                   drop_rate=drop_rate, spp_rule=spp_rule)


def _pads_2x2(i: int) -> tuple[int, int, int, int]:
    # (left, right, top, bottom): alternate so pairs of 2x2 convs stay centred (module docstring).
    return (0, 1, 0, 1) if i % 2 == 1 else (1, 0, 1, 0)


def _small14_plan(extra_convs: int, width_mult: float) -> list[Conv | Pool]:
    """Table 1: conv 7x7/2 64 -> pool 3x3/3 -> 4x conv 2x2 128 -> pool 2x2/2 -> 6x conv 2x2 256."""
    plan: list[Conv | Pool] = [Conv("conv1", _scale(64, width_mult), 7, 2, 0), Pool("pool1", 3, 3)]
    plan += [Conv(f"conv2_{i}", _scale(128, width_mult), 2, 1, _pads_2x2(i)) for i in range(1, 5)]
    plan.append(Pool("pool2", 2, 2))
    plan += [Conv(f"conv3_{i}", _scale(256, width_mult), 2, 1, _pads_2x2(i))
             for i in range(1, 7 + extra_convs)]
    return plan


def _small14(extra_convs: int, *, num_classes: int, in_chans: int, act: str,
             act_kwargs: dict[str, Any], width_mult: float, fc_dim: int, drop_rate: float,
             spp_rule: str) -> SPPNet:
    return SPPNet(_small14_plan(extra_convs, width_mult), in_chans=in_chans,
                  num_classes=num_classes, spp_levels=(6, 3, 2, 1), fc_dims=(fc_dim, fc_dim),
                  act=act, act_kwargs=act_kwargs, drop_rate=drop_rate,
                  default_input_size=(in_chans, 224, 224), spp_rule=spp_rule,
                  default_fc_std=PAPER_FC_STD)


@register_model("prelunet_small14")
def prelunet_small14(num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
                     act_kwargs: dict[str, Any] | None = None, width_mult: float = 1.0,
                     fc_dim: int = 4096, drop_rate: float = 0.5,
                     spp_rule: str = "adaptive") -> SPPNet:
    """The 14-layer model of Table 1 ("model E" of He & Sun 2015): 11 conv + 3 fc.

    Maps 224 -> 109 (conv1) -> 36 (pool1, 2x2 convs at 128) -> 18 (pool2, 2x2 convs at 256),
    SPP {6, 3, 2, 1} = 50 bins x 256 = 12,800 features. About 75.0 M weights, 0.95e9
    multiply-adds, 10,304 channel-wise slopes (13 channel-shared).
    """
    return _small14(0, num_classes=num_classes, in_chans=in_chans, act=act,
                    act_kwargs=act_kwargs or {}, width_mult=width_mult, fc_dim=fc_dim,
                    drop_rate=drop_rate, spp_rule=spp_rule)


@register_model("plain_deep")
def plain_deep(depth: int = 30, num_classes: int = 1000, in_chans: int = 3, act: str = "prelu",
               act_kwargs: dict[str, Any] | None = None, width_mult: float = 1.0,
               fc_dim: int = 4096, drop_rate: float = 0.5, spp_rule: str = "adaptive") -> SPPNet:
    """The deep plain nets of Sec. 2.3 / Fig. 3: the 14-layer model + ``depth - 14`` 2x2 convs.

    The extra convs have 256 filters and go into the 256-filter stage (conv3_7, conv3_8, ...),
    so ``depth=30`` is 27 conv + 3 fc. The paper ran these with ReLU: pass ``act="relu"``.

    Raises:
        ValueError: ``depth`` is not an int >= 14.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 14:
        raise ValueError(f"plain_deep depth counts weight layers (conv + 3 fc) on top of the "
                         f"14-layer model and must be an int >= 14 (paper: 30), got {depth!r}")
    return _small14(depth - 14, num_classes=num_classes, in_chans=in_chans, act=act,
                    act_kwargs=act_kwargs or {}, width_mult=width_mult, fc_dim=fc_dim,
                    drop_rate=drop_rate, spp_rule=spp_rule)
