"""The aggregates over runs: hand-computed values, coverage checked by simulation at the
counts the overfit suite records, and the deflated Sharpe ratio's behaviour under the null."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archbench.instrument.aggregates import (
    MIN_RUNS_PER_FOLD,
    backtest_overfitting,
    deflated_sharpe,
    expected_max_sharpe,
    improvement_estimate,
    iqm,
    iqm_estimate,
    minimum_detectable_difference,
    probability_of_improvement,
)
from archbench.reports.aggregates import overfit_aggregates
from archbench.reports.load import load_runs
from archbench.reports.render import render_html
from archbench.reports.stats import t_critical_975
from archbench.reports.tables import aggregates_table
from ppo_core.errors import ConfigError

# The suite's counts (bench/_cases.py): quick 1 seed x 2 folds, full 10 seeds x 3 folds.
QUICK, FULL = (1, 2), (10, 3)
COVERAGE_BAND = (0.90, 0.98)
"""Where a nominal 95% interval's simulated coverage must fall."""


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 runs: int(8 / 4) = 2 cut from each end, the mean of 2, 3, 4, 5.
    assert iqm(np.array([100.0, 6, 1, 3, 5, -50, 4, 2])) == pytest.approx(3.5)
    # 6 runs: 1 cut from each end (scipy's trim_mean cuts int(0.25 n)).
    assert iqm(np.array([1.0, 2, 3, 4, 5, 60])) == pytest.approx(3.5)


def test_probability_of_improvement_counts_pairs_and_ties_by_hand():
    # Fold 0: x = (1, 3), y = (2, 3): pairs 1>2 no, 1>3 no, 3>2 yes, 3=3 half -> 1.5 / 4.
    # Fold 1: x = (5,), y = (4,): 1.  Mean over folds: (0.375 + 1) / 2.
    p = probability_of_improvement([[1.0, 3.0], [5.0]], [[2.0, 3.0], [4.0]])
    assert p == pytest.approx((0.375 + 1.0) / 2)
    assert probability_of_improvement([[1.0, 2.0]], [[1.0, 2.0]]) == pytest.approx(0.5)


def test_too_few_runs_per_fold_give_no_interval():
    seeds, folds = QUICK
    by_fold = [np.arange(seeds, dtype=float) + f for f in range(folds)]
    assert iqm_estimate(by_fold) is None
    assert improvement_estimate(by_fold, by_fold) is None
    short = [np.arange(MIN_RUNS_PER_FOLD - 1, dtype=float)] * 2
    assert iqm_estimate(short) is None
    enough = iqm_estimate([np.arange(MIN_RUNS_PER_FOLD, dtype=float)] * 2)
    assert enough is not None
    assert enough.low < enough.value < enough.high


def _coverage(seeds: int, folds: int, experiments: int, rng: np.random.Generator) -> float:
    """Share of simulated experiments whose IQM interval holds the true IQM. Folds are shifted
    symmetrically about 0 (folds see different bars), so the mixture's IQM is exactly 0."""
    shifts = np.linspace(-1.0, 1.0, folds)
    hits = 0
    for i in range(experiments):
        noise = rng.standard_t(4, size=(folds, seeds)) if i % 2 else rng.normal(size=(folds, seeds))
        estimate = iqm_estimate(list(noise + shifts[:, None]), seed=i)
        hits += estimate.low <= 0.0 <= estimate.high
    return hits / experiments


@pytest.mark.parametrize(("seeds", "folds"), [FULL, (MIN_RUNS_PER_FOLD, QUICK[1])])
def test_the_iqm_interval_covers_as_stated_at_the_suites_counts(seeds, folds):
    """At the full profile's counts and at the fewest runs per fold that get an interval
    (quick's 2 folds), normal and heavy-tailed (t, 4 df) runs alike."""
    coverage = _coverage(seeds, folds, experiments=1000, rng=np.random.default_rng(7))
    low, high = COVERAGE_BAND
    assert low <= coverage <= high, f"coverage {coverage:.3f} at {seeds} seeds x {folds} folds"


def test_the_improvement_interval_holds_a_half_when_sizes_are_alike():
    """Two sizes drawn from one distribution: P(X > Y) is 0.5, and the interval holds it."""
    rng = np.random.default_rng(3)
    seeds, folds = FULL
    hits = 0
    for i in range(200):
        x, y = rng.normal(size=(2, folds, seeds))
        estimate = improvement_estimate(list(x), list(y), seed=i)
        hits += estimate.low <= 0.5 <= estimate.high
    assert COVERAGE_BAND[0] <= hits / 200 <= 1.0


def test_the_deflated_sharpe_falls_as_more_sizes_are_tried():
    sharpe, variance, bars = 0.08, 0.02**2, 1375  # per bar
    values = [deflated_sharpe(sharpe, n, variance, bars) for n in (2, 3, 5, 10, 100)]
    assert all(a > b for a, b in itertools.pairwise(values)), values
    # N = 2: the first quantile, of 1 - 1/2, is 0; the second is of 1 - 1/(2e).
    assert expected_max_sharpe(2, variance) == pytest.approx(
        0.02 * 0.5772156649 * 0.9004526, rel=1e-6
    )


def test_the_deflated_sharpe_rarely_passes_the_best_of_null_trials():
    """N strategies with no skill: the best one's DSR exceeds 0.95 at most 5% of the time,
    where its undeflated probabilistic Sharpe (N = 1, benchmark 0) passes far more often."""
    rng = np.random.default_rng(11)
    n_trials, bars, experiments = 10, 1000, 400
    passed = undeflated = 0
    for _ in range(experiments):
        returns = rng.normal(size=(n_trials, bars))
        sharpes = returns.mean(axis=1) / returns.std(axis=1, ddof=1)
        best = float(sharpes.max())
        passed += deflated_sharpe(best, n_trials, float(sharpes.var(ddof=1)), bars) > 0.95
        undeflated += 0.5 * (1 + math.erf(best * math.sqrt(bars - 1) / math.sqrt(2))) > 0.95
    assert passed / experiments <= 0.05
    assert undeflated / experiments > 0.25


def test_skew_and_fat_tails_lower_a_positive_sharpes_deflated_value():
    base = deflated_sharpe(0.1, 5, 0.03**2, 1000)
    assert deflated_sharpe(0.1, 5, 0.03**2, 1000, skew=-1.0, kurtosis=9.0) < base


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_trials": 1}, "n_trials"), ({"bars": 1}, "bars"), ({"skew": 50.0}, "skew")],
)
def test_bad_inputs_name_the_problem(kwargs, match):
    args = {"sharpe": 0.1, "n_trials": 3, "variance": 1e-4, "bars": 500, **kwargs}
    with pytest.raises(ConfigError, match=match):
        deflated_sharpe(**args)


FIXTURES = Path(__file__).parent / "fixtures"


def _records(means: dict[str, float], seeds: int, folds: int, crashes: bool = False):
    """An overfit run as load_runs gives it: per size (fewest parameters first in `means`'
    order, listed here largest first), seed and fold, a test Sharpe drawn around its mean;
    with `crashes`, per-bar returns with a long left tail (a negated exponential)."""
    rng, bars = np.random.default_rng(5), np.random.default_rng(6)
    rows = []
    for params, (preset, mean) in reversed(list(enumerate(means.items(), start=1))):
        for seed, fold in itertools.product(range(seeds), range(folds)):
            draws = 1.0 - bars.exponential(1.0, 500)  # skew -2, kurtosis 9
            series = {"test_net_returns": list(draws)} if crashes else {}
            rows.append(
                {"run": "r", "suite": "overfit", "preset": preset, "params": params * 1000,
                 "metric": "test_sharpe", "value": mean + rng.normal(), "case_dataset": "synthetic",
                 "case_length": "long", "case_seed": seed, "case_fold": fold,
                 "case_bars_per_year": 8766.0, "case_test_bars": 1375, "series": series}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_quick_fixture_gets_points_and_says_insufficient_for_every_interval():
    df = load_runs([FIXTURES / "overfit-folds-quick.json"])
    found = overfit_aggregates(df)
    assert [(a.dataset, a.length) for a in found] == [("synthetic", "short"), ("synthetic", "long")]
    for sweep in found:
        assert [s.preset for s in sweep.sizes] == ["tiny", "small"]
        assert all(s.interval is None and s.runs == 2 for s in sweep.sizes)
        assert sweep.improvements[0].interval is None
        assert sweep.selection.dsr is None
        assert sweep.selection.pbo is None
        assert sweep.selection.why.startswith("insufficient: 1 seed(s) per fold")
    table = aggregates_table(df)
    assert table.count("[insufficient]") == 6
    assert "P(small &gt; tiny) 1.00 [insufficient]" in table  # long: small won both folds


def test_enough_seeds_give_intervals_an_ordering_and_a_deflated_sharpe():
    df = _records({"tiny": 0.0, "small": 0.2, "large": 4.0}, *FULL)
    (sweep,) = overfit_aggregates(df)
    assert [s.preset for s in sweep.sizes] == ["tiny", "small", "large"]  # by parameters
    for size, mean in zip(sweep.sizes, (0.0, 0.2, 4.0), strict=True):
        assert size.interval.low < mean < size.interval.high
        assert size.runs == 30
    small_tiny, large_small = sweep.improvements
    assert (large_small.bigger, large_small.smaller) == ("large", "small")
    assert large_small.interval.low > 0.9  # 4 Sharpe apart at sd 1: nearly every pair
    assert small_tiny.interval.low < 0.5 < small_tiny.interval.high  # 0.2 apart: no call
    assert sweep.selection.preset == "large"
    assert sweep.selection.n_trials == 3
    assert 0.0 < sweep.selection.dsr <= 1.0
    assert "4,125 bars" in sweep.selection.why  # 3 distinct folds x 1,375 test bars
    assert "taken as normal" in sweep.selection.why
    assert sweep.selection.pbo < 0.05  # large is best on nearly every half of the 30 runs
    assert "PBO over 30 runs every size ran" in sweep.selection.why
    table = aggregates_table(df)
    assert "P(large &gt; small)" in table
    assert f"{sweep.selection.dsr:.2f} (best of 3); PBO {sweep.selection.pbo:.2f}" in table


def test_the_selection_reads_the_returns_tails_and_a_left_tail_lowers_the_dsr():
    (normal,) = overfit_aggregates(_records({"tiny": 0.0, "large": 3.0}, 5, 2))
    (crashes,) = overfit_aggregates(_records({"tiny": 0.0, "large": 3.0}, 5, 2, crashes=True))
    assert normal.selection.sharpe == crashes.selection.sharpe  # the same runs
    skew = float(crashes.selection.why.split("skew ")[1].split(",")[0])
    kurtosis = float(crashes.selection.why.split("kurtosis ")[1].split()[0])
    assert skew < -1.5
    assert kurtosis > 6
    assert crashes.selection.dsr < normal.selection.dsr


def test_the_report_page_carries_the_aggregates_beside_the_out_of_sample_table():
    page = render_html(load_runs([FIXTURES / "overfit-folds-quick.json"]), plotlyjs="cdn")
    oos = page.index("<h2>Out of sample")
    assert oos < page.index("P(beats next smaller)") < page.index("<h2>Sizing")


@pytest.fixture
def overfit(monkeypatch):
    """The overfit suite's statistics module (bench/ is not a package)."""
    import importlib

    from archbench.instrument.sweep.runner import bench_dir

    monkeypatch.syspath_prepend(str(bench_dir()))
    return importlib.import_module("overfit_stats")


def _finished(overfit, seeds: int, folds: int, edge: dict[str, float]) -> list:
    """Finished cases: per size, seed and fold, 1,000 test bars of noise plus the size's edge."""
    rng = np.random.default_rng(9)
    cases = []
    for (name, shift), seed, fold in itertools.product(edge.items(), range(seeds), range(folds)):
        returns = rng.normal(shift, 1e-3, size=1000)
        dims = (8 * (1 + list(edge).index(name)),)
        cases.append(overfit._Finished("synthetic", "long", name, dims, seed, fold,
                                       {"test": returns}, None, 8766.0, 1e-3))  # fmt: skip
    return cases


def test_the_suite_summary_says_insufficient_at_the_quick_profiles_counts(overfit):
    lines = overfit.summary_lines(_finished(overfit, *QUICK, {"tiny": 0.0, "small": 1e-4}))
    iqm_lines = [line for line in lines if "IQM test Sharpe" in line]
    assert len(iqm_lines) == 2
    assert all("[insufficient: under 5 seeds per fold]" in line for line in iqm_lines)
    assert any("P(small > tiny) [insufficient" in line for line in lines)
    assert any("selected small of 2 sizes; deflated Sharpe insufficient" in line for line in lines)


def test_the_suite_summary_gives_intervals_and_the_deflated_sharpe_with_enough_seeds(overfit):
    edge = {"tiny": 0.0, "small": 2e-5, "large": 2e-4}
    lines = overfit.summary_lines(_finished(overfit, 5, 2, edge))

    def iqm_line(name: str) -> tuple[float, float, float]:
        line = next(line for line in lines if f"{name}: IQM test Sharpe" in line)
        low, high = (float(x) for x in line.split("[")[1].split("]")[0].split(", "))
        return float(line.split("Sharpe ")[1].split()[0]), low, high

    # large: 2e-4 a bar at 1e-3 spread, a Sharpe of 18.7 a year, far above small's 1.9.
    (large, low, high), (_, _, small_high) = iqm_line("large"), iqm_line("small")
    assert small_high < low < large < high
    assert any("P(large > small) 1.00 [" in line for line in lines)
    deflated = next(line for line in lines if "deflated Sharpe" in line)
    assert "selected large" in deflated
    assert "of 3 sizes" in deflated
    assert "on 2,000 bars" in deflated  # two folds' bars, counted once each
    assert "; PBO 0.00 over 10 paired runs" in deflated  # large best on every half


def test_pbo_counts_the_splits_where_the_in_sample_best_falls_behind_by_hand():
    # Trials A, B over 4 runs; of the 6 half splits, {0,1} picks A, which then loses on {2,3},
    # and {2,3} picks B, which loses on {0,1}; the other 4 pick A, which wins out of sample.
    performance = np.array([[4.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 2.0]])
    assert backtest_overfitting(performance) == pytest.approx(2 / 6)
    assert backtest_overfitting(np.array([[2.0, 1.0]] * 4)) == 0.0


def test_pbo_is_about_a_half_without_skill_and_near_zero_with_it():
    rng = np.random.default_rng(13)
    null = [backtest_overfitting(rng.normal(size=(10, 5)), seed=i) for i in range(40)]
    assert 0.35 <= np.mean(null) <= 0.65
    skilled = rng.normal(size=(30, 5))  # 30 runs: a sample of the 155 million splits
    skilled[:, 2] += 2.0
    assert backtest_overfitting(skilled) < 0.05


def test_pbo_needs_four_runs_and_two_trials():
    with pytest.raises(ConfigError, match="at least 4 runs and 2 trials"):
        backtest_overfitting(np.zeros((3, 4)))


def _unit_spread(n: int) -> np.ndarray:
    """n paired differences with sample standard deviation exactly 1."""
    x = np.random.default_rng(n).normal(size=n)
    return (x - x.mean()) / x.std(ddof=1)


def _paired_t_power(shift: float, n: int, draws: int = 40_000) -> float:
    """Simulated rejection rate of the two-sided 5% paired t-test (critical value from the
    table in reports.stats, not the quadrature under test) when the true mean difference is
    `shift` and the spread 1."""
    x = np.random.default_rng(7).normal(shift, 1.0, size=(draws, n))
    t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > t_critical_975(n - 1)))


@pytest.mark.parametrize("n", [3, 5, 10, 30])
def test_the_minimum_detectable_difference_has_its_power_at_the_counts_recorded(n):
    """The overfit suite pairs 3-30 seed-folds; at the difference it prints, the paired test
    must detect it 80% of the time (40,000 draws: 1 se = 0.002)."""
    assert _paired_t_power(minimum_detectable_difference(_unit_spread(n)), n) == pytest.approx(
        0.80, abs=0.01
    )


def test_the_normal_approximation_it_replaces_falls_well_short_at_five_pairs():
    """2.80 standard errors (z_0.975 + z_0.8) was the suite's formula: at 5 pairs a true
    difference that size is found only ~56% of the time, so it overstated what 5 seeds tell."""
    assert _paired_t_power(2.801585 / math.sqrt(5), 5) < 0.62


def test_the_minimum_detectable_difference_matches_the_noncentral_t_by_hand():
    """Values from scipy.stats.nct (solved for 80% power at the t critical value), per unit
    of spread; it scales with the spread; under 3 pairs there is none."""
    for n, expected in ((3, 3.264044), (5, 1.681997), (10, 0.996001)):
        assert minimum_detectable_difference(_unit_spread(n)) == pytest.approx(expected, rel=1e-4)
    assert minimum_detectable_difference(2.0 * _unit_spread(5)) == pytest.approx(
        2 * 1.681997, rel=1e-4
    )
    assert minimum_detectable_difference([1.0, 2.0]) is None
