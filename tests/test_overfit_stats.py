"""The overfitting suite's interval arithmetic: the block bootstrap and the overlap verdict."""

import numpy as np
import pytest

from archbench.instrument.sweep.runner import bench_dir


@pytest.fixture
def overfit(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(bench_dir()))
    return importlib.import_module("overfit_stats")


def test_block_bootstrap_spread_matches_the_standard_error_of_independent_bars(overfit):
    rng = np.random.default_rng(0)
    returns = rng.normal(1e-4, 1e-2, size=4000)
    means = overfit.block_bootstrap_means(returns, block=40, resamples=2000, seed=1)
    assert means.shape == (2000,)
    # Independent bars: the bootstrap's spread is the textbook s / sqrt(n), within 10%.
    assert means.std() == pytest.approx(returns.std() / np.sqrt(4000), rel=0.1)
    assert means.mean() == pytest.approx(returns.mean(), abs=3e-5)


def test_block_bootstrap_widens_for_persistent_returns(overfit):
    """Regime-like returns (runs of 40 equal bars): a block bootstrap keeps the runs and sees
    the real, ~sqrt(40)x larger noise that an i.i.d. bootstrap would hide."""
    rng = np.random.default_rng(2)
    returns = np.repeat(rng.normal(0, 1e-2, size=100), 40)  # (4000,)
    blocks = overfit.block_bootstrap_means(returns, block=40, resamples=2000, seed=3)
    single = overfit.block_bootstrap_means(returns, block=1, resamples=2000, seed=3)
    assert blocks.std() > 4 * single.std()


def _case(overfit, dataset, label, name, dims, seed, test, oracle, fold=0, lr=1e-3):
    return overfit._Finished(
        dataset, label, name, dims, seed, fold, {"test": test}, oracle, 8766.0, lr
    )


def test_summary_says_plainly_whether_intervals_overlap(overfit):
    rng = np.random.default_rng(4)
    noise = [rng.normal(0, 1e-3, size=2000) for _ in range(3)]
    oracle = np.full(2000, 5e-4) + rng.normal(0, 1e-3, size=2000)
    apart = [
        _case(overfit, "synthetic", "short", "tiny", (8,), s, n, oracle)
        for s, n in enumerate(noise)
    ]
    apart += [
        _case(overfit, "synthetic", "short", "large", (64, 32), s, n + 4e-4, oracle)
        for s, n in enumerate(noise)
    ]
    lines = overfit.summary_lines(apart)
    assert any("tiny vs large intervals separate" in line for line in lines)
    assert any("oracle" in line and "Sharpe" in line for line in lines)
    close = [c for c in apart if c.size == "tiny"] + [
        _case(overfit, "synthetic", "short", "large", (64, 32), s, n + 2e-5, oracle)
        for s, n in enumerate(noise)
    ]
    assert any(
        "OVERLAP: this run cannot tell them apart" in x for x in overfit.summary_lines(close)
    )


def test_summary_names_each_sizes_step_size_and_the_detectable_difference(overfit):
    """The summary says which learning rate each size was chosen at, the spread across folds,
    and, per neighbouring pair, the paired difference and the smallest one its pairs detect."""
    rng = np.random.default_rng(5)
    runs = []
    for seed in range(3):
        for fold in range(2):
            noise = rng.normal(0, 1e-3, size=1500)
            runs.append(_case(overfit, "synthetic", "long", "tiny", (8,), seed, noise, None,
                              fold=fold, lr=3e-4))  # fmt: skip
            runs.append(_case(overfit, "synthetic", "long", "small", (16,), seed, noise + 1e-4,
                              None, fold=fold, lr=1e-3))  # fmt: skip
    lines = overfit.summary_lines(runs)
    tiny = next(line for line in lines if " tiny:" in line)
    assert "lr 0.0003 x6" in tiny
    assert "over 6 seed-fold(s)" in tiny
    assert "(folds " in tiny
    pair = next(line for line in lines if "small - tiny" in line)
    assert "over 6 paired seed-fold(s)" in pair
    assert "minimum detectable difference" in pair


def test_the_summary_uses_the_exact_t_minimum_detectable_difference(overfit):
    """The suite prints the shared aggregate (exact paired t power, tests/test_aggregates.py),
    not a copy of its own: 3.76 standard errors at 5 pairs, where 2.80 had 56% power."""
    from archbench.instrument.aggregates import minimum_detectable_difference

    assert overfit.minimum_detectable_difference is minimum_detectable_difference
    diffs = [1.0, 3.0, 2.0, 6.0, 4.0]
    se = np.std(diffs, ddof=1) / np.sqrt(5)
    assert overfit.minimum_detectable_difference(diffs) == pytest.approx(3.761 * se, rel=1e-3)


def test_the_suite_and_the_reports_share_one_block_bootstrap_and_one_sharpe(overfit):
    from archbench.instrument import resample
    from archbench.reports import scores

    assert overfit.annualised_sharpe is scores.annualised_sharpe is resample.annualised_sharpe
    assert overfit.circular_block_indices is scores.circular_block_indices
    returns = np.random.default_rng(4).normal(3e-4, 1e-2, size=1652)
    # the suite's per-case interval and the report's one-seed interval on the same bars
    suite = overfit._sharpe_interval(returns, 8766.0, seed=0)
    sharpe = float(scores.annualised_sharpe(returns, 8766.0))
    report = scores.oos_scores({"a": ([sharpe], [returns])}, 8766.0)["a"].interval
    assert suite == pytest.approx(report, abs=0.15 * (report[1] - report[0]))


def test_the_report_finds_the_summary_the_suite_writes(overfit, tmp_path):
    """The page quotes the suite's own verdict from the pytest log beside the run: the log's
    summary, as summary_lines writes it, must be what archbench.reports.load looks for."""
    from archbench.reports.load import suite_verdict

    rng = np.random.default_rng(6)
    runs = [
        _case(overfit, "synthetic", "short", name, dims, seed, rng.normal(0, 1e-3, 800), None)
        for name, dims in (("tiny", (8,)), ("small", (16,)))
        for seed in range(3)
    ]
    lines = overfit.summary_lines(runs)
    (tmp_path / "run-x.log").write_text(
        "collected 6 items\n" + "\n".join(lines) + "\n\n== 6 passed\n"
    )
    found = suite_verdict(tmp_path / "run-x.json")
    assert found is not None
    assert found[0] == lines[1]
    assert any("tiny vs small intervals" in line for line in found)
