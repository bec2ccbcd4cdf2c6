"""Recommendations from measured figures, and the statistics under them, on real-run fixtures.

Stats expectations are worked by hand in comments; fixtures come from make_report_fixtures.py.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from reports.load import load_runs
from reports.recommend import USE_CASES, Budgets, Recommendation, preset_summary, recommend
from reports.recommend import within_noise as noise
from reports.stats import bootstrap_ratio_ci, mann_whitney_u, mean_ci, t_critical_975

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"


@pytest.fixture(scope="module")
def run_df():
    return load_runs([RUN])


def test_mann_whitney_separated_samples_match_hand_computation():
    # U1 = 0; mu = 8; sigma = sqrt(4*4/12 * 9) = sqrt(12); z = (16 - 8 - 0.5)/sqrt(12) = 2.16506
    # p = erfc(2.16506 / sqrt 2) = 0.030383
    result = mann_whitney_u([1, 2, 3, 4], [5, 6, 7, 8])
    assert result.u == 0
    assert result.z == pytest.approx(2.16506, abs=1e-5)
    assert result.p_value == pytest.approx(0.030383, abs=1e-6)


def test_mann_whitney_ties_use_average_ranks_and_corrected_variance():
    # pooled 1,2,2,2,3,3,4,4 -> ranks 1, 3,3,3, 5.5,5.5, 7.5,7.5; a's ranks 1+3+3+5.5 = 12.5
    # U1 = 12.5 - 10 = 2.5; ties (3,2,2): sum t^3-t = 36; 36/(8*7) = 0.642857
    # sigma = sqrt(16/12 * (9 - 0.642857)) = 3.338092; z = (13.5 - 8 - 0.5)/sigma = 1.497862
    # p = erfc(1.497862 / sqrt 2) = 0.134169
    result = mann_whitney_u([1, 2, 2, 3], [2, 3, 4, 4])
    assert result.u == 2.5
    assert result.z == pytest.approx(1.497862, abs=1e-6)
    assert result.p_value == pytest.approx(0.134169, abs=1e-6)


def test_mann_whitney_all_tied_is_no_evidence():
    assert mann_whitney_u([3, 3, 3], [3, 3]).p_value == 1.0


def test_mean_ci_uses_student_t():
    # mean 2, s = 1, t(0.975, 2) = 4.303 -> half width 4.303/sqrt(3) = 2.48434
    mean, low, high = mean_ci([1, 2, 3])
    assert (mean, low, high) == pytest.approx((2.0, -0.48434, 4.48434), abs=1e-5)
    assert all(math.isnan(v) for v in mean_ci([5.0])[1:])


def test_t_critical_table_and_expansion_agree_with_tables():
    assert t_critical_975(1) == 12.706
    assert t_critical_975(60) == pytest.approx(2.000, abs=1e-3)
    assert t_critical_975(120) == pytest.approx(1.980, abs=1e-3)


def test_bootstrap_ratio_ci_is_seeded_and_exact_for_constant_samples():
    assert bootstrap_ratio_ci([2, 2, 2], [3, 3, 3]) == (1.5, 1.5)
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.1, 1.9, 2.2, 1.8]
    assert bootstrap_ratio_ci(a, b, seed=3) == bootstrap_ratio_ci(a, b, seed=3)
    low, high = bootstrap_ratio_ci(a, b)
    assert low < 2.0 < high


def test_within_noise_uses_the_test_the_sample_sizes_allow():
    assert noise([1, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 5.5]) is True
    assert noise([1, 2, 3, 4], [5, 6, 7, 8]) is False
    # 3 vs 3 cannot reach p < 0.05 with Mann-Whitney: 95% t intervals decide instead
    assert noise([1.0, 1.1, 1.2], [5.0, 5.1, 5.2]) is False
    assert noise([1.0, 3.0, 2.0], [1.5, 2.5, 2.0]) is True
    assert noise([1.0], [2.0]) is None


def test_every_use_case_is_answered_for_every_run():
    df = load_runs([RUN, FIXTURES / "run-cpu-quick-b.json"])
    recs = recommend(df)
    assert len(recs) == 2 * len(USE_CASES)
    for rec in recs:
        assert rec.reason
        if rec.hidden_dims is None:
            assert rec.reason.startswith("no recommendation: ")
        else:
            assert rec.preset in set(df["preset"].dropna())


def test_quick_iteration_picks_the_highest_measured_throughput(run_df):
    m = run_df[(run_df["suite"] == "train") & (run_df["metric"] == "env_steps_per_s")]
    fastest = m.loc[m["value"].idxmax(), "preset"]
    rec = next(r for r in recommend(run_df) if r.use_case == "quick iteration")
    assert rec.preset == fastest
    assert f"{m['value'].max():,.0f} env steps/s" in rec.reason
    assert rec.runner_up is not None
    assert rec.within_noise in (True, False)


def test_live_trading_follows_the_latency_budget(run_df):
    summary = preset_summary(run_df)
    largest = summary.loc[summary["params"].idxmax(), "preset"]
    roomy = recommend(run_df, Budgets(latency_p99_s=10.0))
    assert next(r for r in roomy if r.use_case == "live trading").preset == largest
    strict = next(
        r for r in recommend(run_df, Budgets(latency_p99_s=1e-9)) if r.use_case == "live trading"
    )
    fastest = summary.loc[summary["latency_p99"].idxmin(), "preset"]
    assert strict.preset is None
    assert "no size meets batch-1 p99 <= 1e-06 ms" in strict.reason
    assert f"fastest is {fastest}" in strict.reason


def test_memory_budget_excludes_sizes_that_do_not_fit(run_df):
    recs = recommend(run_df, Budgets(memory_bytes=1.0, latency_p99_s=10.0))
    production = next(r for r in recs if r.use_case == "standard production")
    assert production.hidden_dims is None
    assert "no size meets memory <= " in production.reason
    assert "smallest need is" in production.reason


def test_missing_suite_gives_no_recommendation_with_the_reason(run_df):
    recs = recommend(run_df[run_df["suite"] != "overfit"])
    by_case = {r.use_case: r for r in recs}
    assert "overfit suite missing" in by_case["standard production"].reason
    assert by_case["limited data (< 1 year of bars)"].hidden_dims is None
    assert by_case["quick iteration"].hidden_dims is not None


def test_all_oom_run_recommends_nothing_and_says_why():
    for rec in recommend(load_runs([FIXTURES / "all-oom.json"])):
        assert rec.hidden_dims is None
        assert "OOM" in rec.reason


def test_one_preset_run_has_no_runner_up():
    recs = recommend(load_runs([FIXTURES / "one-preset.json"]))
    chosen = [r for r in recs if r.hidden_dims is not None]
    assert chosen
    assert all(r.runner_up is None and r.within_noise is None for r in chosen)


def test_records_and_budgets_are_frozen_and_validated():
    rec = Recommendation("r", "quick iteration", "1,2", "x", "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.preset = "y"  # type: ignore[misc]
    with pytest.raises(ValueError, match="latency_p99_s"):
        Budgets(latency_p99_s=-1)
