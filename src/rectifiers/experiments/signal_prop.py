"""Signal propagation at initialisation (paper Sec. 2.2, Eqs. 7-15), measured vs predicted.

For a plain chain of L conv layers ``y_l = W_l f(y_{l-1})`` the paper derives

* forward (Eq. 9):   Var[y_L]  = Var[y_1]  * prod_{l=2..L} 1/2 (1+a^2) n_l  Var[w_l]
* backward (Eq. 13): Var[dx_2] = Var[dx_{L+1}] * prod_{l=2..L} 1/2 (1+a^2) n^_l Var[w_l]

so He init (Var[w] = 2/((1+a^2) n), Eq. 10/15) keeps the std constant in its own direction,
the fan_out form scales the forward std by sqrt(prod n_l/n^_l) = sqrt(c_2/d_L), Xavier
(Var[w] = 1/n) loses a factor 2^(-1/2) per ReLU layer, and PyTorch's default
(U(+-1/sqrt(n)), Var = 1/(3n)) a factor 6^(-1/2). LSUV rescales every layer to unit output
variance on the batch it is given.

The chain here uses 3x3 convs with *circular* padding, so every position has exactly the
fan-in of the formulas (zero padding would starve the border), and widths that double
halfway (d = w for the first half, 2w after), so fan_in and fan_out differ at one layer and
the c_2/d_L factor of the fan_out form is visible. Measurement:
:func:`rectifiers.analysis.signal_propagation`; closed forms:
:func:`rectifiers.analysis.predicted_ratio` (textbook) and
:func:`rectifiers.analysis.predicted_signal` (from the actual weights).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rectifiers.analysis import predicted_ratio, predicted_signal, signal_propagation
from rectifiers.experiments.report import (
    Section,
    fmt,
    markdown_table,
    new_figure,
    plt_colormap,
    save_figure,
)
from rectifiers.init import initialize
from rectifiers.nn import make_activation

# (label, init scheme, fan mode, activation). At initialisation every slope is a0 = 0.25, so
# channel-shared and channel-wise PReLU are the same function here; the shared module is used
# because the closed form's derivative moment is exact for it.
CONFIGS: tuple[tuple[str, str, str, str], ...] = (
    ("He fan_in, ReLU", "he", "fan_in", "relu"),
    ("He fan_out, ReLU", "he", "fan_out", "relu"),
    ("He fan_in, PReLU", "he", "fan_in", "prelu_shared"),
    ("Xavier, ReLU", "xavier", "fan_in", "relu"),
    ("Xavier, PReLU", "xavier", "fan_in", "prelu_shared"),
    ("PyTorch default, ReLU", "default", "fan_in", "relu"),
    ("LSUV, ReLU", "lsuv", "fan_in", "relu"),
    ("LSUV, PReLU", "lsuv", "fan_in", "prelu_shared"),
)


@dataclass(frozen=True)
class SignalSettings:
    depth: int = 32
    width: int = 48
    batch: int = 16
    size: int = 8
    seeds: int = 4
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1


PRESETS: dict[str, SignalSettings] = {
    "quick": SignalSettings(depth=32, width=48, batch=16, size=8, seeds=4),
    "full": SignalSettings(depth=48, width=64, batch=64, size=8, seeds=16),
    "smoke": SignalSettings(depth=8, width=16, batch=8, size=6, seeds=2),
}


def chain_widths(depth: int, width: int) -> list[int]:
    """Output channels of each layer: ``width`` for the first half, ``2 * width`` after."""
    return [width if l < depth // 2 else 2 * width for l in range(depth)]


def plain_chain(depth: int, width: int, act: str, in_chans: int = 3) -> nn.Sequential:
    """``depth`` x (conv 3x3, circular padding, no bias -> activation); no pooling, no BN.

    Every layer is followed by an activation, registered right after it so
    :func:`rectifiers.init.initialize` reads its slope; the last one too, so that the
    backward pass from the output meets f'(y_L) as Eq. 13 assumes (the responses y_l are
    the conv outputs either way).
    """
    if depth < 2 or width < 1:
        raise ValueError(f"need depth >= 2 and width >= 1, got {depth}, {width}")
    layers: list[nn.Module] = []
    c = in_chans
    for d in chain_widths(depth, width):
        layers.append(nn.Conv2d(c, d, 3, padding=1, padding_mode="circular", bias=False))
        layers.append(make_activation(act, channels=d))
        c = d
    return nn.Sequential(*layers)


def measure(cfg: tuple[str, str, str, str], settings: SignalSettings, seed: int) -> dict:
    """One initialised chain: measured per-layer stds and both closed forms."""
    _, scheme, mode, act = cfg
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(settings.batch, 3, settings.size, settings.size, generator=gen)
    model = plain_chain(settings.depth, settings.width, act)
    initialize(model, scheme, mode=mode, generator=gen,
               data=x if scheme == "lsuv" else None)
    model.eval()
    rows = signal_propagation(model, x, generator=seed + 1)
    pred = predicted_signal(model, input_second_moment=float((x.double() ** 2).mean()))
    fwd = [r.forward_std for r in rows]
    bwd = [r.backward_std for r in rows]
    fans = [(r.fan_in, r.fan_out) for r in rows]
    a = 0.25 if act.startswith("prelu") else 0.0
    out = {
        "forward": fwd, "backward": bwd,
        "pred_forward": [p["forward_std"] for p in pred],
        "pred_backward": [p["backward_std"] for p in pred],
        "measured_fwd_ratio": fwd[-1] / fwd[0],
        # Eq. 13's ratio runs from dx_{L+1} (the output gradient, std ~1) down to dx_2.
        "measured_bwd_ratio": bwd[1] / 1.0,
    }
    if scheme == "lsuv":
        out["theory_fwd_ratio"] = 1.0  # unit output variance by construction
        out["theory_bwd_ratio"] = float("nan")  # LSUV does not control the backward pass
    else:
        out["theory_fwd_ratio"] = predicted_ratio(fans, scheme, mode, a, "forward")
        out["theory_bwd_ratio"] = predicted_ratio(fans, scheme, mode, a, "backward")
    return out


def log_tolerance(settings: SignalSettings) -> float:
    """Allowed |ln(measured std ratio / predicted)| across the chain.

    Eq. 9 holds for the expectation over weights; one initialised net deviates because each
    layer's realised gain is random. The dominant term: ReLU outputs have a non-zero mean, so
    a unit's response carries a per-channel offset sum_i w_i E[x_i] whose square, averaged
    over the layer's d channels, has relative std ~sqrt(2/d); the batch adds sqrt(2/N) with
    N = batch * positions * d. Over the chain, ln Var performs a random walk with variance
    sum_l (2/d_l + 2/N_l); we average the variance ratio over ``seeds`` nets (dividing that
    variance by the seed count) and allow 4 standard deviations on ln std (half of ln Var).
    """
    var = 0.0
    for d in chain_widths(settings.depth, settings.width):
        var += 2.0 / d + 2.0 / (settings.batch * settings.size**2 * d)
    return 4.0 * 0.5 * math.sqrt(var / settings.seeds)


def run(settings: SignalSettings, out_dir: str | Path, command: str, *,
        data_dir: str | None = None, progress: Callable[[str], None] = print) -> Section:
    """Measure every config over ``settings.seeds`` seeds; write ``signal.png``. (No data set:
    ``data_dir`` is accepted for the common experiment signature and not used.)"""
    t0 = time.perf_counter()
    out = Path(out_dir)
    results: dict[str, list[dict]] = {}
    for cfg in CONFIGS:
        results[cfg[0]] = [measure(cfg, settings, seed) for seed in
                           range(settings.first_seed, settings.first_seed + settings.seeds)]
    progress(f"  measured {len(CONFIGS)} inits x {settings.seeds} seeds on a "
             f"{settings.depth}-layer chain")
    tol = log_tolerance(settings)

    def gmean(vals: list[float]) -> float:
        return math.exp(statistics.fmean(math.log(max(v, 1e-300)) for v in vals))

    def rms(vals: list[float]) -> float:
        # Eq. 9/13 predict the expected *variance*: average variances over seeds, then sqrt.
        return math.sqrt(statistics.fmean(v * v for v in vals))

    rows, ok_all, data = [], True, {}
    for label, *_ in CONFIGS:
        rs = results[label]
        mf, mb = rms([r["measured_fwd_ratio"] for r in rs]), rms(
            [r["measured_bwd_ratio"] for r in rs])
        tf, tb = rs[0]["theory_fwd_ratio"], rs[0]["theory_bwd_ratio"]
        ok_f = abs(math.log(mf / tf)) <= tol
        ok_b = math.isnan(tb) or abs(math.log(mb / tb)) <= tol
        ok_all &= ok_f and ok_b
        rows.append([label, fmt(mf), fmt(tf), fmt(mb), fmt(tb) if not math.isnan(tb) else "–",
                     "yes" if ok_f and ok_b else "**no**"])
        data[label] = {"measured_fwd_ratio": mf, "theory_fwd_ratio": tf,
                       "measured_bwd_ratio": mb, "theory_bwd_ratio": tb,
                       "forward_std": [r["forward"] for r in rs],
                       "backward_std": [r["backward"] for r in rs]}
    table = markdown_table(
        ["init, activation", "std(y_L)/std(y_1) measured", "predicted (Eq. 9)",
         "std(dx_2)/std(dx_L+1) measured", "predicted (Eq. 13)",
         f"within tolerance (x{math.exp(tol):.2f})"], rows)

    # ---- plot: per-layer forward and backward std, measured (solid) and closed form (dots)
    fig, axes = new_figure(ncols=2, width=5.6, height=4.4)
    cmap = plt_colormap("tab10")
    layers = range(1, settings.depth + 1)
    for i, (label, *_) in enumerate(CONFIGS):
        rs, color = results[label], cmap(i)
        for ax, key in ((axes[0][0], "forward"), (axes[0][1], "backward")):
            meas = [rms([r[key][l] for r in rs]) for l in range(settings.depth)]
            pred = [rms([r["pred_" + key][l] for r in rs]) for l in range(settings.depth)]
            ax.plot(layers, meas, color=color, lw=1.5, label=label)
            if not label.startswith("LSUV"):
                ax.plot(layers, pred, color=color, ls=":", lw=2)
    axes[0][0].set_title("forward: std of responses y_l")
    axes[0][1].set_title("backward: std of gradients dE/dx_l")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
        ax.axvline(settings.depth // 2 + 0.5, color="gray", lw=0.8, ls="--")
        ax.grid(True, alpha=0.3, which="both")
    axes[0][0].set_ylabel("std (log scale)")
    axes[0][0].plot([], [], color="black", ls=":", lw=2, label="closed form (dotted)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{settings.depth}-layer plain conv chain at init (widths {settings.width} -> "
                 f"{2 * settings.width} at the dashed line), RMS over "
                 f"{settings.seeds} seeds", fontsize=9)
    save_figure(fig, out / "signal.png")

    he, xa = data["He fan_in, ReLU"], data["Xavier, ReLU"]
    L = settings.depth
    note = (f"He keeps the forward std ratio at {he['measured_fwd_ratio']:.2f} over {L} "
            f"layers (theory 1); Xavier shrinks it to {xa['measured_fwd_ratio']:.1e} "
            f"(theory 2^-{(L - 1) / 2:g} = {xa['theory_fwd_ratio']:.1e}); "
            f"{sum(r[-1] == 'yes' for r in rows)}/{len(rows)} configs within tolerance")
    result = (note + f". Tolerance: |ln(measured/predicted)| <= {tol:.2f}, i.e. 4 standard "
              "deviations of the accumulated finite-width/finite-batch error (see "
              "`log_tolerance`). Eq. 9 is an expectation over weights: one finite-width net's "
              "variance ratio is roughly log-normal with a median below its mean, which is why "
              "a few seeds of ReLU chains land under 1 while the backward ratios, with smaller "
              "fluctuations, sit on the prediction. The fan_out form keeps the backward std "
              "constant and scales "
              f"the forward one by sqrt(c_2/d_L) = sqrt({settings.width}/{2 * settings.width})"
              " (Sec. 2.2); PyTorch's default init loses a factor √6 per layer.")
    return Section(
        key="signal", title="Signal propagation at initialisation",
        claim=("Sec. 2.2: with Var[w] = 2/n (Eq. 10, forward) or 2/n̂ (Eq. 14, backward) the "
               "response/gradient variance of a plain ReLU net neither grows nor shrinks with "
               "depth; either condition alone suffices, the other direction being scaled by "
               "c_2/d_L; Xavier's 1/n shrinks the signal by 2^(-1/2) per layer; PReLU "
               "generalises the rule to 2/((1+a²) n) (Eq. 15)."),
        setup=(f"Plain chain of {L} 3x3 convs (circular padding, no bias, no BN), widths "
               f"{settings.width} then {2 * settings.width}, ReLU or PReLU (a₀ = 0.25) "
               f"after each; input N(0, 1) of shape "
               f"{settings.batch}x3x{settings.size}x{settings.size}; backward from a N(0, 1) "
               f"output gradient; stds are root-mean-square over {settings.seeds} seeds (Eq. 9 "
               "predicts the expected variance)."),
        result=result, tables=[table], plots=["signal.png"],
        verdict="reproduced" if ok_all else "not reproduced", verdict_note=note,
        command=command, data=data, seconds=time.perf_counter() - t0,
    )
