"""The 53 features: named and documented, causal (no look-ahead), defined after the warm-up.

Hand-computed values pin a few features; the look-ahead test rewrites the future for several t.
"""

from __future__ import annotations

import numpy as np
import pytest

from ppo_core.features import (
    _SPECS,
    FEATURE_DOCS,
    FEATURE_NAMES,
    FEATURE_WARMUP,
    N_FEATURES,
    _Bars,
    compute_features,
)
from ppo_core.synthetic import make_synthetic


@pytest.fixture(scope="module")
def market():
    return make_synthetic(700, seed=3)


def test_there_are_53_named_documented_features():
    assert N_FEATURES == 53
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 53
    assert set(FEATURE_DOCS) == set(FEATURE_NAMES)
    assert all(len(doc) > 10 for doc in FEATURE_DOCS.values())
    assert FEATURE_WARMUP == 199  # the 200-bar moving average's first defined bar


def test_shape_dtype_and_defined_exactly_after_warmup(market):
    raw = compute_features(market.ohlcv, market.timestamps)
    assert raw.shape == (market.n_bars, 53)
    assert raw.dtype == np.float64
    assert np.isfinite(raw[FEATURE_WARMUP:]).all()
    assert np.isnan(raw[FEATURE_WARMUP - 1]).any()


def test_declared_warmups_hide_no_undefined_values(market):
    """compute_features turns non-finite values after a warm-up into 0, so a warm-up declared
    too early would hide NaNs: the unmasked computation must be finite from the warm-up on."""
    bars = _Bars(market.ohlcv, market.timestamps)
    for name, warmup, _doc, fn in _SPECS:
        column = np.asarray(fn(bars), dtype=np.float64)
        assert np.isfinite(column[warmup:]).all(), name


@pytest.mark.parametrize("t", [0, 150, FEATURE_WARMUP, 333, 598])
def test_no_look_ahead(market, t):
    """Replace every bar after t with different bars: features up to t are unchanged."""
    ohlcv = market.ohlcv.copy()
    timestamps = market.timestamps.copy()
    rng = np.random.default_rng(t)
    after = slice(t + 1, None)
    n_after = len(ohlcv) - t - 1
    ohlcv[after, :4] *= np.exp(rng.normal(0, 0.05, size=(n_after, 1)))
    ohlcv[after, 1] *= 1.01  # high stays the highest
    ohlcv[after, 2] *= 0.99
    ohlcv[after, 4] *= rng.uniform(0.1, 10, size=n_after)
    timestamps[after] += np.timedelta64(1234, "s")
    original = compute_features(market.ohlcv, market.timestamps)
    changed = compute_features(ohlcv, timestamps)
    assert np.array_equal(original[: t + 1], changed[: t + 1], equal_nan=True)
    assert not np.array_equal(original[t + 1 :], changed[t + 1 :], equal_nan=True)


def test_hand_computed_values(market):
    raw = compute_features(market.ohlcv, market.timestamps)
    col = {name: raw[:, j] for j, name in enumerate(FEATURE_NAMES)}
    close = market.ohlcv[:, 3]
    t = 400
    assert col["ret_1"][t] == pytest.approx(np.log(close[t] / close[t - 1]))
    assert col["ret_60"][t] == pytest.approx(np.log(close[t] / close[t - 60]))
    assert col["dist_sma_200"][t] == pytest.approx(np.log(close[t] / close[t - 199 : t + 1].mean()))
    r = np.diff(np.log(close))
    assert col["vol_20"][t] == pytest.approx(r[t - 20 : t].std(ddof=1))
    # Synthetic bars are hourly from midnight UTC: bar 6 is 06:00, sin = 1.
    assert col["hour_sin"][6] == pytest.approx(1.0)
    assert col["hour_cos"][12] == pytest.approx(-1.0)


def test_rising_and_flat_markets():
    n = 300
    timestamps = np.datetime64("2021-01-04", "ns") + np.arange(n) * np.timedelta64(1, "D")
    close = 100 * np.exp(0.01 * np.arange(n))
    rising = np.column_stack([close, close * 1.001, close * 0.999, close, np.full(n, 5.0)])
    raw = compute_features(rising, timestamps)
    col = {name: raw[:, j] for j, name in enumerate(FEATURE_NAMES)}
    assert col["rsi_14"][FEATURE_WARMUP:] == pytest.approx(1.0)  # only gains
    # Constant volume has zero variance: its z-score is 0, not NaN.
    assert (col["volume_z_20"][FEATURE_WARMUP:] == 0).all()

    flat = np.column_stack([np.full(n, 50.0)] * 4 + [np.zeros(n)])
    raw_flat = compute_features(flat, timestamps)
    assert np.isfinite(raw_flat[FEATURE_WARMUP:]).all()
    assert (raw_flat[FEATURE_WARMUP:, FEATURE_NAMES.index("vol_ratio_5_60")] == 0).all()
