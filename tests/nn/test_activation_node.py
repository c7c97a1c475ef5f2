"""The zoo's C++ autograd entry (csrc/activations_autograd.h): the layer in C++ equals the Python
autograd Function bit for bit, records its own node, keeps what the Function keeps, and hands
double backward to the differentiable formulas (the operator ``rectifiers::act_grad``)."""

from __future__ import annotations

import pytest
import torch

from rectifiers.nn import _activations_cpu, list_activations, make_activation

ZOO = [n for n in list_activations() if n not in ("prelu", "prelu_shared")]
INPLACE_REAL = {"relu", "leaky_relu", "rrelu", "elu", "selu", "smelu", "helu"}
pytestmark = pytest.mark.skipif(not _activations_cpu.available(), reason="no C++ compiler")


def _module(name, channels, inplace, train):
    m = make_activation(name, channels=channels, inplace=inplace).train(train)
    for p in m.parameters():  # a per-channel parameter away from its default: a real gradient
        with torch.no_grad():
            p.copy_(torch.linspace(0.5, 1.5, p.numel()).reshape(p.shape))
    return m


def _both(monkeypatch, fn):
    """``fn()`` through the C++ layer, then with ``apply`` disabled (the Python Function)."""
    hot = fn()
    with monkeypatch.context() as m:
        m.setattr(_activations_cpu, "apply", lambda *a, **k: None)
        cold = fn()
    return hot, cold


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last],
                         ids=["contiguous", "channels_last"])
def test_cpp_node_equals_python_function(monkeypatch, name, inplace, dtype, fmt):
    if inplace and name not in INPLACE_REAL:
        pytest.skip("inplace is a no-op for this activation")
    x0 = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0)).to(dtype)
    x0 = x0.contiguous(memory_format=fmt)
    g = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)).to(dtype)

    def run():
        torch.manual_seed(5)  # rrelu draws its seed from the global generator
        m = _module(name, 4, inplace, train=True)
        x = x0.clone().requires_grad_()
        y = m(x * 1)
        node = type(y.grad_fn).__name__
        y.backward(g)
        return y.detach(), x.grad, [p.grad for p in m.parameters()], node

    (y1, gx1, gp1, n1), (y2, gx2, gp2, n2) = _both(monkeypatch, run)
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
    assert len(gp1) == len(gp2) and all(torch.equal(a, b) for a, b in zip(gp1, gp2, strict=True))
    assert n1 == "CppFunction" and n2 != "CppFunction", (n1, n2)


@pytest.mark.parametrize("name", ["swish", "gelu", "elu", "smelu", "leaky_relu"])
def test_double_backward_through_the_node_equals_the_function(monkeypatch, name):
    """create_graph=True: the node's backward runs rectifiers::act_grad, differentiable."""
    x0 = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def run():
        m = _module(name, 3, False, train=True).double()
        x = x0.clone().requires_grad_()
        y = m(x * 1)
        params = [x, *m.parameters()]
        grads = torch.autograd.grad(y.square().sum(), params, create_graph=True)
        sum(gr.square().sum() for gr in grads).backward()
        return [gr.detach() for gr in grads] + [p.grad for p in params], type(y.grad_fn).__name__

    (a, n1), (b, n2) = _both(monkeypatch, run)
    assert n1 == "CppFunction" != n2
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


def test_node_frees_its_saved_tensors_and_refuses_a_second_backward():
    m = make_activation("gelu")
    y = m(torch.randn(2, 3, 4, 4, requires_grad=True) * 1)
    y.sum().backward(retain_graph=True)  # kept: a second pass works
    y.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.sum().backward()


def test_node_saves_only_what_the_function_saves(monkeypatch):
    """Bytes seen by saved-tensor hooks: the same on both paths (output/mask/input rules)."""

    def saved(name, inplace):
        seen = []
        x = torch.randn(4, 8, 6, 6, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: seen.append((t.dtype, t.numel())) or t, lambda t: t):
            make_activation(name, inplace=inplace)(x * 1)
        return sorted(seen, key=str)

    n = 4 * 8 * 6 * 6
    values, bits = (torch.float32, n), (torch.uint8, n // 8)  # the output or input; a mask
    for name, inplace, kept in [("relu", True, values), ("relu", False, bits),
                                ("leaky_relu", False, bits), ("helu", True, bits),
                                ("gelu", False, values), ("elu", True, values)]:
        hot, cold = _both(monkeypatch, lambda n=name, i=inplace: saved(n, i))
        assert hot == cold == [kept], (name, inplace, hot, cold)


def test_leaf_in_place_refused_and_python_path_for_what_cpp_does_not_take():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        make_activation("relu", inplace=True)(x)
    # a non-dense input and a forward-mode tangent go to the Python Function
    h = (torch.randn(2, 3, 8, 8, requires_grad=True) * 1)[..., ::2]  # not dense
    assert type(make_activation("gelu")(h).grad_fn).__name__ != "CppFunction"
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        d = fwad.make_dual(torch.randn(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
        t = fwad.unpack_dual(make_activation("gelu")(d)).tangent
    assert t is not None and torch.isfinite(t).all()
