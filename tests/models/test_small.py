"""Small-input models (28x28 / 32x32): shapes, dense-testing hooks, depth rules, activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rectifiers.analysis.cost import saved_tensor_bytes
from rectifiers.models import complexity, create_model
from rectifiers.nn import list_activations


@pytest.mark.parametrize("side,window", [(28, 7), (32, 8)])
def test_prelunet_small_shapes_and_dense_hooks(side: int, window: int) -> None:
    torch.manual_seed(0)
    m = create_model("prelunet_small", num_classes=10, in_chans=1, input_size=side).eval()
    assert m.window == window and m.feature_stride == 4
    assert m.default_input_size == (1, side, side)
    x = torch.randn(3, 1, side, side)
    fmap = m.features(x)
    assert fmap.shape == (3, 128, window, window)
    out = m(x)
    assert out.shape == (3, 10)
    torch.testing.assert_close(m.head(fmap), out, rtol=0, atol=0)
    # A larger test image: its map has more windows of the training size.
    big = m.features(torch.randn(1, 1, side + 8, side + 8))
    assert big.shape[-1] == window + 2
    assert m.head(big[..., 1:1 + window, 2:2 + window]).shape == (1, 10)


def test_prelunet_small_follows_the_paper_rules() -> None:
    m = create_model("prelunet_small", num_classes=10, in_chans=1)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    fcs = [c for c in m.modules() if isinstance(c, nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 128, 128]
    assert len(fcs) == 3 and fcs[0].in_features == 128 * (9 + 4 + 1)  # SPP {3, 2, 1}
    assert [d.p for d in m.classifier if isinstance(d, nn.Dropout)] == [0.5, 0.5]
    c = complexity(m)
    assert c["slopes"] == 32 + 2 * 64 + 2 * 128 + 2 * 256
    assert 15e6 < c["macs"] < 30e6  # cheap enough for a CPU epoch of Fashion-MNIST


@pytest.mark.parametrize("depth", [5, 8, 14, 22, 30])
def test_plain_small_has_depth_weight_layers(depth: int) -> None:
    m = create_model("plain_small", depth=depth, num_classes=10, in_chans=1, width=8)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    fcs = [c for c in m.modules() if isinstance(c, nn.Linear)]
    assert len(convs) + len(fcs) == depth and len(fcs) == 3
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.LayerNorm)) for x in m.modules())
    assert m.window == 14 and m.feature_stride == 2
    out = m(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_plain_small_depth14_mirrors_table1_layout() -> None:
    m = create_model("plain_small", depth=14, num_classes=10, in_chans=1, width=8)
    names = [n for n, x in m.trunk.named_children() if isinstance(x, nn.Conv2d)]
    assert names == ["conv1"] + [f"conv2_{i}" for i in range(1, 5)] + \
        [f"conv3_{i}" for i in range(1, 7)]
    deeper = create_model("plain_small", depth=30, num_classes=10, in_chans=1, width=8)
    assert sum(n.startswith("conv3_") for n, _ in deeper.trunk.named_children()) == 22


@pytest.mark.parametrize("depth", [4, 0, 22.0, "22", False])
def test_plain_small_rejects_bad_depth(depth) -> None:
    with pytest.raises(ValueError, match="plain_small depth .* int >= 5"):
        create_model("plain_small", depth=depth)


def test_bad_input_size_and_widths() -> None:
    with pytest.raises(ValueError, match="input_size must be an int >= 8"):
        create_model("prelunet_small", input_size=4)
    with pytest.raises(ValueError, match="widths must give the 3 stage widths"):
        create_model("prelunet_small", widths=(8, 16))
    with pytest.raises(ValueError, match="width must be >= 1"):
        create_model("plain_small", width=0)


@pytest.mark.parametrize("act", list_activations())
@pytest.mark.parametrize("name", ["prelunet_small", "plain_small"])
def test_every_activation_builds_trains_small_models(name: str, act: str) -> None:
    torch.manual_seed(0)
    kw = {"width": 8, "depth": 8} if name == "plain_small" else {"widths": (8, 16, 16)}
    m = create_model(name, num_classes=10, in_chans=1, act=act, fc_dim=32, **kw).train()
    out = m(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    nn.functional.cross_entropy(out, torch.arange(4)).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), (act, pname)


def test_rgb_32x32_input() -> None:
    m = create_model("prelunet_small", num_classes=10, in_chans=3, input_size=32)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert complexity(m)["input_size"] == (3, 32, 32)


def test_wrong_channel_count_fails_clearly() -> None:
    m = create_model("prelunet_small", num_classes=10, in_chans=1)
    with pytest.raises(ValueError, match=r"expected a \(N, 1, H, W\) image batch"):
        m(torch.randn(2, 3, 28, 28))


def _saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Unique bytes autograd keeps for backward in ``model(x)``, parameters excluded (the
    backward runs inside the count: the saved tensors must suffice)."""
    return saved_tensor_bytes(lambda: model(x).sum().backward(), exclude=list(model.parameters()))


@pytest.mark.parametrize("name", ["prelunet_small", "plain_small"])
def test_prelu_nets_take_the_lean_path_and_keep_no_more_than_the_relu_net(name: str) -> None:
    """Issue 11: PReLU-nets build in-place PReLU after every conv/fc, so a train step keeps
    exactly the bytes of the same net with ReLU (1.56-1.6x with out-of-place PReLU)."""
    from rectifiers.nn import PReLU

    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    built = {}
    for act in ("prelu", "relu", "prelu_shared"):
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_chans=1, act=act).train()
        built[act] = _saved_activation_bytes(model, x)
        if act != "relu":
            acts = [m for m in model.modules() if isinstance(m, PReLU)]
            assert acts and all(m.inplace for m in acts)
    assert built["prelu"] == built["relu"] == built["prelu_shared"]
    # the user can still ask for the out-of-place layer
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, act_kwargs={"inplace": False})
    assert _saved_activation_bytes(model.train(), x) > built["relu"]


def test_lean_prelu_net_gradients_equal_the_out_of_place_net() -> None:
    torch.manual_seed(0)
    plain = create_model("prelunet_small", num_classes=10, in_chans=1, drop_rate=0.0,
                         act_kwargs={"inplace": False}).train()
    lean = create_model("prelunet_small", num_classes=10, in_chans=1, drop_rate=0.0).train()
    lean.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 28, 28)
    lean(x).square().sum().backward()
    plain(x).square().sum().backward()
    for (name, a), (_, b) in zip(lean.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
