"""``rectifiers train``: the command line of :func:`rectifiers.train.train`.

With no arguments it trains the small PReLU-net on Fashion-MNIST (a few minutes on 2 CPU cores,
>= 90 % test accuracy) and prints the accuracy and the learned per-layer slopes. Every field of
:class:`~rectifiers.train.config.TrainConfig` is a flag; ``--paper-recipe`` switches the defaults
to the paper's ImageNet recipe (lr 0.01 /10 on plateau twice, 80 epochs, dropout 0.5, fp32).

Distributed: ``torchrun --nproc_per_node=N -m rectifiers train ...`` (``--batch-size`` is the
global batch; each process uses batch/N).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from rectifiers.errors import ConfigError, UserError
from rectifiers.optim import SCHEDULES
from rectifiers.runtime import AMP_MODES, DEVICES
from rectifiers.train.checkpoint import LAST, read_meta, resolve
from rectifiers.train.config import DATASETS, PAPER_RECIPE, RESUME_NEUTRAL, TrainConfig
from rectifiers.train.engine import DivergenceError, train

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
             if f.default is not dataclasses.MISSING}

DESCRIPTION = """Train a model with the paper's recipe (He et al. 2015, Sec. 3).

With no arguments: the small PReLU-net on Fashion-MNIST (a few minutes on 2 CPU cores,
>= 90 % test accuracy); prints the test accuracy and the learned per-layer PReLU slopes.
--paper-recipe switches the defaults to the paper's ImageNet recipe: SGD momentum 0.9, weight
decay 5e-4 (never on PReLU slopes), batch 128, lr 0.01 divided by 10 on plateau twice, 80 epochs,
dropout 0.5, fp32. Flags given explicitly override either set of defaults."""

EPILOG = """examples:
  rectifiers train                                   # small PReLU-net on Fashion-MNIST
  rectifiers train --act relu --init xavier          # the same net with ReLU / Xavier init
  rectifiers train --model prelunet_a --paper-recipe --dataset folder --data-dir /imagenet
  rectifiers train --out-dir runs/x --checkpoint-every 200 --resume auto   # restartable
  torchrun --nproc_per_node=2 -m rectifiers train --batch-size 256        # data parallel

outputs (in --out-dir, default runs/<model>-<act>-<time>): args.yaml, summary.csv (per epoch),
log.jsonl (per step), checkpoint-last/best.safetensors, curves.png, final.json.
For timing runs on Linux set MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736.
"""


def _d(name: str) -> str:
    return f" (default: {_DEFAULTS[name]})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rectifiers train", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("model")
    g.add_argument("--model", help="model name, see rectifiers.models.list_models()" + _d("model"))
    g.add_argument("--act", help="activation (prelu, relu, leaky_relu, ...)" + _d("act"))
    g.add_argument("--init", help="initialisation scheme (he, xavier, ...)" + _d("init"))
    g.add_argument("--model-kw", dest="model_kwargs", action="append", metavar="KEY=VALUE",
                   help="extra model argument, repeatable, value parsed as JSON "
                        "(e.g. --model-kw depth=8)")
    g.add_argument("--dropout", type=float, help="dropout on fc1/fc2 (default: 0 for the short "
                   "small-model run; the paper and --paper-recipe use 0.5)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help="data source" + _d("dataset"))
    g.add_argument("--data-dir", help="Fashion-MNIST directory (default: $RECTIFIERS_DATA or "
                   "/usr/share/datasets/fashion-mnist) or image folder with train/ and val/")
    g.add_argument("--max-train-samples", type=int, help="train on a seeded subset of n samples")
    g.add_argument("--max-val-samples", type=int, help="validate on a subset of n samples")
    g.add_argument("--augment", help="augmentation preset: auto (flip for small in-memory "
                   "images, 'default' for folders), default (pad-crop + flip for small images; "
                   "the paper's scale jitter [256,512] -> 224 + flip + PCA colour for folders), "
                   "none, flip, pad_crop_flip, scale_jitter_small, paper (default: auto)")
    g.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                   help="same as --augment none")
    g.add_argument("--skip-bad-images", action="store_true", help="folders: leave out "
                   "unreadable images (counted; their paths listed in skipped_images.txt in the "
                   "run directory) instead of stopping at the first one")
    g.add_argument("--workers", type=int, help="image-decoding processes (folders)"
                   + _d("workers"))
    g.add_argument("--synthetic-size", type=int, help="synthetic training samples"
                   + _d("synthetic_size"))
    g.add_argument("--synthetic-classes", type=int, help="synthetic classes"
                   + _d("synthetic_classes"))
    g.add_argument("--synthetic-image-size", type=int, help="synthetic image side"
                   + _d("synthetic_image_size"))
    g.add_argument("--synthetic-chans", type=int, help="synthetic channels"
                   + _d("synthetic_chans"))
    g = p.add_argument_group("optimisation (paper: SGD, momentum 0.9, wd 5e-4, batch 128)")
    g.add_argument("--paper-recipe", action="store_true",
                   help="defaults of the paper's ImageNet recipe: " +
                   ", ".join(f"{k}={v}" for k, v in PAPER_RECIPE.items()))
    g.add_argument("--epochs", type=int, help="epochs" + _d("epochs"))
    g.add_argument("-b", "--batch-size", type=int, help="GLOBAL batch size" + _d("batch_size"))
    g.add_argument("--lr", type=float, help="base learning rate" + _d("lr"))
    g.add_argument("--momentum", type=float, help="SGD momentum" + _d("momentum"))
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    g.add_argument("--weight-decay", "--wd", type=float, dest="weight_decay",
                   help="L2 weight decay, not applied to PReLU slopes or biases"
                   + _d("weight_decay"))
    g.add_argument("--label-smoothing", type=float, help="label smoothing" + _d("label_smoothing"))
    g.add_argument("--grad-clip", type=float, help="max global gradient norm; 0 turns clipping "
                   "off (default: 5.0; --paper-recipe: off)")
    g.add_argument("--sched", choices=SCHEDULES, help="lr schedule" + _d("sched"))
    g.add_argument("--lr-decay", type=float, help="factor per plateau/step" + _d("lr_decay"))
    g.add_argument("--patience-epochs", type=int, help="plateau: epochs without improvement"
                   + _d("patience_epochs"))
    g.add_argument("--plateau-threshold", type=float, help="plateau: relative improvement that "
                   "counts" + _d("plateau_threshold"))
    g.add_argument("--max-lr-drops", type=int, help="plateau: at most this many divisions"
                   + _d("max_lr_drops"))
    g.add_argument("--decay-epochs", type=int, nargs="+", help="step: epochs at which lr *= "
                   "lr-decay (e.g. --decay-epochs 30 60)")
    g.add_argument("--warmup-epochs", type=float, help="linear warm-up" + _d("warmup_epochs"))
    g.add_argument("--lr-min", type=float, help="cosine: final lr" + _d("lr_min"))
    g.add_argument("--max-steps", type=int, help="stop after n optimiser steps in total")
    g = p.add_argument_group("execution")
    g.add_argument("--device", choices=DEVICES, help="device" + _d("device"))
    g.add_argument("--amp", choices=AMP_MODES, help="autocast: bf16 (CPU/CUDA), fp16 (CUDA, with "
                   "a grad scaler) or none" + _d("amp"))
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep NCHW (default: channels_last, 10-15%% faster on CPU)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (~30 s cold)")
    g.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    g.add_argument("--seed", type=int, help="seed of everything" + _d("seed"))
    g = p.add_argument_group("outputs")
    g.add_argument("--out-dir", help="run directory (default: runs/<experiment>)")
    g.add_argument("--experiment", help="run name under runs/ (default: <model>-<act>-<time>)")
    g.add_argument("--no-save", action="store_true", help="write no files at all")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in "
                   "--out-dir: its checkpoints and logs are deleted")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every n steps "
                   "(mid-epoch); epoch ends always" + _d("checkpoint_every"))
    g.add_argument("--resume", help="checkpoint file or run directory to continue bit-exactly, "
                   "or 'auto' (the --out-dir's last checkpoint if there is one); settings not "
                   "given are taken from the checkpoint, and flags that would change the "
                   "results are refused")
    g.add_argument("--log-every", type=int, help="steps per line of log.jsonl" + _d("log_every"))
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (they are off anyway when stderr is not a terminal)")
    g.add_argument("-q", "--quiet", dest="verbose", action="store_false", help="print less")
    return p


def _parse_kv(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-kw expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def config_from_args(argv: list[str]) -> TrainConfig:
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    given = dict(PAPER_RECIPE) if ns.pop("paper_recipe", False) else {}
    no_save = ns.pop("no_save", False)
    experiment = ns.pop("experiment", None)
    if "model_kwargs" in ns:
        ns["model_kwargs"] = _parse_kv(ns["model_kwargs"])
    if "decay_epochs" in ns:
        ns["decay_epochs"] = tuple(ns["decay_epochs"])
    given.update(ns)
    if no_save:
        if given.get("resume") or given.get("out_dir"):
            raise ConfigError("--no-save cannot be combined with --out-dir or --resume")
        given["out_dir"] = None
    elif "out_dir" not in given:
        resume = given.get("resume")
        if resume and resume != "auto":
            # Continue writing into the run the checkpoint came from.
            r = Path(resume)
            given["out_dir"] = str(r if r.is_dir() else r.parent)
        elif resume == "auto" and not experiment:
            raise ConfigError("--resume auto needs --out-dir or --experiment "
                             "(the run whose last checkpoint to continue)")
        else:
            name = experiment or (f"{given.get('model', _DEFAULTS['model'])}-"
                                  f"{given.get('act', _DEFAULTS['act'])}-"
                                  f"{time.strftime('%Y%m%d-%H%M%S')}")
            given["out_dir"] = str(Path("runs") / name)
    if given.get("resume"):
        # A resumed run keeps the settings it was started with: flags not given now are taken
        # from its checkpoint (the engine refuses flags that would change the results).
        given = {**_saved_settings(given["resume"], given.get("out_dir")), **given}
    return TrainConfig(**given)


def _saved_settings(resume: str, out_dir: str | None) -> dict[str, Any]:
    """The result-changing settings stored in the checkpoint a run resumes from."""
    if resume == "auto":
        last = Path(out_dir) / LAST if out_dir else None
        if last is None or not last.is_file():
            return {}  # nothing to resume yet: a fresh start
        path = last
    else:
        path = resolve(resume, prefer="last")
    saved = read_meta(path).get("config") or {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    # threads is neutral (a resume may change it) but the last bits of a reduction depend on it:
    # without --threads the run continues with the thread count it was started with
    keep = {k for k in known if k not in RESUME_NEUTRAL} | {"threads"}
    return {k: v for k, v in saved.items() if k in keep}


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one message), 3 diverged, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from_args(argv)  # validates every field, model/act/init names included
        train(cfg)
    except DivergenceError as e:
        print(f"rectifiers train: diverged: {e}", file=sys.stderr)
        return 3
    except UserError:
        raise  # rectifiers/cli.py prints it as one line (traceback with --debug)
    except KeyboardInterrupt:
        print("rectifiers train: interrupted (resume with --resume auto/PATH)", file=sys.stderr)
        return 130
    return 0
