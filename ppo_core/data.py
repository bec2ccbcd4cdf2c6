"""Market data for the trading task: a synthetic generator with a known edge, named real
datasets shipped inside PyPI packages, a validating OHLCV file loader, splits and features.

Bar indices are decision bars: at bar t the agent sees feature rows t-lookback+1..t and earns
log_returns[t] = log(close[t+1] / close[t]). Every split is a half-open range of such bars.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ppo_core.errors import ConfigError, DataError
from ppo_core.features import FEATURE_NAMES, FEATURE_WARMUP, compute_features

__all__ = [
    "DATASETS",
    "DEFAULT_SIGNAL_STRENGTH",
    "FEATURE_NAMES",
    "NORMALIZED_CLIP",
    "SPLIT_NAMES",
    "TIMESTAMP_FORMATS",
    "MarketData",
    "Normalizer",
    "PreparedData",
    "Splits",
    "load_market_data",
    "load_ohlcv_file",
    "make_splits",
    "make_synthetic",
    "min_bars",
    "oracle_positions",
    "prepare",
    "walk_forward_folds",
]

YEAR_SECONDS = 365.25 * 24 * 3600
DEFAULT_SIGNAL_STRENGTH = 0.1
"""Planted edge of the synthetic data: the expected gross return per bar inside a trend regime,
in units of the base per-bar volatility (0.1: 4.3 bp per hourly bar at 40% annual volatility,
below the default 5 bp cost of a position change, so only holding through a regime pays)."""
TREND_MEAN_BARS = 40
"""Mean length of a synthetic trend regime (up, none, down), in bars."""
TREND_HINT = 0.5
"""Per-bar strength of the synthetic trend's trace in the opening gap, in units of volatility
(a noisy hint: a single bar says little, the gaps of the last ten say a lot)."""
_TREND_SWITCH_QUANTILE = NormalDist().inv_cdf(1 - 1 / TREND_MEAN_BARS)
"""A standard normal exceeds this with probability 1 / TREND_MEAN_BARS."""
NORMALIZED_CLIP = 10.0
"""Normalised features are clipped to +-this many train-split standard deviations."""
SPLIT_NAMES = ("train", "validation", "test")
MIN_SPLIT_BARS = 2
"""Fewest decision bars a split may hold (a Sharpe ratio needs two returns)."""

_COLUMN_ALIASES = {
    "timestamp": ("timestamp", "time", "date", "datetime", "date_time", "gmt time", "dt"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v", "vol"),
}
_PRICE_COLUMNS = ("open", "high", "low", "close")


# --------------------------------------------------------------------------- market data


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
            _median_spacing(self.timestamps[-bars:]),
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


def _median_spacing(timestamps: np.ndarray) -> float:
    if len(timestamps) < 2:
        return float("nan")
    return float(np.median(np.diff(timestamps) / np.timedelta64(1, "s")))


def make_synthetic(
    bars: int = 20_000,
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
            f"generated by ppo_core.data.make_synthetic(seed={seed}, signal_strength="
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


# ------------------------------------------------------------------------- file loading


TIMESTAMP_FORMATS = ("dayfirst", "monthfirst", "epoch_s", "epoch_ms")
"""Named timestamp formats besides strftime patterns: day-first or month-first dates
(13/01/2020, 01/13/2020), and Unix epoch seconds or milliseconds."""
_TIMESTAMP_FIX = (
    "pass --timestamp-format (a strftime pattern such as '%d.%m.%Y %H:%M:%S.%f', or one of "
    + ", ".join(TIMESTAMP_FORMATS)
    + ")"
)


def load_ohlcv_file(
    path: str | Path,
    timestamp_format: str | None = None,
    min_rows: int = FEATURE_WARMUP + 2,
    name: str | None = None,
    source: str | None = None,
    timestamp_column: str | None = None,
) -> MarketData:
    """Read and validate an OHLCV CSV (optionally .gz) or Parquet file.

    Needs a timestamp column (`timestamp_column`, else one named timestamp/time/date/datetime/
    date_time/gmt time/dt, else an unnamed first column, as pandas' to_csv writes an index)
    and open/high/low/close/volume (or o/h/l/c/v/vol), matched case-insensitively; other
    columns, such as 'Adj Close', are ignored because adjusted closes do not fit unadjusted
    highs and lows. Timestamps: `timestamp_format` (a strftime pattern or one of
    TIMESTAMP_FORMATS) when given; otherwise numbers are epoch seconds or milliseconds by their
    magnitude, and text is tried as ISO 8601, pandas' inferred format, month-first and
    day-first, keeping the reading that parses every row in increasing order (two different
    such readings are refused as ambiguous). Aware times are converted to UTC. Any bad row
    raises one DataError naming the file, the 1-based data row, the problem and the fix;
    nothing is dropped, sorted or repaired.
    """
    path = Path(path)
    frame = _read_frame(path)
    columns = _match_columns(path, frame, timestamp_column)
    n_rows = len(frame)
    if n_rows < min_rows:
        raise DataError(
            f"{path}: has {n_rows:,} data rows; at least {min_bars(lookback=100):,} are needed "
            f"for the default lookback of 100 bars ({FEATURE_WARMUP} bars of feature warm-up, "
            "the lookback, two embargoes and three splits; see data.min_bars)"
        )
    timestamps = _parse_timestamps(path, frame[columns["timestamp"]], timestamp_format)
    values = np.empty((n_rows, 5), dtype=np.float64)
    for j, role in enumerate(("open", "high", "low", "close", "volume")):
        raw = frame[columns[role]]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(numeric) & raw.notna().to_numpy())
        if len(bad):
            i = bad[0]
            raise DataError(
                f"{path}: row {i + 1} ({timestamps[i]}): {role} is not a number ({raw.iloc[i]!r})"
            )
        values[:, j] = numeric
    _check_values(path, timestamps, values)
    return MarketData(
        name=name or str(path),
        timestamps=timestamps,
        ohlcv=values,
        bar_seconds=_median_spacing(timestamps),
        source=source or f"file {path}",
    )


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as error:  # pandas and pyarrow raise many types for a corrupt file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot be read as CSV or Parquet: {message}") from error
    return frame


def _match_columns(
    path: Path, frame: pd.DataFrame, timestamp_column: str | None = None
) -> dict[str, Any]:
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    found: dict[str, Any] = {}
    missing = []
    if timestamp_column is not None:
        key = str(timestamp_column).strip().lower()
        if key not in lowered:
            raise DataError(
                f"{path}: no column {timestamp_column!r} for --timestamp-column; found "
                f"{', '.join(map(str, frame.columns)) or 'none'}"
            )
        found["timestamp"] = lowered[key]
    elif not any(a in lowered for a in _COLUMN_ALIASES["timestamp"]) and len(frame.columns):
        first = str(frame.columns[0]).strip()
        # A header cell left empty (pandas' to_csv of a date index) reads as 'Unnamed: 0'.
        if first == "" or first.lower().startswith("unnamed: 0"):
            found["timestamp"] = frame.columns[0]
    for role, aliases in _COLUMN_ALIASES.items():
        if role in found:
            continue
        hits = [lowered[a] for a in aliases if a in lowered]
        if len(hits) > 1:
            raise DataError(f"{path}: columns {hits} all look like the {role} column; keep one")
        if hits:
            found[role] = hits[0]
        else:
            missing.append(role)
    if missing:
        fix = " or name it with --timestamp-column" if "timestamp" in missing else ""
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found "
            f"{', '.join(map(str, frame.columns)) or 'none'} (expected a timestamp column "
            f"and open, high, low, close, volume, case-insensitive{fix})"
        )
    return found


def _epoch(path: Path, column: pd.Series, unit: str | None) -> pd.Series:
    """Numbers -> UTC times; unit 's' or 'ms', or None to tell by magnitude (a value above
    1e11 is milliseconds: as seconds it would lie past the year 5000)."""
    numeric = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(numeric.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path}: row {i + 1}: timestamp {column.iloc[i]!r} is not an epoch number; "
            f"{_TIMESTAMP_FIX}"
        )
    if unit is None:
        unit = "ms" if float(numeric.abs().median()) > 1e11 else "s"
    return pd.to_datetime(numeric, unit=unit, utc=True)


def _text_readings(text: pd.Series, fmt: str | None) -> list[tuple[str, pd.Series]]:
    """(label, parsed) for each way the timestamp text may be read; NaT where one fails.
    ISO 8601 comes first and, when it reads every row, alone: it is never ambiguous."""
    if fmt in ("dayfirst", "monthfirst"):
        tries = [(fmt, None, fmt == "dayfirst")]
    elif fmt:
        tries = [(fmt, fmt, False)]
    else:
        tries = [("ISO 8601", "ISO8601", False), ("monthfirst", None, False)]
        tries.append(("dayfirst", None, True))
    readings = []
    for label, candidate, dayfirst in tries:
        with warnings.catch_warnings():
            # pandas warns when it cannot infer one format; the NaT checks decide.
            warnings.simplefilter("ignore", UserWarning)
            try:
                parsed = pd.to_datetime(
                    text, format=candidate, dayfirst=dayfirst, utc=True, errors="coerce"
                )
            except (ValueError, TypeError, OverflowError):
                continue
        readings.append((label, parsed))
        if label == "ISO 8601" and not parsed.isna().any():
            break
    return readings


def _parse_timestamps(path: Path, column: pd.Series, fmt: str | None) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = pd.to_datetime(column, utc=True)
    elif fmt in ("epoch_s", "epoch_ms"):
        parsed = _epoch(path, column, fmt[len("epoch_") :])
    elif fmt is None and pd.api.types.is_numeric_dtype(column):
        parsed = _epoch(path, column, None)
    elif fmt is None and pd.to_numeric(column, errors="coerce").notna().all():
        text = column.astype("string").str.strip()
        # Whole numbers of 9+ digits are epoch times; 20200113 (8 digits) is a date.
        if text.str.fullmatch(r"-?\d{9,}(\.\d*)?").all():
            parsed = _epoch(path, column, None)
        else:
            parsed = _parse_text(path, column, fmt)
    else:
        parsed = _parse_text(path, column, fmt)
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(f"{path}: row {i + 1}: timestamp is missing")
    stamps = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps <= np.timedelta64(0, "ns"))
    if len(bad):
        i = bad[0] + 1
        problem = "duplicates" if stamps[i] == stamps[i - 1] else "is earlier than"
        raise DataError(
            f"{path}: row {i + 1}: timestamp {stamps[i]} {problem} row {i}'s "
            f"{stamps[i - 1]} (timestamps must strictly increase)"
        )
    return stamps


def _increasing(parsed: pd.Series) -> bool:
    stamps = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    return bool((np.diff(stamps) > np.timedelta64(0, "ns")).all())


def _parse_text(path: Path, column: pd.Series, fmt: str | None) -> pd.Series:
    text = column.astype("string")
    readings = _text_readings(text, fmt)
    complete = [(label, p) for label, p in readings if not p.isna().any()]
    if not complete:
        # The reading that parsed most rows names the first row none could parse.
        best = min((p for _, p in readings), key=lambda p: int(p.isna().sum()), default=None)
        if best is None:
            best = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
        i = int(np.flatnonzero(best.isna().to_numpy())[0])
        hint = f"; {_TIMESTAMP_FIX}" if not fmt else f" with timestamp format {fmt!r}"
        raise DataError(f"{path}: row {i + 1}: timestamp {column.iloc[i]!r} cannot be parsed{hint}")
    if len(complete) > 1:
        ordered = [(label, p) for label, p in complete if _increasing(p)]
        complete = ordered or complete[:1]
    label, parsed = complete[0]
    for other_label, other in complete[1:]:
        differ = np.flatnonzero((other != parsed).to_numpy())
        if len(differ):
            i = int(differ[0])
            raise DataError(
                f"{path}: row {i + 1}: timestamp {column.iloc[i]!r} is ambiguous ({label}: "
                f"{parsed.iloc[i]}, {other_label}: {other.iloc[i]}); pass --timestamp-format "
                "dayfirst or monthfirst"
            )
    return parsed


def _check_values(path: Path, timestamps: np.ndarray, v: np.ndarray) -> None:
    names = ("open", "high", "low", "close", "volume")
    o, h, lo, c, vol = v.T
    checks = [
        (~np.isfinite(v).all(axis=1), lambda i: _which_nonfinite(v[i], names)),
        ((v[:, :4] <= 0).any(axis=1), lambda i: _which_nonpositive(v[i], names)),
        (vol < 0, lambda i: f"volume is negative ({vol[i]})"),
        (h < lo, lambda i: f"high {h[i]} is below low {lo[i]}"),
        (
            (h < np.maximum(o, c)) | (lo > np.minimum(o, c)),
            lambda i: f"open {o[i]} / close {c[i]} lie outside [low {lo[i]}, high {h[i]}]",
        ),
    ]
    for mask, describe in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: row {i + 1} ({timestamps[i]}): {describe(i)}")


def _which_nonfinite(row: np.ndarray, names: tuple[str, ...]) -> str:
    j = int(np.flatnonzero(~np.isfinite(row))[0])
    return f"{names[j]} is {row[j]} (missing or infinite)"


def _which_nonpositive(row: np.ndarray, names: tuple[str, ...]) -> str:
    j = int(np.flatnonzero(row[:4] <= 0)[0])
    return f"{names[j]} is {row[j]}; prices must be positive"


# ----------------------------------------------------------------------- named datasets

# name -> (package, path inside the package, timestamp format, description, licence)
DATASETS: dict[str, tuple[str, str, str | None, str]] = {
    "sp500": (
        "arch",
        "data/sp500/sp500.csv.gz",
        None,
        "S&P 500 index daily OHLCV 1999-2018 (5,031 bars), shipped with the arch package "
        "(K. Sheppard), NCSA licence",
    ),
    "nasdaq": (
        "arch",
        "data/nasdaq/nasdaq.csv.gz",
        None,
        "NASDAQ Composite daily OHLCV 1999-2018 (5,031 bars), shipped with the arch package "
        "(K. Sheppard), NCSA licence",
    ),
    "eurusd-1h": (
        "gym_anytrading",
        "datasets/data/FOREX_EURUSD_1H_ASK.csv",
        "%d.%m.%Y %H:%M:%S.%f",
        "EUR/USD hourly ask OHLCV 2017 (6,225 bars), shipped with the gym-anytrading package "
        "(A. Haghpanah), MIT licence",
    ),
    "googl": (
        "gym_anytrading",
        "datasets/data/STOCKS_GOOGL.csv",
        None,
        "Alphabet (GOOGL) daily OHLCV 2009-2018 (2,335 bars), shipped with the gym-anytrading "
        "package (A. Haghpanah), MIT licence",
    ),
}
"""Named real datasets read offline from files inside installed packages (the `data` extra)."""


def _dataset_path(name: str) -> Path:
    package, inner, _fmt, _source = DATASETS[name]
    # find_spec on a top-level package locates it without importing it (arch's import pulls
    # in scipy and statsmodels; only its CSV files are wanted).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise DataError(
            f"dataset {name!r} needs the {pip_name} package: pip install 'ppo-archbench[data]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise DataError(f"dataset {name!r}: {path} is missing from the installed {package}")
    return path


def load_market_data(
    spec: str,
    bars: int | None = None,
    seed: int = 0,
    signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
    timestamp_column: str | None = None,
    timestamp_format: str | None = None,
) -> MarketData:
    """'synthetic', a name in DATASETS, or a CSV/Parquet path -> MarketData.

    `bars`: the length of synthetic data (default 20,000), or the most recent `bars` bars of
    real data (default: all of it). `seed` and `signal_strength` apply to synthetic data only;
    `timestamp_column` and `timestamp_format` to files only (see load_ohlcv_file). The result's
    `origin` holds these arguments, so a checkpoint can rebuild the same bars.
    """
    if bars is not None and (isinstance(bars, bool) or not isinstance(bars, int) or bars < 2):
        raise ConfigError(f"bars must be an integer >= 2, got {bars!r}")
    key = str(spec).strip()
    if key.lower() == "synthetic":
        market = make_synthetic(bars or 20_000, seed=seed, signal_strength=signal_strength)
        origin = {"spec": "synthetic", "bars": market.n_bars, "seed": seed}
        origin["signal_strength"] = signal_strength
        return dataclasses.replace(market, origin=origin)
    if key.lower() in DATASETS:
        name = key.lower()
        path = _dataset_path(name)
        market = load_ohlcv_file(path, DATASETS[name][2], name=name, source=DATASETS[name][3])
        origin = {"spec": name, "bars": None}
    elif Path(key).exists():
        market = load_ohlcv_file(
            key, timestamp_format=timestamp_format, timestamp_column=timestamp_column
        )
        origin = {"spec": str(Path(key).resolve()), "bars": None}
        origin.update(timestamp_column=timestamp_column, timestamp_format=timestamp_format)
    else:
        raise DataError(
            f"{key}: neither a file nor a dataset name (synthetic, {', '.join(DATASETS)})"
        )
    market = dataclasses.replace(market, origin=origin)
    return market.tail(bars) if bars is not None else market


# -------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Splits:
    """Time-ordered train / validation / test ranges of decision bars, [start, end)."""

    train: tuple[int, int]
    """Bars the agent trains on."""
    validation: tuple[int, int]
    """Bars for model selection, after an embargo."""
    test: tuple[int, int]
    """Bars for the final, once-only judgement, after another embargo."""
    embargo: int
    """Bars skipped between splits (>= lookback, so no observation window spans two splits)."""

    def __post_init__(self) -> None:
        ranges = [tuple(self.train), tuple(self.validation), tuple(self.test)]
        for name, (start, end) in zip(SPLIT_NAMES, ranges, strict=True):
            if not 0 <= start < end:
                raise ConfigError(f"Splits.{name} must be a non-empty range, got {start, end}")
        for (_, end), (start, _), name in zip(
            ranges[:-1], ranges[1:], SPLIT_NAMES[1:], strict=True
        ):
            if start - end < self.embargo:
                raise ConfigError(
                    f"Splits.{name} starts {start - end} bars after the previous split; "
                    f"the embargo is {self.embargo}"
                )

    def range(self, split: str) -> tuple[int, int]:
        """(start, end) of 'train', 'validation' or 'test'."""
        if split not in SPLIT_NAMES:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_NAMES)}; got {split!r}")
        return getattr(self, split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": list(self.train),
            "validation": list(self.validation),
            "test": list(self.test),
            "embargo": self.embargo,
        }


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(
        not isinstance(f, int | float) or not math.isfinite(f) or f <= 0 for f in fractions
    ):
        raise ConfigError(f"fractions must be three positive numbers, got {fractions!r}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions)})")


def _resolve_embargo(lookback: int, embargo: int | None) -> int:
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
        raise ConfigError(f"lookback must be a positive integer, got {lookback!r}")
    if embargo is None:
        return lookback
    if isinstance(embargo, bool) or not isinstance(embargo, int) or embargo < lookback:
        raise ConfigError(f"embargo must be an integer >= lookback ({lookback}), got {embargo!r}")
    return embargo


def min_bars(lookback: int, embargo: int | None = None, warmup: int = FEATURE_WARMUP) -> int:
    """Fewest bars from which make_splits can cut three splits of MIN_SPLIT_BARS each."""
    embargo = _resolve_embargo(lookback, embargo)
    return warmup + lookback - 1 + 2 * embargo + 3 * MIN_SPLIT_BARS + 1


def make_splits(
    n_bars: int,
    lookback: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    embargo: int | None = None,
    warmup: int = FEATURE_WARMUP,
) -> Splits:
    """Cut the usable decision bars into train / validation / test by `fractions`.

    The first usable bar is warmup + lookback - 1 (its whole window has defined features);
    the last is n_bars - 2 (the last bar has no next return). `embargo` defaults to lookback.
    """
    _check_fractions(fractions)
    embargo = _resolve_embargo(lookback, embargo)
    need = min_bars(lookback, embargo, warmup)
    if n_bars < need:
        raise DataError(
            f"{n_bars:,} bars are too few: warm-up {warmup} + lookback {lookback} + 2 embargoes "
            f"of {embargo} + 3 splits of {MIN_SPLIT_BARS} need at least {need:,}"
        )
    first, stop = warmup + lookback - 1, n_bars - 1
    usable = stop - first - 2 * embargo
    n_train = max(MIN_SPLIT_BARS, int(usable * fractions[0]))
    n_val = max(MIN_SPLIT_BARS, int(usable * fractions[1]))
    n_train = min(n_train, usable - n_val - MIN_SPLIT_BARS)
    train = (first, first + n_train)
    validation = (train[1] + embargo, train[1] + embargo + n_val)
    test = (validation[1] + embargo, stop)
    return Splits(train, validation, test, embargo)


def walk_forward_folds(
    n_bars: int,
    lookback: int,
    n_folds: int,
    embargo: int | None = None,
    warmup: int = FEATURE_WARMUP,
) -> list[Splits]:
    """Expanding-window folds: fold k trains on blocks 0..k, validates on block k+1 and tests
    on block k+2, with embargoes between. The usable bars are cut into n_folds + 2 equal
    blocks (remainder dropped at the end), so the test blocks of successive folds tile time.
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1:
        raise ConfigError(f"n_folds must be a positive integer, got {n_folds!r}")
    embargo = _resolve_embargo(lookback, embargo)
    first, stop = warmup + lookback - 1, n_bars - 1
    block = (stop - first - 2 * embargo) // (n_folds + 2)
    if block < MIN_SPLIT_BARS:
        raise DataError(
            f"{n_bars:,} bars are too few for {n_folds} walk-forward folds with warm-up "
            f"{warmup}, lookback {lookback} and embargo {embargo}"
        )
    folds = []
    for k in range(n_folds):
        train_end = first + (k + 1) * block
        val_start = train_end + embargo
        test_start = val_start + block + embargo
        folds.append(
            Splits(
                (first, train_end),
                (val_start, val_start + block),
                (test_start, test_start + block),
                embargo,
            )
        )
    return folds


# ------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalizer:
    """Per-feature standardisation fitted on the training split's rows only."""

    mean: tuple[float, ...]
    """Mean of each raw feature over the rows the train split observes."""
    std: tuple[float, ...]
    """Standard deviation of each raw feature there (1.0 where a feature is constant)."""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ConfigError(
                f"Normalizer has {len(self.mean)} means but {len(self.std)} standard deviations"
            )
        for i, (m, s) in enumerate(zip(self.mean, self.std, strict=True)):
            if not (math.isfinite(m) and math.isfinite(s) and s > 0):
                raise ConfigError(f"Normalizer feature {i}: mean {m!r}, std {s!r} must be finite")

    @classmethod
    def fit(cls, raw: np.ndarray) -> Normalizer:
        """raw (rows, n_features) with no NaN -> statistics (population std)."""
        if not np.isfinite(raw).all():
            raise DataError("cannot fit the normaliser: the rows contain NaN or inf")
        std = raw.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(map(float, raw.mean(axis=0))), tuple(map(float, std)))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """raw (T, n_features) -> float32 z-scores clipped to +-NORMALIZED_CLIP; NaN (warm-up
        rows, never observed) -> 0."""
        if raw.shape[-1] != len(self.mean):
            raise DataError(
                f"features have {raw.shape[-1]} columns, the normaliser {len(self.mean)}"
            )
        z = (raw - np.asarray(self.mean)) / np.asarray(self.std)
        z = np.clip(z, -NORMALIZED_CLIP, NORMALIZED_CLIP)
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Any) -> Normalizer:
        if not isinstance(data, dict) or set(data) != {"mean", "std"}:
            raise ConfigError("a normaliser must be a mapping with exactly 'mean' and 'std'")
        try:
            return cls(tuple(map(float, data["mean"])), tuple(map(float, data["std"])))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"normaliser values must be numbers: {error}") from error


# ------------------------------------------------------------------------- prepared data


@dataclass(frozen=True)
class PreparedData:
    """Features, returns and splits: everything the environment and evaluation read."""

    market: MarketData
    """The bars the features were computed from."""
    features: np.ndarray
    """(T, n_features) float32, normalised with the train-split Normalizer; warm-up rows
    (before FEATURE_WARMUP, never inside any observation window) are 0."""
    log_returns: np.ndarray
    """(T,) float64: log(close[t+1] / close[t]); the last is 0 and is never earned."""
    splits: Splits
    """Decision-bar ranges of train, validation and test."""
    normalizer: Normalizer
    """Feature statistics fitted on the train split; stored with every checkpoint."""
    feature_names: tuple[str, ...]
    """Column names of `features`."""
    lookback: int
    """Bars per observation window."""

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def obs_dim(self) -> int:
        """Width of the market window (the account state, when on, comes on top)."""
        return self.n_features * self.lookback

    def identity(self) -> dict[str, Any]:
        """What a checkpoint records about its training data, JSON-safe: the name, how to
        rebuild it, a content hash, the bar count and range, and every split's bars and times."""
        stamps = self.market.timestamps
        times = {}
        for name in SPLIT_NAMES:
            start, end = self.splits.range(name)
            times[name] = [str(stamps[start]), str(stamps[end - 1])]
        return {
            "name": self.market.name,
            "origin": self.market.origin,
            "sha256": self.market.content_hash(),
            "n_bars": int(self.market.n_bars),
            "first": str(stamps[0]),
            "last": str(stamps[-1]),
            "bars_per_year": float(self.market.periods_per_year),
            "lookback": int(self.lookback),
            "splits": self.splits.to_dict(),
            "split_times": times,
        }


def prepare(
    market: MarketData,
    lookback: int = 100,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    embargo: int | None = None,
    normalizer: Normalizer | None = None,
) -> PreparedData:
    """Features, splits and the train-only normaliser for `market`.

    The normaliser is fitted on every feature row a train observation can see:
    rows train.start - lookback + 1 .. train.end - 1. Pass the `normalizer` stored with a
    checkpoint to evaluate a trained policy on the statistics it was trained with.
    """
    need = min_bars(lookback, embargo)
    if market.n_bars < need:
        raise DataError(
            f"{market.name}: has {market.n_bars:,} bars; lookback {lookback} needs at least "
            f"{need:,} (feature warm-up {FEATURE_WARMUP}, 2 embargoes, 3 splits)"
        )
    splits = make_splits(market.n_bars, lookback, fractions, embargo)
    raw = compute_features(market.ohlcv, market.timestamps)  # (T, 53)
    raw[:FEATURE_WARMUP] = np.nan  # no observation window reaches these rows; they become 0
    train_start, train_end = splits.train
    if normalizer is None:
        normalizer = Normalizer.fit(raw[train_start - lookback + 1 : train_end])
    elif len(normalizer.mean) != raw.shape[1]:
        raise DataError(
            f"{market.name}: the stored normaliser has {len(normalizer.mean)} features, "
            f"the data has {raw.shape[1]}"
        )
    close = market.ohlcv[:, 3]
    log_returns = np.zeros(market.n_bars)
    log_returns[:-1] = np.diff(np.log(close))
    return PreparedData(
        market=market,
        features=np.ascontiguousarray(normalizer.apply(raw)),
        log_returns=log_returns,
        splits=splits,
        normalizer=normalizer,
        feature_names=FEATURE_NAMES,
        lookback=lookback,
    )
