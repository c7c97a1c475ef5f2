"""Optimiser parameter groups and learning-rate schedules for the paper's recipe (Sec. 3).

The paper's one optimiser rule that PyTorch does not give for free: **no weight decay on the
PReLU slopes** (Sec. 2.1, Eq. 4) - L2 on ``a`` pulls it to 0, i.e. biases PReLU towards ReLU.
torchvision's reference recipe decays them; timm skips them only through a generic "1-D
parameter" rule. Here the rule is explicit: a module whose class sets ``no_weight_decay = True``
(every learnable activation of ``rectifiers.nn``, e.g. PReLU slopes, a learnable swish beta)
and ``torch.nn.PReLU`` get no decay.

Biases are not decayed by default: the paper does not say, and Caffe's convention (the paper's
framework) was ``decay_mult: 0`` for biases; ``bias_decay=True`` decays them. Normalisation
layers (not in the paper's models) are treated like biases: their affine parameters are not
decayed unless ``norm_decay=True``.

Schedule: :class:`LRSchedule`, the one learning-rate schedule of the package (the training
engine, the reproduction experiments and the bench all use it). Its modes are built from
``torch.optim.lr_scheduler`` so that ``state_dict()`` resumes exactly: the paper's ``plateau``
(divide by 10 when the validation error plateaus, twice: ``ReduceLROnPlateau`` with a floor),
``step`` (``MultiStepLR`` at given epochs), ``cosine`` (``CosineAnnealingLR`` per step) and
``constant``; any of them after a linear warm-up (``LinearLR``, joined by ``SequentialLR``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    ReduceLROnPlateau,
    SequentialLR,
)

from rectifiers.errors import ConfigError
from rectifiers.nn import PReLU

__all__ = ["SCHEDULES", "LRSchedule", "param_groups"]

SCHEDULES = ("plateau", "step", "cosine", "constant")

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _no_decay_module(module: nn.Module) -> bool:
    # PReLU listed explicitly too, in case the class attribute is ever lost
    return bool(getattr(type(module), "no_weight_decay", False)) or isinstance(
        module, (nn.PReLU, PReLU)
    )


def param_groups(
    model: nn.Module,
    weight_decay: float,
    bias_decay: bool = False,
    *,
    norm_decay: bool = False,
) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed and a non-decayed group.

    * ``"no_decay"`` (``weight_decay=0``): every parameter of a module whose class has
      ``no_weight_decay = True`` or of a ``torch.nn.PReLU`` (the paper's rule, Eq. 4); biases
      unless ``bias_decay``; normalisation-layer parameters unless ``norm_decay``.
    * ``"decay"`` (``weight_decay``): everything else (conv/linear weights).

    Each group is a dict with ``params``, ``param_names`` (understood by torch >= 2.6
    optimisers and kept in their state_dict), ``weight_decay`` and ``name``. Parameters with
    ``requires_grad=False`` (a frozen PReLU used as the LeakyReLU control) are left out; an
    empty group is omitted. Shared parameters appear once.

    Example:
        >>> opt = torch.optim.SGD(param_groups(model, 5e-4), lr=0.01, momentum=0.9)
    """
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay)
            and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    no_decay_ids: set[int] = set()
    for module in model.modules():
        exempt_module = _no_decay_module(module) or (
            not norm_decay and isinstance(module, _NORM_TYPES)
        )
        for pname, p in module.named_parameters(recurse=False):
            if exempt_module or (not bias_decay and pname == "bias"):
                no_decay_ids.add(id(p))

    groups: dict[str, dict[str, Any]] = {
        "decay": {"params": [], "param_names": [], "weight_decay": float(weight_decay)},
        "no_decay": {"params": [], "param_names": [], "weight_decay": 0.0},
    }
    for name, p in model.named_parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        key = "no_decay" if id(p) in no_decay_ids else "decay"
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [{**g, "name": key} for key, g in groups.items() if g["params"]]


class LRSchedule:
    """The learning rate over a run: an optional linear warm-up, then one of four modes.

    * ``plateau`` (the paper, Sec. 3): multiply the lr by ``decay`` (0.1) when the validation
      error has not improved by more than ``threshold`` (relative) for ``patience`` epochs, at
      most ``max_drops`` (2) times: 1e-2 -> 1e-3 -> 1e-4. ``ReduceLROnPlateau`` with
      ``min_lr = lr * decay**max_drops`` (``patience - 1`` in its counting, which reduces once
      the bad epochs *exceed* its patience).
    * ``step``: multiply by ``decay`` at the start of each epoch in ``decay_epochs``
      (``MultiStepLR`` over steps).
    * ``cosine``: ``lr_t = lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2`` per step, ``T`` = the
      steps of all ``epochs`` after warm-up (``CosineAnnealingLR``). ``T`` never depends on
      where a run is stopped early (``--max-steps``): a stopped run resumes on the same curve.
    * ``constant``.

    Warm-up (``warmup_steps`` > 0): the lr of step ``i < W`` is ``lr (i + 1) / (W + 1)``
    (``LinearLR``), then the mode takes over (``SequentialLR``).

    Use: :meth:`step` after every optimiser step, :meth:`epoch_end` with the epoch's validation
    error; :attr:`lr` is the lr of the next step. ``state_dict`` / ``load_state_dict`` hold
    everything (the optimiser's own state holds the current lr), so a resumed run continues
    bit-exactly.

    Example:
        >>> sched = LRSchedule(opt, "plateau", steps_per_epoch=len(loader), epochs=80)
        >>> for epoch in range(80):
        ...     for x, y in loader:
        ...         ...; opt.step(); sched.step()
        ...     sched.epoch_end(val_error)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str, *, steps_per_epoch: int,
                 epochs: int, warmup_steps: int = 0, lr_min: float = 0.0, decay: float = 0.1,
                 decay_epochs: Sequence[int] = (), patience: int = 2, threshold: float = 1e-3,
                 max_drops: int = 2) -> None:
        if mode not in SCHEDULES:
            raise ConfigError(f"sched={mode!r} is not one of {', '.join(SCHEDULES)}")
        if steps_per_epoch < 1 or epochs < 1 or warmup_steps < 0:
            raise ConfigError(f"need steps_per_epoch >= 1, epochs >= 1 and warmup_steps >= 0, "
                              f"got {steps_per_epoch}, {epochs}, {warmup_steps}")
        if not 0 < decay < 1:
            raise ConfigError(f"lr_decay must be in (0, 1), got {decay}")
        if patience < 1 or max_drops < 0:
            raise ConfigError(f"need patience_epochs >= 1 and max_lr_drops >= 0, got "
                              f"{patience}, {max_drops}")
        self.optimizer = optimizer
        self.mode = mode
        self.decay = decay
        self.max_drops = max_drops
        self.drops = 0  # plateau reductions so far
        total = epochs * steps_per_epoch
        warm = min(int(warmup_steps), total)
        self._milestones: list[int] = []

        main: LRScheduler | None = None
        if mode == "cosine":
            main = CosineAnnealingLR(optimizer, T_max=max(1, total - warm), eta_min=lr_min)
        elif mode == "step":
            epochs_ = [int(e) for e in decay_epochs]
            if any(e < 1 for e in epochs_) or epochs_ != sorted(set(epochs_)):
                raise ConfigError(f"--decay-epochs must be strictly increasing epochs >= 1, "
                                  f"got {list(decay_epochs)}")
            self._milestones = [e * steps_per_epoch - warm for e in epochs_]
            if any(m < 1 for m in self._milestones):
                raise ConfigError(f"--decay-epochs {epochs_} fall inside the warm-up "
                                  f"({warm} steps): decay after the warm-up")
            main = MultiStepLR(optimizer, milestones=self._milestones, gamma=decay)
        per_step: LRScheduler | None = main
        if warm:
            ramp = LinearLR(optimizer, start_factor=1.0 / (warm + 1), end_factor=1.0,
                            total_iters=warm)
            per_step = ramp if main is None else SequentialLR(
                optimizer, [ramp, main], milestones=[warm])
        self._per_step = per_step
        self._plateau: ReduceLROnPlateau | None = None
        if mode == "plateau":
            # A floor slightly below lr * decay**max_drops: float rounding of lr * decay * decay
            # never blocks the last allowed reduction, and no reduction goes past it.
            floors = [g.get("initial_lr", g["lr"]) * decay**max_drops * (1 - 1e-9)
                      for g in optimizer.param_groups]
            self._plateau = ReduceLROnPlateau(
                optimizer, mode="min", factor=decay, patience=patience - 1,
                threshold=threshold, threshold_mode="rel", min_lr=floors)

    @property
    def lr(self) -> float:
        """The lr of the next step (of the first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self) -> None:
        """Advance by one optimiser step (call it after ``optimizer.step()``)."""
        if self._per_step is not None:
            self._per_step.step()

    def epoch_end(self, val_error: float) -> bool:
        """Feed the epoch's validation error; True if the lr was just divided (plateau)."""
        if self._plateau is None:
            return False
        before = self.lr
        self._plateau.step(val_error)
        if self.lr < before * (1 - 1e-6):
            self.drops += 1
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "drops": self.drops,
                "per_step": self._per_step.state_dict() if self._per_step else None,
                "plateau": self._plateau.state_dict() if self._plateau else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") != self.mode:
            raise ConfigError(f"the saved lr schedule is {state.get('mode')!r}, this run's is "
                              f"{self.mode!r}: resume with the same --sched")
        self.drops = int(state["drops"])
        if self._per_step is not None:
            self._per_step.load_state_dict(state["per_step"])
            # MultiStepLR keeps its milestones in a Counter, which a JSON round trip turns
            # into a plain dict: restore it from this run's own settings.
            for s in getattr(self._per_step, "_schedulers", [self._per_step]):
                if isinstance(s, MultiStepLR):
                    s.milestones = Counter(self._milestones)
        if self._plateau is not None:
            self._plateau.load_state_dict(state["plateau"])
