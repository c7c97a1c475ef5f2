"""The CUDA path, run where a GPU is present (every test here is skipped without one).

On a GPU the operators take their portable kernels (ATen's, see ``rectifiers.nn.prelu`` and
``rectifiers.nn.zoo_ops``); the OpInfo / ModuleInfo sweep of ``tests/nn/test_prelu_opinfo.py``
runs on CUDA too. Here: every registered activation on CUDA against the same module on the
CPU, gradcheck and gradgradcheck in fp64 on the device, PReLU's in-place save modes and bytes,
autocast (bf16, and fp16 with a GradScaler) with fp32 slopes, and ``rectifiers train`` /
``eval`` as a user runs them with ``--device cuda``. ``torch.compile(fullgraph=True)`` on CUDA is
the CUDA case of ``tests/nn/test_prelu.py::test_compile_fullgraph_prelu_net_matches_eager``
(marked slow; ``benchmarks/cuda_check.sh`` runs it).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from rectifiers.nn import PReLU, list_activations, make_activation
from rectifiers.nn.functional import prelu
from rectifiers.nn.zoo_ops import activation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
SURROGATE = {"helu"}  # backward is a designed surrogate, not the derivative
INPLACE_REAL = {"relu", "leaky_relu", "rrelu", "elu", "selu", "smelu", "helu"}


def _away_from_kinks(x: torch.Tensor) -> torch.Tensor:
    for k in (0.0, 1.0, -1.0, -0.05):
        x = torch.where((x - k).abs() < 1e-3, x + 1e-2, x)
    return x


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("name", list_activations())
def test_every_activation_on_cuda_equals_the_cpu_module(name, inplace):
    """Values, input and parameter gradients on CUDA equal the CPU's (fp32: the CPU kernels'
    polynomial exp/erfc against CUDA's libm, a few ulp; parameter sums in another order)."""
    torch.manual_seed(0)
    cpu = make_activation(name, channels=3, inplace=inplace).eval()  # eval: rrelu's mean slope
    gpu = copy.deepcopy(cpu).cuda()
    x = _away_from_kinks(torch.randn(4, 3, 9, 7) * 3)
    g = torch.randn_like(x)
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    yc, yg = cpu(xc * 1), gpu(xg * 1)
    yc.backward(g)
    yg.backward(g.cuda())
    assert yg.device.type == "cuda" and yg.dtype == torch.float32
    torch.testing.assert_close(yg.cpu(), yc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=1e-5, atol=1e-5)
    for pc, pg in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(pg.grad.cpu(), pc.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("name", list_activations())
def test_gradcheck_and_gradgradcheck_fp64_on_cuda(name, inplace):
    if inplace and name not in INPLACE_REAL | {"prelu", "prelu_shared"}:
        pytest.skip("inplace is a no-op for this activation")
    torch.manual_seed(0)
    x = _away_from_kinks(torch.randn(2, 3, 4, dtype=torch.float64) * 3).cuda().requires_grad_()
    if name == "rrelu":  # the training form with a fixed seed: the same slopes on every call
        def f(t):
            return activation(t * 1, "rrelu", (1 / 8, 1 / 3, 12345), None, "output", inplace)
    else:
        m = make_activation(name, channels=3, inplace=inplace).double().cuda()

        def f(t):
            return m(t * 1)
    if name not in SURROGATE:
        assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_rrelu_training_slopes_in_range_and_gradient_consistent_on_cuda():
    m = make_activation("rrelu").train().cuda()
    x = -torch.rand(64, 8, 16, 16, device="cuda") - 0.5  # all negative: y = a * x
    h = x.clone().requires_grad_()
    y = m(h * 1)
    y.sum().backward()
    a = y / x
    assert float(a.min()) >= 1 / 8 - 1e-6 and float(a.max()) <= 1 / 3 + 1e-6
    torch.testing.assert_close(h.grad, a)  # dy/dx = the slope drawn in the forward


@pytest.mark.parametrize(
    "a, expected", [(0.25, "output"), (-0.3, "mask"), (0.0, "input"), (float("nan"), "input")]
)
def test_prelu_inplace_save_modes_and_bytes_on_cuda(a, expected, prelu_backend):
    torch.manual_seed(0)
    w = torch.full((4,), a, device="cuda", requires_grad=True)
    x = torch.randn(3, 4, 8, 8, device="cuda", requires_grad=True)
    h = x * 1
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = prelu(h, w, inplace=True)
    big = {p: n for p, n in seen.items() if n >= h.numel()}
    if expected == "output":
        assert set(big) == {y.untyped_storage().data_ptr()}
    elif expected == "mask":
        assert sum(big.values()) == h.untyped_storage().nbytes() + h.numel()
    else:
        assert y.untyped_storage().data_ptr() not in big
    g = torch.randn_like(y)
    y.backward(g)
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    F.prelu(xr, wr).backward(g)
    assert torch.equal(x.grad.nan_to_num(9.0), xr.grad.nan_to_num(9.0))
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-5, atol=1e-4, equal_nan=True)


@pytest.fixture(params=["cpp", "eager"])
def prelu_backend(request, monkeypatch):
    """The layer's C++ path (csrc/slope_copies.h keeps the host copies) or its Python path
    (rectifiers.nn._prelu_slopes)."""
    from rectifiers.nn import _prelu_cpu
    from rectifiers.nn import prelu as prelu_mod

    if request.param == "cpp":
        assert _prelu_cpu.available(), _prelu_cpu.load_error()  # a GPU machine has a compiler
    monkeypatch.setattr(prelu_mod, "_backend", request.param)
    return request.param


@pytest.mark.parametrize("opt", ["sgd", "adam_fused"])
def test_prelu_inplace_slopes_prefetched_after_each_step_stay_exact(opt, prelu_backend):
    """After each optimizer step the in-place layer reads its slopes from a prefetched host
    copy (no synchronising read); gradients stay equal to torch.nn.PReLU's while big steps
    move the slopes through every save mode (positive, negative, above 1)."""
    import warnings

    torch.manual_seed(0)
    ours = PReLU(4, inplace=True).cuda()
    ref = torch.nn.PReLU(4).cuda()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.25, 0.5, 0.05, 0.9]))
    ours.load_state_dict(ref.state_dict())

    def make(params):
        if opt == "sgd":
            return torch.optim.SGD(params, lr=0.05)
        return torch.optim.Adam(params, lr=0.4, fused=True)

    opt_o, opt_r = make(ours.parameters()), make(ref.parameters())
    modes = set()
    for step in range(8):
        with torch.no_grad():  # the slope sums differ in order: keep the twins bitwise equal
            ref.weight.copy_(ours.weight)
        x = torch.randn(8, 4, 5, 5, device="cuda")
        g = torch.randn_like(x)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        # the first forward reads the slopes (a synchronising copy, which the debug mode
        # reports: a Python warning from the Python path; the C++ path's warning does not
        # reach Python); after each step the prefetched copy is used: an error if not
        hin = xo * 1
        torch.cuda.set_sync_debug_mode("warn" if step == 0 else "error")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                y = ours(hin)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        synced = [w for w in caught if "synchroniz" in str(w.message).lower()]
        if prelu_backend == "eager":
            assert bool(synced) == (step == 0), [str(w.message) for w in synced]
        name = type(y.grad_fn).__name__  # the C++ node or the Python one (a copy: input mode)
        if name != "CopyBackwards":
            assert (name == "CppFunction") == (prelu_backend == "cpp"), name
        y.backward(g)
        ref(xr).backward(g)
        assert torch.equal(xo.grad, xr.grad), step
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-4)
        a = ref.weight.detach()
        modes.add("input" if bool(((a.abs() > 1) | (a == 0)).any())
                  else "mask" if bool((a < 0).any()) else "output")
        opt_o.step()
        opt_r.step()
        opt_o.zero_grad()
        opt_r.zero_grad()
        torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-5, atol=1e-5)
    assert len(modes) >= 2, modes  # the steps really moved the slopes across modes


@pytest.mark.parametrize("case", ["out", "inplace", "inplace_mask", "inplace_input", "shared",
                                  "bf16_autocast", "create_graph"])
def test_prelu_cpp_path_equals_python_path_on_cuda(case, monkeypatch):
    """The C++ layer on CUDA (ATen's kernels under a C++ node) gives the Python path's values
    and gradients bit for bit, in every save mode, and records its own node."""
    from rectifiers.nn import _prelu_cpu
    from rectifiers.nn import prelu as prelu_mod

    assert _prelu_cpu.available(), _prelu_cpu.load_error()
    slopes = {"inplace_mask": [0.25, -0.5, 0.75], "inplace_input": [0.0, 1.5, 0.25],
              "shared": [0.3]}
    w0 = torch.tensor(slopes.get(case, [0.25, 0.1, 0.75]), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(7)
    x0 = torch.randn(4, 3, 6, 5, device="cuda", generator=gen)
    g = torch.randn(4, 3, 6, 5, device="cuda", generator=gen)

    def run(backend):
        monkeypatch.setattr(prelu_mod, "_backend", backend)
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        h = x * 1
        if case == "bf16_autocast":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = prelu(h.to(torch.bfloat16), w, inplace=True)
        else:
            y = prelu(h, w, inplace=case != "out" and case != "create_graph")
        name = type(y.grad_fn).__name__
        if case == "create_graph":  # double backward through the node's composite formulas
            gx, gw = torch.autograd.grad(y, (x, w), g, create_graph=True)
            (gx.square().sum() + gw.square().sum()).backward()
            return (gx.detach(), gw.detach(), x.grad, w.grad), name
        y.backward(g.to(y.dtype))
        return (y.detach(), x.grad, w.grad), name

    (hot, hot_name), (cold, cold_name) = run("cpp"), run("eager")
    for a, b in zip(hot, cold, strict=True):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(9.0), b.nan_to_num(9.0))
    if case != "inplace_input":  # that one wraps the node in a recorded copy
        assert hot_name == "CppFunction" and cold_name != "CppFunction", (hot_name, cold_name)


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=str)
def test_prelu_under_cuda_autocast_keeps_fp32_slopes_and_gradient(amp, prelu_backend):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), PReLU(8, inplace=True)).cuda()
    x = torch.randn(4, 3, 12, 12, device="cuda")
    with torch.autocast("cuda", dtype=amp):
        y = net(x)
    assert y.dtype == amp
    y.float().square().sum().backward()
    slope = net[1].weight
    assert slope.dtype == torch.float32 and slope.grad.dtype == torch.float32
    # the fp32 reference: the same conv output in fp32, rounded to amp, through F.prelu in fp32
    with torch.autocast("cuda", dtype=amp):
        h = net[0](x)
    hf = h.detach().float()
    yr = F.prelu(hf, slope.detach())
    gw = (2 * yr.to(amp).float() * hf.clamp(max=0)).sum((0, 2, 3))
    torch.testing.assert_close(slope.grad, gw, rtol=2e-2, atol=1e-2)


def test_prelu_net_trains_on_cuda_with_fp16_grad_scaler():
    from rectifiers.models import create_model
    from rectifiers.train import train_step

    torch.manual_seed(0)
    model = create_model("prelunet_small", num_classes=4, in_chans=1, input_size=28).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(32, 1, 28, 28, device="cuda")
    y = torch.randint(0, 4, (32,), device="cuda")
    losses = [train_step(model, x, y, opt, amp="fp16", scaler=scaler).loss for _ in range(40)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert max(losses[-5:]) < 0.75 * losses[0]  # learns the batch (1.39 -> 0.76 in 30 steps)
    assert 0 < scaler.get_scale() < float("inf")
    slopes = [m.weight for m in model.modules() if isinstance(m, PReLU)]
    assert slopes and all(s.dtype == torch.float32 and s.grad is not None for s in slopes)


def _cli(*argv, cwd):
    proc = subprocess.run([sys.executable, "-m", "rectifiers", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_train_and_eval_commands_on_cuda(tmp_path, amp):
    run = tmp_path / "run"
    _cli("train", "--dataset", "synthetic", "--synthetic-size", "256",
         "--synthetic-image-size", "28", "--synthetic-chans", "1", "--synthetic-classes", "4",
         "--epochs", "2", "-b", "32", "--lr", "0.02", "--device", "cuda", "--amp", amp,
         "--out-dir", str(run), "--no-progress", cwd=tmp_path)
    final = json.loads((run / "final.json").read_text())
    assert final["final"] and (run / "checkpoint-last.safetensors").exists()
    for views in ("center", "dense"):
        proc = _cli("eval", str(run), "--device", "cuda", "--views", views, "--amp", amp,
                    "--no-progress", cwd=tmp_path)
        assert "device cuda" in proc.stdout, proc.stdout[-2000:]
