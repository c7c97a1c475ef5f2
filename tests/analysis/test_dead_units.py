"""analysis.dead_units: zero fraction per batch and never-active units, on hand-built layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.analysis import DeadUnitTracker, dead_unit_rates
from rectifiers.nn import PReLU, list_activations, make_activation


def _half_dead(act: nn.Module) -> nn.Sequential:
    """Linear(4, 8) = [I; -I]: on positive inputs units 0-3 always fire, 4-7 never."""
    lin = nn.Linear(4, 8)
    with torch.no_grad():
        lin.weight.copy_(torch.cat([torch.eye(4), -torch.eye(4)]))
        lin.bias.zero_()
    return nn.Sequential(lin, act)


def _positive_batches(n=3):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(16, 4, generator=g) + 0.1 for _ in range(n)]


def test_relu_exactly_half_dead():
    net = _half_dead(nn.ReLU())
    with DeadUnitTracker(net) as tracker:
        for x in _positive_batches():
            net(x)
    (row,) = tracker.summary()
    assert row["layer"] == "1" and row["batches"] == 3 and row["units"] == 8
    assert row["zero_fraction"] == 0.5
    assert row["active_fraction"] == 0.5
    assert row["never_active_fraction"] == 0.5
    assert row["never_active_channel_fraction"] == 0.5
    assert tracker.history == [{"1": 0.5}] * 3


@pytest.mark.parametrize("act", [PReLU(8), nn.PReLU(), nn.LeakyReLU(0.25), nn.ReLU(inplace=True)])
def test_prelu_outputs_no_zeros_but_same_inactive_units(act):
    net = _half_dead(act)
    rows = dead_unit_rates(net, [(x, None) for x in _positive_batches()])
    (row,) = rows
    expected_zero = 0.5 if isinstance(act, nn.ReLU) else 0.0
    assert row["zero_fraction"] == expected_zero
    assert row["never_active_fraction"] == 0.5  # input > 0 is the notion of "active"


def test_conv_units_are_channel_x_position():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
    net = nn.Sequential(conv, nn.ReLU())
    x = torch.zeros(4, 1, 5, 5)
    x[:, :, 0, :] = 1.0  # only the top row is ever positive
    with DeadUnitTracker(net) as tracker:
        net(x)
    (row,) = tracker.summary()
    assert row["units"] == 2 * 25 and row["channels"] == 2
    assert row["never_active_fraction"] == pytest.approx(1 - 5 / 50)
    assert row["never_active_channel_fraction"] == 0.5
    assert row["zero_fraction"] == pytest.approx(1 - 5 / 50)


def test_shared_module_called_twice_is_tracked_per_call_and_reset_works():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.lin(self.act(x)))

    net = Twice()
    with DeadUnitTracker(net) as tracker:
        net(torch.randn(8, 4))
        assert [r["layer"] for r in tracker.summary()] == ["act", "act#1"]
        tracker.reset()
        assert tracker.summary() == [] and tracker.history == []
        net(torch.randn(8, 4))
        assert len(tracker.summary()) == 2
    net(torch.randn(8, 4))  # hooks removed on exit
    assert tracker.summary()[0]["batches"] == 1


def test_variable_input_size_keeps_channel_stats():
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU())
    with DeadUnitTracker(net) as tracker:
        net(torch.randn(2, 1, 4, 4))
        net(torch.randn(2, 1, 6, 6))
    (row,) = tracker.summary()
    assert math.isnan(row["never_active_fraction"])
    assert 0.0 <= row["never_active_channel_fraction"] <= 1.0


def test_every_registered_activation_is_tracked():
    for name in list_activations():
        try:
            act = make_activation(name, channels=4)
        except TypeError:
            continue
        net = nn.Sequential(nn.Linear(4, 4), act)
        with DeadUnitTracker(net) as tracker:
            net(torch.randn(32, 4))
        assert len(tracker.summary()) == 1, name


def test_no_activation_raises():
    with pytest.raises(ValueError, match="no activation"):
        DeadUnitTracker(nn.Linear(2, 2))


@pytest.mark.parametrize("act", ["prelu", "relu"])
def test_spp_net_with_inplace_activations_counts_inputs_before_they_are_overwritten(act):
    """The SPP nets' activations run in place: 'active' (input > 0) must be read before the
    activation overwrites its input; the rates equal those of the same net without in-place."""
    import copy

    from rectifiers.models import create_model

    net = create_model("prelunet_small", num_classes=10, in_chans=1, act=act, widths=(4, 6, 8),
                       fc_dim=16, generator=0).eval()
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    assert any(getattr(m, "inplace", False) for m in net.modules())
    batches = [torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(s))
               for s in range(2)]
    got, want = dead_unit_rates(net, batches), dead_unit_rates(ref, batches)
    assert got == want
    # for ReLU the active fraction (input > 0) equals 1 - zero fraction (output == 0)
    if act == "relu":
        for r in got:
            assert r["active_fraction"] == pytest.approx(1 - r["zero_fraction"])
    else:
        assert all(0.05 < r["active_fraction"] < 0.95 for r in got)
