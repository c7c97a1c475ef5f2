"""Data pipeline throughput next to the training step it feeds (issue 4, "Throughput").

Measures, in one process and interleaved (pipeline round, train round, pipeline round, ...):

* pipeline images/s: the Fashion-MNIST training BatchLoader with its default augmentation
  (2-px reflect pad + random 28 crop + flip, standardisation), batch 128, producing
  float32 NCHW batches ready for the model;
* training images/s: forward + backward + SGD step of
  ``create_model("prelunet_small", num_classes=10, in_chans=1)`` on the same batch size.

``--augment scale_jitter_small`` measures the scale-jitter preset instead, whose resize runs
once per image (so a sample's result never depends on its batch; see
:mod:`rectifiers.data.transforms`).

Reports medians over rounds and the ratio (target: pipeline >= 5x training).

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \
        .venv/bin/python benchmarks/data_throughput.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from rectifiers.data import AUGMENT_PRESETS, build_loader
from rectifiers.files import atomic_write_text
from rectifiers.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pipeline-batches", type=int, default=40, help="batches per pipeline round")
    ap.add_argument("--train-steps", type=int, default=4, help="steps per training round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--augment", default="pad_crop_flip", choices=sorted(AUGMENT_PRESETS),
                    help="augmentation preset of the pipeline")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loader = build_loader("fashion_mnist", args.batch_size, train=True, seed=0,
                          augment=args.augment)
    model_name = "prelunet_small"
    model = create_model(model_name, num_classes=10, in_chans=loader.in_chans)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x0, y0 = next(iter(loader))

    batches = iter(())

    def pipeline_round() -> float:
        nonlocal batches
        n = 0
        t = time.perf_counter()
        for _ in range(args.pipeline_batches):
            try:
                x, _ = next(batches)
            except StopIteration:  # next epoch (the loader advances by itself)
                batches = iter(loader)
                x, _ = next(batches)
            n += x.shape[0]
        return n / (time.perf_counter() - t)

    def train_round() -> float:
        t = time.perf_counter()
        for _ in range(args.train_steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x0), y0).backward()
            opt.step()
        return args.train_steps * x0.shape[0] / (time.perf_counter() - t)

    pipeline_round()  # warm-up: first decode/caches, allocator, autograd graph
    train_round()
    pipe, train = [], []
    for _ in range(args.rounds):
        pipe.append(pipeline_round())
        train.append(train_round())
    res = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}",
        "batch_size": args.batch_size,
        "augment": args.augment,
        "model": model_name,
        "pipeline_img_per_s_median": statistics.median(pipe),
        "train_img_per_s_median": statistics.median(train),
        # per-round ratios: both halves of a round see the same background load
        "ratio_pipeline_over_train": statistics.median(
            p / t for p, t in zip(pipe, train, strict=True)),
        "pipeline_rounds": [round(v) for v in pipe],
        "train_rounds": [round(v) for v in train],
        "target_ratio": 5.0,
    }
    res["target_met"] = res["ratio_pipeline_over_train"] >= 5.0
    print(json.dumps(res, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
