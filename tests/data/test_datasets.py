"""open_dataset: one way to open a data set by name, with one meaning of 'subset'."""

import numpy as np
import pytest
import torch

from rectifiers.data import (
    DataConfig,
    ImageFolder,
    InMemoryDataset,
    build_loader,
    holdout_split,
    open_dataset,
    subset_indices,
    take_subset,
)
from rectifiers.errors import ConfigError, UserError


def test_subset_is_a_sorted_seeded_draw_nested_in_larger_ones():
    a = subset_indices(1000, 50, seed=3, split="train")
    assert a.shape == (50,) and torch.equal(a, a.sort().values)
    assert len(set(a.tolist())) == 50 and 0 <= int(a.min()) and int(a.max()) < 1000
    assert torch.equal(a, subset_indices(1000, 50, seed=3, split="train"))  # a pure function
    big = subset_indices(1000, 200, seed=3, split="train")
    assert set(a.tolist()) <= set(big.tolist())  # prefix of one permutation
    assert not torch.equal(a, subset_indices(1000, 50, seed=4, split="train"))
    assert not torch.equal(a, subset_indices(1000, 50, seed=3, split="test"))
    assert subset_indices(1000, None, 0, "train") is None
    assert subset_indices(1000, 1000, 0, "train") is None  # n >= N: the whole split
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="positive number of samples"):
            subset_indices(10, bad, 0, "train")


def test_subset_draw_is_uniform_over_samples():
    # each index is kept with probability n/N; count over 400 seeds: binomial(400, 0.25)
    hits = torch.zeros(40)
    for seed in range(400):
        hits[subset_indices(40, 10, seed, "train")] += 1
    sd = (400 * 0.25 * 0.75) ** 0.5
    assert float((hits - 100).abs().max()) < 5 * sd


def test_open_synthetic_subset_keeps_rows_of_the_full_split():
    full = open_dataset("synthetic", "train", num_samples=64, image_size=8, in_chans=1, seed=2)
    sub = open_dataset("synthetic", "train", subset=10, num_samples=64, image_size=8,
                       in_chans=1, seed=2)
    assert isinstance(sub, InMemoryDataset) and len(sub) == 10 and len(full) == 64
    assert torch.equal(sub.indices, subset_indices(64, 10, 2, "train"))
    assert torch.equal(sub.images, full.images[sub.indices])
    assert torch.equal(sub.labels, full.labels[sub.indices])
    assert sub.classes == full.classes and sub.num_classes == 10 and sub.in_chans == 1
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'"):
        open_dataset("imagenet", "train")
    with pytest.raises(ConfigError, match="splits 'train' and 'test'"):
        open_dataset("fashion_mnist", "val")
    with pytest.raises(ConfigError, match="--data-dir"):
        open_dataset("folder", "train")
    assert issubclass(ConfigError, UserError)


def test_folder_subset_is_the_same_rule(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for k in range(6):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    d / f"{k}.png")
    full = open_dataset("folder", "train", tmp_path)
    sub = open_dataset("folder", "train", tmp_path, subset=5, seed=1)
    assert isinstance(sub, ImageFolder) and len(sub) == 5 and len(full) == 12
    keep = subset_indices(12, 5, 1, "train").tolist()
    assert sub.samples == [full.samples[i] for i in keep]
    assert sub.labels.tolist() == [full.labels[i].item() for i in keep]
    assert torch.equal(sub.load(0), full.load(keep[0]))


def test_loader_config_subset_uses_open_dataset():
    cfg = DataConfig(dataset="synthetic", num_samples=64, image_size=8, in_chans=1, subset=16,
                     data_seed=5)
    ld = build_loader(cfg, 4, train=False)
    ref = open_dataset("synthetic", "test", subset=16, seed=5, num_samples=64, image_size=8,
                       in_chans=1)
    assert ld.num_samples == 16
    assert torch.equal(torch.cat([y for _, y in ld]), ref.labels)


def _synthetic(n: int = 200) -> InMemoryDataset:
    return open_dataset("synthetic", "train", num_samples=n, image_size=8, in_chans=1, seed=5)


def test_holdout_split_is_a_seeded_partition_of_the_split():
    data = _synthetic()
    rest, val = holdout_split(data, 30, seed=0)
    assert len(val) == 30 and len(rest) == 170
    r, v = rest.indices.tolist(), val.indices.tolist()
    assert set(r).isdisjoint(v) and sorted(r + v) == list(range(200))  # a partition
    assert r == sorted(r)  # the rest keeps the split's order
    assert torch.equal(val.images, data.images[val.indices])
    assert torch.equal(rest.labels, data.labels[rest.indices])
    assert val.split == "train/holdout" and rest.split == "train" and val.classes == data.classes
    again_rest, again_val = holdout_split(_synthetic(), 30, seed=0)  # deterministic
    assert torch.equal(again_val.indices, val.indices)
    assert torch.equal(again_rest.indices, rest.indices)
    _, other = holdout_split(data, 30, seed=1)
    assert not torch.equal(other.indices, val.indices)
    # its own stream: not the training subset of the same size and seed
    assert not torch.equal(val.indices, subset_indices(200, 30, 0, "train"))
    # of a subset: indices still refer to the full split
    sub = open_dataset("synthetic", "train", subset=100, num_samples=200, image_size=8,
                       in_chans=1, seed=5)
    sub_rest, sub_val = holdout_split(sub, 10, seed=0)
    assert set(sub_val.indices.tolist()) | set(sub_rest.indices.tolist()) == set(
        sub.indices.tolist())
    assert torch.equal(sub_val.images, data.images[sub_val.indices])


def test_validation_set_is_the_same_for_every_run_seed_and_never_trained_on():
    data = _synthetic()
    rest, val = holdout_split(data, 40, seed=0)
    held = set(val.indices.tolist())
    draws = [take_subset(rest, 50, seed) for seed in range(4)]
    for d in draws:
        assert len(d) == 50 and held.isdisjoint(d.indices.tolist())
        assert set(d.indices.tolist()) <= set(rest.indices.tolist())
        # indices refer to the full split, so images match the original rows
        assert torch.equal(d.images, data.images[d.indices])
        assert torch.equal(d.labels, data.labels[d.indices])
    assert len({tuple(d.indices.tolist()) for d in draws}) == 4  # the run seed picks the draw
    again = take_subset(holdout_split(_synthetic(), 40, seed=0)[0], 50, 2)
    assert torch.equal(again.indices, draws[2].indices)  # deterministic
    assert take_subset(rest, None, 0) is rest and take_subset(rest, 10_000, 0) is rest


@pytest.mark.parametrize("n", [0, -1, 200, 250, 2.5, True])
def test_holdout_split_refuses_a_bad_size(n):
    with pytest.raises(ConfigError, match="held-out validation split"):
        holdout_split(_synthetic(), n)


@pytest.mark.parametrize("n", [0, -3, 1.5])
def test_take_subset_refuses_a_bad_size(n):
    with pytest.raises(ConfigError, match="positive number of samples"):
        take_subset(_synthetic(), n, 0)
