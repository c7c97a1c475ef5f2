"""Learned activation coefficients per layer (paper Table 1), and the paper's values for reports.

Which modules have learnable coefficients is decided once, by
:func:`rectifiers.nn.is_learnable_activation` (PReLU slopes, a learnable Swish beta, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rectifiers.init import weight_layers
from rectifiers.nn import is_learnable_activation

__all__ = ["PAPER_STAGES", "PAPER_TABLE1", "activation_sites", "learned_slopes"]

# Paper Table 1: learned coefficients of the 14-layer ImageNet model, per layer with PReLU
# (11 conv + fc1, fc2; fc3 has none). Values: (channel-shared a, channel-wise mean of a_i).
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "conv1": (0.681, 0.596),
    "conv21": (0.103, 0.321),
    "conv22": (0.099, 0.204),
    "conv23": (0.228, 0.294),
    "conv24": (0.561, 0.464),
    "conv31": (0.126, 0.196),
    "conv32": (0.089, 0.152),
    "conv33": (0.124, 0.145),
    "conv34": (0.062, 0.124),
    "conv35": (0.008, 0.134),
    "conv36": (0.210, 0.198),
    "fc1": (0.063, 0.074),
    "fc2": (0.031, 0.075),
}


# The paper's conv layers by stage (a stage = the convs between two poolings): Table 1's
# stage 2 and stage 3 are compared with a smaller net's stages as stage means.
PAPER_STAGES: dict[int, tuple[str, ...]] = {
    1: ("conv1",),
    2: ("conv21", "conv22", "conv23", "conv24"),
    3: ("conv31", "conv32", "conv33", "conv34", "conv35", "conv36"),
}

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def activation_sites(model: nn.Module) -> dict[str, dict[str, Any]]:
    """For every activation module that follows a weight layer: which layer it follows.

    Keyed by the activation's module name; values ``layer`` (the weight layer's module name),
    ``label`` (its own attribute name, e.g. ``conv2_1`` or ``fc1`` in the SPP nets), ``kind``
    (``"conv"`` or ``"fc"``) and ``stage`` (for convs: 1 + the pooling layers registered
    before it, the paper's stage numbering; None for fc layers). Found from module
    registration order (:func:`rectifiers.init.weight_layers`), never from names.
    """
    pools_before: dict[nn.Module, int] = {}
    pools = 0
    for m in model.modules():
        if isinstance(m, _POOLS):
            pools += 1
        pools_before.setdefault(m, pools)
    names = {m: n for n, m in model.named_modules()}
    sites: dict[str, dict[str, Any]] = {}
    for name, layer, after, _ in weight_layers(model):
        if after is None:
            continue
        conv = not isinstance(layer, nn.Linear)
        sites[names[after]] = {
            "layer": name, "label": name.rsplit(".", 1)[-1], "kind": "conv" if conv else "fc",
            "stage": 1 + pools_before[layer] if conv else None,
        }
    return sites


def learned_slopes(model: nn.Module) -> list[dict[str, Any]]:
    """One row per learnable activation parameter (a PReLU's slopes ``a_i``, a learnable
    Swish's ``beta``), in module order; modules as :func:`rectifiers.nn.is_learnable_activation`.

    Row keys: ``layer`` (module name), ``follows`` (the weight layer it follows, as
    :func:`activation_sites`, or None), ``parameter`` (``"weight"`` for PReLU), ``variant``
    (``"channel-shared"`` for one slope, ``"channel-wise"`` otherwise), ``num_parameters``,
    and ``mean``, ``std`` (population std, 0 for a shared slope), ``min``, ``max`` of its
    values ``a_i`` - Table 1 reports the mean.

    Example:
        >>> for row in learned_slopes(model): print(row["layer"], round(row["mean"], 3))
    """
    rows = []
    sites = activation_sites(model)
    for name, m in model.named_modules():
        if not is_learnable_activation(m):
            continue
        for pname, param in m.named_parameters(recurse=False):
            a = param.detach().to(torch.float64).reshape(-1)
            rows.append({
                "layer": name,
                "follows": sites.get(name),
                "parameter": pname,
                "variant": "channel-shared" if a.numel() == 1 else "channel-wise",
                "num_parameters": a.numel(),
                "mean": float(a.mean()),
                "std": float(a.std(unbiased=False)),
                "min": float(a.min()),
                "max": float(a.max()),
            })
    return rows


def format_slopes(rows: list[dict[str, Any]]) -> str:
    """A small text table of :func:`learned_slopes` rows."""
    if not rows:
        return "(no learnable slopes in this model)"
    width = max(len("layer"), *(len(r["layer"]) for r in rows))
    lines = [f"{'layer':<{width}}  {'slopes':>6}  {'mean a':>7}  {'std':>6}  {'min a':>7}  "
             f"{'max a':>7}"]
    for r in rows:
        lines.append(f"{r['layer']:<{width}}  {r['num_parameters']:>6}  {r['mean']:>7.3f}  "
                     f"{r['std']:>6.3f}  {r['min']:>7.3f}  {r['max']:>7.3f}")
    return "\n".join(lines)
