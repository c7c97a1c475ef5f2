"""Bytes a train step keeps for backward: PReLU-net vs the same net with ReLU (issue 11, item 3).

For each model the forward pass of one training step runs under
``torch.autograd.graph.saved_tensors_hooks`` that record every tensor autograd saves; storages
are deduplicated by pointer (an in-place activation's output *is* its input buffer, and the
next conv saves that same buffer), so the sum is the activation memory the step keeps alive
until backward (parameters, alive anyway, are not counted). Rows: the models as built by
default (``create_model``), and with ``act_kwargs={"inplace": ...}`` forced either way, so the
table shows what the lean path saves whatever the model builder's default is.

Run::

    .venv/bin/python benchmarks/prelu_memory.py [--batch-small 128] [--batch-a 2] [--compiled] \
        [--device cuda]

Target: PReLU-net / ReLU-net <= 1.00 for ``prelunet_small`` and ``prelunet_a``.
"""

from __future__ import annotations

import argparse

import torch

from rectifiers.analysis.cost import saved_tensor_bytes
from rectifiers.models import create_model


def measure(name: str, act: str, x: torch.Tensor, kwargs: dict, inplace,
            compiled: bool = False) -> int:
    act_kwargs = {} if inplace is None else {"inplace": inplace}
    torch.manual_seed(0)
    model = create_model(name, act=act, act_kwargs=act_kwargs, **kwargs)
    model.train().to(x.device)
    if compiled:
        # AOTAutograd's compiled function saves its activations through save_for_backward,
        # so the same hooks see them; fullgraph=True proves there is no graph break
        model = torch.compile(model, fullgraph=True)
        model(x).float().sum().backward()  # compile outside the measured pass
    # a real step inside the count: the saved tensors must suffice for backward
    return saved_tensor_bytes(lambda: model(x).float().sum().backward(),
                              exclude=list(model.parameters()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-small", type=int, default=128)
    ap.add_argument("--batch-a", type=int, default=2)
    ap.add_argument("--compiled", action="store_true",
                    help="also prelunet_small under torch.compile(fullgraph=True)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or a CUDA device")
    args = ap.parse_args()
    torch.manual_seed(0)
    cases = [
        ("prelunet_small", dict(num_classes=10, in_chans=1),
         torch.randn(args.batch_small, 1, 28, 28, device=args.device)),
        ("prelunet_a", dict(num_classes=1000, in_chans=3),
         torch.randn(args.batch_a, 3, 224, 224, device=args.device)),
    ]
    print(f"# device {args.device}; torch {torch.__version__}")
    print("| model | batch | build | PReLU-net MiB | ReLU-net MiB | ratio |")
    print("|---|---|---|---|---|---|")
    for name, kwargs, x in cases:
        for label, inplace in (("default", None), ("inplace=False", False),
                               ("inplace=True", True)):
            p = measure(name, "prelu", x, kwargs, inplace)
            r = measure(name, "relu", x, kwargs, inplace)
            print(f"| {name} | {x.shape[0]} | {label} | {p / 2**20:.1f} | {r / 2**20:.1f} | "
                  f"{p / r:.3f} |", flush=True)
    if args.compiled:
        name, kwargs, x = cases[0]
        p = measure(name, "prelu", x, kwargs, None, compiled=True)
        r = measure(name, "relu", x, kwargs, None, compiled=True)
        print(f"| {name} | {x.shape[0]} | default, torch.compile | {p / 2**20:.1f} | "
              f"{r / 2**20:.1f} | {p / r:.3f} |", flush=True)


if __name__ == "__main__":
    main()
