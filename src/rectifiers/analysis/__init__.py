"""Analysis tools for the paper's findings: signal propagation (Sec. 2.2), learned slopes
(Table 1) and dead units."""

from rectifiers.analysis.dead_units import DeadUnitTracker, dead_unit_rates
from rectifiers.analysis.signal import (
    LayerSignal,
    format_table,
    predicted_ratio,
    predicted_signal,
    signal_propagation,
)
from rectifiers.analysis.slopes import (
    PAPER_STAGES,
    PAPER_TABLE1,
    activation_sites,
    learned_slopes,
)

__all__ = [
    "PAPER_STAGES",
    "PAPER_TABLE1",
    "DeadUnitTracker",
    "LayerSignal",
    "activation_sites",
    "dead_unit_rates",
    "format_table",
    "learned_slopes",
    "predicted_ratio",
    "predicted_signal",
    "signal_propagation",
]
