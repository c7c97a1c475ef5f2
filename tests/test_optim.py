"""rectifiers.optim: the paper's no-decay rule for slopes, bias convention, the lr schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.nn import PReLU
from rectifiers.optim import LRSchedule, param_groups


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


def _opt(lr=0.01):
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr, momentum=0.9)


def _run(sched, steps_per_epoch, epochs, errors=None):
    """lr of every step, stepping like the engine (and feeding per-epoch errors)."""
    lrs = []
    for e in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(sched.lr)
            sched.optimizer.step()
            sched.step()
        sched.epoch_end(errors[e] if errors else 0.5)
    return lrs


def test_plateau_divides_by_ten_twice_only_as_in_the_paper():
    s = LRSchedule(_opt(), "plateau", steps_per_epoch=1, epochs=10, patience=2)
    lrs = []
    for err in [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]:
        s.epoch_end(err)
        lrs.append(s.lr)
    assert lrs[:3] == [0.01, 0.01, 0.01]
    assert lrs[3] == pytest.approx(1e-3)  # two epochs without improvement
    assert lrs[5] == pytest.approx(1e-4)
    assert lrs[-1] == pytest.approx(1e-4)  # never a third drop (the paper: 1e-2 -> 1e-4)
    assert s.drops == 2


def test_plateau_keeps_lr_while_improving():
    s = LRSchedule(_opt(), "plateau", steps_per_epoch=1, epochs=10, patience=1)
    for e in range(10):
        assert not s.epoch_end(1.0 - 0.05 * e)
    assert s.lr == 0.01


def test_step_cosine_and_warmup_modes():
    s = LRSchedule(_opt(), "step", steps_per_epoch=4, epochs=10, decay_epochs=(3, 6))
    lrs = _run(s, 4, 10)
    assert [lrs[e * 4] for e in (0, 2, 3, 5, 6, 9)] == pytest.approx(
        [0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4])
    c = LRSchedule(_opt(), "cosine", steps_per_epoch=4, epochs=10)
    lrs = _run(c, 4, 10)
    assert lrs[0] == pytest.approx(0.01) and lrs[20] == pytest.approx(0.005)
    assert lrs[39] == pytest.approx(0.005 * (1 + math.cos(math.pi * 39 / 40)))
    w = LRSchedule(_opt(0.1), "constant", steps_per_epoch=10, epochs=2, warmup_steps=9)
    assert _run(w, 10, 2)[:12] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)]
                                                 + [0.1, 0.1])
    # Warm-up, then cosine over the remaining steps; then step decay after a warm-up.
    wc = LRSchedule(_opt(0.1), "cosine", steps_per_epoch=10, epochs=2, warmup_steps=4)
    lrs = _run(wc, 10, 2)
    assert lrs[3] == pytest.approx(0.08) and lrs[4] == pytest.approx(0.1)
    assert lrs[4 + 8] == pytest.approx(0.05)
    ws = LRSchedule(_opt(0.1), "step", steps_per_epoch=10, epochs=3, warmup_steps=5,
                    decay_epochs=(2,))
    lrs = _run(ws, 10, 3)
    assert lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01)


@pytest.mark.parametrize("mode, kw", [("cosine", {"warmup_steps": 3}), ("plateau", {}),
                                      ("step", {"decay_epochs": (2, 3), "warmup_steps": 2})])
def test_state_dict_resumes_exactly_through_a_checkpoint(tmp_path, mode, kw):
    from rectifiers.train.checkpoint import load_checkpoint, save_checkpoint

    errors = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    ref = LRSchedule(_opt(), mode, steps_per_epoch=3, epochs=6, patience=1, **kw)
    full = _run(ref, 3, 6, errors)
    a = LRSchedule(_opt(), mode, steps_per_epoch=3, epochs=6, patience=1, **kw)
    head = _run(a, 3, 2, errors)
    path = save_checkpoint(tmp_path / "s.safetensors",
                           {"model": nn.Linear(1, 1).state_dict(), "sched": a.state_dict(),
                            "opt": a.optimizer.state_dict()}, {})
    state, _ = load_checkpoint(path)
    b = LRSchedule(_opt(), mode, steps_per_epoch=3, epochs=6, patience=1, **kw)
    b.optimizer.load_state_dict(state["opt"])
    b.load_state_dict(state["sched"])
    assert head + _run(b, 3, 4, errors[2:]) == full  # bit-identical lrs


def test_bad_schedule_settings_are_config_errors():
    from rectifiers.errors import ConfigError

    with pytest.raises(ConfigError, match="increasing"):
        LRSchedule(_opt(), "step", steps_per_epoch=2, epochs=5, decay_epochs=(3, 2))
    with pytest.raises(ConfigError, match="warm-up"):
        LRSchedule(_opt(), "step", steps_per_epoch=2, epochs=5, decay_epochs=(1,),
                   warmup_steps=4)
    with pytest.raises(ConfigError, match="sched"):
        LRSchedule(_opt(), "linear", steps_per_epoch=2, epochs=5)
    s = LRSchedule(_opt(), "cosine", steps_per_epoch=2, epochs=5)
    with pytest.raises(ConfigError, match="--sched"):
        s.load_state_dict(LRSchedule(_opt(), "plateau", steps_per_epoch=2,
                                     epochs=5).state_dict())


def test_every_learnable_zoo_activation_is_exempt_from_decay():
    from rectifiers.nn import list_activations, make_activation

    for name in list_activations():
        act = make_activation(name, channels=4)
        if not list(act.parameters()):
            continue
        model = nn.Sequential(nn.Linear(4, 4), act)
        names = _names(param_groups(model, 1e-4))
        assert names["decay"] == {"0.weight"}, name
