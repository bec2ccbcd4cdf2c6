"""Simulation: the 95% intervals the decisions print cover the truth 90-98% of the time at the
sample counts the suites record, and say 'insufficient' where a count cannot support one.

Fixed seeds, vectorised numpy; each test runs in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from archbench.instrument.sweep.runner import bench_dir
from archbench.reports.scores import (
    N_BOOT,
    annualised_sharpe,
    circular_block_indices,
    oos_scores,
    percentile_score,
    rate_score,
)
from archbench.reports.stats import mean_ci, quantile_interval, quantile_upper_bound

TRIALS = 1000


@pytest.fixture
def budgets(monkeypatch):
    """bench/_cases.py's per-profile sample counts: the counts the suites record."""
    import importlib

    monkeypatch.syspath_prepend(str(bench_dir()))
    return importlib.import_module("_cases").BUDGETS


def _covered(intervals: list[tuple[float, float] | None], truth: float) -> float:
    hits = [low <= truth <= high for low, high in intervals]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_throughput_interval_covers_the_wall_clock_rate(profile, budgets):
    n = budgets[profile].train_iterations
    rng = np.random.default_rng(23)
    # per-iteration seconds: 5% lognormal jitter around 1 s of 100k env steps
    seconds = rng.lognormal(0.0, 0.05, size=(TRIALS, n))
    truth = 1e5 / math.exp(0.05**2 / 2)  # env steps over the expected seconds
    intervals = [rate_score(1e5 / s).interval for s in seconds]
    assert 0.90 <= _covered(intervals, truth) <= 0.98


@pytest.mark.parametrize(("n", "supported"), [(3, False), (5, False), (6, True), (20, True)])
def test_median_interval_is_insufficient_below_six_samples(n, supported):
    rng = np.random.default_rng(n)
    samples = rng.exponential(1.0, size=(TRIALS, n))  # skewed, like timings
    intervals = [quantile_interval(s, 50.0) for s in samples]
    if not supported:
        assert all(i is None for i in intervals)  # 3 samples' min-max covers 75%: not a 95% CI
        return
    assert 0.90 <= _covered(intervals, math.log(2)) <= 0.98


def test_p99_bounds_need_the_samples_the_suites_now_record(budgets):
    rng = np.random.default_rng(99)

    # 3% spikes at 5x: the true p99 sits inside the spikes, where 30 samples see one or none
    def draw(n):
        base = rng.lognormal(0.0, 0.1, size=(TRIALS, n))
        return np.where(rng.random((TRIALS, n)) < 0.03, base * 5, base)

    truth = float(np.percentile(draw(2_000), 99))  # 2M draws: the p99 to 3 digits
    for n in (30, 200):
        assert percentile_score(draw(n)[0], 99.0).upper is None  # says 'insufficient'
    for profile in ("quick", "full"):
        n = budgets[profile].infer_rounds
        samples = draw(n)
        two_sided = [quantile_interval(s, 99.0) for s in samples]
        assert 0.90 <= _covered(two_sided, truth) <= 0.98, profile
        uppers = np.array([quantile_upper_bound(s, 99.0) for s in samples])
        assert 0.90 <= (uppers >= truth).mean() <= 0.98, profile


def test_sharpe_interval_over_seeds_covers_the_expected_sharpe():
    rng = np.random.default_rng(5)
    seeds, bars, per_year = 5, 1652, 8766.0
    # Each seed's policy earns its own mean (training noise), then bar noise on top.
    edge = rng.normal(2e-4, 1e-4, size=(TRIALS, seeds, 1))
    returns = edge + rng.normal(0.0, 0.01, size=(TRIALS, seeds, bars))
    sharpe = returns.mean(axis=2) / returns.std(axis=2, ddof=1) * math.sqrt(per_year)
    truth = 2e-4 / 0.01 * math.sqrt(per_year)
    intervals = [mean_ci(s)[1:] for s in sharpe]
    assert 0.90 <= _covered(intervals, truth) <= 0.98


def test_one_seed_block_bootstrap_covers_that_policy_s_sharpe():
    """The quick profile's one seed: the block bootstrap over its validation bars, as
    oos_scores draws it (the same indices for every trial; the data differ)."""
    rng = np.random.default_rng(7)
    trials, bars, per_year = 150, 1652, 8766.0
    returns = rng.normal(3e-4, 0.01, size=(trials, bars))
    truth = 3e-4 / 0.01 * math.sqrt(per_year)
    idx = circular_block_indices(bars, N_BOOT, np.random.default_rng(1))  # (N_BOOT, bars)
    intervals = []
    for chunk in np.array_split(returns, 15):
        draws = annualised_sharpe(chunk[:, idx], per_year)  # (chunk, N_BOOT)
        intervals += [tuple(np.percentile(d, [2.5, 97.5])) for d in draws]
    assert 0.90 <= _covered(intervals, truth) <= 0.98
    # and oos_scores prints that interval for one seed
    one = oos_scores({"a": ([0.0], [returns[0]])}, per_year)["a"]
    assert one.how.startswith("one seed: circular block bootstrap")
