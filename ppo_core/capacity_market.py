"""The capacity market: synthetic bars whose edge is a random teacher network of the recent
order-flow traces, with knobs (the number of hidden patterns, and how wide a span of the window
they read) that move which size is right.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ppo_core.errors import ConfigError
from ppo_core.market import YEAR_SECONDS, MarketData

__all__ = [
    "CAPACITY_ANNUAL_VOL",
    "CAPACITY_DEFAULT_COMPLEXITY",
    "CAPACITY_SIGNAL_STRENGTH",
    "CapacityKnob",
    "causal_edge",
    "make_capacity_market",
    "parse_capacity_spec",
]

CAPACITY_DEFAULT_COMPLEXITY = 2
"""Hidden patterns in the teacher when the dataset name carries no knob ('capacity'): the
largest knob an MLP learned from the whole window at CPU data lengths (README, "The capacity
market")."""
CAPACITY_SIGNAL_STRENGTH = 0.15
"""Standard deviation of the planted edge per bar, in units of the base per-bar volatility
(README, "The capacity market", says why well below the old market's 0.5)."""
WIDE_SIGNAL_STRENGTH = 0.3
"""The same for the wide-span family ('capacity-wK'): its edge turns over within a few bars,
so it takes a stronger edge to pay a round trip (README, "The capacity market")."""
CAPACITY_ANNUAL_VOL = 0.8
"""Annual volatility of the bars (a crypto pair's): the default 30 bp cost is 0.35 of a bar's
volatility, so an edge weak enough to hide from momentum rules can still pay for trading."""
TEACHER_LAGS = 96
"""Bars of each trace a hidden pattern reads (inside the default 100-bar observation window)."""
TEACHER_BASIS = 4
"""Smooth lag shapes per trace that a pattern mixes (cosines of 0 .. 3 half-periods): a span of
12 directions of the window, which 16 ReLU units already cover."""
WIDE_TEACHER_BASIS = 16
"""Lag shapes per trace of the wide-span family (cosines of 0 .. 15 half-periods): a span of
48 directions, more than a 16-unit first layer can project onto."""
CHANNELS = ("gap", "volume", "wick")
"""The observable traces: the opening gap, log volume, and the upper/lower wick log-ratio."""
_GAP_SCALE, _VOLUME_SCALE, _WICK_SCALE = 0.3, 0.4, 0.3
_ABS_MEAN = math.sqrt(2 / math.pi)  # E|h| for h ~ N(0, 1)
_SPEC = re.compile(r"capacity(?:-(w?)(\d+))?")
_TEACHER_SALT = 0x7EAC4E
_WIDE_SALT = 0x71DE


@dataclass(frozen=True)
class CapacityKnob:
    """What a 'capacity[-[w]K]' dataset name sets."""

    complexity: int
    """Hidden patterns of the teacher (K)."""
    wide: bool
    """Whether the patterns read the wide span (WIDE_TEACHER_BASIS lag shapes per trace)."""

    @property
    def name(self) -> str:
        """The canonical dataset name: 'capacity-8' or 'capacity-w64'."""
        return f"capacity-{'w' if self.wide else ''}{self.complexity}"

    @property
    def signal_strength(self) -> float:
        """The family's default edge strength."""
        return WIDE_SIGNAL_STRENGTH if self.wide else CAPACITY_SIGNAL_STRENGTH


def parse_capacity_spec(spec: str) -> CapacityKnob | None:
    """'capacity' -> the default knob, 'capacity-16' -> 16 patterns, 'capacity-w64' -> 64
    patterns over the wide span; None for any other name."""
    match = _SPEC.fullmatch(str(spec).strip().lower())
    if match is None:
        return None
    complexity = int(match.group(2)) if match.group(2) else CAPACITY_DEFAULT_COMPLEXITY
    return CapacityKnob(complexity, wide=match.group(1) == "w")


def _teacher(seed: int, complexity: int, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Filters (K, TEACHER_LAGS, channels) of unit norm and output signs (K,).

    Patterns are drawn one after another from their own stream (one per family), so the
    teacher of knob k is the first k patterns of the teacher of any larger knob (same seed)."""
    rng = np.random.default_rng([_WIDE_SALT if wide else _TEACHER_SALT, seed])
    n_basis = WIDE_TEACHER_BASIS if wide else TEACHER_BASIS
    lags = np.arange(TEACHER_LAGS)
    # Smooth shapes over the lags keep a pattern's value for several bars: long enough to
    # pay a round trip's cost, the way a real edge has to.
    basis = np.cos(np.pi * np.outer(np.arange(n_basis), lags + 0.5) / TEACHER_LAGS)
    filters = np.empty((complexity, TEACHER_LAGS, len(CHANNELS)))
    signs = np.empty(complexity)
    for j in range(complexity):
        mix = rng.standard_normal((n_basis, len(CHANNELS)))
        filters[j] = basis.T @ mix  # (lags, channels)
        filters[j] /= np.linalg.norm(filters[j])
        # Alternate signs: as many patterns push up as down, so the edge is symmetric
        # rather than a few long one-sided runs that a momentum rule would catch.
        signs[j] = 1.0 if j % 2 == 0 else -1.0
    return filters, signs


def _edge_scale(filters: np.ndarray, signs: np.ndarray) -> float:
    """Exact standard deviation of sum_j c_j (|h_j| - E|h|) for unit-normal h_j with the
    correlations the filters give: E|X||Y| = 2/pi (rho asin(rho) + sqrt(1 - rho^2))."""
    flat = filters.reshape(len(filters), -1)
    rho = np.clip(flat @ flat.T, -1.0, 1.0)  # (K, K)
    cov = 2 / math.pi * (rho * np.arcsin(rho) + np.sqrt(1 - rho**2) - 1)
    return float(math.sqrt(signs @ cov @ signs))


def causal_edge(traces: np.ndarray, seed: int, complexity: int, wide: bool = False) -> np.ndarray:
    """traces (T, channels) of the unit-normal order flow -> the teacher's output (T,), unit
    variance, 0 before the first full TEACHER_LAGS window: a function of bars up to t only."""
    filters, signs = _teacher(seed, complexity, wide)
    n = len(traces)
    out = np.zeros(n)
    if n < TEACHER_LAGS:
        return out
    weights = filters[:, ::-1, :].reshape(complexity, -1).T  # (lags * channels, K), oldest first
    windows = np.lib.stride_tricks.sliding_window_view(traces, TEACHER_LAGS, axis=0)
    windows = windows.transpose(0, 2, 1)  # (T - lags + 1, lags, channels)
    scale = _edge_scale(filters, signs)
    for first in range(0, len(windows), 8192):
        chunk = windows[first : first + 8192].reshape(-1, weights.shape[0])
        h = chunk @ weights  # (chunk, K)
        out[TEACHER_LAGS - 1 + first : TEACHER_LAGS - 1 + first + len(h)] = (
            (np.abs(h) - _ABS_MEAN) @ signs / scale
        )
    return out


def _check(bars: int, complexity: int, signal_strength: float, annual_vol: float) -> None:
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2:
        raise ConfigError(f"capacity market bars must be an integer >= 2, got {bars!r}")
    if isinstance(complexity, bool) or not isinstance(complexity, int) or not 1 <= complexity:
        raise ConfigError(f"capacity market complexity must be an integer >= 1, got {complexity!r}")
    if complexity > 4096:
        raise ConfigError(f"capacity market complexity must be at most 4096, got {complexity}")
    for name, value in (("signal_strength", signal_strength), ("annual_vol", annual_vol)):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"capacity market {name} must be a finite number >= 0, got {value!r}")
    if annual_vol <= 0:
        raise ConfigError("capacity market annual_vol must be positive")


def _volatility(n: np.ndarray, base: float) -> np.ndarray:
    """sigma_t (T,) from GARCH(1,1) with three volatility regimes, as in make_synthetic;
    n (T, 8) normals: column 0 the shock, 1-5 its Student-t denominator, 6-7 regime switches.
    Returns (sigma, z) with z the unit-variance Student-t(5) shocks."""
    z = n[:, 0] / np.sqrt((n[:, 1:6] ** 2).sum(axis=1) / 5) * math.sqrt(3 / 5)
    switch = n[:, 6] > 2.5758  # P = 0.005 per bar: volatility regimes last ~200 bars
    multipliers = (0.6, 1.0, 2.0)
    sigma = np.full(len(n), base)
    regime, h = 1, 1.0
    for t in range(1, len(n)):
        if switch[t]:
            regime = (regime + (1 if n[t, 7] > 0 else 2)) % 3
        h = 0.05 + 0.08 * h * z[t - 1] ** 2 + 0.87 * h
        sigma[t] = base * multipliers[regime] * math.sqrt(h)
    return sigma, z


def make_capacity_market(
    bars: int = 100_000,
    seed: int = 0,
    complexity: int = CAPACITY_DEFAULT_COMPLEXITY,
    signal_strength: float | None = None,
    annual_vol: float = CAPACITY_ANNUAL_VOL,
    wide: bool = False,
) -> MarketData:
    """Hourly bars whose drift is a random teacher network of the last TEACHER_LAGS bars of
    three observable traces; `complexity` is the teacher's number of hidden patterns.

    Traces: a_t (T, 3) unit normals, drawn per bar and written into the bars exactly: the
    opening gap log(o_t / c_(t-1)) = 0.3 base a_t0, log volume = log(1e6) + 0.4 a_t1, and
    the wicks' log-ratio log(upper / lower) = 0.6 a_t2 (their sum is noise). Pattern j reads
    h_j(t) = <w_j, window of a over the last TEACHER_LAGS bars>, w_j a random unit-norm mix of
    TEACHER_BASIS smooth lag shapes per trace, so h_j ~ N(0, 1) and drifts over tens of bars.
    The drift of bar t -> t+1 is mu_t = signal_strength * base * f_t, f_t = sum_j c_j (|h_j| -
    E|h|) / (its exact std), c_j = +1, -1, +1, ...: an even function of the window, so no
    linear function of it (and no single input) carries the edge. A student needs ~2 ReLU
    units per pattern and must find K directions in the window: the knob moves which width
    and data length suffice. `wide` mixes WIDE_TEACHER_BASIS lag shapes per trace instead of
    TEACHER_BASIS (a 48- rather than 12-dimensional span); `signal_strength` defaults to the
    family's (CAPACITY_SIGNAL_STRENGTH, WIDE_SIGNAL_STRENGTH).
    mu_t is E[r_(t+1) | bars 0..t] exactly (`expected_return`): the traces are observable.
    Returns add mu to GARCH(1,1) Student-t(5) noise with volatility regimes (make_synthetic's).
    Prefix-stable: a shorter market is the prefix of a longer one with the same seed and knob,
    and the teacher of a smaller knob is the first patterns of a larger one's.
    """
    knob = CapacityKnob(complexity, bool(wide))
    if signal_strength is None:
        signal_strength = knob.signal_strength
    _check(bars, complexity, signal_strength, annual_vol)
    bar_seconds = 3600.0
    base = annual_vol * math.sqrt(bar_seconds / YEAR_SECONDS)
    rng = np.random.default_rng(seed)
    # (T, 13) drawn in row order, so prefix-stable: 0-7 volatility, 8-10 traces, 11 wick size,
    # 12 spare.
    n = rng.standard_normal((bars, 13))
    traces = n[:, 8:11]  # (T, 3): gap, volume, wick
    sigma, z = _volatility(n[:, :8], base)
    edge = signal_strength * base * causal_edge(traces, seed, complexity, knob.wide)  # mu_t, (T,)
    ret = np.zeros(bars)
    ret[1:] = edge[:-1] + sigma[1:] * z[1:]
    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.empty(bars)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(_GAP_SCALE * base * traces[1:, 0])
    # The trace splits a bar's wicks without changing their total: the bar's range (and every
    # range or volatility feature) says nothing of it, only the wicks' ratio does.
    wicks = sigma * np.exp(0.25 * n[:, 11])  # (T,) upper + lower, in log units
    upper = wicks / (1 + np.exp(-2 * _WICK_SCALE * traces[:, 2]))
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-(wicks - upper))
    volume = 1e6 * np.exp(_VOLUME_SCALE * traces[:, 1])
    timestamps = np.datetime64("2020-01-01T00:00:00", "ns") + np.arange(bars) * np.timedelta64(
        round(bar_seconds * 1e9), "ns"
    )
    expected = np.zeros(bars)
    expected[:-1] = edge[:-1]
    return MarketData(
        name=knob.name,
        timestamps=timestamps,
        ohlcv=np.column_stack([open_, high, low, close, volume]),
        bar_seconds=bar_seconds,
        source=(
            f"generated by ppo_core.capacity_market.make_capacity_market(seed={seed}, "
            f"complexity={complexity}, signal_strength={signal_strength}, "
            f"annual_vol={annual_vol}, wide={knob.wide}); no licence needed"
        ),
        expected_return=expected,
    )
