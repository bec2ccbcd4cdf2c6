"""Scores with their intervals, and the one test that says whether one size beats another.

A Score holds bootstrap draws of its statistic; two scores compare through their draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "N_BOOT",
    "Score",
    "annualised_sharpe",
    "block_length",
    "circular_block_indices",
    "median_score",
    "oos_scores",
    "percentile_score",
    "point_score",
]

N_BOOT = 1000
"""Bootstrap replicates per score: enough for stable 2.5% / 97.5% quantiles, cheap on 2 cores."""
_SEED = 20261125


@dataclass(frozen=True)
class Score:
    """A measured figure, its 95% interval, and the draws that a comparison pairs."""

    value: float
    """The point estimate (median of samples, p99 of raw latencies, mean Sharpe over seeds)."""
    draws: tuple[float, ...]
    """Bootstrap replicates of the statistic; empty when there is no spread to draw from."""
    how: str
    """How the interval was made, in words (shown with the answer)."""

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% percentile interval of the draws; None without draws."""
        if len(self.draws) < 2:
            return None
        low, high = np.percentile(np.asarray(self.draws), [2.5, 97.5])
        return float(low), float(high)

    def difference(self, other: Score) -> tuple[float, float] | None:
        """95% interval of self - other from the paired draws; None without draws."""
        if len(self.draws) < 2 or len(self.draws) != len(other.draws):
            return None
        diff = np.asarray(self.draws) - np.asarray(other.draws)
        low, high = np.percentile(diff, [2.5, 97.5])
        return float(low), float(high)

    def beats(self, other: Score, higher: bool, min_effect: float = 0.0) -> bool | None:
        """Is self better than other beyond the noise (and by at least min_effect, relative)?

        Draws are paired index by index (both were drawn with the same bar resamples where the
        data allows it), so the difference's interval is that of the pair. None: no interval.
        """
        if len(self.draws) < 2 or len(self.draws) != len(other.draws):
            return None
        diff = np.asarray(self.draws) - np.asarray(other.draws)
        if not higher:
            diff = -diff
        low = float(np.percentile(diff, 2.5))
        effect = (self.value - other.value) * (1 if higher else -1)
        big_enough = effect > min_effect * abs(other.value) if min_effect else True
        return bool(low > 0 and big_enough)


def point_score(value: float, how: str) -> Score:
    """A figure with no spread to draw from (one sample, or a model's estimate)."""
    return Score(float(value), (), how)


def median_score(samples: Sequence[float], how: str = "median of repeats") -> Score:
    """Median of repeated measurements with a bootstrap of the median (None-free samples)."""
    x = np.asarray(samples, dtype=float)
    value = float(np.median(x))
    if len(x) < 2:
        return point_score(value, f"{how} (one sample: no interval)")
    rng = np.random.default_rng(_SEED)
    draws = np.median(rng.choice(x, size=(N_BOOT, len(x))), axis=1)
    return Score(value, tuple(draws.tolist()), f"{how}, bootstrap of the median over {len(x)}")


def percentile_score(samples: Sequence[float], q: float, min_samples: int = 20) -> Score:
    """A percentile (q=99: a p99 latency) with a bootstrap of that percentile."""
    x = np.asarray(samples, dtype=float)
    value = float(np.percentile(x, q))
    if len(x) < min_samples:
        return point_score(value, f"p{q:g} of {len(x)} samples (too few for an interval)")
    rng = np.random.default_rng(_SEED)
    draws = np.percentile(rng.choice(x, size=(N_BOOT, len(x))), q, axis=1)
    return Score(value, tuple(draws.tolist()), f"bootstrap of the p{q:g} over {len(x)} samples")


def annualised_sharpe(returns: np.ndarray, bars_per_year: float) -> np.ndarray:
    """Sharpe ratio of per-bar returns along the last axis, times sqrt(bars per year).

    A flat series (zero spread) scores 0: it earned nothing, whatever its mean.
    """
    returns = np.asarray(returns, dtype=float)
    mean = returns.mean(axis=-1)
    std = returns.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(std > 0, mean / std, 0.0)
    return ratio * math.sqrt(bars_per_year)


def block_length(n_bars: int) -> int:
    """Circular block bootstrap block length: sqrt(n), so regimes of tens of bars stay whole."""
    return max(1, min(n_bars, round(math.sqrt(n_bars))))


def circular_block_indices(n_bars: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_bars) bar indices: blocks of block_length(n) from random starts, wrapping."""
    block = block_length(n_bars)
    n_blocks = math.ceil(n_bars / block)
    starts = rng.integers(0, n_bars, size=(n_boot, n_blocks, 1))
    idx = (starts + np.arange(block)) % n_bars  # (n_boot, n_blocks, block)
    return idx.reshape(n_boot, -1)[:, :n_bars]


def oos_scores(
    cells: dict[str, tuple[Sequence[float], Sequence[Sequence[float]] | None]],
    bars_per_year: float,
) -> dict[str, Score]:
    """Mean out-of-sample Sharpe over seeds per size, with draws paired across sizes.

    cells: size -> (per-seed Sharpe values, per-seed validation net returns or None). Every size
    with per-bar returns on the same bars is resampled with the SAME block indices and the SAME
    seed draws (seed k is the same series for every size, so the validation period's luck
    cancels in a comparison). Without per-bar returns, only seeds are resampled.
    """
    rng = np.random.default_rng(_SEED)
    lengths = {len(series[0]) for _, series in cells.values() if series is not None}
    shared = {n: circular_block_indices(n, N_BOOT, rng) for n in lengths}
    out = {}
    seeds_of = {len(values) for values, _ in cells.values()}
    # Seed k is the same data (and initial seed) for every size: resample seeds jointly too.
    shared_seeds = {n: rng.integers(0, n, size=(N_BOOT, n)) for n in seeds_of}
    for size, (values, series) in cells.items():
        values = np.asarray(values, dtype=float)
        n_seeds = len(values)
        seed_draws = shared_seeds[n_seeds]
        if series is not None and len({len(s) for s in series}) == 1:
            bars = np.asarray(series, dtype=float)  # (n_seeds, n_bars)
            idx = shared[bars.shape[1]]
            per_seed = annualised_sharpe(bars[:, idx], bars_per_year)  # (n_seeds, N_BOOT)
            per_seed = per_seed.T  # (N_BOOT, n_seeds)
            draws = np.take_along_axis(per_seed, seed_draws, axis=1).mean(axis=1)
            value = float(annualised_sharpe(bars, bars_per_year).mean())
            how = (
                f"{n_seeds} seed(s) x circular block bootstrap over {bars.shape[1]:,} "
                f"validation bars (blocks of {block_length(bars.shape[1])})"
            )
            out[size] = Score(value, tuple(draws.tolist()), how)
        elif n_seeds >= 2:
            draws = values[seed_draws].mean(axis=1)
            how = f"bootstrap over {n_seeds} seeds (no per-bar returns recorded)"
            out[size] = Score(float(values.mean()), tuple(draws.tolist()), how)
        else:
            out[size] = point_score(float(values.mean()), "one seed, no per-bar returns")
    return out
