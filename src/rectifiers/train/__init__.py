"""Training: the paper's recipe as one plain loop, exact resume, DDP, ``rectifiers train``.

``train(TrainConfig(...)) -> TrainResult`` is the package's one training loop (``rectifiers
train``, the reproduction experiments and the bench run it); ``on_step`` / ``on_epoch`` observe it
(:class:`StepInfo`: loss, gradient norm, lr, the model with its gradients). :func:`train_step` is
the one optimiser step and :func:`evaluate` the one single-view evaluation. Checkpoints are
safetensors files with JSON metadata (:mod:`rectifiers.train.checkpoint`), rebuilt into models
with :func:`load_model`.

Modules: ``engine`` (the loop), ``step`` (step and evaluation), ``data`` (the run's loaders),
``outputs`` (run-directory files), ``rng`` (RNG states), ``distributed`` (DDP), ``config``,
``checkpoint``, ``rundir`` and ``cli``. The lr schedule is :class:`rectifiers.optim.LRSchedule`;
device and autocast come from :mod:`rectifiers.runtime`.
"""

from rectifiers.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from rectifiers.train.config import PAPER_RECIPE, TrainConfig
from rectifiers.train.engine import (
    DivergenceError,
    StepInfo,
    TrainResult,
    evaluate,
    train,
    train_step,
)

__all__ = [
    "PAPER_RECIPE", "CheckpointError", "DivergenceError", "StepInfo", "TrainConfig",
    "TrainResult", "evaluate", "load_checkpoint", "load_model", "save_checkpoint", "train",
    "train_step",
]
