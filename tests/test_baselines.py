"""The trader's baselines (trend rule, random at matched turnover), the default cost of each
kind of data, and the Sharpe's standard error, checked against a simulation."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ppo_core.baselines import (
    DrawnResult,
    matched_turnover_positions,
    trader_baselines,
    trend_positions,
)
from ppo_core.data import prepare
from ppo_core.env import evaluate_positions
from ppo_core.evaluation import SHARPE_ERROR_LIMIT, EvalContext, sharpe_standard_error
from ppo_core.loaders import default_cost, load_market_data
from ppo_core.market import TradingCost
from ppo_core.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data():
    return prepare(make_synthetic(bars=3_000, seed=2), lookback=10)


def _turnover(positions: np.ndarray) -> float:
    return float(np.abs(np.diff(positions, prepend=0)).mean())


def test_trend_rule_is_the_sign_of_the_moving_average_slope_from_past_closes():
    close = np.array([10.0, 11.0, 12.0, 11.0, 10.0, 10.0, 9.0, 12.0])
    ohlcv = np.zeros((8, 5))
    ohlcv[:, 3] = close
    # A stand-in with just what the rule reads: the closes and the split's bar range.
    data = SimpleNamespace(
        market=SimpleNamespace(ohlcv=ohlcv), splits=SimpleNamespace(range=lambda _s: (1, 8))
    )
    # bars 1..7 against the close 2 bars earlier: none, 12-10, 11-11, 10-12, 10-11, 9-10, 12-10
    assert trend_positions(data, "test", bars=2).tolist() == [0, 1, 0, -1, -1, -1, 1]
    # The 2-bar average's slope is (close_t - close_(t-2)) / 2: the same sign.
    average = pd.Series(close).rolling(2).mean().diff().to_numpy()[1:]
    assert np.array_equal(np.sign(np.nan_to_num(average)), trend_positions(data, "t", bars=2))


@pytest.mark.parametrize("turnover", [0.0, 0.003, 0.047, 0.3, 0.9, 1.2])
def test_random_positions_match_the_turnover_asked_for(turnover):
    rng = np.random.default_rng(0)
    n = 2_000
    for _ in range(5):
        positions = matched_turnover_positions(turnover, n, rng)
        assert positions.shape == (n,)
        assert set(np.unique(positions)) <= {-1, 0, 1}
        # Whole switches move 1 or 2: the nearest total is within 1 of the target.
        assert abs(_turnover(positions) * n - turnover * n) <= 1.0


def test_random_positions_are_seeded_and_capped_at_a_switch_every_bar():
    a = matched_turnover_positions(0.2, 500, np.random.default_rng(7))
    b = matched_turnover_positions(0.2, 500, np.random.default_rng(7))
    assert np.array_equal(a, b)
    flipping = matched_turnover_positions(2.0, 500, np.random.default_rng(7))
    assert (np.diff(flipping) != 0).all()  # every bar switches: as far as it can go
    with pytest.raises(ValueError, match="turnover >= 0"):
        matched_turnover_positions(-0.1, 500, np.random.default_rng(7))


def test_trader_baselines_trade_the_trend_and_random_at_the_policys_turnover(data):
    results = trader_baselines(data, "validation", cost_bps=5.0, policy_turnover=0.05)
    assert set(results) == {"flat", "buy_and_hold", "trend", "random_matched", "oracle"}
    trend = evaluate_positions(trend_positions(data, "validation"), data, "validation", 5.0)
    assert results["trend"] == trend
    random = results["random_matched"]
    assert isinstance(random, DrawnResult)
    assert random.draws == 16
    assert random.sharpe_sd > 0
    assert random.turnover == pytest.approx(0.05, abs=1.0 / random.n_bars)
    again = trader_baselines(data, "validation", cost_bps=5.0, policy_turnover=0.05)
    assert again["random_matched"] == random  # seeded
    assert results["flat"].total_log_return == 0.0


def test_the_standard_error_formula_matches_a_simulation():
    """Annualised Sharpe ratios of iid normal bars, estimated as evaluate_positions does (mean
    / std ddof 1 x sqrt(bars per year)): their spread over 20,000 samples is the formula's, and
    with a large per-bar Sharpe the (1 + s^2 / 2) term is needed to get it."""
    rng = np.random.default_rng(0)
    bars_per_year, n = 252.0, 126  # half a year of daily bars
    for per_bar in (0.05, 1.0):
        bars = rng.normal(per_bar, 1.0, size=(20_000, n))
        sharpe = bars.mean(axis=1) / bars.std(axis=1, ddof=1) * math.sqrt(bars_per_year)
        true = per_bar * math.sqrt(bars_per_year)
        formula = sharpe_standard_error(true, n, bars_per_year)
        assert float(sharpe.std()) == pytest.approx(formula, rel=0.03)
    assert formula > 1.2 * math.sqrt(bars_per_year / n)  # s = 1: 1 / sqrt(years) is 18% low
    # 900 hourly EUR/USD bars (6,281 a year, about 7 weeks): ~+-2.6, whatever the Sharpe.
    assert sharpe_standard_error(0.0, 900, 6281.0) == pytest.approx(2.64, abs=0.01)
    assert sharpe_standard_error(1.0, 1, 252.0) == math.inf


def test_the_context_dates_the_split_and_caveats_a_noisy_sharpe(data):
    results = trader_baselines(data, "validation", 30.0, policy_turnover=0.1)
    cost = TradingCost(30.0, "test")
    context = EvalContext.of(data, "validation", cost, results["buy_and_hold"])
    start, end = data.splits.range("validation")
    assert context.n_bars == end - start
    assert context.first_bar == str(data.market.timestamps[start])[:19]
    assert context.last_bar == str(data.market.timestamps[end - 1])[:19]
    assert context.bars_per_year == data.market.periods_per_year
    assert context.years == pytest.approx(context.n_bars / context.bars_per_year)
    assert context.sharpe_standard_error > SHARPE_ERROR_LIMIT  # ~500 hourly bars: 3 weeks
    assert "standard error" in context.caveat
    assert set(context.baselines) >= set(results)
    assert context.to_dict()["cost"] == {"bps": 30.0, "source": "test", "warning": None}
    # Under two bars there is no error to give: JSON gets null, not Infinity.
    undefined = dataclasses.replace(context, sharpe_standard_error=math.inf)
    assert undefined.to_dict()["sharpe_standard_error"] is None


def test_a_long_enough_split_has_no_caveat():
    data = prepare(make_synthetic(bars=60_000, seed=1), lookback=10)  # 9,000 bars: ~1 year
    policy = trader_baselines(data, "validation", 30.0, 0.0)["buy_and_hold"]
    context = EvalContext.of(data, "validation", TradingCost(30.0, "test"), policy)
    assert context.years > 1.0
    assert context.sharpe_standard_error < SHARPE_ERROR_LIMIT
    assert context.caveat is None


def test_default_cost_is_a_property_of_the_data(tmp_path, monkeypatch):
    assert default_cost(make_synthetic(bars=500, seed=0)).bps == 30.0
    # A file: the synthetic default, with a warning that names it and the file's volatility.
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=600, freq="h"),
            "close": 1.1 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-3, 600))),
        }
    )
    frame = frame.assign(open=frame.close, high=frame.close, low=frame.close, volume=1.0)
    frame.to_csv(tmp_path / "synthetic-fx.csv", index=False)
    monkeypatch.chdir(tmp_path)
    market = load_market_data("synthetic-fx.csv")  # a file, whatever its name says
    assert market.name == "synthetic-fx.csv"
    cost = default_cost(market)
    assert cost.bps == 30.0
    assert "no --cost-bps" in cost.warning
    assert "per-bar volatility (10." in cost.warning  # 1e-3 a bar: 10 bp


def test_named_datasets_get_a_realistic_cost():
    pytest.importorskip("gym_anytrading", reason="the data extra is not installed")
    cost = default_cost(load_market_data("eurusd-1h"))
    assert cost.bps == 1.0
    assert cost.warning is None
    assert "eurusd-1h" in cost.source
    assert default_cost(load_market_data("googl")).bps == 5.0
