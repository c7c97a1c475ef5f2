"""Statistics for results over seeds: mean, spread, confidence intervals, significance.

Small-sample results (3-10 seeds) need Student-t intervals, not normal ones; a difference
between two configurations is judged by Welch's t-test (unequal variances) or, when the
runs are paired by seed (same data order and initial weights drawn from the same stream),
by a paired t-test. scipy supplies the t distribution (install the ``experiments`` extra).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def _t_ppf(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and a two-sided t confidence interval of the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        ci = f"{self.confidence:.0%} CI [{self.ci_low:.4g}, {self.ci_high:.4g}]"
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n}, {ci})"


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Summarise repeated measurements: mean ± t_{(1+c)/2, n-1} · s/√n.

    >>> summarize([1.0, 2.0, 3.0]).mean
    2.0
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    mean = sum(xs) / n
    if n == 1:
        return Summary(1, mean, float("nan"), float("nan"), float("nan"), confidence)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = _t_ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, confidence)


@dataclass(frozen=True)
class Comparison:
    """Difference of means (a - b) with its confidence interval and a two-sided p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    df: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    def as_dict(self) -> dict:
        return asdict(self)


def compare(a: Sequence[float], b: Sequence[float], paired: bool = False,
            confidence: float = 0.95) -> Comparison:
    """Compare two sets of runs.

    ``paired=False``: Welch's t-test, df by the Welch-Satterthwaite equation.
    ``paired=True``: t-test on the per-seed differences a_i - b_i (same seeds, same order).
    Needs at least two values per side (and a non-zero spread) to give a p-value.
    """
    from scipy import stats

    xa, xb = [float(v) for v in a], [float(v) for v in b]
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError(f"compare() needs >= 2 runs per side, got {len(xa)} and {len(xb)}")
    if paired:
        if len(xa) != len(xb):
            raise ValueError(
                f"paired comparison needs equal run counts, got {len(xa)} and {len(xb)}"
            )
        d = [x - y for x, y in zip(xa, xb, strict=True)]
        s = summarize(d, confidence)
        se = s.std / math.sqrt(s.n)
        df = s.n - 1
        if se == 0:
            p = 1.0 if s.mean == 0 else 0.0
        else:
            p = float(2 * stats.t.sf(abs(s.mean / se), df))
        return Comparison(s.mean, s.ci_low, s.ci_high, p, "paired t", df)
    na, nb = len(xa), len(xb)
    ma, mb = sum(xa) / na, sum(xb) / nb
    va = sum((x - ma) ** 2 for x in xa) / (na - 1)
    vb = sum((x - mb) ** 2 for x in xb) / (nb - 1)
    se2 = va / na + vb / nb
    diff = ma - mb
    if se2 == 0:
        p = 1.0 if diff == 0 else 0.0
        return Comparison(diff, diff, diff, p, "welch t", float("inf"))
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    se = math.sqrt(se2)
    half = _t_ppf(0.5 + confidence / 2, df) * se
    p = float(2 * stats.t.sf(abs(diff / se), df))
    return Comparison(diff, diff - half, diff + half, p, "welch t", df)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (e.g. the fraction
    of seeds that converge). Unlike the normal approximation it stays inside [0, 1] and is
    not degenerate at 0/n or n/n: 0 of 5 gives [0, 0.43]."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}/{n}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
