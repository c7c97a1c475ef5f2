"""rectifiers.init: statistics of every rule, the paper's Eq. 10/14/15 numbers, initialize()."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rectifiers import init as I
from rectifiers.nn import PReLU


def assert_std(t: torch.Tensor, expected: float, k: float = 5.0) -> None:
    """Sample std within k standard errors: sd(sample std) ~ sigma / sqrt(2N) for a Gaussian."""
    n = t.numel()
    tol = k * expected / math.sqrt(2 * n)
    got = float(t.detach().double().std())
    assert abs(got - expected) <= tol, f"std {got:.5f} vs {expected:.5f} (tol {tol:.5f}, N={n})"


# ---- fans and the paper's numbers -----------------------------------------------------
def test_conv_fan_in_is_k2_c_and_fan_out_is_k2_d():
    w = torch.empty(128, 64, 3, 3)
    assert I.calculate_fan(w, "fan_in") == 9 * 64  # Eq. 10: n = k^2 c
    assert I.calculate_fan(w, "fan_out") == 9 * 128  # Eq. 14: n^ = k^2 d


def test_grouped_conv_fan_out_counts_filters_of_one_group():
    conv = nn.Conv2d(32, 64, 3, groups=4)
    assert I.calculate_fan(conv.weight, "fan_in", groups=4) == 9 * 8
    assert I.calculate_fan(conv.weight, "fan_out", groups=4) == 9 * 16


@pytest.mark.parametrize("shape", [(300, 200), (96, 32, 5), (128, 64, 3, 3), (16, 8, 3, 3, 3)])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_he_normal_std_matches_eq10_eq14(shape, mode):
    w = torch.empty(shape)
    I.he_normal_(w, mode=mode, generator=0)
    n = I.calculate_fan(w, mode)
    assert_std(w, math.sqrt(2.0 / n))
    assert abs(float(w.mean())) < 5 * math.sqrt(2.0 / n) / math.sqrt(w.numel())


def test_he_eq15_slope_factor():
    w0, w1 = torch.empty(256, 128, 3, 3), torch.empty(256, 128, 3, 3)
    I.he_normal_(w0, a=0.0, generator=1)
    I.he_normal_(w1, a=0.25, generator=1)
    # same draw, scaled by 1/sqrt(1 + a^2): the paper's 0.970
    torch.testing.assert_close(w1, w0 / math.sqrt(1.0625))
    assert_std(w1, math.sqrt(2 / (1.0625 * 9 * 128)))


def test_paper_table_stds_for_vgg_model_b():
    # Sec. 2.2 table: Eq. 14 std sqrt(2/(9 d)) = 0.059, 0.042, 0.029, 0.021
    for d, expected in [(64, 0.059), (128, 0.042), (256, 0.029), (512, 0.021)]:
        w = torch.empty(d, 64, 3, 3)
        assert I.calculate_fan(w, "fan_out") == 9 * d
        assert round(math.sqrt(2 / I.calculate_fan(w, "fan_out")), 3) == expected


def test_he_uniform_bounds_and_variance():
    w = torch.empty(200, 100)
    I.he_uniform_(w, a=0.25, generator=0)
    bound = math.sqrt(6 / (1.0625 * 100))
    assert float(w.abs().max()) <= bound
    assert float(w.abs().max()) > 0.99 * bound  # 20k draws reach the edge
    assert_std(w, bound / math.sqrt(3), k=6)  # uniform's std of std is a bit smaller; slack


def test_xavier_modes():
    w = torch.empty(400, 100)
    I.xavier_normal_(w, generator=0)
    assert_std(w, math.sqrt(2 / 500))  # Glorot
    I.xavier_normal_(w, mode="fan_in", generator=0)
    assert_std(w, math.sqrt(1 / 100))  # the paper's N(0, 1/n)
    I.xavier_uniform_(w, generator=0)
    assert float(w.abs().max()) <= math.sqrt(6 / 500)
    I.lecun_normal_(w, generator=0)
    assert_std(w, 0.1)


def test_default_matches_pytorch_reset_parameters_bound():
    lin = nn.Linear(50, 400)
    I.default_(lin.weight, lin.bias, generator=0)
    b = 1 / math.sqrt(50)
    wmax = float(lin.weight.detach().abs().max())
    assert 0.99 * b < wmax <= b
    assert float(lin.bias.detach().abs().max()) <= b
    torch.manual_seed(0)
    ref = nn.Linear(50, 400)  # torch's own: same bound
    assert float(ref.weight.detach().abs().max()) <= b


def test_orthogonal_is_orthogonal_with_activation_gain():
    w = torch.empty(64, 32, 2, 2)  # 64 x 128: rows orthonormal
    I.orthogonal_(w, gain="relu", generator=0)
    m = w.reshape(64, -1).double()
    torch.testing.assert_close(m @ m.T, 2 * torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0)
    tall = torch.empty(100, 30)
    I.orthogonal_(tall, generator=0)
    torch.testing.assert_close(tall.T @ tall, torch.eye(30), atol=1e-5, rtol=0)


def test_bad_mode_and_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="fan_in"):
        I.he_normal_(torch.empty(3, 3), mode="fanin")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        I.he_normal_(torch.empty(5))
    with pytest.raises(ValueError, match="known"):
        I.initialize(nn.Linear(2, 2), scheme="kaiming")
    with pytest.raises(ValueError, match="data"):
        I.initialize(nn.Linear(2, 2), scheme="lsuv")


def test_generator_makes_it_deterministic():
    a, b = torch.empty(50, 50), torch.empty(50, 50)
    I.he_normal_(a, generator=7)
    I.he_normal_(b, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# ---- activation-aware gain ------------------------------------------------------------
@pytest.mark.parametrize("a", [0.0, 0.01, 0.25, 0.5, 1.0, -0.3])
def test_activation_gain_equals_eq15_for_leaky(a):
    expected = math.sqrt(2 / (1 + a * a))
    assert I.activation_gain("leaky_relu", negative_slope=a) == pytest.approx(expected, abs=1e-9)
    assert I.activation_gain(F.leaky_relu, negative_slope=a) == pytest.approx(expected, abs=1e-9)
    # modules hold a float32 slope: 1e-6 covers its rounding
    assert I.activation_gain(PReLU(4, init=a)) == pytest.approx(expected, abs=1e-6)
    assert I.activation_gain(nn.PReLU(init=a)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "fn, m1, var, m2, gain",
    [  # the moments table of rectifier-zoo.md (4 decimals)
        (F.relu, 0.3989, 0.3408, 0.5000, 1.4142),
        (F.elu, 0.1605, 0.6192, 0.6449, 1.2452),
        (F.selu, 0.0000, 1.0000, 1.0000, 1.0000),
        (F.gelu, 0.2821, 0.3456, 0.4252, 1.5335),
        (F.silu, 0.2066, 0.3131, 0.3558, 1.6765),
        (F.mish, 0.2404, 0.3945, 0.4523, 1.4868),
        (lambda x: x * torch.exp(-torch.exp(-x.clamp(min=-80))), 0.2589, 0.2526, 0.3196, 1.7688),
    ],
)
def test_gaussian_moments_match_zoo_table(fn, m1, var, m2, gain):
    e1 = I.gaussian_moment(fn, 1)
    e2 = I.gaussian_moment(fn, 2)
    assert e1 == pytest.approx(m1, abs=6e-5)
    assert e2 - e1**2 == pytest.approx(var, abs=6e-5)
    assert e2 == pytest.approx(m2, abs=6e-5)
    assert I.activation_gain(fn) == pytest.approx(gain, abs=6e-5)


@pytest.mark.parametrize(
    "name, gain",
    [("relu", 1.4142), ("leaky_relu", 1.4141), ("prelu", 1.3720), ("elu", 1.2452),
     ("selu", 1.0), ("gelu", 1.5335), ("silu", 1.6765), ("mish", 1.4868), ("golu", 1.7688),
     ("smelu", 1.3803), ("helu", 1.4142)],
)
def test_activation_gain_by_registry_name_matches_zoo_table(name, gain):
    from rectifiers.nn import list_activations

    if name not in list_activations():
        pytest.skip(f"{name} not registered")
    assert I.activation_gain(name) == pytest.approx(gain, abs=6e-5)


def test_every_registered_activation_has_a_finite_gain():
    from rectifiers.nn import list_activations

    for name in list_activations():
        g = I.activation_gain(name)
        assert 0.5 < g < 3.0, name


def test_relu_moments_are_exact():
    assert I.gaussian_moment("relu", 1) == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-12)
    assert I.gaussian_moment("relu", 2) == pytest.approx(0.5, abs=1e-12)
    assert I.gaussian_moment("prelu", 2, derivative=True) == pytest.approx(1.0625 / 2, abs=1e-12)


def test_activation_gain_rejects_zero_function():
    with pytest.raises(ValueError, match="no finite gain"):
        I.activation_gain(lambda x: x * 0)


# ---- initialize -----------------------------------------------------------------------
def _net(act_factory):
    return nn.Sequential(
        nn.Conv2d(8, 64, 3), act_factory(64), nn.Conv2d(64, 32, 3), act_factory(32),
        nn.Flatten(), nn.Linear(32, 512), act_factory(512), nn.Linear(512, 256),
        act_factory(256), nn.Linear(256, 10),
    )


def test_initialize_reads_slope_of_following_activation():
    net = nn.Sequential(nn.Conv2d(16, 128, 3), PReLU(128, init=0.5), nn.Conv2d(128, 128, 3),
                        nn.LeakyReLU(0.1), nn.Conv2d(128, 64, 3), nn.ReLU())
    I.initialize(net, "he", mode="fan_out", generator=0)
    for conv, a in [(net[0], 0.5), (net[2], 0.1), (net[4], 0.0)]:
        n = conv.weight.shape[0] * 9
        assert_std(conv.weight, math.sqrt(2 / ((1 + a * a) * n)))
        assert torch.count_nonzero(conv.bias) == 0


def test_initialize_finds_activations_in_nested_blocks_and_grouped_fans():
    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, groups: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, groups=groups)
            self.act = nn.LeakyReLU(0.5)

        def forward(self, x):
            return self.act(self.conv(x))

    net = nn.Sequential(Block(16, 256), Block(256, 256, groups=8), nn.Flatten(),
                        nn.Linear(64, 512))
    layers = I.weight_layers(net)
    assert [(n, type(a).__name__, type(b).__name__) for n, _, a, b in layers] == [
        ("0.conv", "LeakyReLU", "NoneType"),
        ("1.conv", "LeakyReLU", "LeakyReLU"),
        ("3", "NoneType", "LeakyReLU"),
    ]
    I.initialize(net, "he", mode="fan_out", generator=0)
    eq15 = 1 + 0.5**2
    assert_std(net[0].conv.weight, math.sqrt(2 / (eq15 * 9 * 256)))
    assert_std(net[1].conv.weight, math.sqrt(2 / (eq15 * 9 * 256 / 8)))  # filters per group
    # the classifier has no activation after it: the one feeding it (Eq. 8) is used
    assert_std(net[3].weight, math.sqrt(2 / (eq15 * 512)))


def test_initialize_fc_std_special_case():
    net = _net(lambda c: PReLU(c))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(3.0)
    I.initialize(net, "he", fc_std=(0.01, 0.01, 0.001), generator=0)
    fc1, fc2, fc3 = net[5], net[7], net[9]
    assert_std(fc1.weight, 0.01)
    assert_std(fc2.weight, 0.01)
    assert_std(fc3.weight, 0.001)
    assert all(torch.count_nonzero(m.bias) == 0 for m in (fc1, fc2, fc3))
    assert_std(net[0].weight, math.sqrt(2 / (1.0625 * 64 * 9)))
    assert torch.all(net[1].weight == 3.0)  # slopes untouched
    with pytest.raises(ValueError, match="only 3 Linear"):
        I.initialize(net, fc_std=(0.1,) * 4)


@pytest.mark.parametrize("scheme", I.list_init_schemes())
def test_every_scheme_runs_deterministically(scheme):
    data = torch.randn(32, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    a = I.initialize(_net(lambda c: nn.ReLU()), scheme, data=data, generator=3)
    b = I.initialize(_net(lambda c: nn.ReLU()), scheme, data=data, generator=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_aware_scheme_uses_activation_gain():
    net = nn.Sequential(nn.Linear(400, 400), nn.GELU(), nn.Linear(400, 400), nn.SELU())
    I.initialize(net, "aware", mode="fan_in", generator=0)
    assert_std(net[0].weight, 1.5335 / 20)
    assert_std(net[2].weight, 1.0 / 20)


def test_lsuv_reaches_unit_variance():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 32), nn.ReLU(),
                        nn.Linear(32, 10), nn.Dropout(0.5))
    net.train()
    x = torch.randn(128, 3, 8, 8) * 5
    report = I.lsuv_(net, x, tol=0.05, generator=0)
    assert [r["layer"] for r in report] == ["0", "2", "5", "7"]
    assert all(r["converged"] for r in report)
    assert net.training  # mode restored
    # independent check of every layer's output variance on the same batch
    with torch.no_grad():
        h = x
        for i, m in enumerate(net):
            h = m(h) if not isinstance(m, nn.Dropout) else h
            if i in (0, 2, 5, 7):
                assert abs(float(h.var()) - 1) <= 0.05


def test_initialize_lsuv_takes_a_loader_batch_and_equals_lsuv_on_its_inputs():
    """The API training uses: ``initialize(model, scheme, data=batch)`` with (x, y) from a loader;
    the other schemes ignore ``data``, so a caller may always pass it."""
    x = torch.randn(64, 8, 5, 5, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(64, dtype=torch.long)
    a = I.initialize(_net(lambda c: nn.ReLU()), "lsuv", data=(x, y), generator=3)
    b = _net(lambda c: nn.ReLU())
    I.lsuv_(b, x, generator=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = I.initialize(_net(lambda c: nn.ReLU()), "he", data=(x, y), generator=3)
    d = I.initialize(_net(lambda c: nn.ReLU()), "he", generator=3)
    for pc, pd in zip(c.parameters(), d.parameters(), strict=True):
        assert torch.equal(pc, pd)
    assert I.DATA_DEPENDENT_SCHEMES == {"lsuv"}
    with pytest.raises(ValueError, match="data-dependent"):
        I.initialize(_net(lambda c: nn.ReLU()), "lsuv", data=[])


def test_init_slope_is_the_one_definition_in_nn():
    import rectifiers.nn

    assert I.init_slope is rectifiers.nn.init_slope
    assert I.init_slope(nn.ReLU6()) == 0.0


# ---- Sec. 2.2: 30 plain ReLU layers -----------------------------------------------------
WIDTH, DEPTH, BATCH = 256, 30, 512


def _plain_relu_net(scheme: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(DEPTH):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    net = nn.Sequential(*layers[:-1])
    return I.initialize(net, scheme, mode="fan_in", generator=0)


def _forward_stds(net: nn.Sequential) -> list[float]:
    x = torch.randn(BATCH, WIDTH, generator=torch.Generator().manual_seed(1))
    stds = []
    with torch.no_grad():
        for m in net:
            x = m(x)
            if isinstance(m, nn.Linear):
                stds.append(float(x.std()))
    return stds


# One layer's output variance, for a fixed input, is a chi-square-like sum over WIDTH units:
# relative sd ~ sqrt(2/WIDTH), i.e. log-std sd ~ sqrt(1/(2 WIDTH)). Over DEPTH-1 layers the
# log-std random walk has sd sqrt((DEPTH-1)/(2 WIDTH)) ~ 0.24; allow 5 of those.
LOG_TOL = 5 * math.sqrt((DEPTH - 1) / (2 * WIDTH))


def test_he_keeps_forward_signal_constant_through_30_relu_layers():
    s = _forward_stds(_plain_relu_net("he"))
    assert abs(math.log(s[-1] / s[0])) <= LOG_TOL
    assert max(abs(math.log(v / s[0])) for v in s) <= LOG_TOL


def test_xavier_shrinks_signal_by_sqrt2_per_relu_layer():
    s = _forward_stds(_plain_relu_net("xavier"))
    expected = (DEPTH - 1) * math.log(2**-0.5)  # Sec. 2.2: (1/sqrt 2)^L
    assert abs(math.log(s[-1] / s[0]) - expected) <= LOG_TOL
    assert s[-1] / s[0] < 1e-3  # it really vanishes


@pytest.mark.parametrize("channels", [1, 8, 64])
def test_derivative_moment_of_channel_wise_prelu_is_per_channel(channels):
    # E[phi'(z)^2] = (1 + a^2) / 2 for every channel; summing the channels' derivatives before
    # squaring would give channels^2 times that.
    from rectifiers.init import gaussian_moment
    from rectifiers.nn import PReLU

    act = PReLU(channels, init=0.25)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(-0.5, 0.5, channels) if channels > 1 else 0.25)
    expected = float(((1 + act.weight.detach().double() ** 2) / 2).mean())
    assert gaussian_moment(act, derivative=True) == pytest.approx(expected, rel=1e-9)
