"""The training loop: ``train(cfg) -> TrainResult``, the one loop of the package.

``rectifiers train``, the reproduction experiments, the bench and the throughput benchmark all
run it. It reads top to bottom (nanoGPT style): build data and model, initialise the model with
a data batch, SGD with the paper's settings and :class:`rectifiers.optim.LRSchedule`, then
``for epoch: for batch: train_step``; validate each epoch; write a timm-like run directory on
rank 0 (:mod:`rectifiers.train.outputs`). No callback machinery: :func:`train` takes one
``on_step`` and one ``on_epoch`` function for observers (gradient norms, slopes, dead units),
and :func:`train_step` is the one place where gradients are zeroed and the optimiser steps.

Exactness: a checkpoint holds the model, the optimiser's momentum buffers, the grad scaler, the
schedule, the data loader's position (mid-epoch too) and every RNG state, so a run killed at any
point and resumed with ``resume=...`` produces bit-identical weights (tested with SIGKILL); a run
stopped by ``max_steps`` and resumed equals the uninterrupted run.

Divergence guard: a step whose loss is non-finite, or over ``EXPLODE_FACTOR`` times the run's
start (its first loss, at least ``ln(num_classes)``), is not applied; the run stops with
:class:`DivergenceError`, and the last checkpoint (whose weights are finite) is kept.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rectifiers.analysis.slopes import format_slopes, learned_slopes
from rectifiers.errors import ConfigError, UserError
from rectifiers.models.registry import create_model, initialize_model, model_description
from rectifiers.optim import LRSchedule, param_groups
from rectifiers.runtime import check_amp, resolve_device
from rectifiers.train import checkpoint as ckpt
from rectifiers.train import distributed as dist_utils
from rectifiers.train import outputs, rundir
from rectifiers.train import rng as rng_state
from rectifiers.train.config import TrainConfig
from rectifiers.train.data import TrainData, build_data, first_batch
from rectifiers.train.distributed import DistInfo
from rectifiers.train.outputs import SUMMARY_COLUMNS
from rectifiers.train.step import StepOutput, evaluate, train_step

__all__ = ["EXPLODE_FACTOR", "SUMMARY_COLUMNS", "DivergenceError", "StepInfo", "StepOutput",
           "TrainResult", "evaluate", "train", "train_step"]

# A loss this many times the run's start (its first loss, at least ln(num_classes)) has
# exploded: SGD does not come back from there (--lr 100 reached 1.9e27 and stayed at chance).
EXPLODE_FACTOR = 1000.0


class DivergenceError(RuntimeError):
    """The loss became non-finite or exploded. ``step`` names the step; ``history`` holds the
    finished epochs; ``checkpoint`` is the last good checkpoint (None if there is none)."""

    def __init__(self, message: str, step: int, history: list[dict[str, Any]],
                 checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.history = history
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    model: nn.Module  # the trained model (unwrapped from DDP/compile), in eval mode
    history: list[dict[str, Any]]  # one row per epoch, keys = SUMMARY_COLUMNS (+ "partial")
    final: dict[str, Any]  # last epoch's metrics (val_top1_err, val_acc, ...)
    steps: int  # optimiser steps taken in total
    out_dir: Path | None
    slopes: list[dict[str, Any]] = field(default_factory=list)  # learned PReLU slopes per layer
    # the input normalisation the run used (JSON dict, as in checkpoints): evaluate with it
    normalization: dict[str, Any] | None = None
    initial: dict[str, float] | None = None  # validation before training (eval_at_start=True)

    @property
    def val_acc(self) -> float:
        return 1.0 - self.final["val_top1_err"]


@dataclass
class StepInfo:
    """What ``on_step`` receives, after ``backward`` (and gradient clipping), before the update:
    the gradients are in ``p.grad`` of ``model``'s parameters (clipped if ``grad_clip`` is set).
    """

    step: int  # 1-based index of this optimiser step in the run
    epoch: int  # 1-based epoch
    loss: float  # the batch's mean loss over all ranks
    grad_norm: float  # global L2 norm of the gradients before clipping
    lr: float  # the lr this update uses
    model: nn.Module  # the unwrapped model


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    """Everything one training run holds; what a checkpoint saves."""

    cfg: TrainConfig
    device: torch.device
    info: DistInfo
    data: TrainData
    raw_model: nn.Module  # what we checkpoint and return
    model: nn.Module  # raw_model, maybe wrapped in DDP / torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    schedule: LRSchedule
    meta: dict[str, Any]  # the model and data description stored in every checkpoint
    out: Path | None
    log: Callable[..., None]
    epoch: int = 0
    step: int = 0
    mid_epoch: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # finished epochs only
    partial: dict[str, Any] | None = None  # the row of an epoch cut by max_steps
    best_err: float = math.inf
    run_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, correct, n
    epoch_time: float = 0.0
    first_loss: float | None = None  # the divergence guard's reference
    last_lr: float = 0.0  # the lr of the latest step (reported per epoch)
    steplog: outputs.StepLog = field(default_factory=lambda: outputs.StepLog(None))
    t_run: float = 0.0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.train)

    @property
    def loss_limit(self) -> float:
        if self.first_loss is None:
            return math.inf
        return EXPLODE_FACTOR * max(self.first_loss, math.log(max(self.data.num_classes, 2)))


def train(cfg: TrainConfig, *, model: nn.Module | None = None, train_set: Any = None,
          val_set: Any = None, on_step: Callable[[StepInfo], None] | None = None,
          on_epoch: Callable[[dict[str, Any], nn.Module], None] | None = None,
          eval_at_start: bool = False) -> TrainResult:
    """Train with ``cfg``; return the history, final metrics and the model.

    Args:
        cfg: the settings (``rectifiers train``'s flags).
        model: a model built (and initialised) by the caller, e.g. with
            ``rectifiers.models.create_model(..., generator=...)``; ``cfg.model``, ``act``,
            ``init``, ``model_kwargs`` and ``dropout`` are then not used. Default: built from
            ``cfg`` and initialised with ``cfg.init`` on a training batch (so ``lsuv`` works).
        train_set, val_set: in-memory datasets (uint8 ``images`` (N,C,H,W), int64 ``labels``,
            optional ``num_classes``), used as they are instead of ``cfg.dataset``.
        on_step: called with a :class:`StepInfo` at every step, before the update.
        on_epoch: called with each epoch's history row and the model, after validation (and
            with row ``{"epoch": 0, val_...}`` before training if ``eval_at_start``).
        eval_at_start: validate before the first step (``TrainResult.initial``).

    Under ``torchrun`` this runs data parallel (see :mod:`rectifiers.train.distributed`).
    Raises :class:`DivergenceError` if the loss becomes non-finite or explodes.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    check_amp(device, cfg.amp)
    info = dist_utils.setup(device.type)
    finished = False
    try:
        run = _start(cfg, device, info, model, train_set, val_set)
        try:
            result = _loop(run, on_step, on_epoch, eval_at_start)
        finally:
            run.steplog.close()
        finished = True
        return result
    finally:
        dist_utils.teardown(info, finished)


def _start(cfg: TrainConfig, device: torch.device, info: DistInfo, model: nn.Module | None,
           train_set: Any, val_set: Any) -> _Run:
    """Data, model, optimiser, schedule, run directory; then resume or initialise."""
    main = info.is_main
    log = partial(print, flush=True) if (main and cfg.verbose) else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # Same seed on every rank for the model (DDP also broadcasts rank 0's weights); a
    # per-rank seed after it, so that dropout masks differ between ranks.
    rng_state.seed_everything(cfg.seed)
    data = build_data(cfg, info, train_set, val_set)
    built_here = model is None
    if built_here:
        model_kwargs = dict(cfg.model_kwargs)
        if cfg.dropout is not None:
            model_kwargs["drop_rate"] = cfg.dropout
        model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans,
                             act=cfg.act, init=None, **model_kwargs)
    raw_model = model
    meta = {**data.metadata, **_describe(raw_model, cfg, built_here),
            "config": cfg.to_dict(), "world_size": info.world_size,
            "torch_version": torch.__version__}

    out = Path(cfg.out_dir) if cfg.out_dir else None
    resume_path = _prepare_run_dir(cfg, out, info)
    if built_here and resume_path is None:
        # Initialise after building, with a training batch for data-dependent schemes.
        initialize_model(raw_model, cfg.init, data=first_batch(data.train, cfg.init))
    torch.manual_seed(cfg.seed + 1_000_003 * info.rank)
    raw_model.to(device)
    if cfg.channels_last:
        raw_model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.SGD(param_groups(raw_model, cfg.weight_decay), lr=cfg.lr,
                                momentum=cfg.momentum, nesterov=cfg.nesterov)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    spe = len(data.train)
    schedule = LRSchedule(optimizer, cfg.sched, steps_per_epoch=spe, epochs=cfg.epochs,
                          warmup_steps=int(round(cfg.warmup_epochs * spe)), lr_min=cfg.lr_min,
                          decay=cfg.lr_decay, decay_epochs=cfg.decay_epochs,
                          patience=cfg.patience_epochs, threshold=cfg.plateau_threshold,
                          max_drops=cfg.max_lr_drops)
    wrapped = raw_model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    run = _Run(cfg, device, info, data, raw_model, wrapped, optimizer, scaler, schedule, meta,
               out, log)

    if resume_path is not None:
        _resume(run, resume_path)
        if cfg.max_steps and run.step >= cfg.max_steps:
            # nothing to train: refuse before final.json/args.yaml of the run are rewritten
            raise ConfigError(
                f"--max-steps {cfg.max_steps}: the run in {resume_path.parent} is already at "
                f"step {run.step}. Nothing was changed; give a larger --max-steps (or none).")
    if out is not None and main:
        outputs.write_args(out, cfg.to_dict())
        run.steplog = outputs.StepLog(out / "log.jsonl")
    n_params = sum(p.numel() for p in raw_model.parameters())
    log(f"model {meta['model']} (act={meta['act']}, init={meta['init']}, "
        f"{n_params / 1e6:.3f}M params) on {device}"
        f"{f' x{info.world_size} ranks' if info.enabled else ''}; {meta['dataset']}: "
        f"{spe} steps/epoch of {cfg.batch_size} (global), amp={cfg.amp}")
    if out is not None and main and not outputs.have_matplotlib():
        log("note: matplotlib is not installed, so curves.png is not drawn "
            "(pip install 'rectifiers[plots]')")
    return run


def _describe(model: nn.Module, cfg: TrainConfig, built_here: bool) -> dict[str, Any]:
    """The checkpoint's description of the model (registry.model_description)."""
    if not built_here and cfg.out_dir is None and not hasattr(model, "model_config"):
        # A caller's own module that is never checkpointed needs no rebuildable description.
        return {"model": type(model).__name__, "model_kwargs": {}, "act": "?", "init": "?"}
    desc = model_description(model)
    if built_here:
        desc["init"] = cfg.init  # initialised below (or restored from the checkpoint)
    return desc


def _resume(run: _Run, path: Path) -> None:
    cfg, info = run.cfg, run.info
    state, meta = ckpt.load_checkpoint(path, map_location="cpu", for_resume=True)
    ckpt.check_model_state(run.raw_model, state["model"], meta, str(path),
                           model_name=run.meta["model"])
    changed = cfg.resume_changes(meta.get("config", {}))
    if changed:
        raise ConfigError(
            f"cannot resume {path} with other settings than it was trained with "
            f"({'; '.join(changed)}): the resumed run would not be the run it continues. Drop "
            "those flags (rectifiers train takes the saved settings on --resume), or start a "
            "new run with another --out-dir")
    run.raw_model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.schedule.load_state_dict(state["schedule"])
    run.epoch, run.step, run.mid_epoch = meta["epoch"], meta["step"], meta["mid_epoch"]
    run.history, run.best_err = meta["history"], float(meta["best_err"])
    run.first_loss = meta.get("first_loss")
    ranks = state["ranks"]
    if len(ranks) != info.world_size:
        if run.mid_epoch:
            raise ckpt.CheckpointError(
                f"{path} was written mid-epoch by {len(ranks)} process(es); resume it "
                f"with the same number of processes (got {info.world_size})")
        torch.manual_seed(cfg.seed + 1_000_003 * info.rank + run.epoch)
    else:
        rank = ranks[info.rank]
        rng_state.set_state(rank["rng"])
        if run.mid_epoch:
            run.data.train.load_state_dict(rank["loader"])
            run.run_sums = list(rank["run_sums"])
            run.epoch_time = float(rank["epoch_time"])
    run.log(f"resumed from {path} at epoch {run.epoch + 1}, step {run.step}")


def _loop(run: _Run, on_step, on_epoch, eval_at_start: bool) -> TrainResult:
    cfg = run.cfg
    initial = None
    if eval_at_start:
        initial = evaluate(run.raw_model, run.data.val, run.device, cfg.amp, cfg.channels_last,
                           run.info)
        if on_epoch is not None:
            on_epoch({"epoch": 0, **initial}, run.raw_model)
    run.t_run = time.perf_counter() - sum(h["epoch_time_s"] for h in run.history)
    while run.epoch < cfg.epochs and not _max_steps_reached(run):
        stopped = _train_epoch(run, on_step)
        row = _end_epoch(run, partial=stopped and run.step % run.steps_per_epoch != 0)
        if on_epoch is not None:
            on_epoch(row, run.raw_model)
    return _finish(run, initial)


def _max_steps_reached(run: _Run) -> bool:
    return bool(run.cfg.max_steps) and run.step >= run.cfg.max_steps


def _train_epoch(run: _Run, on_step) -> bool:
    """Train until the end of the epoch (True: stopped early by ``max_steps``)."""
    cfg, info = run.cfg, run.info
    if not run.mid_epoch:
        run.data.train.set_epoch(run.epoch)
        run.run_sums, run.epoch_time = [0.0, 0.0, 0.0], 0.0
    run.mid_epoch = False
    run.model.train()
    t0 = time.perf_counter()
    t_log, n_log = t0, 0
    remaining = run.steps_per_epoch - (run.step - run.epoch * run.steps_per_epoch)
    bar = _progress(run.data.train, remaining, f"epoch {run.epoch + 1}/{cfg.epochs}",
                    cfg.progress and info.is_main)
    try:
        for x, y in bar:
            x = x.to(run.device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(run.device, non_blocking=True)
            lr = run.last_lr = run.schedule.lr
            hook = None
            if on_step is not None:
                def hook(o: StepOutput, lr: float = lr) -> None:
                    on_step(StepInfo(run.step + 1, run.epoch + 1, o.loss, o.grad_norm, lr,
                                     run.raw_model))
            out = train_step(run.model, x, y, run.optimizer, amp=cfg.amp,
                             grad_clip=cfg.grad_clip, label_smoothing=cfg.label_smoothing,
                             scaler=run.scaler, loss_limit=run.loss_limit,
                             need_grad_norm=on_step is not None, info=info, before_update=hook)
            if not out.updated:
                _diverged(run, out.loss)
            run.schedule.step()
            run.step += 1
            if run.first_loss is None:
                run.first_loss = out.loss
            n = y.numel()
            run.run_sums[0] += out.local_loss * n
            run.run_sums[1] += (out.logits.argmax(1) == y).sum().item()
            run.run_sums[2] += n
            n_log += n
            if run.step % cfg.log_every == 0:
                now = time.perf_counter()
                run.steplog.write({
                    "step": run.step, "epoch": run.epoch + 1, "loss": out.loss, "lr": lr,
                    "images_per_s": n_log * info.world_size / max(now - t_log, 1e-9),
                    "time_s": now - run.t_run})
                t_log, n_log = now, 0
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{out.loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            if _max_steps_reached(run):
                return True
            if run.out is not None and cfg.checkpoint_every and \
                    run.step % cfg.checkpoint_every == 0 and run.step % run.steps_per_epoch:
                # Checkpoint time is not training time: keep it out of images/s.
                run.epoch_time += time.perf_counter() - t0
                _save(run, run.out / ckpt.LAST, in_epoch=True, next_epoch=run.epoch)
                t0 = time.perf_counter()
        return False
    finally:
        run.epoch_time += time.perf_counter() - t0
        if hasattr(bar, "close"):
            bar.close()


def _end_epoch(run: _Run, partial: bool) -> dict[str, Any]:
    """Validate, feed the schedule, log, checkpoint. A ``partial`` epoch (cut by max_steps) is
    reported but does not enter the history, the schedule or the best checkpoint, so that the
    resumed run finishes that epoch exactly as an uninterrupted run would."""
    cfg, info = run.cfg, run.info
    tl, tc, tn = dist_utils.all_reduce_sum(run.run_sums, run.device, info)
    val = evaluate(run.raw_model, run.data.val, run.device, cfg.amp, cfg.channels_last, info)
    row = {"epoch": run.epoch + 1, "train_loss": tl / max(tn, 1),
           "train_acc": tc / max(tn, 1), **val,
           "lr": run.last_lr,
           "images_per_s": tn / max(run.epoch_time, 1e-9), "epoch_time_s": run.epoch_time,
           "time_s": time.perf_counter() - run.t_run}
    is_best = False
    if partial:
        row["partial"] = True
        run.partial = row
        run.mid_epoch = True
    else:
        run.history.append(row)
        run.partial = None
        if run.schedule.epoch_end(val["val_top1_err"]):
            run.log(f"  validation error plateaued: lr divided by {1 / cfg.lr_decay:g} "
                    f"(drop {run.schedule.drops}/{cfg.max_lr_drops})")
        is_best = val["val_top1_err"] < run.best_err
        run.best_err = min(run.best_err, val["val_top1_err"])
        run.epoch += 1
    run.log(f"epoch {row['epoch']:>3}/{cfg.epochs}{' (partial)' if partial else ''}  train "
            f"loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | val loss "
            f"{val['val_loss']:.4f} top-1 err {val['val_top1_err']:.4f} top-5 err "
            f"{val['val_top5_err']:.4f} | lr {row['lr']:.2e} | {row['images_per_s']:.0f} img/s, "
            f"{run.epoch_time:.1f}s")
    if run.out is not None:
        _save(run, run.out / ckpt.LAST, in_epoch=partial, next_epoch=run.epoch)
        if info.is_main:
            if is_best:
                ckpt.copy_checkpoint(run.out / ckpt.LAST, run.out / ckpt.BEST)
            shown = run.history + ([run.partial] if run.partial else [])
            outputs.write_summary(run.out, shown)
            if outputs.have_matplotlib():
                outputs.plot_curves(run.out, shown)
            _write_skipped(run)
    return row


def _write_skipped(run: _Run, announce: bool = False) -> None:
    """--skip-bad-images: list the images left out (this rank's shard) in the run directory."""
    for loader, name in ((run.data.train, "skipped_images.txt"),
                         (run.data.val, "skipped_images_val.txt")):
        path = loader.write_skipped(run.out, name) if hasattr(loader, "write_skipped") else None
        if path is not None and announce:
            run.log(f"skipped {loader.skipped} unreadable image(s); list in {path}")


def _save(run: _Run, path: Path, in_epoch: bool, next_epoch: int) -> None:
    """Checkpoint the run. Every rank contributes its RNG and loader state; rank 0 writes.
    Non-finite weights are never saved: the run stops and the previous file stays."""
    if not all(torch.isfinite(t).all() for t in run.raw_model.state_dict().values()
               if t.is_floating_point()):
        _diverged(run, math.nan, weights=True)
    rank_state = {"rng": rng_state.get_state(),
                  "loader": run.data.train.state_dict() if in_epoch else None,
                  "run_sums": list(run.run_sums), "epoch_time": run.epoch_time}
    ranks = dist_utils.gather_rank_states(rank_state, run.info)
    if not run.info.is_main:
        return
    state = {"model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scaler": run.scaler.state_dict() if run.scaler is not None else None,
             "schedule": run.schedule.state_dict(), "ranks": ranks}
    meta = dict(run.meta, epoch=next_epoch, step=run.step, mid_epoch=in_epoch,
                history=run.history, best_err=run.best_err, first_loss=run.first_loss,
                val_top1_err=run.history[-1]["val_top1_err"] if run.history else None)
    ckpt.save_checkpoint(path, state, meta)


def _diverged(run: _Run, loss: float, weights: bool = False) -> None:
    """Stop the run with one message naming the step and the last good checkpoint."""
    step = run.step + (0 if weights else 1)
    where = f"at step {step} (epoch {run.epoch + 1})"
    if weights:
        msg = f"the weights became non-finite {where}; training stopped."
    elif math.isfinite(loss):
        msg = (f"loss exploded to {loss:.3g} {where}, over {EXPLODE_FACTOR:g}x its start "
               f"({run.first_loss:.3g}); training stopped.")
    else:
        msg = f"loss is {loss} {where}; training stopped."
    last = run.out / ckpt.LAST if run.out is not None else None
    good = last is not None and last.is_file() and ckpt.weights_finite(last)
    if good:
        msg += f" The last good checkpoint was kept: {last} (step {ckpt.read_meta(last)['step']})."
    elif run.out is not None:
        msg += " No good checkpoint was written before it."
    msg += " Lower --lr, add --grad-clip, or use another --init."
    run.steplog.write({"step": step, "epoch": run.epoch + 1, "loss": str(loss),
                       "diverged": True})
    raise DivergenceError(msg, step, run.history, last if good else None)


def _finish(run: _Run, initial: dict[str, float] | None) -> TrainResult:
    raw_model = run.raw_model.eval()
    slopes = learned_slopes(raw_model)
    history = run.history + ([run.partial] if run.partial else [])
    final = dict(history[-1]) if history else {}
    if final:
        final["val_acc"] = 1.0 - final["val_top1_err"]
        final["best_val_top1_err"] = min(run.best_err, final["val_top1_err"])
    if final:
        run.log(f"\nfinal test accuracy {100 * final['val_acc']:.2f}% (top-1 error "
                f"{100 * final['val_top1_err']:.2f}%, best "
                f"{100 * final['best_val_top1_err']:.2f}%), {final['time_s']:.0f}s")
        if slopes:
            run.log("learned slopes (PReLU a per layer):\n" + format_slopes(slopes))
    if run.out is not None:
        if run.info.is_main:
            _write_skipped(run, announce=True)
            outputs.write_final(run.out, final, slopes, run.step)
        run.log(f"run directory: {run.out}")
    return TrainResult(raw_model, history, final, run.step, run.out, slopes,
                       run.data.normalization, initial)


# --------------------------------------------------------------------------- helpers


def _prepare_run_dir(cfg: TrainConfig, out: Path | None, info: DistInfo) -> Path | None:
    """Rank 0 readies the run directory (refuses to reuse a run without --resume/--overwrite,
    cleans temporaries, repairs the step log); every rank gets the checkpoint to resume from."""
    if out is None:
        if cfg.resume == "auto":
            raise ConfigError("--resume auto needs --out-dir (it continues that run)")
        return ckpt.resolve(cfg.resume, prefer="last") if cfg.resume else None
    found: dict[str, str | None] = {"path": None, "error": None}
    if info.is_main:
        try:
            rd = rundir.prepare_run_dir(out, resume=cfg.resume, overwrite=cfg.overwrite)
            found["path"] = str(rd.resume_path) if rd.resume_path else None
        except UserError as e:
            if not info.enabled:
                raise
            found["error"] = str(e)  # the other ranks must not wait for rank 0 forever
            dist_utils.broadcast_object(found, info)
            raise
    found = dist_utils.broadcast_object(found, info)
    if found["error"]:
        raise UserError(found["error"])
    return Path(found["path"]) if found["path"] else None


def _progress(iterable, total: int, desc: str, enabled: bool):
    """tqdm bar on an interactive terminal; the plain iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
