"""Per-layer initial weight statistics of the models under the paper's "he" recipe.

Expected std for a conv (and, in small models, fc1/fc2): sqrt(2 / ((1 + a^2) k^2 c_out)), Eq. 14
with Eq. 15's slope a of the activation that follows the layer; paper models: fc1/fc2 std 0.01,
fc3 std 0.001 (Sec. 3); small models: fc3 std 0.01. Tolerances come from the sample size: the
sample std of n Gaussians has relative standard error 1/sqrt(2n); we allow 6 of them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers import init as rinit
from rectifiers.models import create_model


def _pairs(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module | None]]:
    """(name, weight layer, activation right after it or None) in registration order."""
    mods = list(model.named_modules())
    out = []
    for i, (name, m) in enumerate(mods):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nxt = next((x for _, x in mods[i + 1:] if not isinstance(x, (nn.ZeroPad2d,))), None)
            act = None if isinstance(nxt, (nn.Conv2d, nn.Linear, nn.MaxPool2d)) or nxt is None \
                else nxt
            out.append((name, m, act))
    return out


def _assert_std(w: torch.Tensor, std: float, name: str) -> None:
    n = w.numel()
    got = w.double().std().item()
    assert abs(got / std - 1) < 6 / math.sqrt(2 * n), f"{name}: std {got:.5g} vs {std:.5g}"
    assert abs(w.double().mean().item()) < 6 * std / math.sqrt(n), f"{name}: mean not ~0"


def _fan_out(layer: nn.Module) -> int:
    w = layer.weight
    return w.shape[0] * (w[0][0].numel() if w.dim() > 2 else 1)


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_paper_recipe_on_the_14_layer_model(act: str) -> None:
    m = create_model("prelunet_small14", num_classes=100, act=act, width_mult=0.5, fc_dim=512,
                     generator=0)
    pairs = _pairs(m)
    assert len(pairs) == 14
    for name, layer, a_mod in pairs[:-3]:
        a = 0.0 if act == "relu" else rinit.init_slope(a_mod)
        assert a == (0.0 if act == "relu" else 0.25)
        _assert_std(layer.weight, math.sqrt(2 / ((1 + a * a) * _fan_out(layer))), name)
    for (name, layer, _), std in zip(pairs[-3:], (0.01, 0.01, 0.001), strict=True):
        _assert_std(layer.weight, std, name)
    for name, layer, _ in pairs:
        assert torch.count_nonzero(layer.bias) == 0, name


def test_small_model_recipe_he_on_fc1_fc2_and_small_last_layer() -> None:
    m = create_model("prelunet_small", num_classes=10, in_chans=1, generator=1)
    pairs = _pairs(m)
    for name, layer, a_mod in pairs[:-1]:
        a = rinit.init_slope(a_mod)
        _assert_std(layer.weight, math.sqrt(2 / ((1 + a * a) * _fan_out(layer))), name)
    _assert_std(m.classifier.fc3.weight, 0.01, "fc3")


def test_prelu_slope_enters_the_he_std() -> None:
    # fc1 of the small model has 458,752 weights: the 3 % gap between a=0 and a=0.25 is
    # ~30 standard errors, so this fails if the slope is ignored.
    m = create_model("prelunet_small", num_classes=10, in_chans=1, act="prelu", generator=2)
    got = m.classifier.fc1.weight.double().std().item()
    assert abs(got / math.sqrt(2 / (1.0625 * 256)) - 1) < 0.005
    assert abs(got / math.sqrt(2 / 256) - 1) > 0.02


def test_fan_in_mode_switch() -> None:
    m = create_model("prelunet_small", num_classes=10, in_chans=1, act="relu", init_mode="fan_in",
                     generator=3)
    w = m.trunk.conv2_1.weight  # 64 x 32 x 3 x 3: fan_in 288 (Eq. 10), fan_out 576 (Eq. 14)
    _assert_std(w, math.sqrt(2 / 288), "conv2_1")


def _conv_second_moments(model: nn.Module, x: torch.Tensor) -> list[float]:
    moments: list[float] = []
    hooks = [c.register_forward_hook(lambda m, i, o: moments.append(o.double().square().mean()
                                                                     .item()))
             for c in model.modules() if isinstance(c, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return moments


def test_sec23_signal_he_keeps_deep_plain_net_alive_xavier_vanishes() -> None:
    # Paper Sec. 2.3: in the 30-layer ReLU net Xavier's N(0, 1/n) halves E[y^2] at every layer
    # (Eq. 9 with Var[w] = 1/n: 2^-22 ~ 2e-7 over the 22 stage-3 convs) while He keeps it,
    # up to the zero-padding loss at the border of the 14x14 maps (~20x, see plain_small).
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    he = create_model("plain_small", depth=30, num_classes=10, in_chans=1, act="relu",
                      generator=0)
    xa = create_model("plain_small", depth=30, num_classes=10, in_chans=1, act="relu",
                      init="xavier", generator=0)
    m_he, m_xa = _conv_second_moments(he, x), _conv_second_moments(xa, x)
    assert len(m_he) == 27
    first3 = 5  # conv3_1: the stage where the deep nets add their layers
    assert m_he[-1] / m_he[first3] > 5e-3
    assert m_xa[-1] / m_xa[first3] < 1e-5
    assert m_xa[-1] / m_he[-1] < 1e-6
