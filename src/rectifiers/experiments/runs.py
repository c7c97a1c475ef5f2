"""Training runs of the reproduction experiments, on the training engine.

The depth and ReLU-vs-PReLU experiments train through :func:`rectifiers.train.train`, the
loop ``rectifiers train`` runs: the same data pipeline (:func:`rectifiers.data.open_dataset`,
the loader's normalisation from the training images), the same SGD step
(:func:`rectifiers.train.train_step`: momentum 0.9, weight decay 5e-4 not on the activation
parameters, the default gradient clipping), the same schedule (:class:`rectifiers.optim.
LRSchedule`), the same evaluation and the same divergence guard (:class:`~rectifiers.train.
DivergenceError`). What an experiment needs beyond that - the gradient norm of the first conv
layer at every step, dead units after every epoch - it observes through the engine's
``on_step`` / ``on_epoch`` hooks; nothing here zeroes a gradient or steps an optimiser.

Runs are paired by seed: every run of an experiment sees the same training and test images
(the data seed is fixed at 0), and seed ``s`` gives every configuration the same initial
random stream and the same batch order (the engine's ``cfg.seed``).

Finished runs are kept on disk (:class:`RunStore`, ``<out-dir>/runs/``): a run whose settings
match a stored one is read back instead of trained again, so a long ``--full`` can be spread
over several sittings (or processes: two experiments may train into one directory at once)
and the report is rebuilt from the stored runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rectifiers.data import build_loader, open_dataset
from rectifiers.files import atomic_write_text
from rectifiers.train import DivergenceError, StepInfo, TrainConfig, train

__all__ = ["DATA_SEED", "STORE_VERSION", "RunRecord", "RunStore", "first_conv",
           "heldout_batches", "open_data", "run_config", "train_run"]

# Part of every stored run's key: bump it when a change to the engine or an experiment makes
# stored runs stale, so they are trained again instead of mixed with new ones.
STORE_VERSION = 1

# Every run of an experiment sees the same images: the data subset is drawn with this seed,
# independently of the run seed (which orders the batches and draws the initial weights).
DATA_SEED = 0


@functools.lru_cache(maxsize=4)
def open_data(n_train: int, n_test: int, data_dir: str | None = None,
              source: str = "fashion_mnist") -> tuple[Any, Any]:
    """``(train_set, test_set)``: ``n_train`` training and ``n_test`` test images, the same for
    every run (the one subset rule of :func:`rectifiers.data.open_dataset`, data seed 0).

    ``source="synthetic"`` gives :class:`rectifiers.data.SyntheticDataset` images of the same
    shape (1x28x28, 10 classes), for machines without Fashion-MNIST.
    """
    if source == "synthetic":
        common = {"seed": DATA_SEED, "image_size": 28, "in_chans": 1}
        return (open_dataset("synthetic", "train", num_samples=n_train, **common),
                open_dataset("synthetic", "test", num_samples=n_test, **common))
    return (open_dataset(source, "train", data_dir, n_train, DATA_SEED),
            open_dataset(source, "test", data_dir, n_test, DATA_SEED))


def heldout_batches(train_set: Any, test_set: Any, batch: int = 500) -> list[torch.Tensor]:
    """The test images as the model sees them (normalised with the training set's statistics,
    as the engine's loaders do), in fixed batches, for observers such as dead-unit tracking."""
    norm = build_loader(train_set, batch, train=False).normalization
    return [x for x, _ in build_loader(test_set, batch, train=False, normalization=norm)]


def first_conv(model: nn.Module) -> nn.Module:
    """The first ``nn.Conv2d`` in registration (= forward) order."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError("model has no Conv2d layer")


def run_config(*, model: str, act: str, init: str, seed: int, epochs: int, batch_size: int,
               lr: float, sched: str, warmup_epochs: float = 0.0,
               decay_epochs: tuple[int, ...] = (),
               model_kwargs: dict[str, Any] | None = None, dropout: float | None = 0.0,
               device: str = "auto") -> TrainConfig:
    """The engine's settings for one experiment run: ``rectifiers train``'s defaults (SGD
    momentum 0.9, weight decay 5e-4 not on slopes, gradient clipping at norm 5, channels-last)
    with the experiment's model, schedule and size; fp32 (``amp="none"``) and no augmentation,
    as in the paper's analysis experiments; no files, no progress output.
    ``dropout=None`` keeps the model's own default."""
    return TrainConfig(model=model, act=act, init=init, model_kwargs=dict(model_kwargs or {}),
                       dropout=dropout, augment="none", epochs=epochs, batch_size=batch_size,
                       lr=lr, sched=sched, warmup_epochs=warmup_epochs,
                       decay_epochs=tuple(decay_epochs), amp="none",
                       device=device, seed=seed, out_dir=None, progress=False, verbose=False)


@dataclass
class RunRecord:
    """One finished (or diverged) run.

    ``test_err``: top-1 test error at initialisation (index 0) and after every epoch; a run
    that diverged counts as chance-level for its remaining epochs, so it is never mistaken for
    a good one. ``train_loss``: mean training loss per finished epoch; ``step_loss``: the loss
    of every step. ``model``: the trained model (its last finite weights if it diverged).
    """

    test_err: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0
    model: nn.Module | None = None


def train_run(cfg: TrainConfig, train_set: Any, test_set: Any,
              on_step: Callable[[StepInfo], None] | None = None,
              on_epoch: Callable[[int, nn.Module], None] | None = None) -> RunRecord:
    """Train ``cfg`` with the engine on ``train_set``, validating on ``test_set`` every epoch.

    ``on_step(info)`` is the engine's hook (after backward and clipping, before the update);
    ``on_epoch(epoch, model)`` runs at initialisation (epoch 0) and after every epoch.
    A :class:`~rectifiers.train.DivergenceError` ends the run as ``diverged``.
    """
    rec = RunRecord()
    chance = 1.0 - 1.0 / test_set.num_classes

    def step_hook(info: StepInfo) -> None:
        rec.step_loss.append(info.loss)
        rec.model = info.model
        if on_step is not None:
            on_step(info)

    def epoch_hook(row: dict[str, Any], model: nn.Module) -> None:
        rec.model = model
        rec.test_err.append(float(row["val_top1_err"]))
        if row["epoch"] > 0:
            rec.train_loss.append(float(row["train_loss"]))
        if on_epoch is not None:
            on_epoch(int(row["epoch"]), model)

    t0 = time.perf_counter()
    try:
        result = train(cfg, train_set=train_set, val_set=test_set, on_step=step_hook,
                       on_epoch=epoch_hook, eval_at_start=True)
        rec.model = result.model
    except DivergenceError:
        rec.diverged = True
        rec.test_err += [chance] * (cfg.epochs + 1 - len(rec.test_err))
    rec.seconds = time.perf_counter() - t0
    return rec


class RunStore:
    """Finished reproduction runs on disk, one JSON file per run, keyed by its settings.

    ``root`` is ``<out-dir>/runs``; a run of experiment ``exp`` with key ``key`` (a JSON-able
    dict of everything that determines it: the experiment's settings, activation, init, seed,
    lr, ... plus :data:`STORE_VERSION`) lives in ``root/exp/<sha256 of the key>.json`` as
    ``{"key": key, "record": record}``. :meth:`load` returns the record only if the stored key
    is exactly ``key`` (a hash collision or a hand-edited file reads as absent); files are
    written atomically, so an interrupted run leaves nothing half-written. ``root=None``
    stores nothing (every run trains).
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)

    @staticmethod
    def _canonical(key: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({**key, "store_version": STORE_VERSION}, sort_keys=True))

    def _path(self, exp: str, key: dict[str, Any]) -> Path:
        assert self.root is not None
        text = json.dumps(key, sort_keys=True)
        return self.root / exp / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"

    def load(self, exp: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The stored record of the run ``key`` of ``exp``, or None if it was not finished."""
        if self.root is None:
            return None
        key = self._canonical(key)
        path = self._path(exp, key)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return data.get("record")

    def save(self, exp: str, key: dict[str, Any], record: dict[str, Any]) -> None:
        """Store the finished run ``key`` of ``exp`` (atomically; replaces an older copy)."""
        if self.root is None:
            return
        key = self._canonical(key)
        path = self._path(exp, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "record": record}))

    def count(self, exp: str) -> int:
        """How many runs of ``exp`` are stored."""
        if self.root is None or not (self.root / exp).is_dir():
            return 0
        return sum(1 for _ in (self.root / exp).glob("*.json"))
