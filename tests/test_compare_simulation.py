"""Simulation: `compare` is quiet on two runs drawn from one distribution (a row flagged in
under 5% of trials) and catches a real 10% slowdown of one size on the full profile (in at
least 80%), at the sample counts the suites record. Fixed seeds; each test a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from archbench.instrument.sweep.runner import bench_dir
from archbench.reports.compare_verdicts import judge_samples

SIZES = 5
TRAIN_CASES = 4  # per size: precisions x update modes
BACKENDS = 1  # batch-1 p99 rows per size (the bootstrap rows are the slow ones to simulate)
ENV_CASES = 3


@pytest.fixture
def budgets(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(bench_dir()))
    return importlib.import_module("_cases").BUDGETS


def _run(rng: np.random.Generator, budget, slower: dict[int, float]) -> list[dict]:
    """One run's cases as compare sees them: per size, train cases (rate, iteration seconds,
    update seconds from the same iterations), batch-1 latency (p50 and p99 of one sample set,
    3% spikes at 3x), env-step rates. slower: size -> factor its timings are multiplied by."""
    cases = []
    for size in range(SIZES):
        k = slower.get(size, 1.0)
        for _ in range(TRAIN_CASES):
            seconds = k * rng.lognormal(0.0, 0.03, budget.train_iterations)
            update = 0.8 * seconds * rng.lognormal(0.0, 0.01, budget.train_iterations)
            cases += [
                ("train_env_steps_per_s", "1/s", "higher", 1e5 / seconds),
                ("iteration_s", "s", "lower", seconds),
                ("update_s", "s", "lower", update),
            ]
        for _ in range(BACKENDS):
            base = rng.lognormal(0.0, 0.1, budget.infer_rounds)
            spikes = rng.random(budget.infer_rounds) < 0.03
            latency = k * np.where(spikes, base * 3, base) * 1e-4
            cases += [
                ("latency_p50_s", "s", "lower", latency),
                ("latency_p99_s", "s", "lower", latency),
            ]
    for _ in range(ENV_CASES):
        cases.append(
            ("env_steps_per_s", "1/s", "higher", 1e6 * rng.lognormal(0, 0.05, budget.env_rounds))
        )
    return cases


def _flags(budget, trials: int, seed: int, slower: dict[int, float]) -> tuple[float, float]:
    """Share of trials with any row regressed, and with a row of a slowed size regressed."""
    rng = np.random.default_rng(seed)
    any_flag = caught = 0
    for _ in range(trials):
        a, b = _run(rng, budget, {}), _run(rng, budget, slower)
        cases = [
            {"metric": m, "unit": u, "better": d, "samples_a": sa, "samples_b": sb}
            for (m, u, d, sa), (_, _, _, sb) in zip(a, b, strict=True)
        ]
        rows = judge_samples(cases)
        regressed = [i for i, r in enumerate(rows) if r["verdict"] == "regressed"]
        any_flag += bool(regressed)
        per_size = len(rows) - ENV_CASES
        caught += any(i < per_size and i // (per_size // SIZES) in slower for i in regressed)
    return any_flag / trials, caught / trials


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_two_runs_of_one_distribution_are_quiet(profile, budgets):
    flagged, _ = _flags(budgets[profile], trials=40, seed=1, slower={})
    assert flagged < 0.05


def test_a_ten_percent_slower_size_is_caught_on_the_full_profile(budgets):
    _, caught = _flags(budgets["full"], trials=20, seed=2, slower={3: 1.10})
    assert caught >= 0.80


def test_quick_train_rows_of_three_samples_are_insufficient_not_judged(budgets):
    budget = budgets["quick"]
    rng = np.random.default_rng(3)
    seconds = rng.lognormal(0.0, 0.03, (2, budget.train_iterations))
    rows = judge_samples(
        [{"metric": "iteration_s", "unit": "s", "better": "lower",
          "samples_a": seconds[0], "samples_b": 1.5 * seconds[1]}]
    )  # fmt: skip
    assert budget.train_iterations < 4
    assert rows[0]["verdict"] == "insufficient samples"
