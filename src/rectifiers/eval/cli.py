"""``rectifiers eval``: test one or more checkpoints the way the paper does.

Examples::

    rectifiers eval runs/small                         # centre view, Fashion-MNIST test set
    rectifiers eval runs/small --views ten_crop        # AlexNet 10-view
    rectifiers eval runs/small --views dense           # dense multi-scale (28, 32, 36 here)
    rectifiers eval runs/a --views dense --scales 256 384 480 --dataset folder --data-dir /imagenet
    rectifiers eval runs/a runs/b runs/c --views dense # ensemble: averaged softmax scores
    torchrun --nproc_per_node=2 -m rectifiers eval runs/small --views dense   # DDP

Every default comes from the first checkpoint's own metadata: the data set and its directory,
the crop it was trained at, the evaluation resize and the input normalisation (never from a
model class's default). ``--max-samples N`` evaluates the seeded subset of N samples of
:func:`rectifiers.data.open_dataset` (``--seed``, default 0), the same subset rule as training.

Prints a table (top-1/top-5 error and per-class error, in percent) and, with ``--out-dir``,
writes ``{prefix}.json`` (metrics, confusion matrix, settings), ``{prefix}_per_class.csv`` and
``{prefix}_confusion.csv`` atomically. With ``--skip-bad-images`` undecodable images of a folder
are skipped, counted, and listed in ``{out-dir}/{prefix}_skipped_images.txt``.

Under ``torchrun`` every rank scores the samples ``rank, rank + W, rank + 2W, ...`` and the
integer counts (confusion matrix, per-class top-k hits) are summed exactly with ``all_reduce``.
The result equals a single-process run whenever every sample gets the same top-k classes
there, i.e. except at a near-tie between two classes: ranks run the model on batches of
another composition, whose conv/GEMM blocking (batch size, threads, CPU vector width) can
change a sample's scores in the last bits. Only rank 0 prints and writes.

User errors (bad flags, bad files, bad checkpoints) raise :class:`rectifiers.errors.UserError`;
``rectifiers`` prints them as one line and exits with 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from rectifiers.data import DATASETS, ImageFolder, default_split, open_dataset
from rectifiers.errors import ConfigError
from rectifiers.eval.common import probe_writable
from rectifiers.eval.ensemble import Ensemble, Member, load_member
from rectifiers.eval.metrics import ClassificationMetrics
from rectifiers.eval.views import MODES, check_view_fits, model_crop
from rectifiers.files import atomic_write_text
from rectifiers.runtime import AMP_MODES, autocast, check_amp, resolve_device
from rectifiers.train.distributed import setup, teardown

SYNTHETIC_TEST_SIZE = 256  # samples of a synthetic test split (more if --max-samples asks)


class EvalSet:
    """Test images + labels behind one interface: ``get(indices) -> (images, labels)``.

    In-memory sets return a uint8 (B, C, H, W) batch; folders return a list of uint8
    (C, H, W) images of their own sizes (decoded at a shorter side >= ``min_side``). A folder
    opened with ``skip_bad_images`` drops undecodable images from the batch (their labels
    too) and records their paths in ``skipped``.
    """

    def __init__(self, images: torch.Tensor | None, labels: torch.Tensor,
                 classes: Sequence[str] | None, folder: ImageFolder | None = None,
                 min_side: int = 0, name: str = "", workers: int = 4) -> None:
        self.images, self.labels, self.folder = images, labels, folder
        self.classes = list(classes) if classes else None
        self.min_side = min_side
        self.name = name
        self.workers = workers
        self.skipped: list[str] = list(folder.bad_paths) if folder is not None else []

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def get(self, idx: Sequence[int]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        t = torch.as_tensor(list(idx), dtype=torch.long)
        if self.images is not None:
            return self.images[t], self.labels[t]

        def load(i: int) -> torch.Tensor | None:
            return self.folder.load(i, shorter_side=self.min_side)

        # Pillow releases the GIL while decoding, so threads decode a batch in parallel
        if self.workers > 1 and len(idx) > 1:
            with ThreadPoolExecutor(min(self.workers, len(idx))) as pool:
                images = list(pool.map(load, idx))
        else:
            images = [load(i) for i in idx]
        keep = [k for k, im in enumerate(images) if im is not None]
        self.skipped.extend(self.folder.samples[i][0] for i, im in zip(idx, images, strict=True)
                            if im is None)
        return [images[k] for k in keep], self.labels[t][keep]


def open_eval_set(kind: str, data_dir: str | None, split: str | None, meta: dict[str, Any],
                  max_samples: int | None = None, min_side: int = 0, workers: int = 4, *,
                  seed: int = 0, skip_bad_images: bool = False) -> EvalSet:
    """The test split of a data set, opened by :func:`rectifiers.data.open_dataset` as
    training described it in ``meta``; ``max_samples``: its seeded subset (``seed``)."""
    if kind not in DATASETS:
        raise ConfigError(f"--dataset must be one of {', '.join(DATASETS)}, got {kind!r}")
    split = split or default_split(kind, train=False)
    if kind == "folder" and not data_dir:
        raise ConfigError("--dataset folder needs --data-dir DIR (ImageNet layout: "
                          "DIR/val/<class>/*.jpg)")
    options: dict[str, Any] = {}
    if kind == "synthetic":
        # the training seed also defines the synthetic images (their class templates), so it
        # is the data seed here, for the images and the subset alike
        cfg = meta.get("config") or {}
        seed = int(cfg.get("seed", 0))
        options = dict(num_samples=max(SYNTHETIC_TEST_SIZE, max_samples or 0),
                       num_classes=int(meta.get("num_classes", 10)),
                       image_size=int(cfg.get("synthetic_image_size")
                                      or meta.get("image_size") or 28),
                       in_chans=int(meta.get("in_chans", 1)))
    elif kind == "folder":
        options = dict(in_chans=int(meta.get("in_chans", 3)), skip_bad_images=skip_bad_images)
    ds = open_dataset(kind, split, data_dir, max_samples, seed, **options)
    if isinstance(ds, ImageFolder):
        return EvalSet(None, ds.labels, ds.classes, folder=ds, min_side=min_side,
                       name=f"folder:{data_dir}/{ds.split}", workers=workers)
    return EvalSet(ds.images, ds.labels, ds.classes, name=f"{kind}/{ds.split}")


def _dist() -> tuple[int, int]:
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
    ``amp`` (``none``, ``bf16``, ``fp16``) runs the models under autocast
    (:func:`rectifiers.runtime.autocast`); scores are still averaged in float32.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    device = torch.device(device)
    check_amp(device, amp)
    rank, world = _dist()
    metrics = ClassificationMetrics(data.num_classes, topk=topk, class_names=data.classes)
    mine = list(range(rank, len(data), world))
    bar = tqdm(total=len(mine) * world, unit="img", desc="eval",
               disable=None if (progress and rank == 0) else True)
    for lo in range(0, len(mine), batch_size):
        images, labels = data.get(mine[lo:lo + batch_size])
        if len(labels):
            if isinstance(images, torch.Tensor):
                images = images.to(device, non_blocking=True)
            else:
                images = [im.to(device) for im in images]
            with autocast(device, amp):
                scores = ensemble.predict(images)
            metrics.update(scores, labels)
        bar.update(len(mine[lo:lo + batch_size]) * world)
    bar.close()
    metrics.all_reduce()
    return metrics


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="rectifiers eval",
        description="Evaluate checkpoints with the paper's views (centre, 10-view, dense "
                    "multi-scale); several checkpoints are combined by averaging softmax scores. "
                    "Defaults come from the first checkpoint's metadata.",
    )
    p.add_argument("checkpoints", nargs="+", help="checkpoint files or run directories")
    p.add_argument("--views", choices=MODES, default="center",
                   help="center | ten_crop (4 corners + centre, and flips) | dense (paper)")
    p.add_argument("--scales", type=int, nargs="+", default=None,
                   help="shorter sides; default from the checkpoint's training crop (224: 256 "
                        "for center/ten_crop, 256 384 480 for dense; 28: 28 / 32 / 28 32 36)")
    p.add_argument("--crop", type=int, default=None,
                   help="view side (default: the crop the checkpoint was trained at)")
    p.add_argument("--no-flip", action="store_true", help="dense: do not add the flipped image")
    p.add_argument("--window-batch", type=int, default=512,
                   help="dense: windows per head call (memory only)")
    p.add_argument("--weights", type=float, nargs="+", default=None,
                   help="ensemble weights, one per checkpoint, finite and > 0 (default: equal)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="data set (default: the one the first checkpoint was trained on)")
    p.add_argument("--data", dest="dataset", choices=DATASETS, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default=None,
                   help="data directory (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default=None, help="default: test (in-memory sets), val (folder)")
    p.add_argument("--max-samples", type=int, default=None,
                   help="evaluate a seeded random subset of N samples (rule of "
                        "rectifiers.data.open_dataset)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the --max-samples subset (synthetic data: the training seed)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="folders: skip undecodable images (counted; listed in --out-dir)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (per rank)")
    p.add_argument("--workers", type=int, default=4, help="folder: image decoding threads")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=AMP_MODES, default="none",
                   help="autocast the models (bf16 about halves CPU time; default: fp32)")
    p.add_argument("--out-dir", default=None, help="write JSON/CSV results here")
    p.add_argument("--prefix", default="eval", help="file name prefix of the results")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(list(argv))


def _check_args(args: argparse.Namespace) -> None:
    """Every flag's value, before any work: one ConfigError naming the flag."""
    if args.weights is not None:
        if len(args.weights) != len(args.checkpoints):
            raise ConfigError(f"{len(args.weights)} --weights for {len(args.checkpoints)} "
                              "checkpoints; give one weight per checkpoint")
        bad = [w for w in args.weights if not (math.isfinite(w) and w > 0)]
        if bad:
            raise ConfigError(f"--weights must be finite numbers > 0, got {bad[0]}")
    for flag, value, low in (("--max-samples", args.max_samples, 1), ("--crop", args.crop, 1),
                             ("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0),
                             ("--window-batch", args.window_batch, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if args.scales is not None and min(args.scales) < 1:
        raise ConfigError(f"--scales must be positive shorter sides, got {min(args.scales)}")


def _check_out_dir(path: str) -> Path:
    """``--out-dir`` must be a directory we can write into; checked before the evaluation runs
    (so its results are never lost), without creating anything yet."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out-dir {out} is an existing file; give a directory")
    probe_writable(out, f"--out-dir {out}")
    return out


def _check_members(members: list[Member], data: EvalSet) -> None:
    for m in members:
        meta = m.meta or {}
        k = int(meta.get("num_classes", data.num_classes))
        if k != data.num_classes:
            raise ConfigError(f"{m.name} scores {k} classes but {data.name} has "
                              f"{data.num_classes}; evaluate it on its own data set (--dataset, "
                              f"--data-dir)")


def _check_views(members: list[Member]) -> None:
    """The views fit every model: a crop (or, for dense, a scale) too small for a trunk is a
    ConfigError naming the flag, not an error deep inside a convolution."""
    for m in members:
        in_chans = int((m.meta or {}).get("in_chans", 3))
        trained_at = model_crop(m.model, m.meta)
        if m.view.mode == "dense":
            check_view_fits(m.model, in_chans, min(m.view.scales), "--scales", trained_at)
        else:
            check_view_fits(m.model, in_chans, m.view.crop, "--crop", trained_at)


def _gather_skipped(paths: list[str]) -> list[str]:
    if dist.is_available() and dist.is_initialized():
        every: list[list[str] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(every, paths)
        paths = [p for part in every for p in (part or [])]
    return sorted(set(paths))


def main(argv: Sequence[str] | None = None) -> int:
    """``rectifiers eval``; returns the exit status (user errors raise ``UserError``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    _check_args(args)
    device = resolve_device(args.device)
    check_amp(device, args.amp)
    info = setup(device.type)
    finished = False
    try:
        weights = args.weights or [1.0] * len(args.checkpoints)
        members = [
            load_member(c, args.views, device=device, weight=w, crop=args.crop,
                        scales=tuple(args.scales) if args.scales else None,
                        flip=not args.no_flip, window_batch=args.window_batch)
            for c, w in zip(args.checkpoints, weights, strict=True)
        ]
        _check_views(members)
        out_dir = _check_out_dir(args.out_dir) if args.out_dir else None
        meta = members[0].meta or {}
        kind = args.dataset or meta.get("dataset") or "fashion_mnist"
        if kind not in DATASETS:
            raise ConfigError(f"{members[0].name} was trained on data {kind!r}, which eval "
                              f"cannot open by name; pass --dataset ({', '.join(DATASETS)})")
        data_dir = args.data_dir or (meta.get("config") or {}).get("data_dir")
        min_side = max(max(m.view.scales) for m in members)
        data = open_eval_set(kind, data_dir, args.split, meta, args.max_samples, min_side,
                             args.workers, seed=args.seed, skip_bad_images=args.skip_bad_images)
        _check_members(members, data)
        ens = Ensemble(members)
        t0 = time.perf_counter()
        metrics = evaluate(ens, data, args.batch_size, device, progress=not args.no_progress,
                           amp=args.amp)
        seconds = time.perf_counter() - t0
        skipped = _gather_skipped(data.skipped)
        if info.is_main:
            _report(args, argv, ens, data, metrics, seconds, info.world_size, device, out_dir,
                    skipped)
        finished = True
    finally:
        teardown(info, finished)
    return 0


def _report(args: argparse.Namespace, argv: list[str], ens: Ensemble, data: EvalSet,
            metrics: ClassificationMetrics, seconds: float, world_size: int,
            device: torch.device, out_dir: Path | None, skipped: list[str]) -> None:
    desc = ", ".join(f"{d['mode']} crop={d['crop']} scales={d['scales']}"
                     for d in ens.describe()[:1])
    title = (f"{data.name}: {len(ens.members)} model(s), {desc}"
             f"{' + ensemble' if len(ens.members) > 1 else ''}")
    print(metrics.format_table(title))
    rate = metrics.count / seconds if seconds > 0 else float("nan")
    print(f"{metrics.count} images in {seconds:.1f} s ({rate:.1f} img/s, "
          f"{world_size} process(es), device {device.type})")
    skipped_file = None
    if skipped:
        if out_dir is not None:
            skipped_file = atomic_write_text(out_dir / f"{args.prefix}_skipped_images.txt",
                                             "".join(p + "\n" for p in skipped))
        where = (f"list in {skipped_file}" if skipped_file
                 else f"e.g. {skipped[0]}; pass --out-dir to get the full list")
        print(f"skipped {len(skipped)} unreadable image(s) (not counted in the metrics); {where}")
    if out_dir is not None:
        extra = {
            "checkpoints": [str(c) for c in args.checkpoints],
            "members": ens.describe(),
            "data": data.name,
            "max_samples": args.max_samples,
            "seed": args.seed,
            "skipped_images": len(skipped),
            "world_size": world_size,
            "seconds": seconds,
            "argv": argv,
        }
        paths = metrics.save(out_dir, args.prefix, extra)
        print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    from rectifiers.cli import main as cli_main  # one place prints user errors (exit 2)

    raise SystemExit(cli_main(["eval", *sys.argv[1:]]))
