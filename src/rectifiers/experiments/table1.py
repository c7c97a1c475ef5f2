"""Learned PReLU coefficients (Table 1), from the PReLU runs of :mod:`prelu_runs`.

A slope trained at a constant lr keeps fluctuating around an equilibrium, so whether it has
"stopped moving" is judged on time-averaged windows of its trace (:func:`settling`), and each
of the paper's claims only where the slopes' remaining drift cannot undo it (:func:`_judge`).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from rectifiers.analysis import PAPER_STAGES, PAPER_TABLE1
from rectifiers.experiments.prelu_runs import (
    ACTS,
    COLORS,
    SLOPE_ACTS,
    Run,
    RunSettings,
    _is_quick,
    _setup,
)
from rectifiers.experiments.report import Section, markdown_table, new_figure, save_figure
from rectifiers.experiments.stats import summarize

# --------------------------------------------------------------------------- Table 1

def _paper_value(site: dict[str, Any]) -> tuple[float, float] | None:
    """The paper's Table 1 value for the layer an activation follows: fc layers by their name
    (the same vocabulary), conv layers as the mean of the paper's convs of the same stage."""
    if site["kind"] == "fc":
        return PAPER_TABLE1.get(site["label"])
    names = PAPER_STAGES.get(site["stage"])
    if not names:
        return None
    vals = [PAPER_TABLE1[n] for n in names]
    return (statistics.fmean(v[0] for v in vals), statistics.fmean(v[1] for v in vals))


def _spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for i, j in enumerate(order):
            r[j] = float(i)
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else 0.0


# A slope trained at a constant lr does not stop dead: it fluctuates around an equilibrium
# (a channel-shared slope sums the gradient of a whole layer, so it jitters by several
# hundredths). It counts as settled - it stopped *moving*, not fluctuating - when its mean over
# the last quarter of the constant-lr phase (averaged over the recorded steps, then over seeds)
# differs from its mean over the quarter before by at most SETTLE_ABS, or by at most
# SETTLE_REL of its move from the initial value (a slope still drifting linearly moves ~29 %
# of that between the two windows). Each window needs MIN_POINTS recorded steps per seed, or
# the phase is too short to tell (quick mode).
SETTLE_ABS, SETTLE_REL, MIN_POINTS = 0.01, 0.15, 10


def _window(trace: list[list[float]], lo: float, hi: float, j: int) -> list[float]:
    return [p[1 + j] for p in trace if lo <= p[0] < hi or (p[0] == hi == trace[-1][0])]


def settling(runs: list[Run], settings: RunSettings) -> list[dict[str, Any]]:
    """Per PReLU layer, from the slope traces of ``runs``: the initial seed-mean slope,
    the window means (over steps, then seeds) of the third and last quarters of the
    constant-lr phase (``step``: up to the first decay; ``constant``: all of training;
    ``cosine``: the first half, where the lr is at least half its peak, since a decayed lr
    stops any slope), ``stationary`` (the last window's mean per seed), their ``drift`` and
    ``settled`` (see :data:`SETTLE_ABS`, :data:`SETTLE_REL`, :data:`MIN_POINTS`)."""
    traces = [r.slope_trace for r in runs if r.slope_trace and not r.diverged]
    if not traces:
        return []
    total = min(t[-1][0] for t in traces)
    end = total
    if settings.sched == "step" and settings.decay_epochs:
        end = total * settings.decay_epochs[0] / settings.epochs
    elif settings.sched != "constant":  # cosine: judge the first half (lr >= half its peak)
        end = total / 2
    rows = []
    for j in range(len(traces[0][0]) - 1):
        w3 = [_window(t, 0.5 * end, 0.75 * end, j) for t in traces]
        w4 = [_window(t, 0.75 * end, end, j) for t in traces]
        enough = min(len(w) for w in w3 + w4) >= MIN_POINTS
        a0 = statistics.fmean(t[0][1 + j] for t in traces)
        if not enough:
            rows.append({"init": a0, "window3": float("nan"), "window4": float("nan"),
                         "stationary": [], "drift": float("nan"), "move": float("nan"),
                         "end_step": end, "settled": False, "too_short": True})
            continue
        m3 = statistics.fmean(statistics.fmean(w) for w in w3)
        per_seed = [statistics.fmean(w) for w in w4]
        m4 = statistics.fmean(per_seed)
        drift, move = abs(m4 - m3), abs(m4 - a0)
        rows.append({"init": a0, "window3": m3, "window4": m4, "stationary": per_seed,
                     "drift": drift, "move": move, "end_step": end,
                     "settled": drift <= max(SETTLE_ABS, SETTLE_REL * move), "too_short": False})
    return rows


def slopes_section(runs: dict[str, list[Run]], settings: RunSettings, out_dir: Path,
                   command: str, seconds: float) -> Section:
    sites = [r["follows"] for r in runs["prelu"][0].slopes]
    layers = [site["label"] for site in sites]
    paper = [_paper_value(site) for site in sites]
    conv_idx = [i for i, site in enumerate(sites) if site["kind"] == "conv"]
    final: dict[str, list[list[float]]] = {}  # act -> per layer -> per seed, end of training
    settle = {a: settling(runs[a], settings) for a in SLOPE_ACTS}
    for a in SLOPE_ACTS:
        final[a] = [[run.slopes[i]["mean"] for run in runs[a]] for i in range(len(layers))]
    # The values the claims are judged on: the stationary slopes of the constant-lr phase
    # (last-quarter window mean per seed) where the phase was long enough, else the final ones.
    judged = {a: [st["stationary"] or final[a][i] for i, st in enumerate(settle[a])]
              if settle[a] and not settle[a][0]["too_short"] else final[a] for a in SLOPE_ACTS}

    def state(st: dict[str, Any]) -> str:
        if st["too_short"]:
            return "too short to tell"
        return f"{st['drift']:.3f} ({'settled' if st['settled'] else 'moving'})"

    rows = []
    for i, layer in enumerate(layers):
        cells = [layer]
        for a in SLOPE_ACTS:
            s = summarize(judged[a][i])
            cells.append(f"{s.mean:.3f} ± {s.std:.3f}" if s.n > 1 else f"{s.mean:.3f}")
            cells.append(state(settle[a][i]) if settle[a] else "–")
            cells.append(f"{statistics.fmean(final[a][i]):.3f}")
        p = paper[i]
        cells += [f"{p[0]:.3f}" if p else "–", f"{p[1]:.3f}" if p else "–"]
        rows.append(cells)
    table = markdown_table(
        ["layer", "shared a (stationary)", "shared: drift", "shared a (final)",
         "channel-wise mean a (stationary)", "channel-wise: drift", "channel-wise (final)",
         "paper shared (ImageNet)", "paper channel-wise"], rows)

    _plot_slope_traces(runs, settings, layers, settle, out_dir / "slopes_trace.png")
    fig, axes = new_figure(width=6.0)
    ax = axes[0][0]
    xs = range(len(layers))
    for a, marker in zip(SLOPE_ACTS, "os", strict=True):
        m = [statistics.fmean(v) for v in judged[a]]
        lo = [min(v) for v in judged[a]]
        hi = [max(v) for v in judged[a]]
        ax.errorbar(xs, m, yerr=[[mm - l for mm, l in zip(m, lo, strict=True)],
                                 [h - mm for mm, h in zip(m, hi, strict=True)]],
                    marker=marker, capsize=3, color=COLORS[a], label=f"ours, {ACTS[a][2]}")
    for j, (col, ls) in enumerate(((COLORS["prelu_shared"], "--"), (COLORS["prelu"], ":"))):
        pv = [p[j] if p else float("nan") for p in paper]
        ax.plot(xs, pv, ls=ls, color=col, alpha=0.7,
                label=f"paper (ImageNet), {'shared' if j == 0 else 'channel-wise'}")
    ax.axhline(0.25, color="gray", lw=0.8, ls="-.", label="initial value 0.25")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(layers, fontsize=8)
    ax.set_xlabel("layer (input -> output)")
    ax.set_ylabel("learned slope a (mean over channels)")
    ax.set_title(f"Learned PReLU coefficients ({'stationary' if judged is not final else 'final'}"
                 f"), {len(runs['prelu'])} seeds (bars: min-max)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out_dir / "slopes.png")

    n = len(runs["prelu"])
    checks, data = {}, {}
    for a in SLOPE_ACTS:
        m = [statistics.fmean(v) for v in judged[a]]
        conv_m = [m[i] for i in conv_idx]
        per_seed = list(zip(*[judged[a][i] for i in conv_idx], strict=True))  # seed -> convs
        checks[a] = {
            "conv_settled": bool(settle[a]) and all(settle[a][i]["settled"] for i in conv_idx),
            "conv1_largest": conv_m[0] == max(conv_m),
            "conv1_largest_seeds": sum(v[0] == max(v) for v in per_seed),
            "conv_depth_rank_corr": _spearman([float(i) for i in conv_idx], conv_m),
            "rank_corr_negative_seeds": sum(
                _spearman([float(i) for i in conv_idx], list(v)) < 0 for v in per_seed),
        }
        data[a] = {"layers": layers, "per_seed": final[a], "judged_per_seed": judged[a],
                   "settling": settle[a], "traces": [r.slope_trace for r in runs[a]],
                   **checks[a]}
    # The claims, each judged only where the slopes' remaining movement cannot change it.
    claims = {"conv1 keeps the largest slope (shared)": ("prelu_shared", "conv1_largest"),
              "conv1 keeps the largest slope (channel-wise)": ("prelu", "conv1_largest"),
              "deeper conv layers get smaller slopes (channel-wise)": ("prelu", "trend")}
    outcome: dict[str, bool | None] = {
        claim: _judge(kind, settle[a], final[a], conv_idx, checks[a])
        for claim, (a, kind) in claims.items()}
    tested = [v for v in outcome.values() if v is not None]
    moving = {a: sum(not settle[a][i]["settled"] for i in conv_idx) if settle[a] else
              len(conv_idx) for a in SLOPE_ACTS}
    short = all(st["too_short"] for a in SLOPE_ACTS for st in settle[a])
    if not tested:
        verdict = "not testable at this scale"
        why = ("the run is too short to tell whether the slopes stopped moving (too few "
               "recorded steps at a high lr; the trace plot shows them still leaving 0.25)"
               if short else
               f"the conv slopes have not stopped moving ({moving['prelu_shared']} shared and "
               f"{moving['prelu']} channel-wise conv layers not settled)")
        quick = (": not testable in quick mode, see the full report "
                 "(`docs/reproduction-full.md`)" if _is_quick(settings) else "")
        note = why + ", so neither claim can be judged from them" + quick
    else:
        held = sum(tested)
        verdict = ("reproduced" if held == len(outcome) else
                   "partly reproduced" if held else "not reproduced")
        yes = {a: (f"{'yes' if checks[a]['conv1_largest'] else 'no'} "
                   f"({checks[a]['conv1_largest_seeds']}/{n} seeds)") for a in SLOPE_ACTS}
        note = ("stationary slopes: conv1 has the largest conv slope: shared "
                f"{yes['prelu_shared']}, channel-wise {yes['prelu']}; channel-wise slopes vs "
                f"conv depth: Spearman {checks['prelu']['conv_depth_rank_corr']:+.2f} on the "
                f"seed means, negative in {checks['prelu']['rank_corr_negative_seeds']}/{n} "
                "seeds (paper: decreasing)")
        untested = [c for c, v in outcome.items() if v is None]
        if untested:
            note += f"; not judged (conv slopes still moving): {'; '.join(untested)}"
        if moving["prelu_shared"] or moving["prelu"]:
            note += (f" ({moving['prelu_shared']} shared and {moving['prelu']} channel-wise conv "
                     "layers still drift; a claim counts only where that drift cannot undo it)")
    result = (note + ". A slope trained at a constant lr keeps fluctuating around an "
              "equilibrium; it counts as settled when its mean over the last quarter of the "
              "constant-lr phase (over the recorded steps, then seeds) differs from the "
              f"quarter before by at most {SETTLE_ABS} or {SETTLE_REL:.0%} of its move from "
              f"0.25 (each window needs {MIN_POINTS} recorded steps per seed, else the run is "
              "too short to tell); the claims are judged on those stationary values, and the "
              "final values (after the lr decay, the paper's kind) are shown next to them. The "
              "trace plot shows slope vs step per layer (lines: seed means, bands: min-max "
              f"over seeds). Our net has {len(conv_idx)} conv + "
              f"{len(layers) - len(conv_idx)} hidden fc PReLU layers against the paper's 11 + "
              "2, on 28x28 grey images, so the paper's stage-2/3 values are shown as stage "
              "means; compare the pattern, not the numbers.")
    return Section(
        key="slopes", title="Learned PReLU coefficients (Table 1)",
        claim=("Table 1: conv1 learns slopes well above 0 (0.681 shared / 0.596 channel-wise) "
               "- it keeps both signs of its Gabor-like responses - and in the channel-wise "
               "model deeper conv layers learn smaller slopes (\"more nonlinear\")."),
        setup=_setup(settings) + (" Slopes are read from the PReLU runs of the ReLU vs PReLU "
                                  f"experiment; every PReLU layer's mean slope is recorded "
                                  f"every {settings.trace_every} steps."),
        result=result, tables=[table], plots=["slopes_trace.png", "slopes.png"],
        verdict=verdict, verdict_note=note, command=command,
        data={**data, "claims": outcome}, seconds=seconds,
    )


def _judge(kind: str, settle: list[dict[str, Any]], final: list[list[float]],
           conv_idx: list[int], checks: dict[str, Any]) -> bool | None:
    """One Table 1 claim on the stationary conv slopes, or None where it cannot be judged.

    Every conv layer settled: the claim as measured. Otherwise only a difference that the
    layers' remaining movement cannot undo counts: ``conv1_largest`` is refuted when some conv
    layer lies above conv1 by more than their two drifts together (and holds when conv1 lies
    above every one by that margin); ``trend`` (Spearman of slope vs conv depth < 0) counts
    when its sign is the same on the stationary slopes and on the final ones after the lr
    decay. Too short a run judges nothing.
    """
    if not settle or settle[0]["too_short"]:
        return None
    if all(settle[i]["settled"] for i in conv_idx):
        return checks["conv_depth_rank_corr"] < 0 if kind == "trend" else checks["conv1_largest"]
    if kind == "trend":
        depth = [float(i) for i in conv_idx]
        a = _spearman(depth, [settle[i]["window4"] for i in conv_idx])
        b = _spearman(depth, [statistics.fmean(final[i]) for i in conv_idx])
        return (a < 0) if (a < 0) == (b < 0) and a != 0 and b != 0 else None
    c1 = conv_idx[0]

    def margin(j: int) -> float:
        return settle[j]["drift"] + settle[c1]["drift"]

    if any(settle[j]["window4"] - settle[c1]["window4"] > margin(j) for j in conv_idx[1:]):
        return False
    if all(settle[c1]["window4"] - settle[j]["window4"] > margin(j) for j in conv_idx[1:]):
        return True
    return None


def _plot_slope_traces(runs: dict[str, list[Run]], settings: RunSettings, layers: list[str],
                       settle: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Slope vs training step, one panel per variant, one colour per layer."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    fig, axes = new_figure(ncols=len(SLOPE_ACTS), width=4.8)
    for ax, a in zip(axes[0], SLOPE_ACTS, strict=True):
        traces = [r.slope_trace for r in runs[a] if r.slope_trace and not r.diverged]
        if not traces:
            continue
        n = min(len(t) for t in traces)
        steps = [traces[0][k][0] for k in range(n)]
        for j, layer in enumerate(layers):
            vals = [[t[k][1 + j] for t in traces] for k in range(n)]
            color = cmap(j / max(1, len(layers) - 1))
            ax.plot(steps, [statistics.fmean(v) for v in vals], color=color, lw=1.4,
                    label=layer)
            ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals],
                            color=color, alpha=0.15, lw=0)
        if settle[a] and settings.sched == "step" and settings.decay_epochs:
            ax.axvline(settle[a][0]["end_step"], color="gray", ls="--", lw=0.8,
                       label="lr / 10")
        ax.axhline(0.25, color="gray", lw=0.6, ls=":")
        ax.set_title(f"{ACTS[a][2]}: slope per layer during training", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("mean slope a of the layer")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    save_figure(fig, path)
