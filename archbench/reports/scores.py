"""Scores with their intervals, and the one test that says whether one size beats another.

A Score holds bootstrap draws of its statistic; two scores compare through their draws.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from archbench.instrument.resample import annualised_sharpe, block_length, circular_block_indices
from archbench.reports.stats import mean_ci, quantile_interval, quantile_upper_bound, t_critical_975

__all__ = [
    "N_BOOT",
    "Score",
    "annualised_sharpe",
    "block_length",
    "circular_block_indices",
    "median_score",
    "oos_scores",
    "paired_seeds",
    "percentile_score",
    "point_score",
    "rate_score",
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
    bounds: tuple[float, float] | None = None
    """The 95% interval when computed directly (Student t, order statistics); None: from the
    draws."""
    upper: float | None = None
    """One-sided 95% upper bound (a p99 latency's budget check); None: not computed or too few
    samples."""

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% interval: `bounds` when set, else the percentiles of the draws; None when
        neither exists."""
        if self.bounds is not None:
            return self.bounds
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

        Draws are subtracted index by index: paired where both were drawn with the same
        resamples (out-of-sample bars), independent where each score seeds its own stream from
        its own samples (timings). None: no interval.
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


def _own_stream(x: np.ndarray) -> np.random.Generator:
    """A generator seeded by the sorted samples themselves: two sizes never share resample
    indices (timings of different sizes are unpaired), and the recorded order changes nothing."""
    return np.random.default_rng([_SEED, zlib.crc32(np.sort(x).tobytes())])


def median_score(samples: Sequence[float], how: str = "median of repeats") -> Score:
    """Median of repeated measurements: order-statistic 95% interval where the count allows
    one (6+ samples), and bootstrap draws from the sample's own stream for comparisons."""
    x = np.sort(np.asarray(samples, dtype=float))
    value = float(np.median(x))
    if len(x) < 2:
        return point_score(value, f"{how} (one sample: no interval)")
    draws = np.median(_own_stream(x).choice(x, size=(N_BOOT, len(x))), axis=1)
    bounds = quantile_interval(x, 50.0)
    span = "order statistics" if bounds else "insufficient for a 95% interval"
    return Score(value, tuple(draws.tolist()), f"{how}, median of {len(x)} ({span})", bounds)


def rate_score(rates: Sequence[float], how: str = "wall-clock rate") -> Score:
    """Wall-clock rate (work over total time) from per-repeat rates: the harmonic mean, with a
    Student-t interval of the mean time per unit, valid at 2+ repeats.

    Draws are that t distribution sampled from the repeats' own stream, so two sizes compare
    as independent samples (Welch-like), whatever order their repeats were recorded in.
    """
    r = np.sort(np.asarray(rates, dtype=float))
    if len(r) == 0 or not (r > 0).all():
        raise ValueError(f"rate_score needs positive rates, got {list(rates)!r}")
    per_unit = 1.0 / r  # (n,) seconds per unit of work
    mean, low, high = mean_ci(per_unit)
    value = 1.0 / mean
    if len(r) < 2:
        return point_score(value, f"{how} (one repeat: no interval)")
    se = float(per_unit.std(ddof=1)) / math.sqrt(len(r))
    t_draws = _own_stream(r).standard_t(len(r) - 1, size=N_BOOT)
    draws = 1.0 / np.maximum(mean + se * t_draws, mean * 1e-3)  # a rate cannot be infinite
    bounds = (1.0 / high, 1.0 / low if low > 0 else math.inf)
    t = t_critical_975(len(r) - 1)
    text = f"{how} over {len(r)} repeats, Student t of the mean time (t={t:.3g})"
    return Score(value, tuple(draws.tolist()), text, bounds)


def percentile_score(samples: Sequence[float], q: float) -> Score:
    """A percentile (q=99: a p99 latency) with its distribution-free order-statistic interval
    and one-sided upper bound; the text says 'insufficient' where the count supports neither."""
    x = np.asarray(samples, dtype=float)
    value = float(np.percentile(x, q))
    bounds, upper = quantile_interval(x, q), quantile_upper_bound(x, q)
    if upper is None:
        how = f"p{q:g} of {len(x)} samples: insufficient for a 95% upper bound"
    else:
        how = f"p{q:g} of {len(x)} samples, order-statistic 95% bounds"
    return Score(value, (), how, bounds, upper)


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
            value = float(values.mean())  # as the suite computed it, as pairing reads it
            if n_seeds >= 2:  # seeds carry the training noise: Student t over them
                _, low, high = mean_ci(values)
                how = f"Student t over {n_seeds} seeds"
                out[size] = Score(value, tuple(draws.tolist()), how, (low, high))
                continue
            how = (
                f"one seed: circular block bootstrap over {bars.shape[1]:,} validation bars "
                f"(blocks of {block_length(bars.shape[1])}; bar noise only)"
            )
            out[size] = Score(value, tuple(draws.tolist()), how)
        elif n_seeds >= 2:
            draws = values[seed_draws].mean(axis=1)
            _, low, high = mean_ci(values)
            how = f"Student t over {n_seeds} seeds (no per-bar returns recorded)"
            out[size] = Score(float(values.mean()), tuple(draws.tolist()), how, (low, high))
        else:
            out[size] = point_score(float(values.mean()), "one seed, no per-bar returns")
    return out


@dataclass(frozen=True)
class Paired:
    """a - b of two mean Sharpes on the seeds both measured, with its 95% interval."""

    value: float
    """Mean over the common seeds of a's Sharpe minus b's."""
    low: float
    """Lower end of the 95% interval."""
    high: float
    """Upper end of the 95% interval."""
    n: int
    """How many seeds were paired."""
    how: str
    """How the interval was made, with the count."""

    @property
    def beyond(self) -> bool:
        """a beats b beyond the noise: the interval lies above 0."""
        return self.low > 0

    def text(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}], {self.how}"


def paired_seeds(
    a: dict[object, float],
    b: dict[object, float],
    series: tuple[dict[object, Sequence[float]], dict[object, Sequence[float]] | None],
    bars_per_year: float,
) -> Paired | None:
    """a - b on the seeds both have (seed -> Sharpe), aligned by seed, never by position.

    Two or more common seeds: Student t of the per-seed differences. One: a circular block
    bootstrap of that seed's validation bars, with b's bars resampled alike when recorded, else
    b's figure held fixed (a baseline whose bars were not recorded). None: nothing to pair.
    """
    common = [k for k in a if k in b]
    if len(common) >= 2:
        diff = np.array([a[k] - b[k] for k in common])
        mean, low, high = mean_ci(diff)
        return Paired(mean, low, high, len(common), f"Student t over {len(common)} paired seeds")
    if len(common) != 1 or common[0] not in series[0]:
        return None
    seed = common[0]
    bars_a = np.asarray(series[0][seed], dtype=float)
    bars_b = series[1].get(seed) if series[1] is not None else None
    idx = circular_block_indices(len(bars_a), N_BOOT, np.random.default_rng(_SEED))
    draws = annualised_sharpe(bars_a[idx], bars_per_year)
    if bars_b is not None and len(bars_b) == len(bars_a):
        draws = draws - annualised_sharpe(np.asarray(bars_b, dtype=float)[idx], bars_per_year)
    else:
        draws = draws - b[seed]
    low, high = np.percentile(draws, [2.5, 97.5])
    how = f"1 seed, block bootstrap over {len(bars_a):,} bars"
    return Paired(a[seed] - b[seed], float(low), float(high), 1, how)
