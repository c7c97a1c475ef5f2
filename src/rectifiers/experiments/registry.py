"""The reproduction experiments, registered by name with their presets.

Every experiment of ``rectifiers reproduce`` is one :class:`Experiment`: its command-line name,
its settings per mode (``quick``, ``full``, ``smoke``), the function that runs it and returns its
report :class:`~rectifiers.experiments.report.Section`, and a rough wall-clock estimate per mode
for the progress line. The report numbers its sections itself, in the order of
:data:`EXPERIMENTS`; nothing is looked up by attribute name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rectifiers.experiments import depth, prelu_runs, relu_vs_prelu, signal_prop, xor
from rectifiers.experiments.report import Section

__all__ = ["EXPERIMENTS", "MODES", "Experiment", "get_experiment"]

MODES: tuple[str, ...] = ("quick", "full", "smoke")


@dataclass(frozen=True)
class Experiment:
    """One experiment of the reproduction.

    ``run(settings, out_dir, command, *, data_dir, progress) -> Section``. ``seeded``: the
    ``--seeds`` flag sets its settings' ``seeds``; ``trains``: it trains on Fashion-MNIST (the
    smoke mode falls back to synthetic data when the files are absent). ``estimate_s``: rough
    wall-clock seconds per mode on 2 idle cores, for the ETA only.
    """

    name: str
    presets: Mapping[str, Any]
    run: Callable[..., Section]
    estimate_s: Mapping[str, float]
    seeded: bool = True
    trains: bool = False

    def __post_init__(self) -> None:
        missing = [m for m in MODES if m not in self.presets or m not in self.estimate_s]
        if missing:
            raise ValueError(f"experiment {self.name!r} has no preset/estimate for {missing}")


# In report order. slopes and dead read the runs of relu-vs-prelu (trained once per process),
# so they cost nothing extra when run together with it.
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("signal", signal_prop.PRESETS, signal_prop.run,
               {"quick": 30, "full": 1500, "smoke": 3}),
    Experiment("depth", depth.PRESETS, depth.run,
               {"quick": 200, "full": 3600, "smoke": 3}, trains=True),
    Experiment("relu-vs-prelu", prelu_runs.PRESETS, relu_vs_prelu.run_table2,
               {"quick": 160, "full": 3600, "smoke": 3}, trains=True),
    Experiment("slopes", prelu_runs.PRESETS, relu_vs_prelu.run_slopes,
               {"quick": 2, "full": 2, "smoke": 3}, trains=True),
    Experiment("xor", xor.PRESETS, xor.run, {"quick": 8, "full": 60, "smoke": 3},
               seeded=False),
    Experiment("dead", prelu_runs.PRESETS, relu_vs_prelu.run_dead,
               {"quick": 2, "full": 2, "smoke": 3}, trains=True),
)}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; a clear error naming the known ones otherwise."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; choose from "
                         f"{', '.join(EXPERIMENTS)}") from None
