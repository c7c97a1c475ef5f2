"""The paper's ImageNet models (Table 1, Table 3, Sec. 2.3): structure and complexity.

Full-size models are built on the ``meta`` device (no memory, no compute) for counting, and at
reduced width (``width_mult``, ``fc_dim``) for real forward/backward passes: same stage logic.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rectifiers.models import SPPNet, complexity, create_model
from rectifiers.nn import list_activations

# (multiply-adds at 224, weights without slopes, channel-wise slopes, depth) - paper Table 3,
# paper-spec Sec. 1 / 4 / 6.
PAPER = {
    "prelunet_a": (1.90e10, 178.0e6, 14_688, 19),
    "prelunet_b": (2.32e10, 183.3e6, 15_968, 22),
    "prelunet_c": (5.30e10, 330.6e6, 20_576, 22),
    "prelunet_small14": (0.95e9, 75.0e6, 10_304, 14),
}


def _meta(name: str, **kw) -> SPPNet:
    with torch.device("meta"):
        return create_model(name, **kw)


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_complexity_matches_paper(name: str) -> None:
    macs, params, slopes, depth = PAPER[name]
    c = complexity(_meta(name), (3, 224, 224))
    assert abs(c["macs"] / macs - 1) < 0.015, c
    assert abs(c["params_without_slopes"] / params - 1) < 0.005, c
    assert c["slopes"] == slopes
    assert c["params"] == c["params_without_slopes"] + slopes
    assert c["flops"] == 2 * c["macs"]
    assert len(_weight_layers(_meta(name))) == depth


def test_channel_shared_prelu_has_one_slope_per_layer() -> None:
    # Paper Sec. 2.1: 13 extra parameters on the 14-layer model (11 conv + fc1 + fc2).
    assert complexity(_meta("prelunet_small14", act="prelu_shared"))["slopes"] == 13
    assert complexity(_meta("prelunet_a", act="relu"))["slopes"] == 0


@pytest.mark.parametrize("name,fc1_in", [("prelunet_a", 63 * 512), ("prelunet_b", 63 * 512),
                                         ("prelunet_c", 63 * 896), ("prelunet_small14", 50 * 256)])
def test_spp_feeds_fc1(name: str, fc1_in: int) -> None:
    m = _meta(name)
    assert m.classifier.fc1.in_features == fc1_in
    assert [m.classifier.fc1.out_features, m.classifier.fc2.out_features] == [4096, 4096]
    assert m.classifier.fc3.out_features == 1000


@pytest.mark.parametrize("name", sorted(PAPER) + ["plain_deep"])
def test_activation_after_every_weight_layer_but_the_last(name: str) -> None:
    m = _meta(name)
    weight_types = (nn.Conv2d, nn.Linear)
    skip = (nn.ZeroPad2d, nn.MaxPool2d, nn.Dropout)
    seq = [x for x in m.modules() if not isinstance(x, (SPPNet, nn.Sequential, *skip))
           and type(x).__name__ != "SPP"]
    for i, layer in enumerate(seq):
        if isinstance(layer, weight_types) and i + 1 < len(seq):
            assert not isinstance(seq[i + 1], weight_types), f"no activation after layer {i}"
            assert "PReLU" in type(seq[i + 1]).__name__
            assert seq[i + 1].weight.numel() == (
                layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features)
    assert isinstance(seq[-1], nn.Linear)  # fc3 feeds the softmax directly
    drops = [x for x in m.classifier if isinstance(x, nn.Dropout)]
    assert [d.p for d in drops] == [0.5, 0.5]


@pytest.mark.parametrize("name,maps", [
    ("prelunet_a", {"conv1": 112, "conv2_5": 56, "conv3_5": 28, "conv4_5": 14}),
    ("prelunet_c", {"conv1": 112, "conv2_6": 56, "conv3_6": 28, "conv4_6": 14}),
    ("prelunet_small14", {"conv1": 109, "pool1": 36, "conv2_1": 36, "conv2_4": 36,
                          "conv3_1": 18, "conv3_6": 18}),
])
def test_feature_map_sizes_match_the_paper(name: str, maps: dict[str, int]) -> None:
    m = _meta(name)
    sizes: dict[str, int] = {}
    for key in maps:
        getattr(m.trunk, key).register_forward_hook(
            lambda mod, inp, out, key=key: sizes.__setitem__(key, out.shape[-1]))
    with torch.no_grad():  # meta tensors: shapes only
        m(torch.empty(1, 3, 224, 224, device="meta"))
    assert sizes == maps
    assert m.window == list(maps.values())[-1]
    assert m.default_input_size == (3, 224, 224)


def test_plain_deep_adds_2x2_convs_with_256_filters() -> None:
    m = _meta("plain_deep", depth=30)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 27 and len(_weight_layers(m)) == 30  # paper: 27 conv + 3 fc
    assert all(c.kernel_size == (2, 2) and c.out_channels == 256 for c in convs[5:])
    assert m.window == 18
    for depth in (14, 22):
        assert len(_weight_layers(_meta("plain_deep", depth=depth))) == depth


@pytest.mark.parametrize("depth", [13, 0, 14.5, "30", True])
def test_plain_deep_rejects_bad_depth(depth) -> None:
    with pytest.raises(ValueError, match="plain_deep depth .* int >= 14"):
        create_model("plain_deep", depth=depth)


def _reduced(name: str, act: str = "prelu", **kw) -> SPPNet:
    # Same stage logic at 1/16 width and tiny fc layers: cheap enough for CPU tests at 224+.
    torch.manual_seed(0)
    return create_model(name, num_classes=5, act=act, width_mult=1 / 16, fc_dim=32, **kw)


@pytest.mark.parametrize("name", ["prelunet_a", "prelunet_b", "prelunet_c", "prelunet_small14",
                                  "plain_deep"])
@pytest.mark.parametrize("side", [224, 257, 300])
def test_trunk_plus_head_equals_forward_at_any_size(name: str, side: int) -> None:
    m = _reduced(name).eval()
    x = torch.randn(2, 3, side, side)
    fmap = m.features(x)
    assert fmap.shape[-2:] == m.feature_size((side, side))
    assert fmap.shape[1] == m.feature_channels
    out = m(x)
    assert out.shape == (2, 5)
    torch.testing.assert_close(m.head(fmap), out, rtol=0, atol=0)


def test_full_width_model_a_trunk_plus_head_equals_forward() -> None:
    # The real conv widths of model A at 224 (fc kept small to spare memory), batch 1.
    torch.manual_seed(0)
    m = create_model("prelunet_a", num_classes=3, fc_dim=16).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fmap = m.features(x)
        assert fmap.shape == (1, 512, 14, 14)
        torch.testing.assert_close(m.head(fmap), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["prelunet_a", "prelunet_small14"])
def test_forward_backward_reaches_every_parameter(name: str) -> None:
    m = _reduced(name).train()
    out = m(torch.randn(2, 3, 224, 224))
    out.square().mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_dense_window_of_feature_map_goes_through_head() -> None:
    # The evaluation hook: any window x window crop of a larger map is a valid head input.
    m = _reduced("prelunet_a").eval()
    fmap = m.features(torch.randn(1, 3, 300, 300))
    w = m.window
    crops = torch.cat([fmap[..., i:i + w, j:j + w] for i in (0, 4) for j in (0, 4)])
    assert m.head(crops).shape == (4, 5)


@pytest.mark.parametrize("act", list_activations())
@pytest.mark.parametrize("name", sorted(PAPER) + ["plain_deep"])
def test_every_activation_builds_every_paper_model(name: str, act: str) -> None:
    m = _meta(name, act=act)
    with torch.no_grad():  # meta tensors: shapes only
        assert m(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)


def test_spp_rule_switch_reaches_the_model() -> None:
    m = _reduced("prelunet_a", spp_rule="sppnet")
    assert m.spp.rule == "sppnet"
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 5)
