"""Loading market data: a validating OHLCV file reader (CSV or Parquet, row-exact errors),
named real datasets shipped inside PyPI packages, and `load_market_data`, which resolves a spec.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppo_core.capacity_market import make_capacity_market, parse_capacity_spec
from ppo_core.data import format_time, longest_lookback, min_bars
from ppo_core.errors import ConfigError, DataError
from ppo_core.features import FEATURE_WARMUP
from ppo_core.market import MarketData, TradingCost, median_spacing
from ppo_core.synthetic import DEFAULT_SIGNAL_STRENGTH, SYNTHETIC_BARS, make_synthetic

__all__ = [
    "DATASETS",
    "DATASET_COSTS",
    "TIMESTAMP_FORMATS",
    "default_cost",
    "is_generated",
    "load_market_data",
    "load_ohlcv_file",
]


# ------------------------------------------------------------------------- file loading


TIMESTAMP_FORMATS = ("dayfirst", "monthfirst", "epoch_s", "epoch_ms")
"""Named timestamp formats besides strftime patterns: day-first or month-first dates
(13/01/2020, 01/13/2020), and Unix epoch seconds or milliseconds."""
_TIMESTAMP_FIX = (
    "pass --timestamp-format (a strftime pattern such as '%d.%m.%Y %H:%M:%S.%f', or one of "
    + ", ".join(TIMESTAMP_FORMATS)
    + ")"
)
_COLUMN_ALIASES = {
    "timestamp": ("timestamp", "time", "date", "datetime", "date_time", "gmt time", "dt"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v", "vol"),
}


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
    _check_last_row(path, frame)
    columns = _match_columns(path, frame, timestamp_column)
    n_rows = len(frame)
    if n_rows < min_rows:
        raise DataError(f"{path}: has {n_rows:,} data rows; {_too_short(n_rows)}")
    timestamps = _parse_timestamps(path, frame[columns["timestamp"]], timestamp_format)
    values = np.empty((n_rows, 5), dtype=np.float64)
    for j, role in enumerate(("open", "high", "low", "close", "volume")):
        raw = frame[columns[role]]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(numeric) & raw.notna().to_numpy())
        if len(bad):
            i = bad[0]
            raise DataError(
                f"{path}: row {i + 1} ({format_time(timestamps[i])}): {role} is not a number "
                f"({raw.iloc[i]!r})"
            )
        values[:, j] = numeric
    _check_values(path, timestamps, values)
    return MarketData(
        name=name or str(path),
        timestamps=timestamps,
        ohlcv=values,
        bar_seconds=median_spacing(timestamps),
        source=source or f"file {path}",
    )


def _too_short(n_rows: int) -> str:
    """What a file of `n_rows` bars lacks, and the --lookback that would fit it (if any)."""
    need = f"{FEATURE_WARMUP} bars of feature warm-up, the lookback, two embargoes, three splits"
    fits = longest_lookback(n_rows)
    if fits == 0:
        return (
            f"no lookback fits: even --lookback 1 needs {min_bars(1):,} rows ({need}; the "
            f"reference lookback of 100 needs {min_bars(100):,})"
        )
    return f"the reference lookback of 100 needs {min_bars(100):,} ({need}); --lookback {fits} fits"


def _check_last_row(path: Path, frame: pd.DataFrame) -> None:
    """A CSV cut mid-row (an interrupted download or copy) ends without a newline and with its
    last row short of fields: say so, instead of blaming the half timestamp or number."""
    if frame.empty or path.suffix.lower() in (".parquet", ".pq", ".gz"):
        return
    filled = frame.iloc[-1].notna().to_numpy()
    if filled.all():
        return
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        ends_with_newline = handle.read(1) in (b"\n", b"\r")
    if not ends_with_newline:
        raise DataError(
            f"{path}: row {len(frame)} (the last) is cut off: the file ends mid-row, without a "
            "newline (an interrupted download or copy?); fetch the file again or delete that row"
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
            f"{path}: row {i + 1}: timestamp {format_time(stamps[i])} {problem} row {i}'s "
            f"{format_time(stamps[i - 1])} (timestamps must strictly increase)"
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
            raise DataError(f"{path}: row {i + 1} ({format_time(timestamps[i])}): {describe(i)}")


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


_EQUITY_COST = (
    5.0,
    "US equities on daily bars: spread, commission and slippage of a liquid stock or index "
    "tracker come to about 5 bp per unit traded",
)
DATASET_COSTS: dict[str, tuple[float, str]] = {
    "sp500": _EQUITY_COST,
    "nasdaq": _EQUITY_COST,
    "googl": _EQUITY_COST,
    "eurusd-1h": (
        1.0,
        "EUR/USD spot on hourly bars: a 0.5-1 pip spread plus slippage is about 1 bp "
        "(a pip is 0.9 bp at 1.10)",
    ),
}
"""The default cost of each named dataset (bp per unit of position change) and why."""


def default_cost(market: MarketData) -> TradingCost:
    """The cost `market` is traded at unless told otherwise: the synthetic market's own 30 bp
    (EnvConfig's default), a named dataset's realistic cost, and for a file the synthetic
    default with a warning. A file's cost is not guessed from its bars: spread estimators
    (Roll, Corwin-Schultz) are biased on bars of unknown asset and spacing, and the user knows
    the broker's price."""
    from ppo_core.config import EnvConfig

    synthetic = EnvConfig().cost_bps
    # By its spec, not its name: a file's name is its path, which may start with 'synthetic'.
    spec = str((market.origin or {}).get("spec", ""))
    if market.expected_return is not None or spec.startswith("synthetic"):
        return TradingCost(synthetic, "the synthetic market's default (EnvConfig.cost_bps)")
    if market.name in DATASET_COSTS:
        bps, why = DATASET_COSTS[market.name]
        return TradingCost(bps, f"{market.name}'s default: {why}")
    returns = np.diff(np.log(market.ohlcv[:, 3]))
    volatility = float(np.std(returns)) * 1e4 if len(returns) > 1 else float("nan")
    return TradingCost(
        synthetic,
        "the synthetic market's default (no --cost-bps)",
        f"{market.name}: no --cost-bps, so the synthetic market's {synthetic:g} bp is used; it is "
        f"{synthetic / volatility:.1f}x this file's per-bar volatility ({volatility:.1f} bp) and "
        "may swamp any edge: pass your market's own (FX majors ~1 bp, liquid equities ~5 bp)",
    )


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
    signal_strength: float | None = None,
    timestamp_column: str | None = None,
    timestamp_format: str | None = None,
) -> MarketData:
    """'synthetic', 'capacity[-K]', a name in DATASETS, or a CSV/Parquet path -> MarketData.

    `bars`: the length of synthetic data (default SYNTHETIC_BARS), or the most recent `bars`
    bars of real data (default: all of it). `seed` and `signal_strength` (default: the
    generator's own) apply to synthetic data only; 'capacity-K' is the capacity market with
    K hidden patterns (make_capacity_market), 'capacity-wK' its wide-span family.
    `timestamp_column` and `timestamp_format` apply to files only (see load_ohlcv_file). The
    result's `origin` holds these arguments, so a checkpoint can rebuild the same bars.
    """
    if bars is not None and (isinstance(bars, bool) or not isinstance(bars, int) or bars < 2):
        raise ConfigError(f"bars must be an integer >= 2, got {bars!r}")
    key = str(spec).strip()
    if is_generated(key):
        return _generated(key.lower(), bars or SYNTHETIC_BARS, seed, signal_strength)
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
            f"{key}: neither a file nor a dataset name (synthetic, capacity-K, capacity-wK, "
            f"{', '.join(DATASETS)})"
        )
    market = dataclasses.replace(market, origin=origin)
    return market.tail(bars) if bars is not None else market


def is_generated(spec: str) -> bool:
    """Whether `spec` names generated bars ('synthetic', 'capacity[-K]', 'capacity-wK'), which
    take a length and a seed, rather than a file or a named real dataset, which is used whole."""
    key = str(spec).strip().lower()
    return key == "synthetic" or parse_capacity_spec(key) is not None


def _generated(key: str, bars: int, seed: int, signal_strength: float | None) -> MarketData:
    """The synthetic market or the capacity market `key` names, with its origin recorded."""
    knob = parse_capacity_spec(key)
    if knob is None:
        signal = DEFAULT_SIGNAL_STRENGTH if signal_strength is None else signal_strength
        market = make_synthetic(bars, seed=seed, signal_strength=signal)
    else:
        signal = knob.signal_strength if signal_strength is None else signal_strength
        market = make_capacity_market(bars, seed, knob.complexity, signal, wide=knob.wide)
        key = market.name  # 'capacity' and 'capacity-2' are the same bars: one spelling
    origin = {"spec": key, "bars": market.n_bars, "seed": seed, "signal_strength": signal}
    return dataclasses.replace(market, origin=origin)
