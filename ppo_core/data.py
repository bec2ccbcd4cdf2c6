"""Splits, the train-only normaliser and `prepare`: market bars -> the features, returns and
time-ordered train / validation / test ranges that the environment and evaluation read.

Bar indices are decision bars: at bar t the agent sees feature rows t-lookback+1..t and earns
log_returns[t] = log(close[t+1] / close[t]). Every split is a half-open range of such bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppo_core.errors import ConfigError, DataError
from ppo_core.features import FEATURE_NAMES, FEATURE_WARMUP, compute_features
from ppo_core.market import MarketData

__all__ = [
    "NORMALIZED_CLIP",
    "SPLIT_NAMES",
    "Normalizer",
    "PreparedData",
    "Splits",
    "format_time",
    "longest_lookback",
    "make_splits",
    "min_bars",
    "prepare",
    "walk_forward_folds",
]

NORMALIZED_CLIP = 10.0
"""Normalised features are clipped to +-this many train-split standard deviations."""
SPLIT_NAMES = ("train", "validation", "test")
MIN_SPLIT_BARS = 2
"""Fewest decision bars a split may hold (a Sharpe ratio needs two returns)."""


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


def format_time(stamp: np.datetime64) -> str:
    """A bar time at its natural resolution: '2020-01-17' for a daily bar, '2020-01-17T15:00:00'
    for an hourly one, fractions of a second only when it has them (numpy pads to ns)."""
    for unit in ("D", "s", "ms", "us"):
        if stamp.astype(f"datetime64[{unit}]") == stamp:
            return np.datetime_as_string(stamp, unit=unit)
    return np.datetime_as_string(stamp, unit="ns")


def longest_lookback(n_bars: int, warmup: int = FEATURE_WARMUP) -> int:
    """The longest lookback whose min_bars (embargo = lookback) fits in `n_bars`; 0: none."""
    # min_bars grows by 3 per bar of lookback: the window and two embargoes of its length.
    return max(0, (n_bars - min_bars(1, warmup=warmup)) // 3 + 1)


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
            if not (math.isfinite(m) and math.isfinite(s)):
                raise ConfigError(f"Normalizer feature {i}: mean {m!r}, std {s!r} must be finite")
            if s <= 0:
                raise ConfigError(
                    f"Normalizer feature {i}: std is {s!r}; it divides the feature, so it must be "
                    "positive (fit stores 1.0 for a feature that is constant)"
                )

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
            times[name] = [format_time(stamps[start]), format_time(stamps[end - 1])]
        return {
            "name": self.market.name,
            "origin": self.market.origin,
            "sha256": self.market.content_hash(),
            "n_bars": int(self.market.n_bars),
            "first": format_time(stamps[0]),
            "last": format_time(stamps[-1]),
            "bars_per_year": float(self.market.periods_per_year),
            "lookback": int(self.lookback),
            "splits": self.splits.to_dict(),
            "split_times": times,
        }


def _shorter_lookback(n_bars: int) -> str:
    fits = longest_lookback(n_bars)
    if fits == 0:
        return f"no lookback fits: even --lookback 1 needs {min_bars(1):,} bars"
    return f"--lookback {fits} or less fits these bars (archbench train, sweep)"


def prepare(
    market: MarketData,
    lookback: int = 100,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    embargo: int | None = None,
    normalizer: Normalizer | None = None,
    splits: Splits | None = None,
) -> PreparedData:
    """Features, splits and the train-only normaliser for `market`.

    `splits` replaces the fractional cut (a walk-forward fold from `walk_forward_folds`); the
    normaliser is then fitted on that fold's training bars, so no fold sees its future.

    The normaliser is fitted on every feature row a train observation can see:
    rows train.start - lookback + 1 .. train.end - 1. Pass the `normalizer` stored with a
    checkpoint to evaluate a trained policy on the statistics it was trained with.
    """
    need = min_bars(lookback, embargo)
    if market.n_bars < need:
        raise DataError(
            f"{market.name}: has {market.n_bars:,} bars; lookback {lookback} needs at least "
            f"{need:,} (feature warm-up {FEATURE_WARMUP}, 2 embargoes, 3 splits)"
            + ("" if embargo is not None else f"; {_shorter_lookback(market.n_bars)}")
        )
    if splits is None:
        splits = make_splits(market.n_bars, lookback, fractions, embargo)
    elif splits.embargo < lookback or splits.test[1] > market.n_bars:
        raise DataError(
            f"{market.name}: the given splits need embargo >= lookback {lookback} and at most "
            f"{market.n_bars:,} bars; got embargo {splits.embargo}, test ending at "
            f"{splits.test[1]:,}"
        )
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
