"""The 53 market features per bar that every observation window is built from.

Each feature at bar t is computed from bars 0..t only (causal); rows before a feature's
warm-up are NaN, and the data splits start after the longest warm-up (`FEATURE_WARMUP`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["FEATURE_DOCS", "FEATURE_NAMES", "FEATURE_WARMUP", "N_FEATURES", "compute_features"]

_RETURN_HORIZONS = (1, 2, 3, 5, 10, 20, 60, 120)
_VOL_WINDOWS = (5, 10, 20, 60, 120)
_RSI_WINDOWS = (7, 14, 28)
_SMA_WINDOWS = (5, 10, 20, 50, 100, 200)
# An EMA is defined from bar 0 but remembers its arbitrary start; after ~3.5 spans of the
# slowest EMA (26, plus the 9-bar signal line) the start's weight is below 1e-3.
_MACD_WARMUP = 100


class _Bars:
    """OHLCV columns as pandas Series plus the derived series several features share."""

    def __init__(self, ohlcv: np.ndarray, timestamps: np.ndarray) -> None:
        self.open, self.high, self.low, self.close, self.volume = (
            pd.Series(ohlcv[:, i]) for i in range(5)
        )
        self.timestamps = pd.DatetimeIndex(timestamps)
        self.log_close = np.log(self.close)
        self.ret = self.log_close.diff()  # r_t = log(c_t / c_{t-1}); r_0 = NaN
        self.log_volume = np.log1p(self.volume)
        prev_close = self.close.shift(1)
        self.true_range = pd.concat(
            [
                np.log(self.high / self.low),
                np.log(self.high / prev_close).abs(),
                np.log(self.low / prev_close).abs(),
            ],
            axis=1,
        ).max(axis=1, skipna=False)

    def sma(self, n: int) -> pd.Series:
        return self.close.rolling(n).mean()

    def vol(self, n: int) -> pd.Series:
        return self.ret.rolling(n).std()


def _div(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den, with 0 where den is 0 (a degenerate window carries no information)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return pd.Series(out)


def _log_ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    """log(a / b), with 0 where either side is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = (a > 0) & (b > 0)
    out = np.zeros_like(a)
    np.log(a, out=out, where=ok)
    out[ok] -= np.log(b[ok])
    out[np.isnan(a) | np.isnan(b)] = np.nan
    return pd.Series(out)


def _rsi(b: _Bars, n: int) -> pd.Series:
    gain = b.ret.clip(lower=0).rolling(n).mean()
    loss = (-b.ret).clip(lower=0).rolling(n).mean()
    return _div(gain - loss, gain + loss)  # = RSI/50 - 1, in [-1, 1]


def _ema(x: pd.Series, span: int) -> pd.Series:
    return x.ewm(span=span, adjust=False).mean()


def _macd(b: _Bars) -> tuple[pd.Series, pd.Series]:
    line = _ema(b.log_close, 12) - _ema(b.log_close, 26)
    return line, _ema(line, 9)


def _bollinger(b: _Bars, n: int) -> pd.Series:
    return _div(b.close - b.sma(n), b.close.rolling(n).std())


def _stochastic(b: _Bars, n: int) -> pd.Series:
    lowest, highest = b.low.rolling(n).min(), b.high.rolling(n).max()
    return 2.0 * _div(b.close - lowest, highest - lowest) - 1.0


def _volume_z(b: _Bars, n: int) -> pd.Series:
    return _div(b.log_volume - b.log_volume.rolling(n).mean(), b.log_volume.rolling(n).std())


def _seconds_of_day(b: _Bars) -> np.ndarray:
    t = b.timestamps
    return (t.hour * 3600 + t.minute * 60 + t.second).to_numpy(dtype=np.float64)


# (name, first defined bar, what it is, how it is computed). Log returns r_t = log(c_t/c_{t-1}).
_Spec = tuple[str, int, str, Callable[[_Bars], pd.Series]]


def _specs() -> list[_Spec]:
    s: list[_Spec] = []
    for k in _RETURN_HORIZONS:
        s.append(
            (
                f"ret_{k}",
                k,
                f"log return over the last {k} bars, log(c_t / c_(t-{k}))",
                lambda b, k=k: b.log_close - b.log_close.shift(k),
            )
        )
    s += [
        ("body", 0, "candle body, log(c_t / o_t)", lambda b: np.log(b.close / b.open)),
        (
            "upper_wick",
            0,
            "upper shadow, log(h_t / max(o_t, c_t))",
            lambda b: np.log(b.high / np.maximum(b.open, b.close)),
        ),
        (
            "lower_wick",
            0,
            "lower shadow, log(min(o_t, c_t) / l_t)",
            lambda b: np.log(np.minimum(b.open, b.close) / b.low),
        ),
        ("range", 0, "bar range, log(h_t / l_t)", lambda b: np.log(b.high / b.low)),
        (
            "gap",
            1,
            "opening gap, log(o_t / c_(t-1))",
            lambda b: np.log(b.open / b.close.shift(1)),
        ),
    ]
    for n in _VOL_WINDOWS:
        s.append(
            (f"vol_{n}", n, f"realised volatility, std of r over {n} bars", lambda b, n=n: b.vol(n))
        )
    s += [
        (
            "parkinson_20",
            19,
            "Parkinson range volatility over 20 bars, sqrt(mean(log(h/l)^2) / (4 ln 2))",
            lambda b: np.sqrt((np.log(b.high / b.low) ** 2).rolling(20).mean() / (4 * np.log(2))),
        ),
        (
            "atr_14",
            14,
            "average true range over 14 bars, in log units (true range vs the previous close)",
            lambda b: b.true_range.rolling(14).mean(),
        ),
        (
            "atr_50",
            50,
            "average true range over 50 bars, in log units",
            lambda b: b.true_range.rolling(50).mean(),
        ),
        (
            "vol_ratio_5_60",
            60,
            "volatility regime, log(vol_5 / vol_60)",
            lambda b: _log_ratio(b.vol(5), b.vol(60)),
        ),
        (
            "vol_ratio_20_120",
            120,
            "volatility regime, log(vol_20 / vol_120)",
            lambda b: _log_ratio(b.vol(20), b.vol(120)),
        ),
    ]
    for n in _RSI_WINDOWS:
        s.append(
            (
                f"rsi_{n}",
                n,
                f"RSI over {n} bars (simple averages of gains and losses), scaled to [-1, 1]",
                lambda b, n=n: _rsi(b, n),
            )
        )
    s += [
        (
            "macd",
            _MACD_WARMUP,
            "MACD line on log price, EMA_12 - EMA_26",
            lambda b: _macd(b)[0],
        ),
        (
            "macd_signal",
            _MACD_WARMUP,
            "MACD signal line, EMA_9 of the MACD line",
            lambda b: _macd(b)[1],
        ),
        (
            "macd_hist",
            _MACD_WARMUP,
            "MACD histogram, line - signal",
            lambda b: _macd(b)[0] - _macd(b)[1],
        ),
    ]
    for n in (20, 50):
        s.append(
            (
                f"bollinger_z_{n}",
                n - 1,
                f"Bollinger z-score, (c - SMA_{n}) / std_{n}(c)",
                lambda b, n=n: _bollinger(b, n),
            )
        )
    for n in _SMA_WINDOWS:
        s.append(
            (
                f"dist_sma_{n}",
                n - 1,
                f"distance to the {n}-bar moving average, log(c_t / SMA_{n})",
                lambda b, n=n: np.log(b.close / b.sma(n)),
            )
        )
    s += [
        (
            "sma_slope_20",
            24,
            "trend of the 20-bar average, log(SMA_20(t) / SMA_20(t-5))",
            lambda b: np.log(b.sma(20) / b.sma(20).shift(5)),
        ),
        (
            "sma_slope_50",
            59,
            "trend of the 50-bar average, log(SMA_50(t) / SMA_50(t-10))",
            lambda b: np.log(b.sma(50) / b.sma(50).shift(10)),
        ),
    ]
    for n in (14, 50):
        s.append(
            (
                f"stoch_{n}",
                n - 1,
                f"stochastic %K over {n} bars, close within the low-high range, scaled to [-1, 1]",
                lambda b, n=n: _stochastic(b, n),
            )
        )
    s += [
        (
            "donchian_high_20",
            19,
            "distance below the 20-bar high, log(c_t / max h)",
            lambda b: np.log(b.close / b.high.rolling(20).max()),
        ),
        (
            "donchian_low_20",
            19,
            "distance above the 20-bar low, log(c_t / min l)",
            lambda b: np.log(b.close / b.low.rolling(20).min()),
        ),
        (
            "volume_z_20",
            19,
            "z-score of log(1 + volume) over 20 bars",
            lambda b: _volume_z(b, 20),
        ),
        (
            "volume_z_100",
            99,
            "z-score of log(1 + volume) over 100 bars",
            lambda b: _volume_z(b, 100),
        ),
        (
            "volume_ratio_5_50",
            49,
            "recent vs usual activity, mean_5 - mean_50 of log(1 + volume)",
            lambda b: b.log_volume.rolling(5).mean() - b.log_volume.rolling(50).mean(),
        ),
        (
            "vw_ret_20",
            20,
            "volume-weighted mean of r over 20 bars",
            lambda b: _div((b.ret * b.volume).rolling(20).sum(), b.volume.rolling(20).sum()),
        ),
        ("skew_60", 60, "skewness of r over 60 bars", lambda b: b.ret.rolling(60).skew()),
        (
            "autocorr_60",
            61,
            "lag-1 autocorrelation of r over 60 bars",
            lambda b: b.ret.rolling(60).corr(b.ret.shift(1)),
        ),
        (
            "hour_sin",
            0,
            "time of day (UTC), sin(2 pi seconds / 86400); constant on daily bars",
            lambda b: pd.Series(np.sin(2 * np.pi * _seconds_of_day(b) / 86400)),
        ),
        (
            "hour_cos",
            0,
            "time of day (UTC), cos(2 pi seconds / 86400)",
            lambda b: pd.Series(np.cos(2 * np.pi * _seconds_of_day(b) / 86400)),
        ),
        (
            "dow_sin",
            0,
            "day of week, sin(2 pi weekday / 7), Monday = 0",
            lambda b: pd.Series(np.sin(2 * np.pi * b.timestamps.day_of_week.to_numpy() / 7)),
        ),
        (
            "dow_cos",
            0,
            "day of week, cos(2 pi weekday / 7)",
            lambda b: pd.Series(np.cos(2 * np.pi * b.timestamps.day_of_week.to_numpy() / 7)),
        ),
    ]
    return s


_SPECS = _specs()

FEATURE_NAMES: tuple[str, ...] = tuple(spec[0] for spec in _SPECS)
"""The 53 feature names, in column order."""
FEATURE_DOCS: dict[str, str] = {spec[0]: spec[2] for spec in _SPECS}
"""Feature name -> what it measures and how."""
N_FEATURES = len(FEATURE_NAMES)
FEATURE_WARMUP: int = max(spec[1] for spec in _SPECS)
"""The first bar at which every feature is defined (the 200-bar moving average's first bar)."""

assert N_FEATURES == 53, N_FEATURES
assert len(set(FEATURE_NAMES)) == N_FEATURES


def compute_features(ohlcv: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """ohlcv (T, 5), timestamps (T,) -> raw features (T, 53) float64.

    Row t depends on bars 0..t only. Rows before a feature's warm-up are NaN; after it, a
    statistic of a degenerate window (zero variance, zero range) is 0, never NaN or inf.
    """
    bars = _Bars(np.asarray(ohlcv, dtype=np.float64), np.asarray(timestamps))
    n_bars = len(bars.close)
    out = np.empty((n_bars, N_FEATURES), dtype=np.float64)
    for j, (_name, warmup, _doc, fn) in enumerate(_SPECS):
        column = np.asarray(fn(bars), dtype=np.float64)
        column = np.where(np.isfinite(column), column, 0.0)
        column[:warmup] = np.nan
        out[:, j] = column
    return out
