"""Market data: the synthetic generator, the validating file loader, named datasets, splits,
the train-only normaliser and `prepare`.

Each loader failure mode gets its own bad file written into tmp_path.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ppo_core.data import (
    Normalizer,
    Splits,
    format_time,
    longest_lookback,
    make_splits,
    min_bars,
    prepare,
    walk_forward_folds,
)
from ppo_core.errors import ConfigError, DataError
from ppo_core.features import FEATURE_NAMES, FEATURE_WARMUP, compute_features
from ppo_core.loaders import load_market_data, load_ohlcv_file
from ppo_core.synthetic import make_synthetic

# ---------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_dtypes_and_bar_invariants():
    market = make_synthetic(1000, seed=1)
    assert market.name == "synthetic"
    assert market.timestamps.dtype == np.dtype("datetime64[ns]")
    assert market.ohlcv.shape == (1000, 5)
    assert market.ohlcv.dtype == np.float64
    assert market.expected_return.shape == (1000,)
    assert market.expected_return[-1] == 0.0  # the last bar has no next return
    o, h, lo, c, v = market.ohlcv.T
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert (np.diff(market.timestamps) == np.timedelta64(3600, "s")).all()
    assert market.bar_seconds == 3600.0
    assert market.periods_per_year == pytest.approx(365.25 * 24)


def test_synthetic_is_deterministic_by_seed_and_short_is_prefix_of_long():
    a, b = make_synthetic(800, seed=7), make_synthetic(800, seed=7)
    assert np.array_equal(a.ohlcv, b.ohlcv)
    assert np.array_equal(a.expected_return, b.expected_return)
    assert not np.array_equal(a.ohlcv, make_synthetic(800, seed=8).ohlcv)
    long = make_synthetic(2000, seed=7)
    assert np.array_equal(long.ohlcv[:800], a.ohlcv)


def test_the_planted_edge_is_real_persistent_and_visible_in_the_features():
    market = make_synthetic(20_000, seed=2, signal_strength=0.3)
    r = np.diff(np.log(market.ohlcv[:, 3]))  # r[t] = return of bar t -> t+1
    mu = market.expected_return[:-1]
    # The planted edge predicts the next return: E[sign(mu) r] = |mu| on average.
    edge = np.sign(mu) * r
    assert edge.mean() > 5 * edge.std() / np.sqrt(len(edge))
    assert edge.mean() == pytest.approx(np.abs(mu).mean(), rel=0.25)
    # Regimes last tens of bars (geometric, mean TREND_MEAN_BARS = 40).
    state = np.sign(mu)
    runs = np.diff(np.flatnonzero(np.diff(state) != 0))
    assert 30 < runs.mean() < 50
    # Visible at bar t in the opening gap of bar t (a function of bars <= t).
    raw = compute_features(market.ohlcv, market.timestamps)
    gap = raw[:-1, FEATURE_NAMES.index("gap")]
    assert np.corrcoef(gap[1:], state[1:])[0, 1] > 0.5


def test_no_signal_means_no_edge():
    market = make_synthetic(20_000, seed=4, signal_strength=0.0)
    assert not market.expected_return.any()
    r = np.diff(np.log(market.ohlcv[:, 3]))
    assert abs(r.mean()) < 3 * r.std() / np.sqrt(len(r))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bars": 1}, "bars"),
        ({"signal_strength": -1.0}, "signal_strength"),
        ({"bars": 2.5}, "bars"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        make_synthetic(**kwargs)


# --------------------------------------------------------------------------- file loader


def _frame(n: int = 260) -> pd.DataFrame:
    market = make_synthetic(n, seed=5)
    o, h, lo, c, v = market.ohlcv.T
    stamps = pd.DatetimeIndex(market.timestamps).strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(
        {"Date": stamps, "OPEN": o, "High": h, "low": lo, "Close": c, "Adj Close": c * 0.5, "V": v}
    )


def _write(tmp_path, frame: pd.DataFrame, name: str = "bars.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_loads_csv_with_aliases_and_ignores_adjusted_close(tmp_path):
    frame = _frame()
    market = load_ohlcv_file(_write(tmp_path, frame))
    assert market.n_bars == len(frame)
    assert market.ohlcv[:, 3] == pytest.approx(frame["Close"].to_numpy())
    assert market.bar_seconds == 3600.0
    assert market.expected_return is None
    assert str(tmp_path) in market.name


def test_loads_parquet_and_gzip(tmp_path):
    frame = _frame()
    parquet = tmp_path / "bars.parquet"
    frame.to_parquet(parquet)
    gz = tmp_path / "bars.csv.gz"
    frame.to_csv(gz, index=False)
    from_parquet, from_gz = load_ohlcv_file(parquet), load_ohlcv_file(gz)
    assert np.array_equal(from_parquet.timestamps, from_gz.timestamps)
    # A CSV holds decimal text: pandas' float parser may land one ulp away (it did in 3.x).
    np.testing.assert_allclose(from_parquet.ohlcv, from_gz.ohlcv, rtol=1e-12, atol=0)


def test_timestamp_format_and_timezones(tmp_path):
    frame = _frame()
    stamps = pd.to_datetime(frame["Date"])
    frame["Date"] = stamps.dt.strftime("%d.%m.%Y %H:%M:%S.000")
    path = _write(tmp_path, frame)
    market = load_ohlcv_file(path, timestamp_format="%d.%m.%Y %H:%M:%S.%f")
    assert market.timestamps[0] == np.datetime64("2020-01-01T00:00:00")
    frame["Date"] = stamps.dt.tz_localize("Europe/Berlin").astype(str)
    market = load_ohlcv_file(_write(tmp_path, frame, "tz.csv"))
    assert market.timestamps[0] == np.datetime64("2019-12-31T23:00:00")  # converted to UTC


def _corrupt(column: str, row: int, value):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.loc[row - 1, column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda f: f.drop(columns=["V"]), "missing column.*volume"),
        (lambda f: f.drop(columns=["Date"]), "missing column.*timestamp"),
        (lambda f: f.iloc[:150], "has 150 data rows"),
        (_corrupt("Date", 17, "not a date"), "row 17: timestamp 'not a date' cannot be parsed"),
        (_corrupt("Date", 30, "2020-01-01 00:00:00"), "row 30: .* is earlier than row 29"),
        (_corrupt("Date", 30, "2020-01-01 04:00:00"), "row 30: .* earlier than row 29"),
        (lambda f: f.assign(Date=f["Date"].where(f.index != 5, f["Date"][4])), "row 6: .*dupl"),
        (_corrupt("Close", 40, np.nan), r"row 40 \(.*\): close is nan"),
        (_corrupt("High", 41, np.inf), "row 41 .*high is inf"),
        (_corrupt("low", 42, "abc"), "row 42 .*low is not a number .'abc'"),
        (_corrupt("OPEN", 43, -1.0), "row 43 .*open is -1.0; prices must be positive"),
        (_corrupt("low", 44, 0.0), "row 44 .*low is 0.0; prices must be positive"),
        (_corrupt("V", 45, -5.0), "row 45 .*volume is negative"),
        (_corrupt("High", 46, 1.0), "row 46 .*high 1.0 is below low"),
        (_corrupt("Close", 47, 1e6), "row 47 .*outside"),
    ],
)
def test_each_bad_file_gets_one_error_naming_file_row_and_problem(tmp_path, edit, expected):
    path = _write(tmp_path, edit(_frame()))
    with pytest.raises(DataError, match=expected) as caught:
        load_ohlcv_file(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "\n" not in message


@pytest.mark.parametrize("keep", [5, 12, 19, 30, 60])
def test_a_csv_cut_mid_row_is_named_as_cut_not_as_a_bad_timestamp(tmp_path, keep):
    text = _write(tmp_path, _frame()).read_text()
    head, last = text.rstrip("\n").rsplit("\n", 1)
    path = tmp_path / "cut.csv"
    path.write_text(f"{head}\n{last[:keep]}")  # an interrupted download: no final newline
    with pytest.raises(DataError) as caught:
        load_ohlcv_file(path)
    message = str(caught.value)
    assert message == (
        f"{path}: row 260 (the last) is cut off: the file ends mid-row, without a newline (an "
        "interrupted download or copy?); fetch the file again or delete that row"
    )
    path.write_text(f"{head}\n{last}")  # whole, without the newline: fine
    assert load_ohlcv_file(path).n_bars == 260


def test_times_in_messages_have_their_natural_resolution(tmp_path):
    assert format_time(np.datetime64("2020-01-17T00:00:00.000000000")) == "2020-01-17"
    assert format_time(np.datetime64("2020-01-17T15:00:00.000000000")) == "2020-01-17T15:00:00"
    assert format_time(np.datetime64("2020-01-17T15:00:00.25", "ns")) == "2020-01-17T15:00:00.250"
    path = _write(tmp_path, _corrupt("Close", 40, np.nan)(_frame()))
    with pytest.raises(DataError, match=r"row 40 \(2020-01-02T15:00:00\): close is nan"):
        load_ohlcv_file(path)
    identity = prepare(make_synthetic(600), lookback=20).identity()
    assert "000000" not in identity["first"]
    assert np.datetime64(identity["split_times"]["test"][1]) == make_synthetic(600).timestamps[-2]


def test_day_first_dates_are_detected_and_ambiguous_ones_refused(tmp_path):
    frame = _frame(300)
    days = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(300), "D")
    frame["Date"] = days.strftime("%d/%m/%Y")  # 13/01/2020 from row 13 on
    market = load_ohlcv_file(_write(tmp_path, frame))
    assert market.timestamps[12] == np.datetime64("2020-01-13")
    assert market.bar_seconds == 86400.0
    named = load_ohlcv_file(_write(tmp_path, frame), timestamp_format="dayfirst")
    assert np.array_equal(named.timestamps, market.timestamps)
    # Days equal to months read the same either way: accepted.
    frame = _frame(24)
    frame["Date"] = [f"{d:02d}/{d:02d}/2019" for d in range(1, 13)] + [
        f"{d:02d}/{d:02d}/2020" for d in range(1, 13)
    ]
    path = _write(tmp_path, frame, "same.csv")
    same = load_ohlcv_file(path, min_rows=2)  # 01/01, 02/02, ...: both readings agree
    assert same.timestamps[1] == np.datetime64("2019-02-02")
    # Jan 1, Jan 2, Feb 2, Mar 3 or Jan 1, Feb 1, Feb 2, Mar 3: both increase, the file
    # cannot tell, and the error names the first row the readings disagree on and the fix.
    frame = frame.iloc[:4].assign(Date=["01/01/2020", "01/02/2020", "02/02/2020", "03/03/2020"])
    path = _write(tmp_path, frame, "ambiguous.csv")
    with pytest.raises(DataError, match=r"ambiguous.csv: row 2: .*ambiguous.*dayfirst"):
        load_ohlcv_file(path, min_rows=2)


def test_epoch_seconds_and_milliseconds_are_detected_or_named(tmp_path):
    frame = _frame()
    seconds = (pd.to_datetime(frame["Date"]) - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    for scale, name in ((1, "epoch_s"), (1000, "epoch_ms")):
        frame["Date"] = seconds * scale
        path = _write(tmp_path, frame, f"{name}.csv")
        detected = load_ohlcv_file(path)
        named = load_ohlcv_file(path, timestamp_format=name)
        assert detected.timestamps[0] == named.timestamps[0] == np.datetime64("2020-01-01")
        assert detected.bar_seconds == 3600.0


def test_an_unnamed_first_column_of_dates_is_the_timestamp(tmp_path):
    frame = _frame().set_index("Date")
    frame.index.name = None
    path = tmp_path / "indexed.csv"
    frame.to_csv(path)  # header ",OPEN,High,..." as pandas writes a date index
    market = load_ohlcv_file(path)
    assert market.timestamps[0] == np.datetime64("2020-01-01")
    renamed = _frame().rename(columns={"Date": "When"})
    path = _write(tmp_path, renamed, "when.csv")
    with pytest.raises(DataError, match="--timestamp-column"):
        load_ohlcv_file(path)
    assert load_ohlcv_file(path, timestamp_column="when").n_bars == len(renamed)
    with pytest.raises(DataError, match=r"when.csv: no column 'At' for --timestamp-column"):
        load_ohlcv_file(path, timestamp_column="At")


def test_a_bad_timestamp_names_file_row_and_the_fix(tmp_path):
    frame = _frame()
    frame["Date"] = frame["Date"].astype(object)
    frame.loc[16, "Date"] = "yesterday"
    path = _write(tmp_path, frame)
    with pytest.raises(DataError, match=r"bars.csv: row 17: .*'yesterday'.*--timestamp-format"):
        load_ohlcv_file(path)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_ohlcv_file(tmp_path / "absent.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot be read"):
        load_ohlcv_file(broken)
    ambiguous = _frame().assign(Time=lambda f: f["Date"])
    with pytest.raises(DataError, match="timestamp column"):
        load_ohlcv_file(_write(tmp_path, ambiguous))


# ------------------------------------------------------------------------ named datasets


def test_load_market_data_synthetic_and_files(tmp_path):
    market = load_market_data("synthetic", bars=500, seed=3)
    assert market.n_bars == 500
    assert np.array_equal(market.ohlcv, make_synthetic(500, seed=3).ohlcv)
    path = _write(tmp_path, _frame(400))
    tail = load_market_data(str(path), bars=300)
    assert tail.n_bars == 300
    assert np.array_equal(tail.ohlcv, load_ohlcv_file(path).ohlcv[-300:])
    with pytest.raises(DataError, match="neither a file nor a dataset"):
        load_market_data("no-such-dataset")
    with pytest.raises(DataError, match="asked for 999"):
        load_market_data(str(path), bars=999)


def _needs(package: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(package) is None,
        reason=f"{package} is not installed (pip install 'ppo-archbench[data]')",
    )


@_needs("arch")
@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_arch_daily_datasets_load_offline(name):
    market = load_market_data(name)
    assert market.n_bars == 5031
    assert market.timestamps[0] == np.datetime64("1999-01-04")
    assert market.bar_seconds == 86400.0
    assert 245 < market.periods_per_year < 256  # trading days, not calendar days
    assert "NCSA" in market.source
    assert load_market_data(name, bars=1000).n_bars == 1000


@_needs("gym_anytrading")
def test_gym_anytrading_datasets_load_offline():
    fx = load_market_data("eurusd-1h")
    assert fx.n_bars == 6225
    assert fx.timestamps[0] == np.datetime64("2017-01-01T22:00")  # day-first format
    assert fx.bar_seconds == 3600.0
    assert 6000 < fx.periods_per_year < 6500  # the FX market closes at weekends
    assert "MIT" in fx.source
    assert load_market_data("googl").n_bars == 2335


# -------------------------------------------------------------------------------- splits


@pytest.mark.parametrize(("n_bars", "lookback"), [(1000, 20), (20_000, 100), (5031, 100)])
def test_splits_are_ordered_with_embargo_and_cover_usable_bars(n_bars, lookback):
    splits = make_splits(n_bars, lookback)
    assert splits.embargo == lookback
    assert splits.train[0] == FEATURE_WARMUP + lookback - 1
    assert splits.validation[0] - splits.train[1] >= lookback
    assert splits.test[0] - splits.validation[1] >= lookback
    assert splits.test[1] == n_bars - 1  # the last bar has no next return
    sizes = [end - start for start, end in (splits.train, splits.validation, splits.test)]
    assert sizes[0] / sum(sizes) == pytest.approx(0.6, abs=0.01)


def test_split_validation():
    with pytest.raises(DataError, match="too few"):
        make_splits(min_bars(20) - 1, 20)
    make_splits(min_bars(20), 20)
    with pytest.raises(ConfigError, match="embargo"):
        make_splits(1000, 20, embargo=10)
    with pytest.raises(ConfigError, match="sum to 1"):
        make_splits(1000, 20, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ConfigError, match="embargo is 50"):
        Splits((0, 100), (120, 200), (300, 400), embargo=50)
    with pytest.raises(ConfigError, match="split must be one of"):
        make_splits(1000, 20).range("holdout")


def test_walk_forward_folds_expand_and_tile():
    folds = walk_forward_folds(3000, 20, n_folds=4)
    assert len(folds) == 4
    for previous, fold in itertools.pairwise(folds):
        assert fold.train[0] == previous.train[0]
        assert fold.train[1] > previous.train[1]
        assert fold.test[0] == previous.test[1]
    for fold in folds:
        assert fold.validation[0] - fold.train[1] >= 20
        assert fold.test[0] - fold.validation[1] >= 20
        assert fold.test[1] <= 3000 - 1
    with pytest.raises(DataError, match="too few"):
        walk_forward_folds(300, 20, n_folds=50)


# ------------------------------------------------------------------ normaliser, prepare


@pytest.fixture(scope="module")
def prepared():
    return prepare(make_synthetic(1200, seed=6), lookback=20)


def test_prepare_shapes_dtypes_and_returns(prepared):
    assert prepared.features.shape == (1200, 53)
    assert prepared.features.dtype == np.float32
    assert prepared.feature_names == FEATURE_NAMES
    assert prepared.obs_dim == 53 * 20
    close = prepared.market.ohlcv[:, 3]
    assert prepared.log_returns.dtype == np.float64
    assert prepared.log_returns[:-1] == pytest.approx(np.log(close[1:] / close[:-1]))
    assert prepared.log_returns[-1] == 0.0
    assert (prepared.features[:FEATURE_WARMUP] == 0).all()  # warm-up rows: never observed


def test_train_rows_are_standardised(prepared):
    start, end = prepared.splits.train
    rows = prepared.features[start - prepared.lookback + 1 : end].astype(np.float64)
    # Calendar features repeat daily and are never clipped; everything is near mean 0, std 1.
    assert np.abs(rows.mean(axis=0)).max() < 0.1
    assert np.abs(rows.std(axis=0) - 1).max() < 0.15


def test_normaliser_is_fitted_on_the_train_split_only(prepared):
    market = prepared.market
    ohlcv = market.ohlcv.copy()
    after_train = prepared.splits.train[1]
    ohlcv[after_train:, :4] *= 3.0  # every validation and test price changes
    ohlcv[after_train:, 4] *= 7.0
    changed = prepare(dataclasses.replace(market, ohlcv=ohlcv), lookback=20)
    assert changed.normalizer == prepared.normalizer
    ohlcv[prepared.splits.train[0] + 5, 4] *= 50.0  # one train bar changes: the stats move
    moved = prepare(dataclasses.replace(market, ohlcv=ohlcv), lookback=20)
    assert moved.normalizer != prepared.normalizer


def test_normaliser_round_trip_and_validation(prepared):
    normalizer = prepared.normalizer
    assert Normalizer.from_dict(normalizer.to_dict()) == normalizer
    with pytest.raises(ConfigError, match="exactly 'mean' and 'std'"):
        Normalizer.from_dict({"mean": [0.0]})
    with pytest.raises(ConfigError, match=r"feature 0: std is 0\.0; it divides the feature, so it"):
        Normalizer((0.0,), (0.0,))
    with pytest.raises(ConfigError, match=r"feature 1: mean nan, std 1.0 must be finite"):
        Normalizer((0.0, math.nan), (1.0, 1.0))
    with pytest.raises(DataError, match="columns"):
        normalizer.apply(np.zeros((3, 7)))


def test_prepare_names_the_data_when_too_short():
    with pytest.raises(DataError, match="synthetic: has 300 bars") as caught:
        prepare(make_synthetic(300), lookback=100)
    assert str(caught.value).endswith(
        "--lookback 31 or less fits these bars (archbench train, sweep)"
    )
    prepare(make_synthetic(300), lookback=31)  # and it does
    with pytest.raises(DataError, match="lookback 32 needs at least 301"):
        prepare(make_synthetic(300), lookback=32)


@pytest.mark.parametrize("n_bars", [100, 207, 208, 209, 211, 300, 505, 10_000])
def test_longest_lookback_is_the_largest_that_min_bars_allows(n_bars):
    fits = longest_lookback(n_bars)
    if fits:
        assert min_bars(fits) <= n_bars < min_bars(fits + 1)
    else:
        assert n_bars < min_bars(1)
