"""The statistics compare adds (Welch t, Student t tail, Benjamini-Hochberg, bootstrap ratio test)
against values worked by hand from their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archbench.reports.stats import (
    benjamini_hochberg,
    bootstrap_ratio_ci,
    bootstrap_ratio_test,
    student_t_two_sided_p,
    welch_t_test,
)


def test_student_t_tail_matches_the_closed_forms_for_one_and_two_degrees_of_freedom():
    # df = 1 is the Cauchy: P(|T| >= t) = 1 - 2 atan(t) / pi; at t = 1 that is exactly 1/2.
    assert student_t_two_sided_p(1.0, 1) == pytest.approx(0.5, abs=1e-12)
    assert student_t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 * math.atan(3) / math.pi)
    # df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2); at t = 1, 1 - 1/sqrt(3) = 0.42265.
    assert student_t_two_sided_p(1.0, 2) == pytest.approx(0.422650, abs=1e-6)
    assert student_t_two_sided_p(-1.0, 2) == student_t_two_sided_p(1.0, 2)
    # Tables: t_{0.975, 9} = 2.262 and t_{0.975, 30} = 2.042 leave 5% in the two tails.
    assert student_t_two_sided_p(2.262, 9) == pytest.approx(0.05, abs=1e-4)
    assert student_t_two_sided_p(2.042, 30) == pytest.approx(0.05, abs=1e-4)
    # Many degrees of freedom: the normal, 2 * (1 - Phi(1.959964)) = 0.05.
    assert student_t_two_sided_p(1.959964, 1e7) == pytest.approx(0.05, abs=1e-5)
    assert student_t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_two_sided_p(1.0, 0)


def test_welch_t_by_hand():
    # a = [0, 2], b = [3, 5]: means 1 and 4, variances 2 and 2, so se^2 = 2/2 + 2/2 = 2,
    # t = 3 / sqrt(2) = 2.1213, df = 2^2 / (1^2/1 + 1^2/1) = 2, p = 1 - t / sqrt(2 + t^2) = 0.16795.
    result = welch_t_test([0, 2], [3, 5])
    assert result.t == pytest.approx(3 / math.sqrt(2))
    assert result.df == pytest.approx(2.0)
    assert result.p_value == pytest.approx(1 - (3 / math.sqrt(2)) / math.sqrt(6.5), abs=1e-9)
    # Unequal variances: a = [1, 2, 3] (var 1), b = [4, 8] (var 8): se^2 = 1/3 + 4 = 13/3,
    # df = (13/3)^2 / ((1/3)^2 / 2 + 4^2 / 1) = 18.778 / 16.056 = 1.1696.
    unequal = welch_t_test([1, 2, 3], [4, 8])
    assert unequal.t == pytest.approx(4 / math.sqrt(13 / 3))
    assert unequal.df == pytest.approx((13 / 3) ** 2 / ((1 / 3) ** 2 / 2 + 16))


def test_welch_t_without_spread_is_decided_by_the_means():
    assert welch_t_test([2, 2], [2, 2]).p_value == 1.0
    assert welch_t_test([2, 2], [3, 3]).p_value == 0.0
    with pytest.raises(ValueError, match="two values"):
        welch_t_test([1], [2, 3])


def test_benjamini_hochberg_by_hand():
    # Sorted p: 0.01, 0.03, 0.04, 0.5; times m/rank (4/1, 4/2, 4/3, 4/4): 0.04, 0.06, 0.0533,
    # 0.5; running minimum from the top: 0.04, 0.0533, 0.0533, 0.5; back in input order.
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    assert q == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert benjamini_hochberg([0.9, 0.8]) == pytest.approx([0.9, 0.9])  # capped, monotone
    assert benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError, match="p-values in"):
        benjamini_hochberg([0.1, float("nan")])


def _resampled_ratios(a, b, percentile, n_boot, seed):
    """The procedure bootstrap_ratio_test documents, written out: resample A, then B."""
    rng = np.random.default_rng(seed)
    stat_a = np.percentile(rng.choice(a, size=(n_boot, len(a))), percentile, axis=1)
    stat_b = np.percentile(rng.choice(b, size=(n_boot, len(b))), percentile, axis=1)
    return stat_b / stat_a


def test_bootstrap_ratio_test_p_is_the_interval_it_implies():
    # Overlapping samples: resamples fall on both sides of 1, p counts the smaller side.
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0, 0.3, 30), rng.lognormal(0.2, 0.3, 30)
    test = bootstrap_ratio_test(a, b, percentile=99, n_boot=500, seed=7)
    ratios = _resampled_ratios(a, b, 99, 500, 7)
    smaller_side = min((ratios <= 1).sum(), (ratios >= 1).sum())
    assert smaller_side > 0
    assert test.p_value == pytest.approx((2 * smaller_side + 2) / 501)
    # The same resamples as bootstrap_ratio_ci with the same seed: the same interval.
    ci = bootstrap_ratio_ci(a, b, percentile=99, n_boot=500, seed=7)
    assert (test.ci_low, test.ci_high) == ci
    assert test.ratio == pytest.approx(np.percentile(b, 99) / np.percentile(a, 99))


def test_bootstrap_ratio_test_extrapolates_beyond_its_last_resample():
    # B = 3 x A with no overlap: no resampled ratio reaches 1, so the count says only
    # p < 2/401; the normal fit of the log ratios gives the tail beyond.
    a = [1.0, 1.1, 1.2, 1.3, 1.4]
    b = [3 * v for v in a]
    test = bootstrap_ratio_test(a, b, percentile=50, n_boot=400, seed=0)
    logs = np.log(_resampled_ratios(a, b, 50, 400, 0))
    assert (logs > 0).all()
    expected = math.erfc(abs(logs.mean()) / (logs.std(ddof=1) * math.sqrt(2)))
    assert test.p_value == pytest.approx(expected)
    assert test.p_value < 2 / 401
    # Constant samples: every ratio is 3/2, no spread at all: p = 0 (as Welch's t without spread).
    constant = bootstrap_ratio_test([2, 2, 2], [3, 3, 3], percentile=99, n_boot=999)
    assert (constant.ratio, constant.ci_low, constant.ci_high, constant.p_value) == (
        1.5,
        1.5,
        1.5,
        0,
    )
    # Identical constants: every ratio is exactly 1, no evidence either way.
    assert bootstrap_ratio_test([2, 2], [2, 2], percentile=50).p_value == 1.0


def test_quantile_interval_is_the_order_statistics_the_binomial_gives():
    from archbench.reports.stats import quantile_interval, quantile_upper_bound

    # Median of 6: P(B = 0) = P(B = 6) = 1/64 each, so [x(1), x(6)] covers 62/64 = 96.9%;
    # [x(2), x(6)] would miss 1/64 + 6/64 = 10.9%.
    assert quantile_interval([6, 1, 5, 2, 4, 3], 50) == (1.0, 6.0)
    # 3 or 5 samples: their min-max covers 75% or 93.75% only, so there is no 95% interval.
    assert quantile_interval([1, 2, 3], 50) is None
    assert quantile_interval([1, 2, 3, 4, 5], 50) is None
    # Median of 20: the upper tail P(B >= 15) = 2.07% <= 2.5%; the lower takes the 2.93% left,
    # P(B < 6) = 2.07%, P(B < 7) = 5.77%: [x(6), x(15)] covers 95.9%.
    assert quantile_interval(range(1, 21), 50) == (6.0, 15.0)
    # p99 upper bound: 0.99^299 = 4.95% < 5% (the maximum of 299 covers), 0.99^298 = 5.0% not.
    assert quantile_upper_bound(range(1, 300), 99) == 299.0
    assert quantile_upper_bound(range(1, 299), 99) is None
    # 500 samples: P(B >= 499) = 0.99^500 + 500 (0.01) 0.99^499 = 3.97% < 5%: x(499) bounds it.
    assert quantile_upper_bound(range(1, 501), 99) == 499.0
    assert quantile_interval(range(200), 99) is None


def test_rate_score_is_the_wall_clock_rate_and_ignores_the_recorded_order():
    from archbench.reports.scores import rate_score

    # 100 steps in 1 s and in 3 s: 200 steps in 4 s is 50/s, not the median rate (66.7/s).
    assert rate_score([100.0, 100.0 / 3]).value == pytest.approx(50.0)
    rates = [100.0, 97.0, 104.0, 99.0, 102.0]
    forward, backward = rate_score(rates), rate_score(rates[::-1])
    assert forward.draws == backward.draws
    assert forward.interval == backward.interval
    # Student t of the mean time per step: mean 0.01 s, sd 0 -> no spread, a point
    flat = rate_score([100.0, 100.0, 100.0])
    assert flat.interval == pytest.approx((100.0, 100.0))
    assert rate_score([100.0]).interval is None
