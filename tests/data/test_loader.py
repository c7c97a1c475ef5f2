"""BatchLoader: epoch coverage, exact mid-epoch resume, DDP sharding, metadata."""

import json
from pathlib import Path

import pytest
import torch

from rectifiers.data import (
    DEFAULT_FASHION_MNIST_DIR,
    AugmentConfig,
    DataConfig,
    SyntheticDataset,
    build_loader,
)


def _ds(n=100, size=12, chans=3):
    return SyntheticDataset(n, 5, size, chans, seed=1)


def _ids(ds):
    """A per-sample id recoverable from the image: its index, encoded in the first pixel(s)."""
    ds.images[:, 0, 0, 0] = torch.arange(len(ds)) % 256
    ds.images[:, 0, 0, 1] = torch.arange(len(ds)) // 256
    return ds


def test_every_sample_once_per_epoch_and_orders_differ():
    ds = _ids(_ds(100))
    loader = build_loader(ds, 8, train=True, seed=0, augment="none", drop_last=False,
                          normalization={"kind": "none", "scale": 1.0})
    assert len(loader) == 13
    seen = []
    for x, y in loader:
        ids = (x[:, 0, 0, 0] + 256 * x[:, 0, 0, 1]).long()
        assert torch.equal(y, ds.labels[ids])
        seen.append(ids)
    e0 = torch.cat(seen)
    assert sorted(e0.tolist()) == list(range(100))
    assert loader.epoch == 1 and loader.position == 0  # auto-advanced
    e1 = torch.cat([(x[:, 0, 0, 0] + 256 * x[:, 0, 0, 1]).long() for x, _ in loader])
    assert sorted(e1.tolist()) == list(range(100)) and not torch.equal(e0, e1)
    dropped = build_loader(ds, 8, train=True, seed=0, augment="none")
    assert len(dropped) == 12 and sum(x.shape[0] for x, _ in dropped) == 96
    ev = build_loader(ds, 30, train=False, normalization={"kind": "none", "scale": 1.0})
    assert [x.shape[0] for x, _ in ev] == [30, 30, 30, 10]
    assert torch.equal(torch.cat([y for _, y in ev]), ds.labels)  # fixed order


def _run(loader, epochs):
    out = []
    for e in range(loader.epoch, epochs):
        loader.set_epoch(e)
        out.extend((e, x, y) for x, y in loader)
    return out


@pytest.mark.parametrize("augment", ["pad_crop_flip", "scale_jitter_small", "paper_small"])
def test_mid_epoch_resume_is_bit_exact(augment):
    ds = _ds(64, 28)
    if augment == "paper_small":
        augment = AugmentConfig(crop_size=24, scale_range=(24, 32), pca_std=0.1)
    ref = _run(build_loader(ds, 8, train=True, seed=7, augment=augment), 3)
    first = build_loader(ds, 8, train=True, seed=7, augment=augment)
    first.set_epoch(0)
    assert len(list(first)) == 8  # epoch 0 complete
    first.set_epoch(1)
    it = iter(first)
    for _ in range(5):  # killed after the 5th step of epoch 1
        next(it)
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    assert state["epoch"] == 1 and state["position"] == 5
    resumed = build_loader(ds, 8, train=True, seed=7, augment=augment)
    resumed.load_state_dict(state)
    rest = _run(resumed, 3)
    assert len(rest) == len(ref) - 8 - 5 == 11
    for (e1, x1, y1), (e2, x2, y2) in zip(ref[13:], rest, strict=True):
        assert e1 == e2 and torch.equal(x1, x2) and torch.equal(y1, y2)


def test_state_dict_mismatch_is_refused():
    ds = _ds(64)
    a = build_loader(ds, 8, train=True, seed=1)
    b = build_loader(ds, 16, train=True, seed=1)
    with pytest.raises(ValueError, match="global_batch_size=8.*batch_size x world_size"):
        b.load_state_dict(a.state_dict())
    c = build_loader(ds, 8, train=True, seed=2)
    with pytest.raises(ValueError, match="seed"):
        c.load_state_dict(a.state_dict())


@pytest.mark.parametrize("world", [2, 4])
def test_ddp_shards_union_equals_single_process_batch(world):
    ds = _ds(96, 28)
    aug = AugmentConfig(crop_size=24, scale_range=(24, 30), pca_std=0.1)
    single = list(build_loader(ds, 16, train=True, seed=5, augment=aug))
    ranks = [list(build_loader(ds, 16 // world, train=True, seed=5, augment=aug, rank=r,
                               world_size=world)) for r in range(world)]
    assert all(len(r) == len(single) == 6 for r in ranks)
    for j, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([r[j][0] for r in ranks]), x)
        assert torch.equal(torch.cat([r[j][1] for r in ranks]), y)
    # disjoint shards: the positions each rank takes within the epoch order never overlap
    order = build_loader(ds, 16, train=True, seed=5, augment=aug).epoch_order(0)[:96]
    per_rank = [order.view(6, world, 16 // world)[:, r].flatten() for r in range(world)]
    assert len(set(torch.cat(per_rank).tolist())) == 96


@pytest.mark.parametrize("augment", ["pad_crop_flip", "scale_jitter_small", "paper_small"])
def test_each_sample_augments_the_same_in_any_batch_size_and_at_1_or_2_threads(augment):
    """Bit-equality that holds on any x86-64 CPU: every augmentation op is a gather, an
    elementwise op or a call on the one sample, so a sample's result cannot depend on its
    batch companions (a batched matmul/interpolate could, through the batch's blocking)."""
    ds = _ds(48, 28)
    if augment == "paper_small":
        augment = AugmentConfig(crop_size=24, scale_range=(24, 32), pca_std=0.1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        whole = list(build_loader(ds, 16, train=True, seed=3, augment=augment))
        torch.set_num_threads(1)
        # world 16 x batch 1: every sample augmented alone, single-threaded
        alone = [list(build_loader(ds, 1, train=True, seed=3, augment=augment, rank=r,
                                   world_size=16)) for r in range(16)]
    finally:
        torch.set_num_threads(threads)
    for j, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([a[j][0] for a in alone]), x)
        assert torch.equal(torch.cat([a[j][1] for a in alone]), y)


def test_resume_on_a_different_world_size_with_the_same_global_batch():
    ds = _ds(64, 28)
    one = build_loader(ds, 16, train=True, seed=2)
    it = iter(one)
    next(it)
    next(it)
    state = one.state_dict()
    rest_single = list(it)
    shards = []
    for r in range(2):
        ld = build_loader(ds, 8, train=True, seed=2, rank=r, world_size=2)
        ld.load_state_dict(state)
        shards.append(list(ld))
    for j, (x, _) in enumerate(rest_single):
        assert torch.equal(torch.cat([shards[0][j][0], shards[1][j][0]]), x)


def test_uneven_last_batch_split_for_evaluation():
    ds = _ds(21)
    parts = [list(build_loader(ds, 4, train=False, rank=r, world_size=3)) for r in range(3)]
    total = sum(x.shape[0] for p in parts for x, _ in p)
    assert total == 21 and all(len(p) == 2 for p in parts)  # 12 + 9 -> 3,3,3 / 3,3,3
    labels = torch.cat([torch.cat([parts[r][j][1] for r in range(3)]) for j in range(2)])
    assert torch.equal(labels, ds.labels)


def test_metadata_and_stats_from_the_train_split():
    tr = build_loader("synthetic", 16, train=True, num_samples=64, image_size=16, in_chans=3)
    te = build_loader("synthetic", 16, train=False, num_samples=64, image_size=16, in_chans=3)
    assert te.normalization == tr.normalization  # test data normalised with train statistics
    meta = json.loads(json.dumps(tr.metadata()))
    assert meta["num_classes"] == 10 and meta["in_chans"] == 3 and meta["image_size"] == 16
    assert tr.image_size == tr.crop_size == 16 and tr.num_classes == 10
    x, y = next(iter(tr))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (16, 3, 16, 16)
    with pytest.raises(ValueError, match="PCA colour noise needs RGB"):
        build_loader("synthetic", 16, train=True, in_chans=1, augment="paper")
    with pytest.raises(ValueError, match="unknown augment"):
        build_loader("synthetic", 16, train=True, augment="mixup")
    with pytest.raises(ValueError, match="unknown data option"):
        build_loader("synthetic", 16, train=True, colour="red")
    with pytest.raises(ValueError, match="no full global batch"):
        build_loader(_ds(10), 8, train=True, world_size=2)
    cfg = DataConfig(dataset="synthetic", num_samples=32, image_size=12)
    assert build_loader(cfg, 8, train=True).image_size == 12


_REAL = Path(DEFAULT_FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not _REAL.exists(), reason="Fashion-MNIST not installed")
def test_fashion_mnist_default_loaders():
    tr = build_loader("fashion_mnist", 128, train=True, seed=0)
    te = build_loader("fashion_mnist", 1000, train=False)
    assert len(tr) == 468 and len(te) == 10
    assert tr.in_chans == 1 and tr.image_size == 28 and tr.num_classes == 10
    assert tr.normalization["kind"] == "standardize"
    assert abs(tr.normalization["mean"][0] - 0.286) < 0.001
    assert abs(tr.normalization["std"][0] - 0.353) < 0.001
    x, y = next(iter(te))
    assert x.shape == (1000, 1, 28, 28)
    # no augmentation at test time: batch equals the normalised raw images
    assert abs(float(x.mean())) < 0.1 and 0.9 < float(x.std()) < 1.1
