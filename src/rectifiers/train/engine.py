"""The training loop: ``train(cfg) -> TrainResult``.

One plain loop, readable top to bottom (nanoGPT style): build data and model, SGD with the
paper's settings, an lr schedule, then ``for epoch: for batch: forward, backward, step``; validate
each epoch; write a timm-like run directory on rank 0. No callbacks: to change the loop, edit it.

Exactness: a checkpoint holds the model, the optimiser's momentum buffers, the grad scaler, the
schedule, the data loader's position (mid-epoch too) and every RNG state, so a run killed at any
point and resumed with ``resume=...`` produces bit-identical weights (tested with SIGKILL).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rectifiers.analysis.slopes import format_slopes, learned_slopes
from rectifiers.files import atomic_write_bytes, atomic_write_text
from rectifiers.optim import param_groups
from rectifiers.train import checkpoint as ckpt
from rectifiers.train import distributed as dist_utils
from rectifiers.train.config import TrainConfig
from rectifiers.train.distributed import DistInfo

SUMMARY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_top1_err", "val_top5_err",
    "lr", "images_per_s", "epoch_time_s", "time_s",
)


class DivergenceError(RuntimeError):
    """The loss became non-finite. ``step`` names the step; ``history`` holds finished epochs."""

    def __init__(self, message: str, step: int, history: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.step = step
        self.history = history


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank)."""

    model: nn.Module  # the trained model (unwrapped from DDP/compile), in eval mode
    history: list[dict[str, Any]]  # one row per epoch, keys = SUMMARY_COLUMNS
    final: dict[str, Any]  # last epoch's metrics (val_top1_err, val_acc, ...)
    steps: int  # optimiser steps taken in total
    out_dir: Path | None
    slopes: list[dict[str, Any]] = field(default_factory=list)  # learned PReLU slopes per layer
    # the input normalisation the run used (JSON dict, as in checkpoints): evaluate with it
    normalization: dict[str, Any] | None = None

    @property
    def val_acc(self) -> float:
        return 1.0 - self.final["val_top1_err"]


# --------------------------------------------------------------------------- schedule


class LRSchedule:
    """The lr as a function of the step (warm-up, cosine, step) and of validation (plateau).

    ``lr(step) = base_lr * warmup(step) * shape(step) * scale``, where ``scale`` is multiplied
    by ``lr_decay`` at each plateau (the paper: 1e-2 -> 1e-3 -> 1e-4 "when the error plateaus").
    State is a small JSON dict, saved in checkpoints.
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, steps_per_epoch)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0
        self.drops = 0

    def lr(self, step: int) -> float:
        cfg = self.cfg
        lr = cfg.lr * self.scale
        if self.warmup_steps and step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        if cfg.sched == "cosine":
            t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            return cfg.lr_min + (lr - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        if cfg.sched == "step":
            epoch = step // self.steps_per_epoch
            return lr * cfg.lr_decay ** sum(epoch >= e for e in cfg.decay_epochs)
        return lr  # constant, plateau

    def epoch_end(self, val_err: float) -> bool:
        """Feed the epoch's validation error; returns True if the lr was just divided."""
        if self.cfg.sched != "plateau":
            return False
        if val_err < self.best * (1.0 - self.cfg.plateau_threshold):
            self.best, self.bad_epochs = val_err, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.cfg.patience_epochs and self.drops < self.cfg.max_lr_drops:
            self.scale *= self.cfg.lr_decay
            self.drops += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs,
                "drops": self.drops}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.drops = int(state["drops"])


# --------------------------------------------------------------------------- helpers


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the local CUDA device if there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but CUDA is not available; "
                             "use --device cpu or auto")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # numpy's legacy state: (str, uint32 array, int, int, float) -> JSON-able pieces
        "numpy": _numpy_state_to_json(np.random.get_state()),  # noqa: NPY002 (global legacy RNG)
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(_numpy_state_from_json(state["numpy"]))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _numpy_state_to_json(s: tuple) -> dict[str, Any]:
    return {"kind": s[0], "keys": torch.from_numpy(np.asarray(s[1], dtype=np.int64)),
            "pos": int(s[2]), "has_gauss": int(s[3]), "gauss": float(s[4])}


def _numpy_state_from_json(d: dict[str, Any]) -> tuple:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["kind"], keys, d["pos"], d["has_gauss"], d["gauss"])


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _progress(iterable, total: int, desc: str, enabled: bool):
    """tqdm bar on an interactive terminal; the plain iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------- data


@dataclass
class _Data:
    train: Any  # BatchLoader: iterable of (x float32 NCHW, y int64), set_epoch, state_dict
    val: Any
    num_classes: int
    in_chans: int
    image_size: int
    normalization: Any


class _Subset:
    """The first ``n`` samples of a seeded shuffle of an in-memory dataset (class-balanced in
    expectation; the same subset for every rank and every resume)."""

    def __init__(self, ds: Any, n: int | None, seed: int) -> None:
        self.num_classes = ds.num_classes
        self.classes = getattr(ds, "classes", None)
        self.images, self.labels = ds.images, ds.labels
        if n is not None and n < len(ds.labels):
            g = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(ds.labels), generator=g)[:n].sort().values
            self.images, self.labels = self.images[keep], self.labels[keep]


def _build_data(cfg: TrainConfig, info: DistInfo) -> _Data:
    from rectifiers import data as rdata

    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} (global) is not divisible by the "
                         f"world size {info.world_size}; pick a multiple of {info.world_size}")
    per_rank = cfg.batch_size // info.world_size
    eval_batch = max(per_rank, 256 // info.world_size)  # no gradients: bigger batches are free
    common = {"rank": info.rank, "world_size": info.world_size, "seed": cfg.seed}
    augment = cfg.augment if cfg.augment != "none" else None
    if augment == "auto":
        augment = "default" if cfg.dataset == "folder" else "flip"
    if cfg.dataset == "folder":
        if not cfg.data_dir:
            raise ValueError("dataset='folder' needs data_dir (a directory with train/ and val/)")
        if cfg.max_train_samples or cfg.max_val_samples:
            raise ValueError("max_train_samples/max_val_samples apply to in-memory datasets "
                             "(fashion_mnist, synthetic), not to folders")
        train = rdata.build_loader("folder", per_rank, train=True, augment=augment,
                                   root=cfg.data_dir, num_workers=cfg.workers, **common)
        val = rdata.build_loader("folder", eval_batch, train=False, root=cfg.data_dir,
                                 normalization=train.normalization, num_workers=cfg.workers,
                                 **common)
    else:
        if cfg.dataset == "synthetic":
            def make(split: str, n: int) -> Any:
                return rdata.SyntheticDataset(
                    num_samples=n, num_classes=cfg.synthetic_classes,
                    image_size=cfg.synthetic_image_size, in_chans=cfg.synthetic_chans,
                    seed=cfg.seed, split=split)
            train_set = make("train", cfg.synthetic_size)
            val_set = make("val", max(cfg.synthetic_size // 4, cfg.synthetic_classes))
        else:
            train_set = rdata.FashionMNIST(cfg.data_dir, "train")
            val_set = rdata.FashionMNIST(cfg.data_dir, "test")
        # Subsets are drawn with a seed of their own, so changing the data subset does not
        # change the model seed and vice versa.
        train_set = _Subset(train_set, cfg.max_train_samples, cfg.seed + 7919)
        val_set = _Subset(val_set, cfg.max_val_samples, cfg.seed + 104729)
        train = rdata.build_loader(train_set, per_rank, train=True, augment=augment, **common)
        val = rdata.build_loader(val_set, eval_batch, train=False,
                                 normalization=train.normalization, **common)
    return _Data(train, val, train.num_classes, train.in_chans, train.image_size,
                 _jsonable(train.normalization))


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: str = "none",
             channels_last: bool = False, info: DistInfo | None = None) -> dict[str, float]:
    """Mean loss and top-1/top-5 error over a loader (sums are all-reduced under DDP)."""
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = 0.0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices
        hit = topk.eq(y[:, None])
        top1 += hit[:, 0].sum().item()
        top5 += hit.any(dim=1).sum().item()
        n += y.numel()
    model.train(was_training)
    loss_sum, top1, top5, n = dist_utils.all_reduce_sum([loss_sum, top1, top5, n], device, info)
    n = max(n, 1.0)
    return {"val_loss": loss_sum / n, "val_top1_err": 1.0 - top1 / n,
            "val_top5_err": 1.0 - top5 / n}


# --------------------------------------------------------------------------- training


def train(cfg: TrainConfig) -> TrainResult:
    """Train a model with ``cfg`` and return the history, final metrics and the model.

    Under ``torchrun`` this runs data parallel (see :mod:`rectifiers.train.distributed`).
    Raises :class:`DivergenceError` if the loss becomes non-finite (the last good checkpoint,
    if any, is kept).
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device (it relies on a grad scaler); "
                         "on CPU use amp='bf16' or 'none'")
    info = dist_utils.setup(device.type)
    try:
        return _train(cfg, device, info)
    finally:
        dist_utils.teardown(info)


def _train(cfg: TrainConfig, device: torch.device, info: DistInfo) -> TrainResult:
    from rectifiers.models import create_model

    main = info.is_main
    log = print if (main and cfg.verbose) else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # ---- data and model. Same seed on every rank for the model (DDP also broadcasts rank 0's
    # weights); then a per-rank seed so dropout masks differ between ranks.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002 (user code may draw from it)
    torch.manual_seed(cfg.seed)
    data = _build_data(cfg, info)
    model_kwargs = dict(cfg.model_kwargs)
    if cfg.dropout is not None:
        model_kwargs["drop_rate"] = cfg.dropout
    model = create_model(cfg.model, num_classes=data.num_classes, in_chans=data.in_chans,
                         act=cfg.act, init=cfg.init, **model_kwargs)
    torch.manual_seed(cfg.seed + 1_000_003 * info.rank)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    raw_model = model  # what we checkpoint and return

    optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                momentum=cfg.momentum, nesterov=cfg.nesterov)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has fewer samples than one per-rank batch "
                         f"({cfg.batch_size // info.world_size}); lower batch_size")
    schedule = LRSchedule(cfg, steps_per_epoch)

    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)

    meta_base = {
        "model": cfg.model, "model_kwargs": model_kwargs, "act": cfg.act, "init": cfg.init,
        "num_classes": data.num_classes, "in_chans": data.in_chans,
        "image_size": data.image_size, "normalization": data.normalization,
        "dataset": cfg.dataset, "config": cfg.to_dict(), "world_size": info.world_size,
        "torch_version": torch.__version__,
    }

    # ---- run directory (rank 0 only)
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        _write_args(out, cfg)

    # ---- resume
    epoch, step, mid_epoch = 0, 0, False
    history: list[dict[str, Any]] = []
    best_err = math.inf
    run_sums = [0.0, 0.0, 0.0]  # train loss sum, correct, samples (this rank, current epoch)
    epoch_time = 0.0
    resume_path = _resume_path(cfg, out)
    if resume_path is not None:
        state, meta = ckpt.load_checkpoint(resume_path, map_location="cpu")
        ckpt.check_model_state(raw_model, state["model"], meta, str(resume_path),
                               model_name=cfg.model)
        _warn_config_changes(meta.get("config", {}), cfg, log)
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        schedule.load_state_dict(state["schedule"])
        epoch, step, mid_epoch = meta["epoch"], meta["step"], meta["mid_epoch"]
        history, best_err = meta["history"], float(meta["best_err"])
        ranks = state["ranks"]
        if len(ranks) != info.world_size:
            if mid_epoch:
                raise ckpt.CheckpointError(
                    f"{resume_path} was written mid-epoch by {len(ranks)} process(es); resume it "
                    f"with the same number of processes (got {info.world_size})")
            torch.manual_seed(cfg.seed + 1_000_003 * info.rank + epoch)
        else:
            rank_state = ranks[info.rank]
            _set_rng_state(rank_state["rng"])
            if mid_epoch:
                data.train.load_state_dict(rank_state["loader"])
                run_sums = list(rank_state["run_sums"])
                epoch_time = float(rank_state["epoch_time"])
        if out is not None and main:
            _truncate_steplog(out / "log.jsonl", step)
        log(f"resumed from {resume_path} at epoch {epoch + 1}, step {step}")

    def save(path: Path, in_epoch: bool, next_epoch: int) -> None:
        # Every rank contributes its RNG and loader state; rank 0 writes the file.
        rank_state = {"rng": _rng_state(), "loader": data.train.state_dict() if in_epoch else None,
                      "run_sums": list(run_sums), "epoch_time": epoch_time}
        ranks = _gather_rank_states(rank_state, info)
        if not main or out is None:
            return
        state = {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None,
                 "schedule": schedule.state_dict(), "ranks": ranks}
        meta = dict(meta_base, epoch=next_epoch, step=step, mid_epoch=in_epoch,
                    history=history, best_err=best_err,
                    val_top1_err=history[-1]["val_top1_err"] if history else None)
        ckpt.save_checkpoint(path, state, meta)

    n_params = sum(p.numel() for p in raw_model.parameters())
    log(f"model {cfg.model} (act={cfg.act}, init={cfg.init}, {n_params / 1e6:.3f}M params) on "
        f"{device}{f' x{info.world_size} ranks' if info.enabled else ''}; {cfg.dataset}: "
        f"{steps_per_epoch} steps/epoch of {cfg.batch_size} (global), amp={cfg.amp}")
    steplog = open(out / "log.jsonl", "a") if (out is not None and main) else None  # noqa: SIM115
    t_run = time.perf_counter() - sum(h["epoch_time_s"] for h in history)
    stop = False
    try:
        while epoch < cfg.epochs and not stop:
            # ---- one epoch of training
            if not mid_epoch:
                data.train.set_epoch(epoch)
                run_sums, epoch_time = [0.0, 0.0, 0.0], 0.0
            mid_epoch = False
            model.train()
            t0 = time.perf_counter()
            t_log, n_log = t0, 0
            remaining = steps_per_epoch - (step - epoch * steps_per_epoch)
            bar = _progress(data.train, remaining, f"epoch {epoch + 1}/{cfg.epochs}",
                            cfg.progress and main)
            for x, y in bar:
                lr = schedule.lr(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = x.to(device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = y.to(device, non_blocking=True)

                with _autocast(device, cfg.amp):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()

                # Global mean loss: what a single process with the whole batch would see.
                loss_global = dist_utils.all_reduce_mean_(loss.detach().clone(), info).item()
                if not math.isfinite(loss_global):
                    # Skip the update: the weights and the last checkpoint stay good.
                    msg = (f"loss is {loss_global} at step {step + 1} (epoch {epoch + 1}); "
                           f"training stopped.")
                    last = out / ckpt.LAST if out is not None else None
                    if last is not None and last.exists():
                        msg += f" Last good checkpoint: {last}."
                    msg += " Lower --lr, add --grad-clip, or use another --init."
                    if steplog is not None:
                        steplog.write(json.dumps({"step": step + 1, "epoch": epoch + 1,
                                                  "loss": str(loss_global), "diverged": True}))
                        steplog.write("\n")
                    raise DivergenceError(msg, step + 1, history)

                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                step += 1

                n = y.numel()
                run_sums[0] += loss.item() * n
                run_sums[1] += (logits.argmax(1) == y).sum().item()
                run_sums[2] += n
                n_log += n
                if steplog is not None and step % cfg.log_every == 0:
                    now = time.perf_counter()
                    steplog.write(json.dumps({
                        "step": step, "epoch": epoch + 1, "loss": loss_global, "lr": lr,
                        "images_per_s": n_log * info.world_size / max(now - t_log, 1e-9),
                        "time_s": now - t_run}) + "\n")
                    steplog.flush()
                    t_log, n_log = now, 0
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{loss_global:.4f}", lr=f"{lr:.2e}", refresh=False)
                if cfg.max_steps and step >= cfg.max_steps:
                    stop = True
                    break
                if out is not None and cfg.checkpoint_every and \
                        step % cfg.checkpoint_every == 0 and step % steps_per_epoch:
                    # Checkpoint time is not training time: keep it out of images/s.
                    epoch_time += time.perf_counter() - t0
                    save(out / ckpt.LAST, True, epoch)
                    t0 = time.perf_counter()
            if hasattr(bar, "close"):
                bar.close()
            epoch_time += time.perf_counter() - t0

            # ---- end of epoch: metrics, schedule, files
            tl, tc, tn = dist_utils.all_reduce_sum(run_sums, device, info)
            val = evaluate(raw_model, data.val, device, cfg.amp, cfg.channels_last, info)
            row = {
                "epoch": epoch + 1, "train_loss": tl / max(tn, 1), "train_acc": tc / max(tn, 1),
                **val, "lr": schedule.lr(max(step - 1, 0)),
                "images_per_s": tn / max(epoch_time, 1e-9), "epoch_time_s": epoch_time,
                "time_s": time.perf_counter() - t_run,
            }
            history.append(row)
            if schedule.epoch_end(val["val_top1_err"]):
                log(f"  validation error plateaued: lr divided by {1 / cfg.lr_decay:g} "
                    f"(drop {schedule.drops}/{cfg.max_lr_drops})")
            is_best = val["val_top1_err"] < best_err
            best_err = min(best_err, val["val_top1_err"])
            log(f"epoch {epoch + 1:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f} | val loss {val['val_loss']:.4f} top-1 err "
                f"{val['val_top1_err']:.4f} top-5 err {val['val_top5_err']:.4f} | lr "
                f"{row['lr']:.2e} | {row['images_per_s']:.0f} img/s, {epoch_time:.1f}s")
            epoch += 1
            if stop and step % steps_per_epoch:
                epoch -= 1  # max_steps ended mid-epoch: that epoch is not finished
                mid_epoch = True
            if out is not None:
                save(out / ckpt.LAST, mid_epoch, epoch)
                if main:
                    if is_best:
                        ckpt.copy_checkpoint(out / ckpt.LAST, out / ckpt.BEST)
                    _write_summary(out, history)
                    _plot(out, history)
    finally:
        if steplog is not None:
            steplog.close()

    raw_model.eval()
    slopes = learned_slopes(raw_model)
    final = dict(history[-1]) if history else {}
    if final:
        final["val_acc"] = 1.0 - final["val_top1_err"]
        final["best_val_top1_err"] = best_err
    if main and cfg.verbose and final:
        log(f"\nfinal test accuracy {100 * final['val_acc']:.2f}% (top-1 error "
            f"{100 * final['val_top1_err']:.2f}%, best {100 * best_err:.2f}%), "
            f"{final['time_s']:.0f}s")
        if slopes:
            log("learned slopes (PReLU a per layer):\n" + format_slopes(slopes))
        if out is not None:
            log(f"run directory: {out}")
    if out is not None and main:
        atomic_write_text(out / "final.json", json.dumps(
            {"final": final, "slopes": slopes, "steps": step}, indent=2) + "\n")
    return TrainResult(raw_model, history, final, step, out, slopes, data.normalization)


# --------------------------------------------------------------------------- run dir


def _resume_path(cfg: TrainConfig, out: Path | None) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        if out is None:
            raise ValueError("resume='auto' needs out_dir (it resumes out_dir's last checkpoint)")
        last = out / ckpt.LAST
        return last if last.is_file() else None  # nothing yet: a fresh start
    return ckpt.resolve(cfg.resume, prefer="last")


def _gather_rank_states(rank_state: dict[str, Any], info: DistInfo) -> list[dict[str, Any]]:
    if not info.enabled:
        return [rank_state]
    import torch.distributed as dist

    # In-memory exchange between our own processes (nothing is written with pickle).
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, rank_state)
    return gathered


def _warn_config_changes(old: dict[str, Any], cfg: TrainConfig, log) -> None:
    new = cfg.to_dict()
    ignore = {"resume", "out_dir", "epochs", "progress", "verbose", "threads", "max_steps"}
    changed = [k for k in new if k not in ignore and k in old and old[k] != new[k]]
    if changed:
        log("warning: resuming with changed settings (resume is exact only with the same "
            "ones): " + ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed))


def _write_args(out: Path, cfg: TrainConfig) -> None:
    try:
        import yaml
    except ImportError:
        atomic_write_text(out / "args.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        return
    atomic_write_text(out / "args.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _write_summary(out: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out / "summary.csv", buf.getvalue())


def _truncate_steplog(path: Path, step: int) -> None:
    """Drop log lines of steps after the checkpoint: they are about to be redone."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def _plot(out: Path, history: list[dict[str, Any]]) -> None:
    """curves.png: train loss, val loss, val top-1 error and lr per epoch (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    axes[0].plot(ep, [h["val_loss"] for h in history], "o-", label="val")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    axes[1].plot(ep, [100 * (1 - h["train_acc"]) for h in history], "o-", label="train")
    axes[1].plot(ep, [100 * h["val_top1_err"] for h in history], "o-", label="val top-1")
    axes[1].set(xlabel="epoch", ylabel="error (%)", title="error")
    axes[1].legend()
    axes[2].plot(ep, [h["lr"] for h in history], "o-")
    axes[2].set(xlabel="epoch", ylabel="lr", yscale="log", title="learning rate (epoch end)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out / "curves.png", buf.getvalue())
