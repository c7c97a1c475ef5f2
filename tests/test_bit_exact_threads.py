"""The suite's bit-exactness claims, checked at 1 and at 2 threads (where each claim is made).

Claims in the code and where they come from:

* ``--resume`` continues bit-exactly (train/engine.py, train/checkpoint.py): a run stopped
  mid-epoch and resumed equals the uninterrupted run *at the same thread count* (nothing is
  claimed across thread counts: conv backward splits its reductions by thread).
* PReLU (nn/prelu.py, csrc/prelu_cpu.cpp): forward and input gradient bitwise equal to
  ``torch.nn.functional.prelu``; slope gradient summed in a fixed order, bitwise reproducible
  for any thread count.
* Learnable zoo activations (nn/activations.py, csrc/activations_cpu.cpp): parameter gradients
  added serially in item order, bitwise reproducible for any thread count. Both thread-count
  claims are the C++ kernels'; without them (no compiler, ``RECTIFIERS_NO_CPP=1``) the eager path
  reduces with ATen's ``sum``, whose result can depend on the thread count, so those checks skip.
* Loader (data/transforms.py, data/loader.py): a sample's augmented, normalised image is the
  same in any batch size, on any DDP rank, at any thread count (on one machine).

Each claim is tested with inputs large enough that ATen and the kernels really split the work
over threads (more than ATen's grain size of 32768 elements).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

THREADS = (1, 2)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _at(threads: int, fn):
    torch.set_num_threads(threads)
    return fn()


# --------------------------------------------------------------------------- resume
def _tiny(out: Path, threads: int, **changes):
    from rectifiers.train import TrainConfig

    base = dict(dataset="synthetic", synthetic_size=256, synthetic_image_size=12,
                synthetic_classes=4, batch_size=32, lr=0.02, amp="none", channels_last=False,
                threads=threads, epochs=2, verbose=False, progress=False,
                model_kwargs={"widths": [8, 8, 16], "fc_dim": 32, "input_size": 12},
                out_dir=str(out))
    return TrainConfig(**{**base, **changes})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from rectifiers.train.checkpoint import load_checkpoint

    state, _ = load_checkpoint(run / "checkpoint-last.safetensors")
    return state["model"]


@pytest.mark.parametrize("threads", THREADS)
def test_resume_mid_epoch_is_bit_exact(threads, tmp_path):
    from rectifiers.train import train

    full = train(_tiny(tmp_path / "full", threads))
    # 8 steps per epoch: stop inside the first epoch, checkpointing every 2 steps
    train(_tiny(tmp_path / "cut", threads, max_steps=5, checkpoint_every=2))
    resumed = train(_tiny(tmp_path / "cut", threads, resume="auto"))
    assert torch.get_num_threads() == threads
    assert resumed.steps == full.steps == 16
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume at {threads} thread(s)"


def _kernels_available() -> bool:
    from rectifiers.nn import _activations_cpu, _prelu_cpu

    return _prelu_cpu.available() and _activations_cpu.available()


# --------------------------------------------------------------------------- PReLU
def _prelu_run(x, w, g):
    from rectifiers.nn import PReLU

    act = PReLU(w.numel()).to(x.dtype)
    with torch.no_grad():
        act.weight.copy_(w)
    xi = x.detach().clone().requires_grad_()
    y = act(xi)
    y.backward(g)
    return y.detach(), xi.grad, act.weight.grad


def _prelu_ref(x, w, g):
    xi = x.detach().clone().requires_grad_()
    y = F.prelu(xi, w.to(x.dtype))
    y.backward(g)
    return y.detach(), xi.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_prelu_bitwise_at_one_and_two_threads(dtype, fmt):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, 40, 40, generator=gen).to(dtype).contiguous(memory_format=fmt)
    g = torch.randn(x.shape, generator=gen).to(dtype).contiguous(memory_format=fmt)
    w = torch.linspace(-0.3, 0.9, 6)
    runs = {t: _at(t, lambda: _prelu_run(x, w, g)) for t in THREADS}
    for t in THREADS:
        y_ref, gx_ref = _at(t, lambda: _prelu_ref(x, w, g))
        y, gx, _ = runs[t]
        assert torch.equal(y, y_ref), f"forward differs from F.prelu at {t} thread(s)"
        assert torch.equal(gx, gx_ref), f"input gradient differs from F.prelu at {t} thread(s)"
    for a, b, what in zip(runs[1], runs[2], ("output", "input grad", "slope grad"), strict=True):
        if what == "slope grad" and not _kernels_available():
            continue  # the thread-count claim is the C++ kernel's (the eager path uses ATen's sum)
        assert torch.equal(a, b), f"PReLU {what} differs between 1 and 2 threads"


# --------------------------------------------------------------------------- zoo
def _learnable_zoo() -> list[str]:
    from rectifiers.nn import is_learnable_activation, list_activations, make_activation

    return [n for n in list_activations() if is_learnable_activation(make_activation(n, 6))]


@pytest.mark.parametrize("name", _learnable_zoo())
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_learnable_activation_parameter_grads_at_one_and_two_threads(name, fmt):
    from rectifiers.nn import make_activation

    if not _kernels_available():
        pytest.skip("the thread-count claim is the C++ kernels'; they are unavailable here")

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 6, 40, 40, generator=gen).contiguous(memory_format=fmt)
    g = torch.randn(x.shape, generator=gen).contiguous(memory_format=fmt)

    def run():
        torch.manual_seed(0)
        act = make_activation(name, 6)
        for p in act.parameters():  # away from the default so every term matters
            with torch.no_grad():
                p.mul_(0.75).add_(0.05)
        xi = x.clone().requires_grad_()
        act(xi).backward(g)
        return [xi.grad] + [p.grad for p in act.parameters()]

    one, two = _at(1, run), _at(2, run)
    for k, (a, b) in enumerate(zip(one, two, strict=True)):
        assert torch.equal(a, b), f"{name}: gradient {k} differs between 1 and 2 threads"


# --------------------------------------------------------------------------- loader
@pytest.mark.parametrize("augment", ["pad_crop_flip", "scale_jitter_small", "paper_small"])
def test_loader_batches_identical_at_one_and_two_threads_and_any_split(augment):
    from rectifiers.data import AugmentConfig, SyntheticDataset, build_loader

    ds = SyntheticDataset(64, 5, 28, 3, seed=1)
    if augment == "paper_small":
        augment = AugmentConfig(crop_size=24, scale_range=(24, 32), flip=True, pca_std=0.1)

    def batches(batch: int, rank: int = 0, world: int = 1):
        return list(build_loader(ds, batch, train=True, seed=3, augment=augment, rank=rank,
                                 world_size=world))

    whole = {t: _at(t, lambda: batches(32)) for t in THREADS}
    halves = {t: _at(t, lambda: [batches(16, r, 2) for r in range(2)]) for t in THREADS}
    assert len(whole[1]) == 2
    for j, (x, y) in enumerate(whole[1]):
        assert x.is_floating_point()
        assert torch.equal(whole[2][j][0], x) and torch.equal(whole[2][j][1], y)
        for t in THREADS:
            got = torch.cat([halves[t][r][j][0] for r in range(2)])
            assert torch.equal(got, x), f"batch {j}: 2 shards at {t} thread(s) != one batch"
