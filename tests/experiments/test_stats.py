import math

import pytest

from rectifiers.experiments.stats import compare, summarize

scipy = pytest.importorskip("scipy")


def test_summarize_matches_hand_computation():
    # values 1..5: mean 3, s = sqrt(2.5); t_{0.975,4} = 2.7764451
    s = summarize([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert s.mean == 3.0
    assert s.std == pytest.approx(math.sqrt(2.5), rel=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((3 - half, 3 + half), rel=1e-9)


def test_summarize_single_value_has_no_spread():
    s = summarize([0.7])
    assert s.mean == 0.7 and math.isnan(s.std) and math.isnan(s.ci_low)


def test_welch_matches_scipy_and_hand_df():
    a, b = [0.91, 0.92, 0.90, 0.93], [0.89, 0.90, 0.88, 0.87, 0.90]
    c = compare(a, b)
    ref = scipy.stats.ttest_ind(a, b, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    assert c.df == pytest.approx(df, rel=1e-12)
    assert c.diff == pytest.approx(ma - mb, rel=1e-12)
    assert c.ci_low < c.diff < c.ci_high


def test_paired_uses_per_seed_differences():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.5, 1.6, 2.4, 3.7]
    c = compare(a, b, paired=True)
    ref = scipy.stats.ttest_rel(a, b)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.test == "paired t" and c.df == 3


def test_compare_needs_two_runs_per_side():
    with pytest.raises(ValueError, match=">= 2 runs"):
        compare([1.0], [1.0, 2.0])
