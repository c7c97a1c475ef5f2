"""The activation zoo: formulas, gradients, extremes, registry, moments, init slopes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rectifiers.nn import (
    PReLU,
    _activations_cpu,
    init_slope,
    list_activations,
    make_activation,
    register_activation,
)

ALL = list_activations()
EXPECTED = {
    "relu", "leaky_relu", "prelu", "prelu_shared", "rrelu", "elu", "selu", "gelu", "gelu_tanh",
    "silu", "swish", "mish", "golu", "smelu", "helu", "sau",
}
SQ2 = math.sqrt(2.0)


def _phi_cdf(x):
    return 0.5 * torch.erfc(-x / SQ2)


def _softplus(x):
    return torch.log1p(torch.exp(-x.abs())) + x.clamp(min=0)


# direct formulas from docs/rectifier-zoo.md (fp64, written independently of the modules)
FORMULA = {
    "relu": lambda x: torch.clamp(x, min=0),
    "leaky_relu": lambda x: torch.maximum(x, 0.01 * x),
    "prelu": lambda x: x.clamp(min=0) + 0.25 * x.clamp(max=0),
    "prelu_shared": lambda x: x.clamp(min=0) + 0.25 * x.clamp(max=0),
    "rrelu": lambda x: x.clamp(min=0) + (1 / 8 + 1 / 3) / 2 * x.clamp(max=0),  # eval
    "elu": lambda x: torch.where(x > 0, x, torch.expm1(x.clamp(max=0))),
    "selu": lambda x: 1.0507009873554805
    * torch.where(x > 0, x, 1.6732632423543772 * torch.expm1(x.clamp(max=0))),
    "gelu": lambda x: x * _phi_cdf(x),
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi)
                                                      * (x + 0.044715 * x**3))),
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": lambda x: x * torch.tanh(_softplus(x)),
    "golu": lambda x: x * torch.exp(-torch.exp(-x)),
    "smelu": lambda x: torch.where(
        x <= -1, torch.zeros_like(x), torch.where(x >= 1, x, (x + 1) ** 2 / 4)
    ),
    "helu": lambda x: torch.clamp(x, min=0),
    "sau": lambda x: (1.01 / 2) * x + (0.99 / 2) * x * torch.erf(x / SQ2)
    + (0.99 / math.sqrt(2 * math.pi)) * torch.exp(-(x**2) / 2),
}

# E[phi(z)^2], z ~ N(0, 1): docs/rectifier-zoo.md moments table
MOMENT2 = {
    "relu": 0.5000, "leaky_relu": 0.5000, "prelu": 0.5312, "elu": 0.6449, "selu": 1.0000,
    "gelu": 0.4252, "silu": 0.3558, "mish": 0.4523, "golu": 0.3196, "smelu": 0.5248,
}


def _make(name, **kw):
    m = make_activation(name, channels=3, **kw).double()
    m.eval()
    return m


def test_registry_has_every_zoo_name():
    assert EXPECTED <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_registry_round_trip_by_name(name):
    m = make_activation(name, channels=3)
    assert isinstance(m, nn.Module)
    assert not list(m.children())  # leaf modules: init.initialize reads them in order
    learnable = [p for p in m.parameters() if p.requires_grad]
    assert bool(learnable) == bool(getattr(m, "no_weight_decay", False))


def test_unknown_name_lists_known_ones_and_bad_kwargs_name_the_accepted_ones():
    with pytest.raises(ValueError, match="known: .*prelu.*relu"):
        make_activation("relu6x")
    with pytest.raises(TypeError, match=r"'smelu'.*\['beta'\]"):
        make_activation("smelu", negative_slope=0.1)
    with pytest.raises(ValueError, match="needs channels"):
        make_activation("prelu")
    with pytest.raises(ValueError, match="beta"):
        make_activation("smelu", beta=-1.0)


def test_register_activation_and_overwrite_guard():
    register_activation("test_tanh", lambda channels=None: nn.Tanh(), overwrite=True)
    assert isinstance(make_activation("test_tanh"), nn.Tanh)
    with pytest.raises(ValueError, match="already registered"):
        register_activation("test_tanh", lambda channels=None: nn.Tanh())


@pytest.mark.parametrize("name", sorted(FORMULA))
def test_matches_direct_formula_on_grid(name):
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64).reshape(1, -1).expand(3, -1).T
    x = x.contiguous()  # (4001, 3): channel dim 1 has 3 channels
    y = _make(name)(x)
    torch.testing.assert_close(y, FORMULA[name](x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_fp64(name):
    torch.manual_seed(0)
    m = _make(name)
    x = torch.randn(4, 3, 5, dtype=torch.float64) * 3
    # keep away from kinks (0, +-1 for smelu, -0.05 for helu) where finite differences lie
    for k in (0.0, 1.0, -1.0, -0.05):
        near = (x - k).abs() < 1e-3
        x = torch.where(near, x + 1e-2, x)
    x.requires_grad_()
    if name == "helu":
        # surrogate gradient by design: check its stated rule instead of finite differences
        x.grad = None
        m(x).sum().backward()
        assert torch.equal(x.grad, (x.detach() > -0.05).double())
        return
    inputs = (x,)
    assert torch.autograd.gradcheck(lambda t: m(t * 1), inputs)
    params = [p for p in m.parameters() if p.requires_grad]
    if params:  # learnable parameters too (swish beta, prelu slopes)
        p0 = params[0]

        def f_param(p):
            return torch.func.functional_call(m, {n: p for n, _ in m.named_parameters()}, (x,))

        assert torch.autograd.gradcheck(f_param, (p0.detach().clone().requires_grad_(),))


EXTREMES = [1e4, -1e4, 88.0, -88.0, 1e38, -1e38, 0.0]
INF_MEANINGFUL = {"relu", "leaky_relu", "prelu", "prelu_shared", "rrelu", "elu", "selu",
                  "golu", "smelu", "helu", "sau"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("train", [False, True])
def test_finite_at_extremes_fp32(name, train):
    m = make_activation(name, channels=3)
    m.train(train)
    vals = list(EXTREMES)
    x = torch.tensor(vals).repeat(2, 3, 1).requires_grad_()
    y = m(x * 1)
    y.sum().backward()
    assert torch.isfinite(y).all(), f"{name}: {y}"
    assert torch.isfinite(x.grad).all(), f"{name}: {x.grad}"
    if name in INF_MEANINGFUL:
        xi = torch.tensor([math.inf, -math.inf]).repeat(2, 3, 1).requires_grad_()
        yi = m(xi * 1)
        yi.sum().backward()
        assert not torch.isnan(yi).any() and torch.isfinite(xi.grad).all(), name


def _e_phi2(fn):
    # E[phi(z)^2] by composite Simpson on [-12, 12] in fp64: kinks give O(h^2) ~ 1e-10 error
    z = torch.linspace(-12, 12, 240001, dtype=torch.float64)
    h = z[1] - z[0]
    f = fn(z.reshape(-1, 1).expand(-1, 3).contiguous())[:, 0] ** 2
    f = f * torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    w = torch.ones_like(z)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float((w * f).sum() * h / 3)


@pytest.mark.parametrize("name", sorted(MOMENT2))
def test_second_moment_matches_zoo_table(name):
    with torch.no_grad():
        assert abs(_e_phi2(_make(name)) - MOMENT2[name]) < 1e-3


def test_gelu_exact_vs_tanh_max_difference():
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    d = (_make("gelu")(x) - _make("gelu_tanh")(x)).abs().max().item()
    assert 4.5e-4 < d < 4.9e-4


def test_smelu_value_and_slope_continuous_at_plus_minus_beta():
    for beta in (0.5, 1.0, 2.0):
        m = make_activation("smelu", beta=beta).double()
        for b in (-beta, beta):
            x = torch.tensor([b - 1e-7, b, b + 1e-7], dtype=torch.float64, requires_grad=True)
            y = m(x)
            grads = torch.autograd.grad(y, x, torch.ones(3, dtype=torch.float64))[0]
            assert (y[2] - y[0]).abs() < 3e-7
            assert (grads[2] - grads[0]).abs() < 1e-6


def test_golu_gradients_finite_far_left():
    x = torch.tensor([-100.0, -1e4, -1e38, -30.0], requires_grad=True)
    y = make_activation("golu")(x)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.all(y == 0)


def test_rrelu_train_random_slopes_in_range_eval_mean():
    torch.manual_seed(0)
    m = make_activation("rrelu")
    x = -torch.ones(10000)
    slopes = -m.train()(x)
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3 and slopes.std() > 0.05
    assert torch.allclose(-m.eval()(x), torch.full_like(x, (1 / 8 + 1 / 3) / 2))


def test_helu_saves_a_mask_not_the_input():
    saved = []
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        make_activation("helu")(x * 1)
    # 1 bit per element from the C++ kernels, a bool per element from the eager formulas
    expect = ([(torch.uint8, x.numel() // 8)] if _activations_cpu.available()
              else [(torch.bool, x.numel())])
    assert [(t.dtype, t.numel()) for t in saved] == expect


@pytest.mark.parametrize("name", ALL)
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(0)
    m = make_activation(name, channels=4).eval()
    x = torch.randn(2, 4, 5, 5).to(memory_format=torch.channels_last)
    y = m(x.clone())
    assert y.is_contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(4, 4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        yb = m(h)
    assert yb.dtype == torch.bfloat16
    yb.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
    ref = m(h.detach().float())
    torch.testing.assert_close(yb.float(), ref, rtol=2e-2, atol=2e-2)


def test_init_slope():
    assert init_slope(make_activation("relu")) == 0.0
    assert init_slope(make_activation("helu")) == 0.0
    assert init_slope(make_activation("leaky_relu", negative_slope=0.2)) == 0.2
    assert init_slope(make_activation("prelu", channels=8)) == 0.25
    assert init_slope(PReLU(init=0.1)) == pytest.approx(0.1)
    assert init_slope(nn.PReLU(init=0.3)) == pytest.approx(0.3)
    assert init_slope(make_activation("rrelu")) == pytest.approx((1 / 8 + 1 / 3) / 2)
    assert init_slope(make_activation("gelu")) is None
    assert init_slope(None) is None
