"""``rectifiers eval``: test one or more checkpoints the way the paper does.

Examples::

    rectifiers eval runs/small                         # centre view, Fashion-MNIST test set
    rectifiers eval runs/small --views ten_crop        # AlexNet 10-view
    rectifiers eval runs/small --views dense           # dense multi-scale (28, 32, 36 here)
    rectifiers eval runs/a --views dense --scales 256 384 480 --data folder --data-dir /imagenet
    rectifiers eval runs/a runs/b runs/c --views dense # ensemble: averaged softmax scores
    torchrun --nproc_per_node=2 -m rectifiers eval runs/small --views dense   # DDP

Prints a table (top-1/top-5 error and per-class error, in percent) and, with ``--out-dir``,
writes ``{prefix}.json`` (metrics, confusion matrix, settings), ``{prefix}_per_class.csv`` and
``{prefix}_confusion.csv`` atomically.

Under ``torchrun`` every rank scores the samples ``rank, rank + W, rank + 2W, ...`` and the
integer counts (confusion matrix, per-class top-k hits) are summed with ``all_reduce``, so the
result equals a single-process run exactly. Only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rectifiers.eval.ensemble import Ensemble, load_member
from rectifiers.eval.metrics import ClassificationMetrics
from rectifiers.eval.views import MODES

DATASETS = ("fashion_mnist", "folder", "synthetic")
AMP_MODES = ("none", "bf16", "fp16")


class EvalSet:
    """Test images + labels behind one interface: ``get(indices) -> (images, labels)``.

    In-memory sets return a uint8 (B, C, H, W) batch; folders return a list of uint8
    (C, H, W) images of their own sizes (decoded at a shorter side >= ``min_side``).
    """

    def __init__(self, images: torch.Tensor | None, labels: torch.Tensor,
                 classes: Sequence[str] | None, folder: Any = None, min_side: int = 0,
                 name: str = "", workers: int = 4) -> None:
        self.images, self.labels, self.folder = images, labels, folder
        self.classes = list(classes) if classes else None
        self.min_side = min_side
        self.name = name
        self.workers = workers

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def get(self, idx: Sequence[int]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        t = torch.as_tensor(list(idx), dtype=torch.long)
        if self.images is not None:
            return self.images[t], self.labels[t]
        # Pillow releases the GIL while decoding, so threads decode a batch in parallel
        from concurrent.futures import ThreadPoolExecutor

        def load(i: int) -> torch.Tensor:
            return self.folder.load(i, shorter_side=self.min_side)

        if self.workers > 1 and len(idx) > 1:
            with ThreadPoolExecutor(min(self.workers, len(idx))) as pool:
                return list(pool.map(load, idx)), self.labels[t]
        return [load(i) for i in idx], self.labels[t]


def open_eval_set(kind: str, data_dir: str | None, split: str | None, meta: dict[str, Any],
                  max_samples: int | None = None, min_side: int = 0,
                  workers: int = 4) -> EvalSet:
    """The test split of a data source, as training described it in ``meta``."""
    from rectifiers import data as rdata

    if kind == "fashion_mnist":
        ds = rdata.FashionMNIST(data_dir, split or "test")
        es = EvalSet(ds.images, ds.labels, ds.classes, name=f"fashion_mnist/{ds.split}")
    elif kind == "synthetic":
        cfg = meta.get("config") or {}
        ds = rdata.SyntheticDataset(
            num_samples=max_samples or 256, num_classes=int(meta.get("num_classes", 10)),
            image_size=int(cfg.get("synthetic_image_size", meta.get("image_size", 28))),
            in_chans=int(meta.get("in_chans", 1)), seed=int(cfg.get("seed", 0)),
            split=split or "test")
        es = EvalSet(ds.images, ds.labels, ds.classes, name=f"synthetic/{ds.split}")
    elif kind == "folder":
        if not data_dir:
            raise ValueError(
                "--data folder needs --data-dir DIR (ImageNet layout: DIR/val/<class>/*.jpg)")
        f = rdata.ImageFolder(data_dir, split or "val", in_chans=int(meta.get("in_chans", 3)))
        es = EvalSet(None, f.labels, f.classes, folder=f, min_side=min_side,
                     name=f"folder:{data_dir}/{f.split}", workers=workers)
    else:
        raise ValueError(f"--data must be one of {', '.join(DATASETS)}, got {kind!r}")
    if max_samples is not None and max_samples < len(es):
        # the first n samples: deterministic and the same on every rank
        es.labels = es.labels[:max_samples]
        if es.images is not None:
            es.images = es.images[:max_samples]
    return es


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(
    ensemble: Ensemble,
    data: EvalSet,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    topk: Sequence[int] = (1, 5),
    amp: str = "none",
) -> ClassificationMetrics:
    """Score every sample of ``data`` with ``ensemble``; metrics over the whole set.

    Under an initialised ``torch.distributed`` group each rank takes a strided shard and the
    counts are all-reduced before returning (every rank gets the full result).
    ``amp`` (``none``, ``bf16``, ``fp16``) runs the models under autocast; scores are still
    averaged in float32.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    rank, world = _dist()
    device = torch.device(device)
    autocast = torch.autocast(device.type, dtype=torch.float16 if amp == "fp16" else
                              torch.bfloat16, enabled=amp != "none")
    metrics = ClassificationMetrics(data.num_classes, topk=topk, class_names=data.classes)
    mine = list(range(rank, len(data), world))
    bar = tqdm(total=len(mine) * world, unit="img", desc="eval",
               disable=None if (progress and rank == 0) else True)
    for lo in range(0, len(mine), batch_size):
        images, labels = data.get(mine[lo:lo + batch_size])
        if isinstance(images, torch.Tensor):
            images = images.to(device, non_blocking=True)
        else:
            images = [im.to(device) for im in images]
        with autocast:
            scores = ensemble.predict(images)
        metrics.update(scores, labels)
        bar.update(len(labels) * world)
    bar.close()
    metrics.all_reduce()
    return metrics


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="rectifiers eval",
        description="Evaluate checkpoints with the paper's views (centre, 10-view, dense "
                    "multi-scale); several checkpoints are combined by averaging softmax scores.",
    )
    p.add_argument("checkpoints", nargs="+", help="checkpoint files or run directories")
    p.add_argument("--views", choices=MODES, default="center",
                   help="center | ten_crop (4 corners + centre, and flips) | dense (paper)")
    p.add_argument("--scales", type=int, nargs="+", default=None,
                   help="shorter sides; default from the model (224: 256 for center/ten_crop, "
                        "256 384 480 for dense; 28: 28 / 32 / 28 32 36)")
    p.add_argument("--crop", type=int, default=None, help="view side (default: training crop)")
    p.add_argument("--no-flip", action="store_true", help="dense: do not add the flipped image")
    p.add_argument("--window-batch", type=int, default=512,
                   help="dense: windows per head call (memory only)")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="ensemble weights, one per checkpoint (default: equal)")
    p.add_argument("--data", choices=DATASETS, default=None,
                   help="data source (default: the one the first checkpoint was trained on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default=None, help="default: test (in-memory sets), val (folder)")
    p.add_argument("--max-samples", type=int, default=None, help="only the first N samples")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (per rank)")
    p.add_argument("--workers", type=int, default=4, help="folder: image decoding threads")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=AMP_MODES, default="none",
                   help="autocast the models (bf16 about halves CPU time; default: fp32)")
    p.add_argument("--out-dir", default=None, help="write JSON/CSV results here")
    p.add_argument("--prefix", default="eval", help="file name prefix of the results")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(list(argv))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(name)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available; use --device cpu")
    return d


def main(argv: Sequence[str] | None = None) -> int:
    """``rectifiers eval``; returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    from rectifiers.data import DatasetError
    from rectifiers.train.checkpoint import CheckpointError
    from rectifiers.train.distributed import setup, teardown

    if args.weights is not None and len(args.weights) != len(args.checkpoints):
        print(f"rectifiers eval: {len(args.weights)} --weights for {len(args.checkpoints)} "
              "checkpoints; give one weight per checkpoint", file=sys.stderr)
        return 2
    try:
        device = _device(args.device)
    except ValueError as e:
        print(f"rectifiers eval: {e}", file=sys.stderr)
        return 2
    info = setup(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    try:
        weights = args.weights or [1.0] * len(args.checkpoints)
        members = [
            load_member(c, args.views, device=device, weight=w, crop=args.crop,
                        scales=tuple(args.scales) if args.scales else None,
                        flip=not args.no_flip, window_batch=args.window_batch)
            for c, w in zip(args.checkpoints, weights, strict=True)
        ]
        meta = members[0].meta or {}
        kind = args.data or meta.get("dataset") or "fashion_mnist"
        data_dir = args.data_dir or (meta.get("config") or {}).get("data_dir")
        min_side = max(max(m.view.scales) for m in members)
        data = open_eval_set(kind, data_dir, args.split, meta, args.max_samples, min_side,
                             args.workers)
        ens = Ensemble(members)
        for m in members:
            k = int((m.meta or {}).get("num_classes", data.num_classes))
            if k != data.num_classes:
                raise ValueError(f"{m.name} scores {k} classes but {data.name} has "
                                 f"{data.num_classes}; evaluate it on its own data set")
        t0 = time.perf_counter()
        metrics = evaluate(ens, data, args.batch_size, device, progress=not args.no_progress,
                           amp=args.amp)
        seconds = time.perf_counter() - t0
    except (CheckpointError, DatasetError, ValueError, TypeError, OSError) as e:
        print(f"rectifiers eval: {e}", file=sys.stderr)
        teardown(info)
        return 2
    if info.is_main:
        desc = ", ".join(f"{d['mode']} scales={d['scales']}" for d in ens.describe()[:1])
        title = (f"{data.name}: {len(members)} model(s), {desc}"
                 f"{' + ensemble' if len(members) > 1 else ''}")
        print(metrics.format_table(title))
        print(f"{metrics.count} images in {seconds:.1f} s ({metrics.count / seconds:.1f} img/s, "
              f"{info.world_size} process(es), device {device.type})")
        if args.out_dir:
            extra = {
                "checkpoints": [str(c) for c in args.checkpoints],
                "members": ens.describe(),
                "data": data.name,
                "world_size": info.world_size,
                "seconds": seconds,
                "argv": list(sys.argv[1:] if argv is None else argv),
            }
            paths = metrics.save(Path(args.out_dir), args.prefix, extra)
            print("wrote " + ", ".join(str(p) for p in paths.values()))
    teardown(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
