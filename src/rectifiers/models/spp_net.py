"""The generic SPP network of the paper: conv trunk -> SPP -> fc-act-dropout x2 -> fc.

Every model of this package is an :class:`SPPNet` assembled from a small layer plan, so the
paper's rules hold everywhere by construction:

- an activation after every conv and after fc1 and fc2, none after the last fc (it feeds the
  softmax); each activation is registered *right after* its layer, which is how
  :func:`rectifiers.init.initialize` finds the slope ``a`` of Eq. 15 for that layer;
- channel-wise activations get ``channels=`` the layer's output width (one ``a_i`` per channel of
  a conv, per unit of an fc layer, paper Sec. 2.1);
- dropout 0.5 after the activations of fc1 and fc2 (Sec. 3).

Dense evaluation (paper Sec. 3, "multi-view testing on feature maps") uses the split
``forward(x) == head(features(x))``: run :meth:`SPPNet.features` once on a whole image, then
apply :meth:`SPPNet.head` to every ``window x window`` crop of the feature map;
:meth:`SPPNet.spp_classifier` says when the head is a plain SPP + classifier, which dense
evaluation can compute for all windows at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.nn import SPP, make_activation
from rectifiers.nn.pooling import MaxPool2d


@dataclass(frozen=True)
class Conv:
    """A conv layer + activation. ``pad`` is symmetric, or (left, right, top, bottom)."""

    name: str
    out: int
    kernel: int
    stride: int = 1
    pad: int | tuple[int, int, int, int] = 0

    def __post_init__(self) -> None:
        if not self.name.startswith("conv"):
            raise ValueError(f"conv layer names start with 'conv' (e.g. 'conv2_1'), got "
                             f"{self.name!r}")

    @property
    def act_name(self) -> str:
        """Name of this layer's activation: ``conv2_1`` -> ``act2_1``."""
        return "act" + self.name.removeprefix("conv")

    @property
    def pad_name(self) -> str:
        """Name of this layer's asymmetric zero padding (if any): ``conv2`` -> ``pad2``."""
        return "pad" + self.name.removeprefix("conv")


@dataclass(frozen=True)
class Pool:
    """A max-pooling layer (floor mode, no padding)."""

    name: str
    kernel: int
    stride: int


def _make_act(act: str, channels: int, act_kwargs: dict[str, Any]) -> nn.Module:
    """The activation after a conv or fc layer, in place unless the caller says otherwise.

    In place is safe here: each activation's input is the output of a Conv2d or Linear that
    nothing else reads (their backward needs their *input*), so a PReLU-net keeps only the
    activation outputs for backward, as a ReLU-net does. ``make_activation`` accepts
    ``inplace=`` for every registered name (a no-op where it does not apply).
    """
    kw = dict(act_kwargs)
    kw.setdefault("inplace", True)
    return make_activation(act, channels=channels, **kw)


class SPPNet(nn.Module):
    """Conv trunk + spatial pyramid pooling + three fc layers (paper Table 1 / Table 3 form).

    Args:
        plan: the trunk, as a sequence of :class:`Conv` / :class:`Pool` entries.
        in_chans: input channels.
        num_classes: outputs of the last fc layer.
        spp_levels: SPP pyramid, e.g. ``(7, 3, 2, 1)``.
        fc_dims: widths of the hidden fc layers (the paper: ``(4096, 4096)``).
        act: activation name (registry of :mod:`rectifiers.nn`); ``act_kwargs`` its keywords.
        drop_rate: dropout after each hidden fc activation (paper: 0.5).
        default_input_size: ``(C, H, W)`` of the training crop.
        spp_rule: SPP bin rule, ``"adaptive"`` or ``"sppnet"`` (see :mod:`rectifiers.nn.pooling`).
        default_fc_std: stds of the last fc layers under the paper's ``"he"`` recipe, or None.

    Attributes:
        window: side of the last feature map for a ``default_input_size`` input (14 for A/B/C).
        feature_stride: input pixels per feature-map pixel (product of all strides).
        feature_channels: channels of the last feature map.
    """

    def __init__(self, plan: Sequence[Conv | Pool], *, in_chans: int, num_classes: int,
                 spp_levels: Sequence[int], fc_dims: Sequence[int] = (4096, 4096),
                 act: str = "prelu", act_kwargs: dict[str, Any] | None = None,
                 drop_rate: float = 0.5, default_input_size: tuple[int, int, int],
                 spp_rule: str = "adaptive",
                 default_fc_std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        act_kwargs = dict(act_kwargs or {})
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        chans, stride = in_chans, 1
        for item in plan:
            if isinstance(item, Pool):
                layers[item.name] = MaxPool2d(item.kernel, item.stride)
                stride *= item.stride
                continue
            pad = item.pad
            if isinstance(pad, tuple):
                # Asymmetric padding (2x2 convs) as its own module: plain nn.Conv2d stays plain.
                layers[item.pad_name] = nn.ZeroPad2d(pad)
                pad = 0
            layers[item.name] = nn.Conv2d(chans, item.out, item.kernel, item.stride, pad)
            layers[item.act_name] = _make_act(act, item.out, act_kwargs)
            chans, stride = item.out, stride * item.stride
        self.trunk = nn.Sequential(layers)
        self.spp = SPP(tuple(spp_levels), rule=spp_rule)

        head: OrderedDict[str, nn.Module] = OrderedDict()
        width = self.spp.output_features(chans)
        for i, dim in enumerate(fc_dims, start=1):
            head[f"fc{i}"] = nn.Linear(width, dim)
            head[f"act_fc{i}"] = _make_act(act, dim, act_kwargs)
            if drop_rate > 0:
                head[f"drop{i}"] = nn.Dropout(drop_rate)
            width = dim
        head[f"fc{len(fc_dims) + 1}"] = nn.Linear(width, num_classes)
        self.classifier = nn.Sequential(head)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_channels = chans
        self.feature_stride = stride
        self.default_input_size = tuple(default_input_size)
        self.default_fc_std = default_fc_std
        fh, fw = self.feature_size(default_input_size[1:])
        if fh != fw:
            raise ValueError(f"default_input_size {default_input_size} gives a non-square map")
        self.window = fh

    def feature_size(self, hw: Sequence[int]) -> tuple[int, int]:
        """``(H', W')`` of the last feature map for an input of spatial size ``hw``.

        Pure shape arithmetic (meta tensors): costs nothing and never touches the weights.
        """
        x = torch.empty(1, self.in_chans, *hw, device="meta")
        for m in self.trunk:
            if isinstance(m, nn.Conv2d):
                w = torch.empty(m.weight.shape, device="meta")
                x = F.conv2d(x, w, None, m.stride, m.padding)
            elif isinstance(m, nn.MaxPool2d):
                x = F.max_pool2d(x, m.kernel_size, m.stride)
            elif isinstance(m, nn.ZeroPad2d):
                x = F.pad(x, m.padding)
        return int(x.shape[-2]), int(x.shape[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Conv trunk: image ``(N, C, H, W)`` -> last feature map (before SPP)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected a (N, {self.in_chans}, H, W) image batch (in_chans="
                             f"{self.in_chans}), got shape {tuple(x.shape)}")
        return self.trunk(x)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        """SPP + fc layers: feature map (any size the SPP rule accepts) -> logits."""
        return self.classifier(self.spp(fmap))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def spp_classifier(self) -> tuple[tuple[int, ...], nn.Module] | None:
        """``(levels, classifier)`` when ``head(fmap) == classifier(SPP_max(levels)(fmap))``.

        True for the adaptive max SPP (the default) unless a subclass replaces :meth:`head`.
        Dense evaluation then reads every window's SPP vector off a few stride-1 max-pools of
        the whole map (:func:`rectifiers.eval.dense.spp_all_windows`); ``None`` means it must
        call :meth:`head` on each window.
        """
        if (type(self).head is SPPNet.head and self.spp.rule == "adaptive"
                and self.spp.pool == "max"):
            return self.spp.levels, self.classifier
        return None

