"""SyntheticDataset: deterministic, balanced, learnable."""

import torch

from rectifiers.data import SyntheticDataset


def test_deterministic_balanced_and_split_disjoint():
    a = SyntheticDataset(103, 10, 16, 3, seed=4)
    b = SyntheticDataset(103, 10, 16, 3, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.dtype == torch.uint8 and a.images.shape == (103, 3, 16, 16)
    counts = torch.bincount(a.labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    v = SyntheticDataset(103, 10, 16, 3, seed=4, split="val")
    assert not torch.equal(v.images, a.images)
    assert torch.equal(v.templates, a.templates)  # same classes in both splits
    assert not torch.equal(SyntheticDataset(103, 10, 16, 3, seed=5).images, a.images)


def test_classes_are_learnable_by_nearest_class_mean():
    """Even the simplest classifier (nearest class-mean image) beats chance by far."""
    tr = SyntheticDataset(500, 5, 12, 1, seed=0)
    te = SyntheticDataset(200, 5, 12, 1, seed=0, split="val")
    x = tr.images.flatten(1).float()
    means = torch.stack([x[tr.labels == k].mean(0) for k in range(5)])
    pred = torch.cdist(te.images.flatten(1).float(), means).argmin(1)
    acc = (pred == te.labels).float().mean().item()
    assert acc > 0.9  # chance is 0.2
