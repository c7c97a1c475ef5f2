"""The runs behind ReLU vs PReLU (Table 2), the learned slopes (Table 1) and dead units.

The same small PReLU-net is trained with four activations - ReLU, PReLU channel-shared,
PReLU channel-wise, and LeakyReLU(0.25), i.e. PReLU *frozen* at its initial value, the
control that separates a learned slope from a merely non-zero one - over several seeds.
Seeds are paired: seed s gives every activation the same batch order and weights drawn
from the same random stream. Each run records its test error per epoch, its learned slopes,
a slope trace (every PReLU layer's mean slope every ``trace_every`` steps) and dead units per
epoch, and is kept in the run store, so the three report sections
(:mod:`rectifiers.experiments.relu_vs_prelu`, :mod:`rectifiers.experiments.table1`) read the
same runs and a finished run is never trained again.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rectifiers.analysis import activation_sites, dead_unit_rates, learned_slopes
from rectifiers.experiments.runs import (
    RunStore,
    heldout_batches,
    open_data,
    run_config,
    train_run,
)
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


def _is_quick(settings: RunSettings) -> bool:
    """Whether ``settings`` is the quick preset, whatever its seeds and data source."""
    same = ("seeds", "first_seed", "data_source")
    return dataclasses.replace(settings, **{k: getattr(PRESETS["quick"], k) for k in same}) \
        == PRESETS["quick"]
