"""The bench grid: what one run is (:class:`RunSpec`), the cells to run (:class:`Grid`), the
recipe every run of a directory shares (:class:`BenchSettings`) and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rectifiers.errors import ConfigError

__all__ = ["KEY_FIELDS", "PRESETS", "BenchSettings", "Grid", "RunSpec"]

# The fields that identify a run: a finished run with the same key is never recomputed.
KEY_FIELDS: tuple[str, ...] = ("act", "init", "depth", "width", "seed", "epochs", "subset")


@dataclass(frozen=True, order=True)
class RunSpec:
    """One training run: a cell of the grid plus a seed. ``subset=0`` means the full train set."""

    act: str
    init: str
    depth: int
    width: int
    seed: int
    epochs: int
    subset: int

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    @property
    def tag(self) -> str:
        """File-name-safe unique name of the run."""
        n = self.subset if self.subset else "all"
        return (f"{self.act}__{self.init}__d{self.depth}__w{self.width}__e{self.epochs}"
                f"__n{n}__s{self.seed}")


@dataclass
class Grid:
    """The cells to run: every combination of the lists, each with ``seeds`` seeds 0..seeds-1."""

    acts: tuple[str, ...]
    inits: tuple[str, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    seeds: int
    epochs: int
    subset: int  # training examples (a fixed seeded subset); 0 = all 60000

    def __post_init__(self) -> None:
        for name in ("acts", "inits", "depths", "widths"):
            values = tuple(getattr(self, name))
            if not values:
                raise ConfigError(f"--{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"--{name} has duplicates: {list(values)}")
            setattr(self, name, values)
        for name in ("depths", "widths"):
            bad = [v for v in getattr(self, name) if int(v) < 1]
            if bad:
                raise ConfigError(f"--{name} must be positive integers, got {bad}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}")
        if self.subset < 0:
            raise ConfigError(f"--subset must be >= 0 (0 = full training set), got {self.subset}")

    def specs(self) -> list[RunSpec]:
        """All runs, seed-major: after the first pass every cell has one run, so a grid cut
        short still covers every cell (with fewer seeds) instead of a few cells fully."""
        return [RunSpec(a, i, d, w, s, self.epochs, self.subset)
                for s in range(self.seeds) for w in self.widths for d in self.depths
                for i in self.inits for a in self.acts]


@dataclass
class BenchSettings:
    """The recipe shared by every run of a bench directory (not part of a run's key)."""

    model: str = "plain_small"
    lr: float = 0.05  # TrainConfig's small-model default; 0.02 learned too slowly in 2 epochs
    batch_size: int = 128
    weight_decay: float = 5e-4
    sched: str = "cosine"
    augment: str = "none"  # augmentation preset of rectifiers.data ("none": short runs)
    amp: str = "none"
    channels_last: bool = True
    test_subset: int = 0  # test examples used (open_dataset's seed-0 subset); 0 = all
    # Training examples held out (data seed 0, the same for every run) to select the epoch:
    # the reported test numbers are those of the epoch with the lowest validation error.
    val_size: int = 5000
    data_dir: str | None = None
    device: str = "auto"  # not compared on resume: the same grid may continue on a GPU
    # How subsets are drawn: rectifiers.data.holdout_split sets val_size training examples
    # aside (seed 0), the training subset is drawn from the rest with the run's seed
    # (take_subset), the test subset by open_dataset's rule with seed 0. A directory written
    # with another rule is refused on resume.
    data_rule: str = "open_dataset+holdout"

    _NOT_COMPARED = ("data_dir", "device")

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self._NOT_COMPARED}


# Presets. "quick" is toy-sized (the test suite runs its kind of grid); "default" is the
# documented overnight grid (132 runs; the time estimate and how it was made: docs/bench.md).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(acts=("relu", "prelu"), inits=("he",), depths=(5, 6), widths=(4,), seeds=2,
                  epochs=1, subset=256, test_subset=256, val_size=512, batch_size=64),
    "default": dict(
        acts=("relu", "leaky_relu", "prelu", "prelu_shared", "elu", "selu", "gelu", "silu",
              "mish", "smelu", "helu"),
        inits=("he", "xavier"), depths=(6, 14), widths=(16,), seeds=3, epochs=5, subset=20000,
        test_subset=0, batch_size=128),
    # The grid of docs/bench-results.md: 12 activations x 3 inits x 3 depths x 3 seeds = 324
    # runs, sized by measurement to ~1.5 h of one core (depth 30: ~1.9 ms per training image
    # and epoch at width 8, batch 64, one thread): 4000 training images (of the 55000 left
    # after the 5000 held out), 3 epochs, lr 0.02 (0.01 trained the 30-layer ReLU net more
    # slowly in a pilot: 72 vs 76 % after 4 epochs) cosine with the 0.5-epoch warm-up.
    "published": dict(
        acts=("relu", "leaky_relu", "prelu", "prelu_shared", "elu", "selu", "gelu", "silu",
              "mish", "golu", "smelu", "helu"),
        inits=("he", "xavier", "lsuv"), depths=(8, 20, 30), widths=(8,), seeds=3, epochs=3,
        subset=4000, test_subset=5000, val_size=2000, batch_size=64, lr=0.02),
}
