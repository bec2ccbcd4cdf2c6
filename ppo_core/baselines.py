"""The references a trader judges a policy against, on the same bars at the same cost:
flat, buy-and-hold, a trend rule, random trading at the policy's own turnover, and the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ppo_core.data import PreparedData
from ppo_core.env import EvalResult, evaluate_positions, oracle_split_positions

__all__ = [
    "RANDOM_DRAWS",
    "TREND_BARS",
    "DrawnResult",
    "baseline_notes",
    "matched_turnover_positions",
    "trader_baselines",
    "trend_positions",
]

TREND_BARS = 20
"""The trend rule's moving average: 20 bars, the charting platforms' common default, fixed in
advance so that the rule is never tuned on the split it is scored on."""
RANDOM_DRAWS = 16
"""Seeded draws the matched-turnover random policy is averaged over."""


@dataclass(frozen=True)
class DrawnResult(EvalResult):
    """A random policy's figures, each the mean over seeded draws, and how far luck moves them."""

    sharpe_sd: float
    """Standard deviation (ddof 1) of the Sharpe across the draws; NaN under two draws."""
    draws: int
    """Seeded draws averaged."""


def trend_positions(data: PreparedData, split: str, bars: int = TREND_BARS) -> np.ndarray:
    """The sign of the `bars`-bar moving average's slope at each decision bar t of `split`
    (n_bars,) in {-1, 0, 1}: MA_t - MA_(t-1) = (close_t - close_(t-bars)) / bars, so long after
    a rise, short after a fall, flat until `bars` bars of history exist. Uses closes up to t."""
    if bars < 1:
        raise ValueError(f"the trend rule needs bars >= 1, got {bars}")
    start, end = data.splits.range(split)
    close = data.market.ohlcv[:, 3]
    t = np.arange(start, end)
    past = t - bars
    slope = np.where(past >= 0, close[t] - close[np.maximum(past, 0)], 0.0)
    return np.sign(slope).astype(np.int64)


def matched_turnover_positions(
    turnover: float, n_bars: int, rng: np.random.Generator
) -> np.ndarray:
    """Random positions (n_bars,) in {-1, 0, 1}, starting flat, whose turnover (mean |change|
    per bar, as EvalResult counts it) is as close to `turnover` as whole switches allow: each
    switch moves to one of the two other positions at random, at bars drawn without replacement.
    Capped at a switch every bar (~4/3 per bar) for a policy that turns over more."""
    if n_bars < 1 or not np.isfinite(turnover) or turnover < 0:
        raise ValueError(f"need n_bars >= 1 and a turnover >= 0, got {n_bars}, {turnover}")
    states = (1 + np.cumsum(rng.integers(1, 3, size=n_bars))) % 3  # 1 = flat; +1 or +2: another
    sequence = states - 1  # the position after each switch
    moved = np.cumsum(np.abs(np.diff(sequence, prepend=0)))  # total |change| after k+1 switches
    target = turnover * n_bars
    # The switch count whose total change lands nearest the target (0 switches: none).
    above = int(np.searchsorted(moved, target))
    candidates = [k for k in (above, above + 1) if k <= n_bars]
    switches = min(candidates, key=lambda k: abs((moved[k - 1] if k else 0.0) - target))
    at = np.zeros(n_bars, dtype=np.int64)
    at[rng.choice(n_bars, size=switches, replace=False)] = 1
    done = np.cumsum(at)  # switches made by each bar
    return np.where(done > 0, sequence[np.maximum(done - 1, 0)], 0)


def _matched_random(
    data: PreparedData, split: str, cost_bps: float, turnover: float, draws: int, seed: int
) -> DrawnResult:
    start, end = data.splits.range(split)
    rng = np.random.default_rng(seed)
    drawn = [matched_turnover_positions(turnover, end - start, rng) for _ in range(draws)]
    runs = [evaluate_positions(positions, data, split, cost_bps) for positions in drawn]
    mean = {}
    for item in fields(EvalResult):
        values = [getattr(r, item.name) for r in runs if getattr(r, item.name) is not None]
        mean[item.name] = float(np.mean(values)) if values else None
    mean["n_bars"] = end - start
    sharpes = [r.sharpe for r in runs]
    sd = float(np.std(sharpes, ddof=1)) if draws > 1 else float("nan")
    return DrawnResult(**mean, sharpe_sd=sd, draws=draws)


def trader_baselines(
    data: PreparedData,
    split: str,
    cost_bps: float,
    policy_turnover: float,
    seed: int = 0,
    draws: int = RANDOM_DRAWS,
) -> dict[str, EvalResult]:
    """{"flat", "buy_and_hold", "trend", "random_matched", "oracle" (planted edge only)}, every
    one over all bars of `split` at `cost_bps`; "random_matched" trades at `policy_turnover`."""
    start, end = data.splits.range(split)
    n = end - start
    results: dict[str, EvalResult] = {
        "flat": evaluate_positions(np.zeros(n), data, split, cost_bps),
        "buy_and_hold": evaluate_positions(np.ones(n), data, split, cost_bps),
        "trend": evaluate_positions(trend_positions(data, split), data, split, cost_bps),
        "random_matched": _matched_random(data, split, cost_bps, policy_turnover, draws, seed),
    }
    oracle = oracle_split_positions(data, split, cost_bps)
    if oracle is not None:
        results["oracle"] = evaluate_positions(oracle, data, split, cost_bps)
    return results


def baseline_notes(policy_turnover: float, draws: int = RANDOM_DRAWS) -> dict[str, str]:
    """One line per baseline of `trader_baselines` saying what it trades."""
    return {
        "flat": "never in the market",
        "buy_and_hold": "long every bar",
        "trend": f"sign of the {TREND_BARS}-bar moving average's slope, at the same cost",
        "random_matched": f"random positions at the policy's own turnover ({policy_turnover:.3f}), "
        f"mean of {draws} seeded draws",
        "oracle": "knows the planted edge (synthetic data only): an upper bound",
    }
