"""The statistics compare adds (Welch t, Student t tail, Benjamini-Hochberg, bootstrap ratio test)
against values worked by hand from their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archbench_reports.stats import (
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
