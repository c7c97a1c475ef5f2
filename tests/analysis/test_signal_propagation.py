"""analysis.signal: measured forward/backward stds vs the paper's closed form (Eq. 8-14)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.analysis import (
    format_table,
    predicted_ratio,
    predicted_signal,
    signal_propagation,
)
from rectifiers.init import initialize
from rectifiers.nn import PReLU


def _chain(widths, act=lambda c: nn.ReLU(), last_act=False):
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(widths) - 2:
            layers.append(act(b))
    return nn.Sequential(*layers)


def _tol(depth: int, width: int, k: float = 5.0) -> float:
    # Each layer's output variance for fixed input is a sum over >= `width` units: relative sd
    # ~ sqrt(2/width), log-std sd ~ sqrt(1/(2 width)); independent over layers -> random walk.
    return k * math.sqrt(depth / (2 * width))


@pytest.mark.parametrize("scheme", ["he", "xavier", "default"])
def test_measured_matches_closed_form_per_layer(scheme):
    torch.manual_seed(0)
    width, depth = 256, 12
    net = initialize(_chain([width] * (depth + 1)), scheme, mode="fan_in", generator=1)
    x = torch.randn(512, width, generator=torch.Generator().manual_seed(2))
    rows = signal_propagation(net, x, generator=3)
    pred = predicted_signal(net, input_second_moment=float((x**2).mean()), grad_std=1.0)
    assert [r.index for r in rows] == list(range(1, depth + 1))
    for r, p in zip(rows, pred, strict=True):
        assert abs(math.log(r.forward_std / p["forward_std"])) <= _tol(r.index, width)
        back_depth = depth - r.index + 1
        assert abs(math.log(r.backward_std / p["backward_std"])) <= _tol(back_depth, width)


def test_he_fan_out_forward_follows_product_of_width_ratios():
    # Eq. 14 init: backward constant, forward scaled by sqrt(prod n_l / n^_l) = sqrt(c_2 / d_L)
    widths = [64, 128, 256, 256, 512, 512]
    net = initialize(_chain(widths), "he", mode="fan_out", generator=0)
    x = torch.randn(1024, 64, generator=torch.Generator().manual_seed(1))
    rows = signal_propagation(net, x, generator=2)
    fans = [(r.fan_in, r.fan_out) for r in rows]
    ratio = predicted_ratio(fans, "he", mode="fan_out")
    assert ratio == pytest.approx(math.sqrt(128 / 512))  # c_2 / d_L
    measured = rows[-1].forward_std / rows[0].forward_std
    assert abs(math.log(measured / ratio)) <= _tol(len(widths), 128)
    # and the backward signal is flat from dx_2 to dx_L (Eq. 13 with Eq. 14)
    back = rows[1].backward_std / rows[-1].backward_std
    assert abs(math.log(back)) <= _tol(len(widths), 128)


def test_predicted_ratio_closed_forms():
    fans = [(100, 100)] * 30
    assert predicted_ratio(fans, "he") == pytest.approx(1.0)
    assert predicted_ratio(fans, "xavier") == pytest.approx(2 ** -14.5)
    assert predicted_ratio(fans, "xavier", a=0.25) == pytest.approx((1.0625 / 2) ** 14.5)
    assert predicted_ratio(fans, "he", a=0.25) == pytest.approx(1.0)
    assert predicted_ratio(fans, "default") == pytest.approx(6 ** -14.5)  # std sqrt(6) below He
    assert predicted_ratio(fans, "xavier", direction="backward") == pytest.approx(2 ** -14.5)
    with pytest.raises(ValueError, match="scheme"):
        predicted_ratio(fans, "bogus")


def test_prelu_chain_matches_eq15_prediction():
    width, depth = 256, 10
    net = initialize(_chain([width] * (depth + 1), act=lambda c: PReLU(c)), "xavier",
                     mode="fan_in", generator=0)
    x = torch.randn(512, width, generator=torch.Generator().manual_seed(1))
    rows = signal_propagation(net, x, generator=2)
    ratio = predicted_ratio([(width, width)] * depth, "xavier", a=0.25)
    measured = rows[-1].forward_std / rows[0].forward_std
    assert abs(math.log(measured / ratio)) <= _tol(depth, width)


def test_inplace_relu_and_loss_fn_and_no_grad_side_effects():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5))
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 5, (16,))
    rows = signal_propagation(net, x, loss_fn=lambda out: nn.functional.cross_entropy(out, y))
    assert all(p.grad is None for p in net.parameters())
    # reference by hand
    xr = x.clone().requires_grad_(True)
    y1 = net[0](xr)
    ref_fwd = float(y1.detach().std())
    h = torch.relu(y1).flatten(1).detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(net[3](h), y)
    (gh,) = torch.autograd.grad(loss, h)
    assert rows[0].forward_std == pytest.approx(ref_fwd, rel=1e-5)
    assert rows[1].backward_std == pytest.approx(float(gh.std()), rel=1e-5)
    assert rows[0].kind == "conv2d" and rows[0].fan_in == 27 and rows[0].fan_out == 72
    assert "std(y_l)" in format_table(rows)


def _not_inplace_copy(model: nn.Module) -> nn.Module:
    import copy

    ref = copy.deepcopy(model)
    for m in ref.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    return ref


@pytest.mark.parametrize("act", ["prelu", "relu", "leaky_relu"])
def test_spp_net_with_inplace_activations_measures_pre_activation_responses(act):
    """SPP nets apply their activations in place over the conv outputs: the forward stds must
    still be the responses y_l before the activation, the backward stds unchanged."""
    from rectifiers.models import create_model

    net = create_model("prelunet_small", num_classes=10, in_chans=1, act=act, widths=(4, 6, 8),
                       fc_dim=16, generator=0).eval()
    assert any(getattr(m, "inplace", False) for m in net.modules())
    ref = _not_inplace_copy(net)
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    got = signal_propagation(net, x, generator=2)
    want = signal_propagation(ref, x, generator=2)
    assert len(got) == len(want) == 8  # 5 convs + 3 fc
    for g, w in zip(got, want, strict=True):
        assert g.forward_std == pytest.approx(w.forward_std, rel=1e-6)
        assert g.backward_std == pytest.approx(w.backward_std, rel=1e-5)
    # and the responses really are pre-activation: a ReLU'd map could not have mean ~ 0
    with torch.no_grad():
        y1 = ref.trunk.conv1(x)
    assert got[0].forward_std == pytest.approx(float(y1.double().std()), rel=1e-6)
