"""The files of a run directory that are not checkpoints: args, summary, step log, curves.

A run directory (timm-like) holds ``args.yaml`` (the settings), ``summary.csv`` (one row per
epoch, ``SUMMARY_COLUMNS``), ``log.jsonl`` (one line per ``log_every`` steps), ``curves.png``
(needs matplotlib: without it the plot is skipped with a one-line note), ``final.json`` and
the checkpoints (:mod:`rectifiers.train.checkpoint`). Every file is written atomically.
"""

from __future__ import annotations

import csv
import errno
import io
import json
from pathlib import Path
from typing import Any

from rectifiers.files import DiskFullError, FileWriteError, atomic_write_bytes, atomic_write_text

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

SUMMARY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_top1_err", "val_top5_err",
    "lr", "images_per_s", "epoch_time_s", "time_s",
)


def write_args(out: Path, config: dict[str, Any]) -> None:
    """``args.yaml`` (``args.json`` without PyYAML)."""
    try:
        import yaml
    except ImportError:
        atomic_write_text(out / "args.json", json.dumps(config, indent=2) + "\n")
        return
    atomic_write_text(out / "args.yaml", yaml.safe_dump(config, sort_keys=False))


def write_summary(out: Path, history: list[dict[str, Any]]) -> None:
    """``summary.csv``, rewritten whole: every epoch appears exactly once."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(out / "summary.csv", buf.getvalue())


def write_final(out: Path, final: dict[str, Any], slopes: list[dict[str, Any]],
                steps: int) -> None:
    atomic_write_text(out / "final.json", json.dumps(
        {"final": final, "slopes": slopes, "steps": steps}, indent=2) + "\n")


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_curves(out: Path, history: list[dict[str, Any]]) -> None:
    """``curves.png``: loss, error and lr per epoch. The caller checks :func:`have_matplotlib`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


class StepLog:
    """``log.jsonl``: one JSON object per line, appended and flushed (rank 0 only). A full disk
    or an unwritable file is a :class:`~rectifiers.files.FileWriteError` (a user error)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._f = None
        if path is not None:
            try:
                self._f = open(path, "a")  # noqa: SIM115
            except OSError as e:
                raise _write_error(path, e) from e

    def write(self, record: dict[str, Any]) -> None:
        if self._f is not None:
            try:
                self._f.write(json.dumps(record) + "\n")
                self._f.flush()
            except OSError as e:
                raise _write_error(self.path, e) from e

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _write_error(path: Path | None, e: OSError) -> FileWriteError:
    if e.errno in _DISK_FULL:
        return DiskFullError(e.errno, f"no space left on the device while writing {path}; the "
                             "checkpoints written so far are intact. Free some space and resume "
                             "with --resume auto")
    return FileWriteError(e.errno, f"cannot write {path}: {e.strerror or e}. Choose a writable "
                          "--out-dir")
