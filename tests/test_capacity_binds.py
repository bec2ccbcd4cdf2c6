"""Width binds on the wide capacity market (issue 22): with enough data a bigger network
predicts and trades the planted edge better than a smaller one, with little data it does not,
and no simple rule gets half way to the causal ceiling.

The sizes are one hidden layer of 16 and of 128 units: the teacher of 'capacity-w64' reads 64
directions inside a 48-dimensional span of the window, and a 16-unit first layer can project
onto only 16 of them. Judged on validation, seeds 0-2 paired (same bars, same data, the
seed sets the initial weights and the minibatch order); interval: two-sided 95% Student-t on
the three paired differences (archbench.reports.stats.mean_ci).

Measured (80,000 bars, market seed 0, train on the most recent 45,000 or 5,000 training bars,
validation 15,900 bars, Adam 5e-3, batch 2,048), seeds 0 / 1 / 2, 1 torch thread [2 threads]:
  45,000 bars: R^2 16 units 0.327 / 0.320 / 0.325 [0.328 / 0.318 / 0.325],
               128 units 0.383 / 0.392 / 0.393 [0.386 / 0.371 / 0.391]
               Sharpe 16 units 3.65 / 3.42 / 3.66 [3.42 / 3.35 / 3.70],
               128 units 4.22 / 4.45 / 4.01 [4.09 / 4.51 / 4.25]
  5,000 bars:  R^2 16 units -0.032 / -0.020 / -0.031, 128 units -0.054 / -0.055 / -0.066
               Sharpe 16 units 0 / 0 / 0 (never enters), 128 units 0 / 0 / 0.94 [the same]
"""

from __future__ import annotations

import pytest
import torch

from archbench.reports.stats import mean_ci
from ppo_core.capacity_market import make_capacity_market
from ppo_core.capacity_probe import COST_BPS, FitSettings, probe_market
from ppo_core.ceiling import causal_ceiling
from ppo_core.data import prepare
from ppo_core.rules import linear_window, one_bar_rule, trend_rule

pytestmark = pytest.mark.slow

SIZES = {"16 units": (16,), "128 units": (128,)}
"""The smaller and the bigger size, named by their widths."""
SEEDS = (0, 1, 2)
FIT = FitSettings(max_epochs=60, batch=2048, lr=5e-3)
ENOUGH, LITTLE = 45_000, 5_000
"""Training bars: the most recent ones of the training split of an 80,000-bar market."""


@pytest.fixture(scope="module")
def wide_market():
    """capacity-w64, 80,000 hourly bars: 47,700 training and 15,900 validation bars."""
    return prepare(make_capacity_market(80_000, seed=0, complexity=64, wide=True))


@pytest.fixture(scope="module")
def ceiling(wide_market) -> float:
    """The causal ceiling's validation Sharpe (measured 11.55; the oracle's 13.23)."""
    return causal_ceiling(wide_market, COST_BPS).result.sharpe


@pytest.fixture(scope="module", params=[ENOUGH, LITTLE], ids=["enough", "little"])
def paired(request, wide_market):
    """big - small per seed, for R^2 and Sharpe, at one training length."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures above hold at 1 and 2 threads; 1 is cheapest here
    try:
        results = probe_market(wide_market, "traces", request.param, SIZES, SEEDS, FIT)
    finally:
        torch.set_num_threads(threads)
    small, big = ([r for r in results if r.size == name] for name in SIZES)
    r2 = [b.r2_validation - s.r2_validation for s, b in zip(small, big, strict=True)]
    sharpe = [b.sharpe_validation - s.sharpe_validation for s, b in zip(small, big, strict=True)]
    # (mean, 95% low, 95% high, the paired differences)
    return request.param, (*mean_ci(r2), r2), (*mean_ci(sharpe), sharpe), results


def test_the_bigger_size_wins_with_enough_data_and_not_with_little(paired):
    length, r2, sharpe, results = paired
    shown = [
        (r.size, r.seed, round(r.r2_validation, 3), round(r.sharpe_validation, 2)) for r in results
    ]
    if length == ENOUGH:
        # Measured R^2 +0.065 (95%: +0.045 .. +0.086) [2 threads +0.059, +0.043 .. +0.075].
        # The Sharpe gain, +0.65 [+0.79], is on every seed (+0.57 / +1.03 / +0.35 [+0.67 /
        # +1.16 / +0.55]) but three seeds do not put it beyond its 95% interval (-0.21 ..
        # +1.51 [-0.01 .. +1.60]): asserted per seed, not beyond the interval.
        assert r2[1] > 0, (r2, shown)
        assert all(d > 0 for d in sharpe[3]), (sharpe, shown)
    else:
        # Measured R^2 -0.031 (95%: -0.049 .. -0.012): the smaller wins; Sharpe +0.31
        # (-1.03 .. +1.66), a tie: one 128-unit seed trades noise once.
        assert not r2[1] > 0, (r2, shown)
        assert not sharpe[1] > 0, (sharpe, shown)
        assert max(r.r2_validation for r in results) < 0.05, shown  # nothing is learned yet


def test_no_trained_size_beats_the_causal_ceiling(paired, ceiling):
    """The ceiling trades the exact causal expected return; a network that predicts it can at
    best match it on the same bars. Measured: at most 4.51 (128 units, 45,000 bars) vs 11.55.
    PPO on this market at CPU budgets learns less still (README, "The capacity market")."""
    _length, _r2, _sharpe, results = paired
    best = max(r.sharpe_validation for r in results)
    assert best < ceiling, (best, ceiling)


def test_simple_rules_stay_under_half_the_causal_ceiling(wide_market, ceiling):
    # Measured: ceiling 11.55 (oracle 13.23), one-bar rule -0.25, trend 0.81, linear -1.26.
    rules = {
        "one_bar": one_bar_rule(wide_market, COST_BPS).result.sharpe,
        "trend": trend_rule(wide_market, COST_BPS).result.sharpe,
        "linear": linear_window(wide_market, COST_BPS, block=10).result.sharpe,
    }
    assert ceiling > 8, ceiling
    assert max(rules.values()) < 0.5 * ceiling, (ceiling, rules)
