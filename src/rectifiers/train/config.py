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

Validation: constructing a config checks every field (:meth:`TrainConfig.validate`) and raises
one :class:`~rectifiers.errors.ConfigError` naming the flag, the value and what is accepted --
including the model: unknown ``--model``/``--act``/``--init`` names, ``--model-kw`` keywords the
model does not take (the message lists those it does) and values its constructor rejects (the
model is built on the meta device to find out: no memory, no random draws). ``grad_clip`` 0 or
None means no clipping; a negative one is an error (it would make every step an ascent).

Resume: :meth:`TrainConfig.resume_changes` lists the settings that differ from a checkpoint's and
can change the numbers; ``RESUME_NEUTRAL`` holds those a resume may change (paths, logging,
``max_steps``, which only decides where a run stops, and ``threads``, which changes only the last
bits of reductions: a resume without ``--threads`` takes the saved thread count, so it stays
bit-exact).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from rectifiers.errors import ConfigError
from rectifiers.optim import SCHEDULES
from rectifiers.runtime import AMP_MODES, DEVICES

__all__ = ["AMP_MODES", "DATASETS", "DEVICES", "PAPER_RECIPE", "RESUME_NEUTRAL", "SCHEDULES",
           "TrainConfig", "flag"]

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
    # Folders: skip unreadable images (counted, listed in the run directory) instead of stopping.
    skip_bad_images: bool = False
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
    # Max global gradient norm; None or 0: off; negative is an error. On for the small default:
    # without batch norm a plain net at lr 0.03 can spike early (measured: a no-dropout run
    # diverged at step 57).
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
    # Replace a run already in out_dir (its checkpoints and logs are deleted). Without it, and
    # without resume, training into a directory that holds a run is refused: nothing is lost.
    overwrite: bool = False
    log_every: int = 10  # steps between lines of the per-step JSONL log
    progress: bool = True  # tqdm bars (silent anyway when stderr is not a terminal)
    verbose: bool = True  # print per-epoch lines and the final summary

    def __post_init__(self) -> None:
        try:
            self.decay_epochs = tuple(int(e) for e in self.decay_epochs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--decay-epochs must be whole epoch numbers, got "
                              f"{self.decay_epochs!r}") from e
        self.validate()

    def validate(self, check_model: bool = True) -> None:
        """Raise :class:`~rectifiers.errors.ConfigError` naming the flag and what is accepted.

        ``check_model`` also checks ``model``/``act``/``init`` names and ``model_kwargs`` by
        building the model on PyTorch's meta device (no memory, no RNG draws, a few ms).
        """
        _choice("sched", self.sched, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("device", self.device, DEVICES)
        _choice("dataset", self.dataset, DATASETS)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _number("lr", self.lr, low=0.0, low_open=True)
        _number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("lr_decay", self.lr_decay, low=0.0, low_open=True, high=1.0, high_open=True)
        if self.dropout is not None:
            _number("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        _number("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        if self.grad_clip is not None:
            _number("grad_clip", self.grad_clip, low=0.0,
                    hint="it is the largest allowed gradient norm; 0 or omitted turns clipping "
                    "off")
        _number("warmup_epochs", self.warmup_epochs, low=0.0)
        _number("lr_min", self.lr_min, low=0.0)
        if self.lr_min >= self.lr and self.sched == "cosine":
            raise ConfigError(f"--lr-min ({self.lr_min}) must be below --lr ({self.lr}): the "
                              "cosine schedule decays from --lr to --lr-min")
        if self.sched == "cosine" and self.warmup_epochs >= self.epochs:
            raise ConfigError(f"--warmup-epochs ({self.warmup_epochs:g}) must be shorter than "
                              f"--epochs ({self.epochs}): the cosine decay follows the warm-up")
        _number("plateau_threshold", self.plateau_threshold, low=0.0, high=1.0, high_open=True)
        _positive("patience_epochs", self.patience_epochs)
        _nonnegative("max_lr_drops", self.max_lr_drops)
        if any(e < 1 for e in self.decay_epochs):
            raise ConfigError(f"--decay-epochs must be positive epoch numbers (the lr is "
                              f"multiplied by --lr-decay when that epoch starts), got "
                              f"{list(self.decay_epochs)}")
        if list(self.decay_epochs) != sorted(set(self.decay_epochs)):
            raise ConfigError(f"--decay-epochs must be increasing without repeats, got "
                              f"{list(self.decay_epochs)}; e.g. --decay-epochs "
                              f"{' '.join(map(str, sorted(set(self.decay_epochs))))}")
        if self.sched == "step" and not self.decay_epochs:
            raise ConfigError("--sched step needs --decay-epochs (e.g. --decay-epochs 30 60); "
                              "for a fixed lr use --sched constant")
        if self.decay_epochs and self.sched != "step":
            raise ConfigError(f"--decay-epochs applies to --sched step only (got --sched "
                              f"{self.sched}); drop it or use --sched step")
        for name in ("max_train_samples", "max_val_samples", "max_steps", "threads"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        for name in ("synthetic_classes", "synthetic_size", "synthetic_image_size",
                     "synthetic_chans", "log_every"):
            _positive(name, getattr(self, name))
        _nonnegative("workers", self.workers)
        _nonnegative("checkpoint_every", self.checkpoint_every)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"--seed must be an integer >= 0, got {self.seed!r}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("--nesterov needs --momentum > 0")
        if not isinstance(self.model_kwargs, dict):
            raise ConfigError(f"--model-kw must give KEY=VALUE pairs, got {self.model_kwargs!r}")
        if self.overwrite and self.resume:
            raise ConfigError("--overwrite replaces the run in --out-dir and --resume continues "
                              "it: give only one of them")
        if self.overwrite and not self.out_dir:
            raise ConfigError("--overwrite needs --out-dir (the run directory to replace)")
        if check_model:
            self.check_model()

    def check_model(self, num_classes: int | None = None, in_chans: int | None = None) -> None:
        """Check ``model``, ``act``, ``init`` and ``model_kwargs`` by building the model on the
        meta device; any problem becomes one :class:`ConfigError` naming the flag."""
        import warnings

        import torch

        from rectifiers.init import list_init_schemes
        from rectifiers.models import create_model, list_models
        from rectifiers.nn import list_activations

        for flag, value, known in (("--model", self.model, list_models()),
                                   ("--act", self.act, list_activations()),
                                   ("--init", self.init, list_init_schemes())):
            if value not in known:
                raise ConfigError(f"{flag} {value!r} is unknown. Known: {', '.join(sorted(known))}")
        if num_classes is None:
            num_classes = {"synthetic": self.synthetic_classes, "folder": 1000}.get(
                self.dataset, 10)
        if in_chans is None:
            in_chans = {"synthetic": self.synthetic_chans, "folder": 3}.get(self.dataset, 1)
        for key, instead in _RESERVED_MODEL_KW.items():
            if key in self.model_kwargs:
                raise ConfigError(f"--model-kw {key}=...: {key} is not a model keyword here; "
                                  f"{instead}")
        kwargs = dict(self.model_kwargs)
        if self.dropout is not None:
            kwargs["drop_rate"] = self.dropout
        given = " ".join(f"--model-kw {k}={json.dumps(v)}" for k, v in self.model_kwargs.items())
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                create_model(self.model, num_classes=num_classes, in_chans=in_chans,
                             act=self.act, init=None, **kwargs)
        except TypeError as e:
            if "unknown keyword" in str(e):
                accepted = _accepted_keywords(self.model)
                bad = sorted(set(kwargs) - set(accepted))
                raise ConfigError(
                    f"--model-kw: model {self.model!r} has no keyword(s) {', '.join(bad)}; it "
                    f"accepts: {', '.join(accepted)}") from e
            raise ConfigError(f"{given or '--model-kw'}: model {self.model!r} rejects these "
                              f"values: {e}") from e
        except (ValueError, RuntimeError, AssertionError) as e:
            raise ConfigError(f"{given or '--model ' + self.model}: model {self.model!r} "
                              f"rejects these values: {e}") from e

    def resume_changes(self, old: dict[str, Any]) -> list[str]:
        """Settings that differ from a checkpoint's ``config`` and can change the results.

        A resumed run equals the uninterrupted one only with the same settings; this lists the
        differences that matter, as ``"field: old -> new"``. Settings that never change the
        numbers (``RESUME_NEUTRAL``: where files go, logging, ``max_steps`` which only decides
        where a run stops, and threads, which changes only the last bits) are left out; so is
        ``epochs`` except under the cosine schedule, whose length it sets.
        """
        new = self.to_dict()
        neutral = set(RESUME_NEUTRAL)
        if self.sched != "cosine" and old.get("sched", self.sched) != "cosine":
            neutral.add("epochs")
        changed = []
        for k, v in new.items():
            if k in neutral or k not in old:
                continue
            was = old[k]
            if isinstance(v, (list, tuple)) and isinstance(was, (list, tuple)):
                same = list(v) == list(was)
            else:
                same = was == v
            if not same:
                changed.append(f"{k}: {was!r} -> {v!r}")
        return changed

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
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
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


# Settings that never change a run's numbers: the changed-settings check on resume skips them.
# max_steps only decides where a run stops (the lr schedule is set by epochs, not by it).
RESUME_NEUTRAL = frozenset({
    "resume", "out_dir", "overwrite", "progress", "verbose", "threads", "log_every",
    "checkpoint_every", "workers", "max_steps",
})

# Keywords of create_model that --model-kw must not set (another flag, or the data, sets them).
_RESERVED_MODEL_KW = {
    "drop_rate": "use --dropout (it would override --model-kw drop_rate)",
    "act": "use --act", "init": "use --init",
    "num_classes": "the dataset sets it", "in_chans": "the dataset sets it",
}

# Fields whose flag is not simply --<field-with-dashes>.
_FLAGS = {"model_kwargs": "--model-kw", "channels_last": "--no-channels-last",
          "progress": "--no-progress", "verbose": "--quiet"}


def flag(name: str) -> str:
    """The ``rectifiers train`` flag of a TrainConfig field (``grad_clip`` -> ``--grad-clip``)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag(name)} {value!r} is not one of {', '.join(choices)}")


def _integer(name: str, value: Any, low: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{flag(name)} must be {what}, got {value!r}")


def _positive(name: str, value: Any) -> None:
    _integer(name, value, 1, "a positive integer")


def _nonnegative(name: str, value: Any) -> None:
    _integer(name, value, 0, "an integer >= 0")


def _number(name: str, value: Any, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, hint: str = "") -> None:
    """A finite real number in [low, high] (open ends where asked), else one ConfigError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        rng = f"{'>' if low_open else '>='} {low:g}"
    else:
        rng = "a finite number"
    if isinstance(value, float) and not math.isfinite(value) and rng != "a finite number":
        rng = f"finite and {rng}"
    raise ConfigError(f"{flag(name)} must be {rng}, got {value!r}" + (f" ({hint})" if hint else ""))


def _accepted_keywords(model: str) -> list[str]:
    """The architecture keywords a registered model's builder accepts (for --model-kw)."""
    import inspect

    from rectifiers.models import registry

    builder = registry._MODELS[model]  # noqa: SLF001 (read-only look-up; see requests-to-trainloop)
    accepted = [n for n, p in inspect.signature(builder).parameters.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                and n not in ("num_classes", "in_chans", "act", "act_kwargs")]
    return sorted(accepted)
