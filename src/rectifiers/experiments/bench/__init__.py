"""``rectifiers bench``: the rectifier zoo head to head, activation x init x depth (x width).

Every run trains the same small plain network (``plain_small``: no batch norm, no skips, so
the activation and the init are what decide whether it trains) on Fashion-MNIST with the
same recipe, through the training engine (:func:`rectifiers.train.train`, exactly what
``rectifiers train`` runs); only the activation, the init rule, the depth, the width and the
seed change. Runs that share a seed share the data order and the random stream of the initial
weights, so two activations are compared *paired by seed*.

Model selection never looks at the test set: every run holds out ``val_size`` training
examples (data seed 0, the same for every run), trains on ``subset`` of the others (drawn with
the run's seed), keeps the weights of the epoch with the lowest validation error and reports
the test numbers of that epoch (plus the last epoch's test accuracy).

Resumable. Each finished run appends one row to ``runs.csv`` (write, flush, fsync) after its
test-set predictions were written atomically to ``preds/<run>.npy``; a restart reads the rows
back and skips every finished ``(act, init, depth, width, seed, epochs, subset)``: a finished
run is never recomputed. A row cut short by a crash (no final newline, wrong field count) is
ignored and cut off before the next append. The recipe settings that are not part of the key
(model, lr, batch size, val_size, ...) are stored in ``bench.json``; resuming with different
ones is an error rather than a silent mix of two recipes.

Summary (``rectifiers bench summarize DIR``, also written at the end of a run), per cell, in
test error: mean, std and 95 % Student-t interval over seeds; the paired t-test against the
channel-wise PReLU baseline at the same init/depth/width (the paper's model) with a
Holm-Bonferroni adjustment over every comparison of the grid; the fraction of runs that did
not converge (Wilson interval); the dead-unit rate; and the prediction disagreement between
seeds, i.e. the fraction of test examples whose top-1 class differs between two runs, averaged
over pairs of converged runs (the reproducibility metric of the SmeLU paper, Shamir et al.
2020). Per activation: the time of one training step and the bytes saved for backward
relative to ReLU (``analysis.cost``). Files: ``summary.csv``, ``summary.md``, ``cost.json``
and the plots ``err_vs_depth_<init>.png``, ``err_vs_depth_by_init.png`` and
``converged_vs_depth.png``; ``--page PAGE.md`` also writes the results page.

Modules, one job each: :mod:`.grid` (runs, grid, recipe, presets), :mod:`.store` (the CSV,
predictions and recipe on disk), :mod:`.run` (one run, the resumable grid loop),
:mod:`.statistics` (per-cell and per-activation statistics), :mod:`.tables` (their Markdown
tables), :mod:`.plots`, :mod:`.summary` (summary files and costs), :mod:`.page` (the results
page) and :mod:`.cli` (the command).
"""

from rectifiers.experiments.bench import run
from rectifiers.experiments.bench.cli import main
from rectifiers.experiments.bench.grid import KEY_FIELDS, PRESETS, BenchSettings, Grid, RunSpec
from rectifiers.experiments.bench.page import write_page
from rectifiers.experiments.bench.run import RunOutcome, run_cell, run_grid
from rectifiers.experiments.bench.statistics import (
    ActSummary,
    CellSummary,
    holm_adjust,
    prediction_disagreement,
    summarize_acts,
    summarize_rows,
)
from rectifiers.experiments.bench.store import CSV_FIELDS, append_row, read_rows
from rectifiers.experiments.bench.summary import measure_bench_costs, summarize_dir

__all__ = [
    "CSV_FIELDS",
    "KEY_FIELDS",
    "PRESETS",
    "ActSummary",
    "BenchSettings",
    "CellSummary",
    "Grid",
    "RunOutcome",
    "RunSpec",
    "append_row",
    "holm_adjust",
    "main",
    "measure_bench_costs",
    "prediction_disagreement",
    "read_rows",
    "run",
    "run_cell",
    "run_grid",
    "summarize_acts",
    "summarize_dir",
    "summarize_rows",
    "write_page",
]
