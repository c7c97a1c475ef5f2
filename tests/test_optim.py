"""rectifiers.optim: the paper's no-decay rule for slopes, bias convention, schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rectifiers.nn import PReLU
from rectifiers.optim import param_groups, plateau_schedule, step_schedule


class LearnableSwish(nn.Module):
    """x * sigmoid(beta x) with learnable beta: a zoo-style activation parameter."""

    no_weight_decay = True

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), PReLU(8), nn.Conv2d(8, 8, 3), nn.PReLU(),
        nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 4), LearnableSwish(), nn.Linear(4, 2),
    )


def _names(groups):
    return {g["name"]: set(g["param_names"]) for g in groups}


def test_slopes_and_activation_params_are_not_decayed():
    groups = param_groups(_model(), 5e-4)
    names = _names(groups)
    assert names["decay"] == {"0.weight", "2.weight", "6.weight", "8.weight"}
    for slope in ("1.weight", "3.weight", "7.beta"):
        assert slope in names["no_decay"]
    wd = {g["name"]: g["weight_decay"] for g in groups}
    assert wd == {"decay": 5e-4, "no_decay": 0.0}


def test_biases_and_norms_follow_flags():
    names = _names(param_groups(_model(), 1e-4))
    assert {"0.bias", "2.bias", "6.bias", "8.bias", "4.weight", "4.bias"} <= names["no_decay"]
    names = _names(param_groups(_model(), 1e-4, bias_decay=True, norm_decay=True))
    assert {"0.bias", "4.weight", "4.bias"} <= names["decay"]
    assert {"1.weight", "3.weight", "7.beta"} == names["no_decay"]  # slopes never decayed


def test_groups_cover_every_trainable_parameter_once_and_skip_frozen():
    model = _model()
    model[1].weight.requires_grad_(False)  # frozen PReLU = the LeakyReLU(0.25) control
    model.add_module("tied", model[6])  # a shared module must not appear twice
    groups = param_groups(model, 5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    expected = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == expected
    for g in groups:
        assert len(g["params"]) == len(g["param_names"])


def test_sgd_step_leaves_slopes_unchanged_by_decay_alone():
    model = _model()
    opt = torch.optim.SGD(param_groups(model, 0.5), lr=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only weight decay acts
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["1.weight"], before["1.weight"])
    assert torch.equal(after["7.beta"], before["7.beta"])
    assert torch.allclose(after["0.weight"], 0.5 * before["0.weight"])
    assert opt.state_dict()["param_groups"][0]["name"] == "decay"


def test_invalid_weight_decay_raises():
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(_model(), -1.0)


def test_plateau_schedule_divides_by_ten_twice_then_stops():
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = plateau_schedule(opt, patience=1)
    lrs = []
    for _ in range(12):
        sched.step(1.0)  # the error never improves
        lrs.append(opt.param_groups[0]["lr"])
    distinct = sorted(set(round(v, 12) for v in lrs), reverse=True)
    assert distinct == [0.01, 0.001, 0.0001]
    assert lrs[-1] == pytest.approx(1e-4)


def test_plateau_schedule_keeps_lr_while_improving():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.01)
    sched = plateau_schedule(opt, patience=1)
    for e in range(10):
        sched.step(1.0 - 0.05 * e)
    assert opt.param_groups[0]["lr"] == 0.01


def test_step_schedule_validates_milestones():
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="increasing"):
        step_schedule(opt, [20, 10])
    sched = step_schedule(opt, [2, 4])
    lrs = []
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])


def test_every_learnable_zoo_activation_is_exempt_from_decay():
    from rectifiers.nn import list_activations, make_activation

    for name in list_activations():
        act = make_activation(name, channels=4)
        if not list(act.parameters()):
            continue
        model = nn.Sequential(nn.Linear(4, 4), act)
        names = _names(param_groups(model, 1e-4))
        assert names["decay"] == {"0.weight"}, name
