"""Classification metrics as the paper reports them: top-1 / top-5 *error* in percent.

``ClassificationMetrics`` accumulates integer counts only (samples, top-k hits, a confusion
matrix, per-class top-k hits), so results are exact, independent of batch size, and can be
summed across DDP ranks with one ``all_reduce`` each.

Definitions (N samples, scores s_i over K classes, label y_i):

* top-k error = 100 * (1 - #{i : y_i among the k highest s_i} / N)   (Tables 4-7)
* confusion[t, p] = #{i : y_i = t and argmax s_i = p}   (rows: true class, columns: prediction)
* per-class top-k error of class c = the top-k error restricted to samples with y_i = c.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rectifiers.files import atomic_write_text


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den if den else math.nan


class ClassificationMetrics:
    """Accumulate top-k error, per-class error and the confusion matrix over batches.

    Args:
        num_classes: K, the number of classes scored by the model.
        topk: which top-k errors to report; k larger than K is dropped (it would always be 0).
        class_names: optional names for the per-class table (length K).

    Example:
        >>> m = ClassificationMetrics(3, topk=(1, 2))
        >>> m.update(torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), torch.tensor([2, 0]))
        >>> m.summary()["top1_error"], m.summary()["top2_error"]
        (50.0, 0.0)
    """

    def __init__(
        self,
        num_classes: int,
        topk: Sequence[int] = (1, 5),
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} entries but num_classes={num_classes}; "
                "pass one name per class or none"
            )
        ks = sorted({int(k) for k in topk if 1 <= int(k) <= num_classes})
        if 1 not in ks:
            ks.insert(0, 1)
        self.num_classes = num_classes
        self.topk = tuple(ks)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        k = self.num_classes
        self.confusion = torch.zeros(k, k, dtype=torch.int64)
        # per_class_hits[c, j]: samples of class c whose label is in the top-topk[j] scores
        self.per_class_hits = torch.zeros(k, len(self.topk), dtype=torch.int64)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @torch.no_grad()
    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``scores`` (N, K) (logits or probabilities), ``targets`` (N,) ints."""
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"scores must have shape (N, {self.num_classes}), got {tuple(scores.shape)}; "
                "check that the model's num_classes matches the data set"
            )
        if targets.shape != scores.shape[:1]:
            raise ValueError(
                f"targets must have shape ({scores.shape[0]},), got {tuple(targets.shape)}"
            )
        scores = scores.detach().cpu()
        targets = targets.detach().long().cpu()
        if targets.numel() and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(
                f"targets must lie in [0, {self.num_classes}), got range "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        kmax = self.topk[-1]
        top = scores.topk(kmax, dim=1).indices  # (N, kmax), best first
        hit = top == targets[:, None]  # at most one True per row
        # rank of the label among the scores (kmax when outside the top kmax)
        rank = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(targets, kmax))
        for j, k in enumerate(self.topk):
            self.per_class_hits[:, j] += torch.bincount(
                targets[rank < k], minlength=self.num_classes
            )
        flat = targets * self.num_classes + top[:, 0]
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )

    def all_reduce(self, group: Any = None) -> None:
        """Sum the counts over all ranks of an initialised ``torch.distributed`` group.

        Counts are integers, so the reduced metrics are exactly those of the whole set
        (no averaging of per-rank percentages, no padding samples counted twice).
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        device = torch.device("cpu")
        if dist.get_backend(group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        for name in ("confusion", "per_class_hits"):
            t = getattr(self, name).to(device)
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
            setattr(self, name, t.cpu())

    # ------------------------------------------------------------------ results
    def summary(self) -> dict[str, Any]:
        """Overall numbers: ``n`` and ``top{k}_error`` in percent for each k."""
        n = self.count
        hits = self.per_class_hits.sum(0)
        out: dict[str, Any] = {"n": n}
        for j, k in enumerate(self.topk):
            out[f"top{k}_error"] = _pct(n - int(hits[j]), n)
        return out

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: index, name, n and its top-k errors in percent."""
        rows = []
        support = self.confusion.sum(1)
        for c in range(self.num_classes):
            n_c = int(support[c])
            row: dict[str, Any] = {
                "class": c,
                "name": self.class_names[c] if self.class_names else str(c),
                "n": n_c,
            }
            for j, k in enumerate(self.topk):
                row[f"top{k}_error"] = _pct(n_c - int(self.per_class_hits[c, j]), n_c)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (NaN for classes without samples becomes ``null``)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and math.isnan(v) else v

        return {
            **{k: clean(v) for k, v in self.summary().items()},
            "units": "percent",
            "topk": list(self.topk),
            "per_class": [{k: clean(v) for k, v in r.items()} for r in self.per_class()],
            "confusion": self.confusion.tolist(),
            "confusion_axes": "rows: true class, columns: top-1 prediction",
        }

    # ------------------------------------------------------------------ output
    def format_table(self, title: str | None = None) -> str:
        """A readable table: overall errors, then one line per class."""
        s = self.summary()
        ks = self.topk
        lines = []
        if title:
            lines.append(title)
        lines.append(
            f"n={s['n']}  " + "  ".join(f"top-{k} error {s[f'top{k}_error']:6.2f} %" for k in ks)
        )
        names = [r["name"] for r in self.per_class()]
        w = max([5] + [len(n) for n in names])
        head = f"{'class':<{w}} {'n':>7} " + " ".join(f"{f'top-{k} err %':>11}" for k in ks)
        lines += [head, "-" * len(head)]
        for r in self.per_class():
            errs = " ".join(f"{r[f'top{k}_error']:11.2f}" for k in ks)
            lines.append(f"{r['name']:<{w}} {r['n']:>7} {errs}")
        return "\n".join(lines)

    def per_class_csv(self) -> str:
        buf = io.StringIO()
        rows = self.per_class()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def confusion_csv(self) -> str:
        """Confusion matrix as CSV: header ``true\\pred,<names...>``, one row per true class."""
        names = self.class_names or [str(c) for c in range(self.num_classes)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["true\\pred", *names])
        for name, row in zip(names, self.confusion.tolist(), strict=True):
            writer.writerow([name, *row])
        return buf.getvalue()

    def save(self, out_dir: str | os.PathLike, prefix: str = "eval", extra: dict | None = None
             ) -> dict[str, Path]:
        """Write ``{prefix}.json``, ``{prefix}_per_class.csv`` and ``{prefix}_confusion.csv``.

        ``extra`` (e.g. checkpoint, views, scales) is stored in the JSON next to the metrics.
        Every file is written atomically. Returns the paths written.
        """
        out = Path(out_dir)
        paths = {
            "json": out / f"{prefix}.json",
            "per_class_csv": out / f"{prefix}_per_class.csv",
            "confusion_csv": out / f"{prefix}_confusion.csv",
        }
        payload = {**(extra or {}), "metrics": self.to_dict()}
        atomic_write_text(paths["json"], json.dumps(payload, indent=2) + "\n")
        atomic_write_text(paths["per_class_csv"], self.per_class_csv())
        atomic_write_text(paths["confusion_csv"], self.confusion_csv())
        return paths
