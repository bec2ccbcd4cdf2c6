"""The market data record: a time-ordered OHLCV series, its bar spacing and annualisation,
and where the bars came from (the synthetic generator and the loaders both build it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppo_core.errors import DataError

__all__ = ["YEAR_SECONDS", "MarketData", "TradingCost", "median_spacing"]

YEAR_SECONDS = 365.25 * 24 * 3600
"""Seconds in a year of 365.25 days: the year every annualisation divides by."""


@dataclass(frozen=True)
class MarketData:
    """A time-ordered OHLCV series, ready to be turned into features."""

    name: str
    """'synthetic', a named dataset ('sp500', 'eurusd-1h', ...) or the file path."""
    timestamps: np.ndarray
    """(T,) datetime64[ns], naive UTC, strictly increasing."""
    ohlcv: np.ndarray
    """(T, 5) float64: open, high, low, close, volume."""
    bar_seconds: float
    """Median spacing of consecutive bars, in seconds."""
    source: str
    """Where the bars came from, with the licence that covers them."""
    expected_return: np.ndarray | None = None
    """Synthetic only: (T,) float64, the planted edge E[log_returns[t]] of bar t -> t+1 given
    the hidden trend regime at t (what `oracle_positions` trades on); None for real data."""
    origin: dict[str, Any] | None = None
    """How `load_market_data` rebuilds these bars (its keyword arguments: spec, bars, seed,
    signal_strength, timestamp_column, timestamp_format); None when built some other way."""

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        if self.ohlcv.shape != (n, 5):
            raise DataError(f"{self.name}: ohlcv has shape {self.ohlcv.shape}, expected ({n}, 5)")
        if self.expected_return is not None and self.expected_return.shape != (n,):
            raise DataError(f"{self.name}: expected_return must have shape ({n},)")

    @property
    def n_bars(self) -> int:
        return len(self.timestamps)

    @property
    def periods_per_year(self) -> float:
        """Bars per year as observed: (T - 1) / elapsed years.

        The one annualisation used everywhere. It equals 365.25 * 86400 / bar_seconds for
        gap-free 24/7 bars (8,766 for hourly synthetic data), ~252 for daily equities and
        ~6,200 for hourly FX, because closed hours and days are simply absent from the data.
        """
        elapsed = (self.timestamps[-1] - self.timestamps[0]) / np.timedelta64(1, "s")
        return (self.n_bars - 1) / (float(elapsed) / YEAR_SECONDS)

    def tail(self, bars: int) -> MarketData:
        """The last `bars` bars."""
        if bars > self.n_bars:
            raise DataError(f"{self.name}: asked for {bars:,} bars but it has {self.n_bars:,}")
        edge = None if self.expected_return is None else self.expected_return[-bars:]
        origin = None if self.origin is None else {**self.origin, "bars": bars}
        return MarketData(
            self.name,
            self.timestamps[-bars:],
            self.ohlcv[-bars:],
            median_spacing(self.timestamps[-bars:]),
            self.source,
            edge,
            origin,
        )

    def content_hash(self) -> str:
        """sha256 of the timestamps and OHLCV values: the same bars give the same hash."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.timestamps.astype("datetime64[ns]")).tobytes())
        digest.update(np.ascontiguousarray(self.ohlcv, dtype=np.float64).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class TradingCost:
    """A cost per unit of position change, why it is that, and any doubt about it."""

    bps: float
    """Basis points per unit of position change (flat to long costs 1x, short to long 2x)."""
    source: str
    """Where it comes from: a flag, a checkpoint, or a dataset's default with its reason."""
    warning: str | None = None
    """Why it may not fit the data (the synthetic default used on a file); None when it fits."""


def median_spacing(timestamps: np.ndarray) -> float:
    """(T,) datetime64 -> the median seconds between consecutive bars (NaN under two bars)."""
    if len(timestamps) < 2:
        return float("nan")
    return float(np.median(np.diff(timestamps) / np.timedelta64(1, "s")))
