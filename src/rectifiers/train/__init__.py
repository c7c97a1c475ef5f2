"""Training: the paper's recipe as a plain loop, exact resume, DDP, ``rectifiers train``.

``train(TrainConfig(...)) -> TrainResult``; checkpoints are safetensors files with JSON metadata
(:mod:`rectifiers.train.checkpoint`), rebuilt into models with :func:`load_model`.
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
