"""Evaluation as the paper tests: top-1/top-5 error, centre / 10-view / dense multi-scale views,
and ensembles (averaged softmax scores). ``rectifiers eval`` lives in :mod:`rectifiers.eval.cli`.
"""

from rectifiers.eval.dense import dense_scores, naive_window_scores, score_windows
from rectifiers.eval.ensemble import Ensemble, Member, load_member
from rectifiers.eval.metrics import ClassificationMetrics
from rectifiers.eval.views import (
    MODES,
    ViewSpec,
    default_scales,
    default_view,
    predict,
    ten_crop,
    ten_crop_boxes,
)

__all__ = [
    "MODES",
    "ClassificationMetrics",
    "Ensemble",
    "Member",
    "ViewSpec",
    "default_scales",
    "default_view",
    "dense_scores",
    "load_member",
    "naive_window_scores",
    "predict",
    "score_windows",
    "ten_crop",
    "ten_crop_boxes",
]
