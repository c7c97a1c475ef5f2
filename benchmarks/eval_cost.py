"""Cost of dense multi-scale testing vs. naive per-view testing, and whether they agree.

Dense (paper Sec. 3): per scale, the conv trunk runs once on the whole image (and once on its
flip, in the same batch); every ``window x window`` window of the last map is scored by the
SPP + fc head. Naive: crop every corresponding view from the image and run the whole network
on it (one trunk pass per view). Both average the softmax scores of the same set of views.

Cases:

* ``valid``: an SPP net whose trunk has no padding (total stride 4). Map window (i, j) sees
  exactly the image crop at (4i, 4j), so dense == naive up to float rounding: this checks
  the implementation, and the time ratio is the pure saving.
* ``small``: ``prelunet_small`` (padded 3x3 convs, Fashion-MNIST geometry, window 7,
  stride 4, scales 28/32/36). Padding is applied at the crop border in the naive run but
  sees real pixels in the dense run, so the two differ: dense testing is the paper's cheaper
  approximation of per-view testing, and the difference is reported.
* ``a``: ``prelunet_a`` (Table 3 geometry, width x``--width-mult``, fc ``--fc-dim``) at the
  paper's scales 256/384/480 on a 4:3 image: 224-pixel views at stride 16, as in the paper.

Timing: variants interleaved (naive, dense, naive, dense, ...), medians after a warm-up;
run with ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736``.

    python benchmarks/eval_cost.py            # all cases
    python benchmarks/eval_cost.py --cases valid small --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rectifiers.eval.dense import dense_scores, naive_window_scores
from rectifiers.models import create_model
from rectifiers.models.spp_net import Conv, Pool, SPPNet


def valid_net() -> SPPNet:
    # conv3 (valid) -> pool2 -> conv3 (valid) -> pool2 -> conv3 (valid): stride 4, rf 18;
    # a 26x26 view gives a 3x3 map, so window = 3
    plan = [Conv("conv1", 32, 3, 1, 0), Pool("pool1", 2, 2), Conv("conv2", 64, 3, 1, 0),
            Pool("pool2", 2, 2), Conv("conv3", 64, 3, 1, 0)]
    return SPPNet(plan, in_chans=1, num_classes=10, spp_levels=(3, 2, 1), fc_dims=(256, 256),
                  act="prelu", act_kwargs={}, drop_rate=0.5, default_input_size=(1, 26, 26),
                  spp_rule="adaptive", default_fc_std=(0.01,))


def cases(width_mult: float, fc_dim: int) -> dict[str, dict]:
    return {
        "valid": dict(model=valid_net, crop=26, stride=4, scales=(26, 32, 40),
                      images=(8, 1, 30, 36)),
        "small": dict(model=lambda: create_model("prelunet_small", num_classes=10, in_chans=1),
                      crop=28, stride=4, scales=(28, 32, 36), images=(8, 1, 28, 28)),
        "a": dict(model=lambda: create_model("prelunet_a", num_classes=1000, in_chans=3,
                                             width_mult=width_mult, fc_dim=fc_dim),
                  crop=224, stride=16, scales=(256, 384, 480), images=(1, 3, 300, 400)),
    }


def run_case(name: str, spec: dict, repeats: int) -> dict:
    torch.manual_seed(0)
    model = spec["model"]().eval()
    x = torch.randn(*spec["images"])
    with torch.no_grad():
        # The paper's init gives the last fc std 0.001, i.e. near-uniform scores that make
        # "top-1 agreement" meaningless; rescale it so the logits have std ~2, as a trained
        # model's do. Both variants use the same weights.
        last = model.classifier[-1]
        std = float(model(x[:, :, : spec["crop"], : spec["crop"]]).std())
        last.weight.mul_(2.0 / std)
        last.bias.mul_(2.0 / std)
    calls = {"n": 0, "views": 0}

    def count(mod, inp, out):
        calls["n"] += 1
        calls["views"] += inp[0].shape[0]

    model.trunk.register_forward_hook(count)

    def dense():
        return dense_scores(model, x, spec["scales"], flip=True)

    def naive():
        return naive_window_scores(model, x, spec["scales"], crop=spec["crop"],
                                   stride=spec["stride"], flip=True, batch=64)

    with torch.no_grad():
        # warm-up runs double as the (machine-independent) FLOP count
        calls.update(n=0, views=0)
        with FlopCounterMode(display=False) as fc:
            d = dense()
        dense_calls, dense_flops = (calls["n"], calls["views"]), fc.get_total_flops()
        calls.update(n=0, views=0)
        with FlopCounterMode(display=False) as fc:
            n = naive()
        naive_calls, naive_flops = (calls["n"], calls["views"]), fc.get_total_flops()
        times: dict[str, list[float]] = {"naive": [], "dense": []}
        for _ in range(repeats):
            for label, fn in (("naive", naive), ("dense", dense)):
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
    diff = float((d - n).abs().max())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "case": name, "images": "x".join(map(str, spec["images"])),
        "scales": "/".join(map(str, spec["scales"])),
        "naive_s": med["naive"], "dense_s": med["dense"], "speedup": med["naive"] / med["dense"],
        "trunk_calls_naive": naive_calls, "trunk_calls_dense": dense_calls,
        "max_abs_diff": diff, "gflop_naive": naive_flops / 1e9, "gflop_dense": dense_flops / 1e9,
        "top1_agree": float((d.argmax(1) == n.argmax(1)).float().mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["valid", "small", "a"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--width-mult", type=float, default=0.125)
    p.add_argument("--fc-dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    specs = cases(args.width_mult, args.fc_dim)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"repeats {args.repeats} (medians, interleaved after one warm-up each); "
          "trunk inputs = images through the trunk (naive: + 1 shape probe per scale)")
    print("| case | images | scales | naive s | dense s | speed-up | GFLOP naive/dense "
          "| trunk inputs naive/dense | max abs diff | top-1 agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        r = run_case(name, specs[name], args.repeats)
        print(f"| {r['case']} | {r['images']} | {r['scales']} | {r['naive_s']:.3f} | "
              f"{r['dense_s']:.3f} | {r['speedup']:.1f}x | {r['gflop_naive']:.1f}/"
              f"{r['gflop_dense']:.1f} | {r['trunk_calls_naive'][1]}/"
              f"{r['trunk_calls_dense'][1]} | {r['max_abs_diff']:.2e} | {r['top1_agree']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
