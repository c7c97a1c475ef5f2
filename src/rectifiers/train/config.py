"""Training configuration: one dataclass whose fields are the paper's hyper-parameters.

Every field is also a command-line flag of ``rectifiers train`` (``--lr``, ``--weight-decay``,
...), in the spirit of timm's ``train.py``. Two sets of defaults exist:

* the **paper recipe** (Sec. 3, "Implementation Details"; see ``PAPER_RECIPE``) for the
  ImageNet models ``prelunet_a/b/c`` and the 14-layer model of Tables 1-2: SGD, momentum 0.9,
  weight decay 5e-4 (not on the PReLU slopes a_i), global batch 128, lr 0.01 divided by 10 twice
  when the validation error plateaus, about 80 epochs, dropout 0.5 on fc1/fc2;
* the **small-model defaults** (the dataclass defaults) for ``prelunet_small`` on Fashion-MNIST,
  tuned so that ``rectifiers train`` with no arguments reaches >= 90 % test accuracy in a few
  minutes on 2 CPU cores. They keep the paper's optimiser (SGD + momentum 0.9, weight decay 5e-4
  not applied to slopes, batch 128) but no dropout and flip-only augmentation (a short run
  underfits), and a short schedule: 3 epochs, lr 0.03
  with a 0.5-epoch linear warm-up and a cosine decay to 0 (a plateau schedule needs many
  epochs to detect a plateau), bf16 autocast, channels_last, and gradient-norm clipping at 5
  (a plain net without batch norm can spike early at this lr).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEDULES = ("plateau", "step", "cosine", "constant")
AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
DATASETS = ("fashion_mnist", "synthetic", "folder")


@dataclass
class TrainConfig:
    """All settings of one training run. Defaults: small PReLU-net on Fashion-MNIST.

    Learning-rate schedules (``sched``):

    * ``plateau`` (paper): multiply lr by ``lr_decay`` (0.1) when the validation top-1 error has
      not improved by more than ``plateau_threshold`` (relative) for ``patience_epochs`` epochs,
      at most ``max_lr_drops`` (2) times: 1e-2 -> 1e-3 -> 1e-4.
    * ``step``: multiply by ``lr_decay`` at each epoch listed in ``decay_epochs``.
    * ``cosine``: lr_t = lr_min + (lr - lr_min) * (1 + cos(pi * t / T)) / 2, per step, after a
      linear warm-up of ``warmup_epochs``.
    * ``constant``.

    ``batch_size`` is the **global** batch (the paper keeps 128 fixed for multi-GPU training):
    under DDP each of the ``world_size`` processes uses ``batch_size // world_size`` samples and
    gradients are averaged, so a run gives the same updates for any number of processes.
    """

    # --- model -----------------------------------------------------------------------------
    model: str = "prelunet_small"
    act: str = "prelu"
    init: str = "he"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"depth": 8}
    # Dropout on fc1/fc2. None: the model's default (0.5, the paper's). The small default is 0:
    # a 3-epoch run underfits (measured: dropout 0.5 + pad-crop gave 87.5 % train / 88.8 % test
    # accuracy; dropout 0 + flip gave 92.0 % / 91.1 %).
    dropout: float | None = 0.0

    # --- data ------------------------------------------------------------------------------
    dataset: str = "fashion_mnist"
    data_dir: str | None = None  # None: $RECTIFIERS_DATA or /usr/share/datasets/fashion-mnist
    max_train_samples: int | None = None  # a deterministic subset (first n after a seeded shuffle)
    max_val_samples: int | None = None
    # Augmentation preset of rectifiers.data (AUGMENT_PRESETS): "none", "flip", "pad_crop_flip",
    # "scale_jitter_small", "paper", "default" (the data package's: pad-crop + flip for small
    # images, the paper's scale jitter [256, 512] -> 224 + flip + PCA colour for folders), or
    # "auto": flip only for in-memory small images (short runs underfit) and "default" for folders.
    augment: str = "auto"
    workers: int = 0  # image-decoding processes (folders only)
    synthetic_classes: int = 10  # only for dataset="synthetic"
    synthetic_size: int = 512  # training samples of the synthetic set
    synthetic_image_size: int = 28
    synthetic_chans: int = 1

    # --- optimisation (paper: SGD, momentum 0.9, wd 5e-4 not on slopes, batch 128) ---------
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    # Max global gradient norm; None: off. On for the small default: without batch norm a
    # plain net at lr 0.03 can spike early (measured: a no-dropout run diverged at step 57).
    grad_clip: float | None = 5.0
    sched: str = "cosine"
    lr_decay: float = 0.1
    patience_epochs: int = 2
    plateau_threshold: float = 1e-3
    max_lr_drops: int = 2
    decay_epochs: tuple[int, ...] = ()
    warmup_epochs: float = 0.5
    lr_min: float = 0.0
    # Stop after this many optimiser steps in total (benchmarks); the last history row then
    # covers a partial epoch, and the checkpoint resumes inside it.
    max_steps: int | None = None

    # --- execution -------------------------------------------------------------------------
    device: str = "auto"
    amp: str = "bf16"
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None  # torch.set_num_threads; None: leave as is
    seed: int = 0

    # --- outputs ---------------------------------------------------------------------------
    out_dir: str | None = None  # None: no files at all (programmatic use)
    checkpoint_every: int = 0  # also checkpoint every n steps (mid-epoch); 0: epoch ends only
    resume: str | None = None  # a checkpoint file, a run directory, or "auto" (out_dir's last)
    log_every: int = 10  # steps between lines of the per-step JSONL log
    progress: bool = True  # tqdm bars (silent anyway when stderr is not a terminal)
    verbose: bool = True  # print per-epoch lines and the final summary

    def __post_init__(self) -> None:
        self.decay_epochs = tuple(int(e) for e in self.decay_epochs)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and what would be accepted."""
        _choice("sched", self.sched, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("device", self.device, DEVICES)
        _choice("dataset", self.dataset, DATASETS)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.lr_decay < 1:
            raise ValueError(f"lr_decay must be in (0, 1), got {self.lr_decay}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("max_train_samples", "max_val_samples", "max_steps", "threads"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.checkpoint_every < 0 or self.log_every < 1:
            raise ValueError("checkpoint_every must be >= 0 and log_every >= 1")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["decay_epochs"] = list(self.decay_epochs)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# The paper's ImageNet recipe (Sec. 3). ``TrainConfig(**PAPER_RECIPE, model="prelunet_a", ...)``.
PAPER_RECIPE: dict[str, Any] = {
    "batch_size": 128,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "sched": "plateau",
    "lr_decay": 0.1,
    "max_lr_drops": 2,
    "epochs": 80,
    "warmup_epochs": 0.0,
    "dropout": 0.5,
    "amp": "none",
    "grad_clip": None,
}


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}")


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
