"""The synthetic market: seeded GARCH bars with hidden trend regimes (a known, planted edge),
and the cost-aware oracle that trades on that edge.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ppo_core.errors import ConfigError
from ppo_core.market import YEAR_SECONDS, MarketData

__all__ = ["DEFAULT_SIGNAL_STRENGTH", "SYNTHETIC_BARS", "make_synthetic", "oracle_positions"]

DEFAULT_SIGNAL_STRENGTH = 0.5
"""Planted edge of the synthetic data: the expected gross return per bar inside a trend regime,
in units of the base per-bar volatility (0.5: 21 bp per hourly bar at 40% annual volatility,
below the default 30 bp cost, while a regime's ~850 bp is far above it; README, "The
workload", says why not the old 0.1)."""
SYNTHETIC_BARS = 100_000
"""Default length of the synthetic data: 11 years of hourly bars, so the validation split's
20,000 bars measure a Sharpe to about +-0.7 (README, "The workload")."""
TREND_MEAN_BARS = 40
"""Mean length of a synthetic trend regime (up, none, down), in bars."""
TREND_HINT = 0.5
"""Per-bar strength of the synthetic trend's trace in the opening gap, in units of volatility
(a noisy hint: a single bar says little, the gaps of the last ten say a lot)."""
_TREND_SWITCH_QUANTILE = NormalDist().inv_cdf(1 - 1 / TREND_MEAN_BARS)
"""A standard normal exceeds this with probability 1 / TREND_MEAN_BARS."""


def make_synthetic(
    bars: int = SYNTHETIC_BARS,
    seed: int = 0,
    signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
    bar_seconds: float = 3600.0,
    annual_vol: float = 0.4,
) -> MarketData:
    """Seeded GARCH(1,1) bars with persistent trend regimes: an edge that lasts tens of bars.

    Volatility: a 3-state Markov chain (stay probability 0.995) picks a volatility regime
    (x0.6, x1.0, x2.0); sigma_t = base * regime * sqrt(h_t) with GARCH h_t = 0.05 + 0.08 *
    h_(t-1) z_(t-1)^2 + 0.87 * h_(t-1), and base = annual_vol * sqrt(bar_seconds / year).

    Trend: a second chain s_t in {-1, 0, +1} (down, none, up) leaves its state with probability 1 /
    TREND_MEAN_BARS per bar (regimes last ~40 bars) for one of the other two. The return of bar t ->
    t+1 is r_(t+1) = signal_strength * s_t * base + sigma_(t+1) * z_(t+1), z unit-variance
    Student-t(5): the edge is a fixed fraction of the typical bar's volatility, so a cost above it
    is above it in every volatility regime. The state is hidden but leaves traces up to bar t: the
    drift itself (momentum) and the opening gap, log(o_t / c_(t-1)) = sigma_t * (0.05 n_t +
    TREND_HINT * s_t), an order-flow-like hint. `expected_return[t]` is the planted edge of bar t ->
    t+1 given s_t; an oracle that knows it and pays costs (`oracle_positions`) holds through a
    regime rather than flipping, because one bar's edge (signal_strength * base) is below a
    realistic cost while a regime's (~40x) is far above it. Volume rises with volatility.
    Same seed, same bars: a short dataset is the prefix of a longer one with the same seed.
    """
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2:
        raise ConfigError(f"synthetic bars must be an integer >= 2, got {bars!r}")
    for name, value in (
        ("signal_strength", signal_strength),
        ("bar_seconds", bar_seconds),
        ("annual_vol", annual_vol),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"synthetic {name} must be a finite number >= 0, got {value!r}")
    if bar_seconds <= 0 or annual_vol <= 0:
        raise ConfigError("synthetic bar_seconds and annual_vol must be positive")

    rng = np.random.default_rng(seed)
    # One draw of all per-bar normals, filled in row order, so a longer series with the same
    # seed extends a shorter one bar for bar.
    n = rng.standard_normal((bars, 14))  # (T, 14)
    # Unit-variance Student-t(5): a normal over sqrt(chi2_5 / 5), rescaled by sqrt(3/5).
    z = n[:, 0] / np.sqrt((n[:, 1:6] ** 2).sum(axis=1) / 5) * math.sqrt(3 / 5)
    switch = n[:, 6] > 2.5758  # P = 0.005 per bar: volatility regimes last ~200 bars
    # P(n > q) = 1 / TREND_MEAN_BARS for a standard normal n.
    trend_switch = n[:, 12] > _TREND_SWITCH_QUANTILE
    multipliers = (0.6, 1.0, 2.0)
    base = annual_vol * math.sqrt(bar_seconds / YEAR_SECONDS)
    omega, alpha, beta = 0.05, 0.08, 0.87

    ret = np.zeros(bars)
    sigma = np.full(bars, base)
    trend = np.zeros(bars, dtype=np.int8)  # s_t, the state in force for bar t -> t+1
    regime, h, state = 1, 1.0, 0
    for t in range(1, bars):
        if switch[t]:
            regime = (regime + (1 if n[t, 7] > 0 else 2)) % 3
        h = omega + alpha * h * z[t - 1] ** 2 + beta * h
        sigma[t] = base * multipliers[regime] * math.sqrt(h)
        ret[t] = signal_strength * state * base + sigma[t] * z[t]
        if trend_switch[t]:
            state = (state + 1 + (1 if n[t, 13] > 0 else 2)) % 3 - 1
        trend[t] = state

    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.empty(bars)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(sigma[1:] * (0.05 * n[1:, 8] + TREND_HINT * trend[1:]))
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(n[:, 9]))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(n[:, 10]))
    volume = 1e6 * np.exp(0.8 * np.log(sigma / base) + 0.25 * n[:, 11])

    step_ns = round(bar_seconds * 1e9)
    timestamps = np.datetime64("2020-01-01T00:00:00", "ns") + np.arange(bars) * np.timedelta64(
        step_ns, "ns"
    )
    expected = np.zeros(bars)
    expected[:-1] = signal_strength * trend[:-1] * base
    return MarketData(
        name="synthetic",
        timestamps=timestamps,
        ohlcv=np.column_stack([open_, high, low, close, volume]),
        bar_seconds=float(bar_seconds),
        source=(
            f"generated by ppo_core.synthetic.make_synthetic(seed={seed}, signal_strength="
            f"{signal_strength}, bar_seconds={bar_seconds}, annual_vol={annual_vol}); "
            "no licence needed"
        ),
        expected_return=expected,
    )


def oracle_positions(expected_return: np.ndarray, cost_bps: float) -> np.ndarray:
    """The positions in {-1, 0, 1} that maximise sum(p_t * mu_t - cost * |p_t - p_(t-1)|) over
    a split, starting flat: an exact dynamic programme over the three positions (Viterbi).

    expected_return (n,) float: mu_t, the planted edge of each decision bar. With costs the
    oracle holds through a regime and ignores edges too short to pay for the round trip."""
    mu = np.asarray(expected_return, dtype=np.float64)
    cost = cost_bps * 1e-4
    levels = np.array([-1.0, 0.0, 1.0])
    switch = cost * np.abs(levels[:, None] - levels[None, :])  # (from, to)
    value = -cost * np.abs(levels)  # entering from flat before the first bar
    choice = np.zeros((len(mu), 3), dtype=np.int8)  # best previous level for each level
    for t in range(len(mu)):
        if t:
            total = value[:, None] - switch  # (from, to)
            choice[t] = total.argmax(axis=0)
            value = total.max(axis=0)
        value = value + levels * mu[t]
    path = np.empty(len(mu), dtype=np.int8)
    if len(mu):
        level = int(value.argmax())
        for t in range(len(mu) - 1, -1, -1):
            path[t] = level - 1
            level = int(choice[t, level])
    return path
