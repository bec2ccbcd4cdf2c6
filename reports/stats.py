"""Small, dependency-free statistics for noise-aware verdicts: Mann-Whitney U, bootstrap, t CI.

numpy only (no scipy), so reports run on any laptop; tests check them against hand-worked values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MannWhitney",
    "bootstrap_percentile_ci",
    "bootstrap_ratio_ci",
    "mann_whitney_u",
    "mean_ci",
    "t_critical_975",
]

# Two-sided 95% Student t critical values t_{0.975, df} for df = 1..30 (standard tables).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class MannWhitney:
    """Result of a two-sided Mann-Whitney U test (normal approximation)."""

    u: float
    """U statistic of the first sample: pairs (a_i, b_j) with a_i > b_j, ties counting 1/2."""
    z: float
    """Standardised statistic with tie and continuity corrections."""
    p_value: float
    """Two-sided p-value; 1.0 when every value is tied."""


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U with tie-corrected variance and continuity correction.

    Matches scipy.stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True).
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs at least one value in each sample")
    pooled = np.concatenate([x, y])
    ranks = _average_ranks(pooled)
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    _, tie_counts = np.unique(pooled, return_counts=True)
    tie_term = float((tie_counts**3 - tie_counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sigma == 0:
        return MannWhitney(u1, 0.0, 1.0)
    mu = n1 * n2 / 2
    u = max(u1, n1 * n2 - u1)
    z = (u - mu - 0.5) / sigma
    p = min(1.0, math.erfc(z / math.sqrt(2)))  # 2 * normal survival function at z
    return MannWhitney(u1, z, p)


def bootstrap_ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    percentile: float = 50.0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of P(b) / P(a), resampling each run independently.

    P is the median by default; percentile=99 gives the CI of a p99 ratio.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("bootstrap_ratio_ci needs at least one value in each sample")
    rng = np.random.default_rng(seed)
    med_a = np.percentile(rng.choice(x, size=(n_boot, len(x))), percentile, axis=1)
    med_b = np.percentile(rng.choice(y, size=(n_boot, len(y))), percentile, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = med_b / med_a
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_percentile_ci(
    values: Sequence[float],
    percentile: float,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of one sample's `percentile` (e.g. 99 for a p99 latency)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("bootstrap_percentile_ci needs at least one value")
    rng = np.random.default_rng(seed)
    stats = np.percentile(rng.choice(x, size=(n_boot, len(x))), percentile, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t confidence interval: (mean, low, high).

    With one value the interval is (nan, nan): one seed says nothing about the spread.
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = t_critical_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def t_critical_975(df: int) -> float:
    """t_{0.975, df}: the table for df <= 30, a Cornish-Fisher expansion beyond (error < 1e-3)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks
