"""ReLU vs PReLU (Table 2), learned coefficients (Table 1) and dead units, from one set of runs.

The same small PReLU-net is trained with four activations - ReLU, PReLU channel-shared,
PReLU channel-wise, and LeakyReLU(0.25), i.e. PReLU *frozen* at its initial value, the
control that separates a learned slope from a merely non-zero one - over several seeds.
Seeds are paired: seed s gives every activation the same batch order and weights drawn
from the same random stream, so differences are judged with a paired t-test.

Three report sections read the same runs (trained and stored by
:mod:`rectifiers.experiments.prelu_runs`); this module builds two and dispatches all three:

* Table 2 (:func:`table2_section`): final test error, mean ± std, and the paired difference
  to ReLU with its 95 % CI and p-value (:func:`rectifiers.experiments.stats.compare`).
* Table 1 (:func:`rectifiers.experiments.table1.slopes_section`): per-layer learned slopes
  of the two PReLU variants next to the paper's ImageNet values
  (:data:`rectifiers.analysis.PAPER_TABLE1`).
* Dead units (:func:`dead_section`): after every epoch, on the held-out images, the
  fraction of activation outputs exactly 0 and of units never active
  (:class:`rectifiers.analysis.DeadUnitTracker`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from rectifiers.experiments.prelu_runs import (
    ACTS,
    COLORS,
    DEAD_ACTS,
    PAPER_TABLE2,
    SLOPE_ACTS,
    TABLE2_ACTS,
    Run,
    RunSettings,
    _setup,
    train_runs,
)
from rectifiers.experiments.report import (
    Section,
    integer_ticks,
    markdown_table,
    new_figure,
    plain_log_ticks,
    save_figure,
)
from rectifiers.experiments.runs import RunStore
from rectifiers.experiments.stats import compare, summarize
from rectifiers.experiments.table1 import slopes_section

# --------------------------------------------------------------------------- Table 2

def table2_section(runs: dict[str, list[Run]], settings: RunSettings, out_dir: Path,
                   command: str, seconds: float) -> Section:
    errs = {a: [r.test_err[-1] * 100 for r in runs[a]] for a in TABLE2_ACTS}
    rows, cmp_data = [], {}
    for a in TABLE2_ACTS:
        s = summarize(errs[a])
        paper = PAPER_TABLE2.get(a)
        if a == "relu":
            diff = "–"
        else:
            c = compare(errs[a], errs["relu"], paired=True)
            cmp_data[a] = c.as_dict()
            diff = f"{c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}], p = {c.p_value:.2g}"
        spread = f"± {s.std:.2f}" if s.n > 1 else ""
        n_div = sum(r.diverged for r in runs[a])
        rows.append([ACTS[a][2], f"{s.mean:.2f} {spread}", f"{n_div}/{len(runs[a])}", diff,
                     f"{paper:.2f}" if paper else "–",
                     f"{paper - PAPER_TABLE2['relu']:+.2f}" if paper and a != "relu" else "–"])
    table = markdown_table(["activation", "test error % (mean ± std)", "diverged runs",
                            "vs ReLU: paired diff [95 % CI], p", "paper top-1 %",
                            "paper diff"], rows)

    fig, axes = new_figure(ncols=2, width=4.8)
    ax = axes[0][0]
    for i, a in enumerate(TABLE2_ACTS):
        ax.scatter([i] * len(errs[a]), errs[a], color=COLORS[a], alpha=0.6, s=18)
        m = statistics.fmean(errs[a])
        ax.plot([i - 0.25, i + 0.25], [m, m], color=COLORS[a], lw=2)
    ax.set_xticks(range(len(TABLE2_ACTS)))
    ax.set_xticklabels(["ReLU", "PReLU\nshared", "PReLU\nch-wise", "Leaky\n0.25"], fontsize=8)
    ax.set_ylabel("final test top-1 error (%)")
    ax.set_title("per seed (dots) and mean (bar)")
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[0][1]
    for a in TABLE2_ACTS:
        curves = [r.test_err for r in runs[a]]
        mean = [100 * statistics.fmean(c[e] for c in curves) for e in range(len(curves[0]))]
        ax.plot(range(len(mean)), mean, marker="o", ms=3, color=COLORS[a], label=ACTS[a][2])
    ax.set_yscale("log")
    plain_log_ticks(ax)
    integer_ticks(ax)
    ax.set_xlabel("epoch (0 = initialisation)")
    ax.set_ylabel("test top-1 error (%), mean over seeds, log scale")
    ax.set_title("training curves")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "relu_vs_prelu.png")

    # Verdict: the paper's direction is "PReLU (both variants) lower error than ReLU".
    sig_better = [a for a in ("prelu_shared", "prelu")
                  if cmp_data[a]["ci_high"] < 0]
    sig_worse = [a for a in ("prelu_shared", "prelu") if cmp_data[a]["ci_low"] > 0]
    if len(sig_better) == 2:
        verdict = "reproduced"
    elif sig_better:
        verdict = "partly reproduced"
    elif sig_worse:
        verdict = "not reproduced"
    else:
        verdict = "not testable at this scale"
    cw = cmp_data["prelu"]
    note = (f"channel-wise PReLU vs ReLU: {cw['diff']:+.2f} points "
            f"[{cw['ci_low']:+.2f}, {cw['ci_high']:+.2f}] over {settings.seeds} paired seeds "
            f"(paper: -1.18); " + (
                "the difference is within seed noise" if verdict == "not testable at this scale"
                else f"significant for {', '.join(sig_better or sig_worse)}"))
    lk = compare(errs["leaky_relu_0.25"], errs["prelu"], paired=True)
    result = (note + f". The frozen-slope control LeakyReLU(0.25) minus channel-wise PReLU: "
              f"{lk.diff:+.2f} [{lk.ci_low:+.2f}, {lk.ci_high:+.2f}] points, i.e. whether "
              "*learning* the slope matters beyond having one. A 95 % CI that contains 0 means "
              "this run cannot tell the activations apart; more seeds (`--seeds`) or the full "
              "data (`--full`) shrink it.")
    return Section(
        key="relu-vs-prelu", title="ReLU vs PReLU (Table 2)",
        claim=("Table 2 (ImageNet, 14-layer model, 10-view top-1 error): ReLU 33.82 %, PReLU "
               "channel-shared 32.71 %, channel-wise 32.64 %: PReLU is 1.1-1.2 points better "
               "at negligible cost (13 or ~10k extra parameters)."),
        setup=_setup(settings), result=result, tables=[table], plots=["relu_vs_prelu.png"],
        verdict=verdict, verdict_note=note, command=command,
        data={"test_err_pct": errs, "paired_vs_relu": cmp_data,
              "leaky_minus_prelu": lk.as_dict()},
        seconds=seconds, train_seconds=sum(r.seconds for a in TABLE2_ACTS for r in runs[a]),
    )


# --------------------------------------------------------------------------- dead units

def dead_section(runs: dict[str, list[Run]], settings: RunSettings, out_dir: Path,
                 command: str, seconds: float) -> Section:
    fig, axes = new_figure(ncols=2, width=4.8)
    rows, data = [], {}
    for a in DEAD_ACTS:
        zero = [[d["zero_fraction"] for d in r.dead] for r in runs[a]]
        never = [[d["never_active_fraction"] for d in r.dead] for r in runs[a]]
        epochs = range(len(zero[0]))
        for ax, vals in ((axes[0][0], zero), (axes[0][1], never)):
            m = [100 * statistics.fmean(v[e] for v in vals) for e in epochs]
            ax.plot(epochs, m, marker="o", ms=3, color=COLORS[a], label=ACTS[a][2])
        fz, fn = summarize([v[-1] for v in zero]), summarize([v[-1] for v in never])
        rows.append([ACTS[a][2], f"{100 * statistics.fmean(v[0] for v in zero):.1f}",
                     f"{100 * fz.mean:.1f} ± {100 * (fz.std if fz.n > 1 else 0):.1f}",
                     f"{100 * statistics.fmean(v[0] for v in never):.2f}",
                     f"{100 * fn.mean:.2f} ± {100 * (fn.std if fn.n > 1 else 0):.2f}"])
        data[a] = {"zero_fraction": zero, "never_active_fraction": never}
    axes[0][0].set_title("outputs exactly 0 (per batch)")
    axes[0][0].set_ylabel("% of activation outputs")
    axes[0][1].set_title(f"units never active on {settings.n_test} held-out images")
    axes[0][1].set_ylabel("% of units (input never > 0)")
    for ax in axes[0]:
        ax.set_xlabel("epoch (0 = initialisation)")
        integer_ticks(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, out_dir / "dead_units.png")
    table = markdown_table(["activation", "zero outputs % at init", "zero outputs % final",
                            "never-active units % at init", "never-active units % final"],
                           rows)
    relu_zero = statistics.fmean(v[-1] for v in data["relu"]["zero_fraction"])
    prelu_zero = statistics.fmean(v[-1] for v in data["prelu"]["zero_fraction"])
    relu_never = statistics.fmean(v[-1] for v in data["relu"]["never_active_fraction"])
    prelu_never = statistics.fmean(v[-1] for v in data["prelu"]["never_active_fraction"])
    note = (f"ReLU zeroes {100 * relu_zero:.0f} % of its outputs, PReLU "
            f"{100 * prelu_zero:.1f} %; units never active: ReLU {100 * relu_never:.2f} %, "
            f"PReLU {100 * prelu_never:.2f} %")
    # PReLU/leaky never output exact zeros, so their units are never *dead* in the gradient
    # sense even when inactive; ReLU's inactive units get no gradient at all.
    verdict = "reproduced" if relu_zero > 0.2 and prelu_zero < 0.01 else "not reproduced"
    result = (note + ". An inactive PReLU/LeakyReLU unit still passes a·x forward and a·dy "
              "backward, so it can recover; an inactive ReLU unit receives no gradient. "
              "\"Never active\" counts units (channel x position) whose input was never > 0 "
              "on any held-out image.")
    return Section(
        key="dead", title="Dead units",
        claim=("Motivation of PReLU/LReLU (Sec. 2.1; Maas et al.): ReLU zeroes the negative "
               "half, and a unit that stays negative gets no gradient (\"dead\"); a non-zero "
               "slope keeps signal and gradient flowing. Not measured in the paper."),
        setup=_setup(settings) + (" Measured after every epoch on the held-out images "
                                  "(eval mode) with `DeadUnitTracker`."),
        result=result, tables=[table], plots=["dead_units.png"], verdict=verdict,
        verdict_note=note, command=command, data=data, seconds=seconds,
    )


_SECTIONS: dict[str, tuple[tuple[str, ...], Callable[..., Section]]] = {
    "relu-vs-prelu": (TABLE2_ACTS, table2_section),
    "slopes": (SLOPE_ACTS, slopes_section),
    "dead": (DEAD_ACTS, dead_section),
}


def run(which: tuple[str, ...], settings: RunSettings, out_dir: str | Path,
        commands: dict[str, str], data_dir: str | None = None,
        progress: Callable[[str], None] = print) -> list[Section]:
    """Train what ``which`` (subset of relu-vs-prelu, slopes, dead) needs; one section each."""
    unknown = [w for w in which if w not in _SECTIONS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {tuple(_SECTIONS)}")
    out = Path(out_dir)
    store = RunStore(out / "runs")
    sections = []
    for w in which:
        t0 = time.perf_counter()
        acts, build = _SECTIONS[w]
        runs = train_runs(acts, settings, store, data_dir, progress)
        sections.append(build(runs, settings, out, commands[w], time.perf_counter() - t0))
    return sections


def run_table2(settings: RunSettings, out_dir: str | Path, command: str, *,
               data_dir: str | None = None, progress: Callable[[str], None] = print) -> Section:
    """The Table 2 experiment alone (the registry's entry point)."""
    return run(("relu-vs-prelu",), settings, out_dir, {"relu-vs-prelu": command}, data_dir,
               progress)[0]


def run_slopes(settings: RunSettings, out_dir: str | Path, command: str, *,
               data_dir: str | None = None, progress: Callable[[str], None] = print) -> Section:
    """The Table 1 experiment alone (reuses this process's PReLU runs)."""
    return run(("slopes",), settings, out_dir, {"slopes": command}, data_dir, progress)[0]


def run_dead(settings: RunSettings, out_dir: str | Path, command: str, *,
             data_dir: str | None = None, progress: Callable[[str], None] = print) -> Section:
    """The dead-units experiment alone (reuses this process's runs)."""
    return run(("dead",), settings, out_dir, {"dead": command}, data_dir, progress)[0]
