"""Model combination: average the softmax scores of several models (paper Sec. 4.3, Table 7).

The paper's 4.94 % entry combines six models (A/B/C, ReLU and PReLU); the combination rule
is not stated, so we take the usual one, a (weighted) mean of class probabilities:

    p(x) = sum_m w_m * p_m(x) / sum_m w_m,

where each member ``m`` evaluates ``x`` with its own views (centre, 10-view or dense
multi-scale) and its own input normalisation, so members may be different architectures
trained with different preprocessing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rectifiers.data.transforms import Normalizer
from rectifiers.errors import ConfigError
from rectifiers.eval.common import Normalize
from rectifiers.eval.views import ViewSpec, default_view, predict
from rectifiers.train.checkpoint import load_model


@dataclass
class Member:
    """One model of an ensemble with the way it looks at images."""

    model: nn.Module
    view: ViewSpec
    normalize: Normalize | None = None
    name: str = "model"
    weight: float = 1.0
    meta: dict[str, Any] | None = None


class Ensemble:
    """Weighted average of member softmax scores. A single member is just that model."""

    def __init__(self, members: Sequence[Member]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        if any(not (math.isfinite(m.weight) and m.weight > 0) for m in members):
            raise ConfigError(f"ensemble weights (--weights) must be finite numbers > 0, "
                              f"got {[m.weight for m in members]}")
        self.members = list(members)

    @torch.no_grad()
    def predict(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Averaged softmax scores (B, K) of raw ``images`` (each member normalises them)."""
        total: torch.Tensor | None = None
        for m in self.members:
            p = predict(m.model, images, m.view, m.normalize) * m.weight
            if total is not None and p.shape != total.shape:
                raise ValueError(
                    f"ensemble member '{m.name}' gives scores of shape {tuple(p.shape)}, the "
                    f"others {tuple(total.shape)}: members must share the class set"
                )
            total = p if total is None else total + p
        assert total is not None
        return total / sum(m.weight for m in self.members)

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready description of the members (name, weight, views)."""
        return [
            {"name": m.name, "weight": m.weight, "mode": m.view.mode, "crop": m.view.crop,
             "scales": list(m.view.scales), "flip": m.view.flip}
            for m in self.members
        ]


def load_member(
    checkpoint: str | os.PathLike,
    mode: str = "center",
    device: str | torch.device = "cpu",
    weight: float = 1.0,
    **view_overrides: Any,
) -> Member:
    """Load a checkpoint as an ensemble member with its training normalisation and views.

    Every default comes from the checkpoint's own metadata (crop, evaluation resize,
    normalisation; :func:`rectifiers.eval.views.default_view`). ``view_overrides``
    (``crop``, ``scales``, ``flip``, ``window_batch``) replace those defaults.
    """
    model, meta = load_model(checkpoint, map_location=device)
    view = default_view(model, mode, meta,
                        **{k: v for k, v in view_overrides.items() if v is not None})
    return Member(model=model.eval(), view=view, normalize=normalizer_from_meta(meta, device),
                  name=str(checkpoint), weight=weight, meta=meta)


def normalizer_from_meta(meta: dict[str, Any],
                         device: str | torch.device = "cpu") -> Normalize | None:
    """The checkpoint's input normalisation (``meta["normalization"]``), or ``None`` if absent.

    Its statistics are moved to ``device`` so it can normalise images already there.
    """
    spec = meta.get("normalization")
    if not spec:
        return None
    norm = Normalizer.from_dict(spec)
    for name in ("mean", "std"):
        if getattr(norm, name, None) is not None:
            setattr(norm, name, getattr(norm, name).to(device))
    return norm
