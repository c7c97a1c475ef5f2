"""Small in-memory training runs for the reproduction experiments.

The experiments need things the main training loop (:func:`rectifiers.train.train`, which
has no callbacks by design) does not expose: the gradient norm of the first layers at every
step (Sec. 2.3: "its gradients all diminish") and a dead-unit tracker attached during every
epoch. So they train with the short loop below, built from the library's own pieces
(:func:`rectifiers.models.create_model`, :func:`rectifiers.optim.param_groups`, the
Fashion-MNIST reader) and the paper's optimiser: SGD, momentum 0.9, weight decay 5e-4 not on
the PReLU slopes. Data live in memory as standardised float tensors; a run is a pure
function of its seed (initial weights and batch order), so runs with the same seed are
paired across configurations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Data", "FitResult", "FitSettings", "evaluate_error", "first_and_last_conv", "fit",
           "load_data", "seeded_model"]

# Fashion-MNIST training-set pixel statistics (of x / 255), used to standardise inputs.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


@dataclass
class Data:
    """Standardised images ``(N, 1, 28, 28)`` float32 and int64 labels, train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = "fashion_mnist"

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_data(n_train: int, n_test: int, data_dir: str | None = None,
              source: str = "fashion_mnist") -> Data:
    """A fixed, class-balanced-in-expectation subset of Fashion-MNIST (or synthetic data).

    The subset is drawn with a fixed seed (0), independent of the run seed, so every run of
    an experiment sees the same images. ``source="synthetic"`` uses
    :class:`rectifiers.data.SyntheticDataset` (for tests on machines without the data set).
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
    if source == "synthetic":
        from rectifiers.data.synthetic import SyntheticDataset

        tr = SyntheticDataset(num_samples=n_train, image_size=28, in_chans=1, seed=0,
                              split="train")
        te = SyntheticDataset(num_samples=n_test, image_size=28, in_chans=1, seed=0,
                              split="test")
        xs = (tr.images, te.images)
        ys = (tr.labels, te.labels)
    elif source == "fashion_mnist":
        from rectifiers.data.fashion_mnist import load_fashion_mnist

        xs, ys = [], []
        for split, n in (("train", n_train), ("test", n_test)):
            x, y = load_fashion_mnist(data_dir, split)
            if n > len(y):
                raise ValueError(f"asked for {n} {split} images; Fashion-MNIST has {len(y)}")
            idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
            xs.append(x[idx])
            ys.append(y[idx])
    else:
        raise ValueError(f"unknown data source {source!r}; use 'fashion_mnist' or 'synthetic'")

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - FASHION_MEAN) / FASHION_STD

    return Data(standardise(xs[0]), ys[0].long(), standardise(xs[1]), ys[1].long(), source)


def seeded_model(name: str, seed: int, act: str, init: str, *,
                 act_kwargs: dict[str, Any] | None = None, init_mode: str | None = None,
                 data: torch.Tensor | None = None, **kwargs: Any) -> nn.Module:
    """``create_model`` with weights drawn from a generator seeded by ``seed``."""
    from rectifiers.models import create_model

    torch.manual_seed(seed)  # anything the builder draws outside the init (dropout masks later)
    return create_model(name, num_classes=10, in_chans=1, act=act, init=init,
                        act_kwargs=act_kwargs, init_mode=init_mode,
                        generator=torch.Generator().manual_seed(seed), data=data, **kwargs)


@dataclass(frozen=True)
class FitSettings:
    """Optimiser and schedule: the paper's SGD (momentum 0.9, wd 5e-4 not on slopes).

    ``sched="cosine"`` anneals the lr to 0 over the run (short runs cannot wait for the
    paper's plateau rule); ``"constant"`` keeps it fixed (Sec. 2.3 curves).
    """

    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sched: str = "cosine"
    warmup_epochs: float = 0.0  # linear lr warm-up from ~0 (deep/PReLU nets diverge without)
    eval_batch: int = 1000

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.sched not in ("cosine", "constant"):
            raise ValueError(f"sched must be 'cosine' or 'constant', got {self.sched!r}")


@dataclass
class FitResult:
    """Per-epoch test error (index 0 = at initialisation) and per-step training loss."""

    test_err: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # mean per epoch
    step_loss: list[float] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0


@torch.no_grad()
def evaluate_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   batch: int = 1000) -> float:
    """Top-1 error of ``model`` (in eval mode) on ``(x, y)``."""
    was = model.training
    model.eval()
    wrong = 0
    for i in range(0, len(y), batch):
        wrong += int((model(x[i:i + batch]).argmax(1) != y[i:i + batch]).sum())
    model.train(was)
    return wrong / len(y)


def fit(model: nn.Module, data: Data, settings: FitSettings, seed: int,
        on_step: Callable[[int, nn.Module], None] | None = None,
        on_epoch: Callable[[int, nn.Module], None] | None = None) -> FitResult:
    """Train ``model`` on ``data.x_train`` with SGD; evaluate test error after every epoch.

    ``on_step(step, model)`` runs after ``backward`` and before the update (gradients are
    in ``p.grad``); ``on_epoch(epoch, model)`` runs at initialisation (epoch 0) and after
    each epoch. A non-finite loss stops the run and marks it ``diverged`` (its remaining
    epochs count as chance-level error, so a diverged run is never mistaken for a good one).
    """
    from rectifiers.optim import param_groups

    settings.validate()
    t0 = time.perf_counter()
    res = FitResult()
    opt = torch.optim.SGD(param_groups(model, weight_decay=settings.weight_decay),
                          lr=settings.lr, momentum=settings.momentum)
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    gen = torch.Generator().manual_seed(seed)
    chance = 1.0 - 1.0 / data.num_classes
    res.test_err.append(evaluate_error(model, data.x_test, data.y_test, settings.eval_batch))
    if on_epoch:
        on_epoch(0, model)
    model.train()
    step = 0
    for epoch in range(1, settings.epochs + 1):
        order = torch.randperm(n, generator=gen)
        losses = []
        for i in range(0, n, settings.batch_size):
            idx = order[i:i + settings.batch_size]
            lr = settings.lr
            if settings.sched == "cosine":
                lr = 0.5 * settings.lr * (1 + math.cos(math.pi * step / total))
            warm = settings.warmup_epochs * steps_per_epoch
            if step < warm:
                lr *= (step + 1) / warm
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            if not torch.isfinite(loss):
                res.diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if on_step:
                on_step(step, model)
            opt.step()
            losses.append(loss.item())
            step += 1
        res.step_loss += losses
        res.train_loss.append(sum(losses) / max(len(losses), 1))
        if res.diverged:
            res.test_err += [chance] * (settings.epochs + 1 - len(res.test_err))
            break
        res.test_err.append(evaluate_error(model, data.x_test, data.y_test, settings.eval_batch))
        if on_epoch:
            on_epoch(epoch, model)
    res.seconds = time.perf_counter() - t0
    return res


def first_and_last_conv(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The first and the last ``nn.Conv2d`` in registration (= forward) order."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("model has no Conv2d layer")
    return convs[0], convs[-1]
