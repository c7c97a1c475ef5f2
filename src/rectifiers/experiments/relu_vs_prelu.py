"""ReLU vs PReLU (Table 2), learned coefficients (Table 1) and dead units, from one set of runs.

The same small PReLU-net is trained with four activations - ReLU, PReLU channel-shared,
PReLU channel-wise, and LeakyReLU(0.25), i.e. PReLU *frozen* at its initial value, the
control that separates a learned slope from a merely non-zero one - over several seeds.
Seeds are paired: seed s gives every activation the same batch order and weights drawn
from the same random stream, so differences are judged with a paired t-test.

Three report sections read the same runs:

* Table 2 (:func:`table2_section`): final test error, mean ± std, and the paired difference
  to ReLU with its 95 % CI and p-value (:func:`rectifiers.experiments.stats.compare`).
* Table 1 (:func:`slopes_section`): per-layer learned slopes of the two PReLU variants next
  to the paper's ImageNet values (:data:`rectifiers.analysis.PAPER_TABLE1`).
* Dead units (:func:`dead_section`): after every epoch, on the held-out images, the
  fraction of activation outputs exactly 0 and of units never active
  (:class:`rectifiers.analysis.DeadUnitTracker`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rectifiers.analysis import (
    PAPER_STAGES,
    PAPER_TABLE1,
    activation_sites,
    dead_unit_rates,
    learned_slopes,
)
from rectifiers.experiments.report import (
    Section,
    integer_ticks,
    markdown_table,
    new_figure,
    plain_log_ticks,
    save_figure,
)
from rectifiers.experiments.runs import (
    RunStore,
    heldout_batches,
    open_data,
    run_config,
    train_run,
)
from rectifiers.experiments.stats import compare, summarize
from rectifiers.nn import is_learnable_activation
from rectifiers.train import StepInfo, TrainConfig

# name -> (registry activation, its keywords, label)
ACTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "relu": ("relu", {}, "ReLU"),
    "prelu_shared": ("prelu_shared", {}, "PReLU channel-shared"),
    "prelu": ("prelu", {}, "PReLU channel-wise"),
    "leaky_relu_0.25": ("leaky_relu", {"negative_slope": 0.25}, "LeakyReLU(0.25) (frozen PReLU)"),
}
COLORS = {"relu": "tab:gray", "prelu_shared": "tab:orange", "prelu": "tab:red",
          "leaky_relu_0.25": "tab:blue"}
TABLE2_ACTS = ("relu", "prelu_shared", "prelu", "leaky_relu_0.25")
SLOPE_ACTS = ("prelu_shared", "prelu")
DEAD_ACTS = ("relu", "prelu", "leaky_relu_0.25")

# The paper's Table 2 (ImageNet val, 10-view, top-1 error %).
PAPER_TABLE2 = {"relu": 33.82, "prelu_shared": 32.71, "prelu": 32.64}


@dataclass(frozen=True)
class RunSettings:
    seeds: int = 4
    n_train: int = 5000
    n_test: int = 2000
    epochs: int = 3
    batch_size: int = 64
    # lr 0.05 without warm-up diverged for 3/4 channel-shared PReLU runs in the first steps.
    lr: float = 0.02
    warmup_epochs: float = 0.3
    widths: tuple[int, int, int] = (16, 32, 64)
    fc_dim: int = 128
    sched: str = "cosine"
    decay_epochs: tuple[int, ...] = ()  # sched "step": lr x 0.1 at these epochs
    trace_every: int = 25  # record the mean slope of every PReLU layer every this many steps
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1
    data_source: str = "fashion_mnist"

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


PRESETS: dict[str, RunSettings] = {
    "quick": RunSettings(),
    # ~50 min of one idle core: 12 runs of ~7800 steps. Batch 32 and 25 epochs so the channel-wise
    # slopes (whose gradient sums one channel's positions only) get enough steps to settle: in
    # a pilot at lr 0.01 they still moved ~0.01 per epoch after 12 epochs. The lr is constant
    # for 20 epochs (the phase in which "stopped moving" is judged), then 10x lower, as the
    # paper's step schedule.
    "full": RunSettings(seeds=3, n_train=10000, n_test=5000, epochs=25, batch_size=32,
                        lr=0.02, warmup_epochs=0.3, sched="step", decay_epochs=(20,),
                        trace_every=50),
    "smoke": RunSettings(seeds=2, n_train=96, n_test=48, epochs=1, batch_size=32,
                         widths=(4, 4, 8), fc_dim=16, trace_every=1),
}


@dataclass
class Run:
    act: str
    seed: int
    test_err: list[float]
    slopes: list[dict[str, Any]]
    dead: list[dict[str, float]]  # per epoch (0 = init): zero_fraction, never_active_fraction
    seconds: float
    diverged: bool = False
    # [step, mean slope of PReLU layer 1, layer 2, ...] at step 0 and every trace_every steps
    slope_trace: list[list[float]] = field(default_factory=list)


def _dead_summary(model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[str, float]:
    """Units-weighted zero / never-active fractions over all activation layers on ``batches``
    (held-out images, normalised as training normalises), in eval mode."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = dead_unit_rates(model, (x.to(device) for x in batches))
    model.train(was)
    units = sum(r["units"] for r in rows)
    sites = activation_sites(model)
    conv = [r for r in rows if r["layer"] in sites and sites[r["layer"]]["kind"] == "conv"]
    return {
        "zero_fraction": sum(r["zero_fraction"] * r["units"] for r in rows) / units,
        "never_active_fraction": sum(r["never_active_fraction"] * r["units"] for r in rows)
        / units,
        "never_active_channel_fraction_conv": (
            statistics.fmean(r["never_active_channel_fraction"] for r in conv) if conv else 0.0),
    }


def _slope_means(model: torch.nn.Module) -> list[float]:
    return [float(p.detach().float().mean()) for m in model.modules()
            if is_learnable_activation(m) for p in m.parameters(recurse=False)]


def train_runs(acts: tuple[str, ...], settings: RunSettings, store: RunStore,
               data_dir: str | None = None,
               progress: Callable[[str], None] = print) -> dict[str, list[Run]]:
    """Train every ``act`` x seed not already in ``store``; return all runs by activation."""
    data = None
    out: dict[str, list[Run]] = {}
    settings_key = {k: v for k, v in dataclasses.asdict(settings).items()
                    if k not in ("seeds", "first_seed")}
    keys = {(a, s): {"settings": settings_key, "act": a, "seed": s}
            for a in acts for s in settings.seed_list}
    todo = [k for k, key in keys.items() if store.load(_EXP, key) is None]
    done = 0
    for act in acts:
        if act not in ACTS:
            raise ValueError(f"unknown activation {act!r}; choose from {tuple(ACTS)}")
        for seed in settings.seed_list:
            record = store.load(_EXP, keys[(act, seed)])
            if record is None:
                if data is None:
                    train_set, test_set = open_data(settings.n_train, settings.n_test,
                                                    data_dir, settings.data_source)
                    data = (train_set, test_set, heldout_batches(train_set, test_set))
                record = _train_one(act, seed, settings, data)
                store.save(_EXP, keys[(act, seed)], record)
                done += 1
                progress(f"  {ACTS[act][2]:<31} seed {seed}: test error "
                         f"{record['test_err'][-1]:.4f} ({record['seconds']:.0f} s, "
                         f"{done}/{len(todo)})")
            out.setdefault(act, []).append(Run(**record))
    return out


_EXP = "relu-vs-prelu"  # the store's folder for these runs (slopes and dead read them too)


def _train_one(act: str, seed: int, settings: RunSettings, data: tuple) -> dict[str, Any]:
    """Train one run; return its record (the fields of :class:`Run`, JSON-able)."""
    name, kw, _ = ACTS[act]
    model_kwargs: dict[str, Any] = {"widths": settings.widths, "fc_dim": settings.fc_dim}
    if kw:
        model_kwargs["act_kwargs"] = kw
    cfg = run_config(model="prelunet_small", act=name, init="he", seed=seed,
                     epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                     sched=settings.sched, warmup_epochs=settings.warmup_epochs,
                     decay_epochs=settings.decay_epochs, model_kwargs=model_kwargs,
                     dropout=None)
    dead: list[dict[str, float]] = []
    trace: list[list[float]] = []

    def on_epoch(epoch: int, model: torch.nn.Module) -> None:
        dead.append(_dead_summary(model, data[2]))
        if epoch == 0:
            trace.append([0.0, *_slope_means(model)])

    def on_step(info: StepInfo) -> None:
        # Before this step's update: the slopes after info.step - 1 updates.
        if (info.step - 1) % settings.trace_every == 0 and info.step > 1:
            trace.append([float(info.step - 1), *_slope_means(info.model)])

    res = train_run(cfg, data[0], data[1], on_step=on_step, on_epoch=on_epoch)
    final = _slope_means(res.model)
    if final and (not trace or trace[-1][1:] != final):
        trace.append([float(len(res.step_loss)), *final])
    return {"act": act, "seed": seed, "test_err": res.test_err,
            "slopes": learned_slopes(res.model), "dead": dead, "seconds": res.seconds,
            "diverged": res.diverged, "slope_trace": trace if final else []}


def _setup(settings: RunSettings) -> str:
    return (f"`prelunet_small` (conv 3x3 {settings.widths[0]} -> pool -> 2x conv "
            f"{settings.widths[1]} -> pool -> 2x conv {settings.widths[2]} -> SPP{{3,2,1}} -> "
            f"fc {settings.fc_dim} x2 (dropout 0.5) -> fc 10), He init (Eq. 14 with the "
            f"(1+a²) factor of Eq. 15); {settings.n_train} Fashion-MNIST training images, "
            f"test error on {settings.n_test} test images (the same for every run); trained "
            f"by the engine of `rectifiers train` (fp32, no augmentation): SGD momentum 0.9, lr "
            f"{settings.lr} cosine after a {settings.warmup_epochs:g}-epoch linear warm-up, "
            f"wd 5e-4 (none on slopes), gradient clipping at norm "
            f"{TrainConfig().grad_clip:g}, batch {settings.batch_size}, "
            f"{settings.epochs} epochs, {settings.seeds} paired seeds.")


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


def _is_quick(settings: RunSettings) -> bool:
    """Whether ``settings`` is the quick preset, whatever its seeds and data source."""
    same = ("seeds", "first_seed", "data_source")
    return dataclasses.replace(settings, **{k: getattr(PRESETS["quick"], k) for k in same}) \
        == PRESETS["quick"]


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
