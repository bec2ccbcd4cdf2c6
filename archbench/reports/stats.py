"""Small, dependency-free statistics for noise-aware verdicts: Mann-Whitney U, Welch t, bootstrap,
t CI and the Benjamini-Hochberg correction.

numpy only (no scipy), so reports run on any laptop; tests check them against hand-worked values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapRatio",
    "MannWhitney",
    "WelchT",
    "benjamini_hochberg",
    "bootstrap_percentile_ci",
    "bootstrap_ratio_ci",
    "bootstrap_ratio_test",
    "mann_whitney_u",
    "mean_ci",
    "quantile_interval",
    "quantile_upper_bound",
    "student_t_two_sided_p",
    "t_critical_975",
    "welch_t_test",
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
    ratios = _bootstrap_ratios(a, b, n_boot, seed, percentile, "bootstrap_ratio_ci")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class BootstrapRatio:
    """A bootstrap test of P(b) / P(a) = 1 for one percentile P (e.g. the p99)."""

    ratio: float
    """P(b) / P(a) on the samples themselves."""
    ci_low: float
    """Lower end of the percentile-bootstrap confidence interval of the ratio."""
    ci_high: float
    """Upper end of that interval."""
    p_value: float
    """Two-sided p of ratio = 1, the smallest 1 - confidence whose interval excludes 1:
    (2 * min(#ratio* <= 1, #ratio* >= 1) + 2) / (n_boot + 1). When no resample reaches 1 that
    count only says p < 2 / (n_boot + 1); the tail beyond is then extrapolated by a normal fit
    of the log ratios, erfc(|mean| / (sd * sqrt 2)), capped at 2 / (n_boot + 1)."""


def bootstrap_ratio_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    percentile: float,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapRatio:
    """Ratio of the `percentile`s of b and a, its bootstrap CI, and the p-value that the CI
    implies (the same resamples as bootstrap_ratio_ci with the same seed)."""
    ratios = _bootstrap_ratios(a, b, n_boot, seed, percentile, "bootstrap_ratio_test")
    ratios = ratios[~np.isnan(ratios)]  # 0/0: both resampled percentiles zero
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.percentile(b, percentile) / np.percentile(a, percentile))
    if len(ratios) == 0:  # every resample was 0/0: no evidence either way
        return BootstrapRatio(ratio, math.nan, math.nan, 1.0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    below, above = int((ratios <= 1).sum()), int((ratios >= 1).sum())
    p_value = min(1.0, (2 * min(below, above) + 2) / (len(ratios) + 1))
    if min(below, above) == 0 and np.isfinite(ratios).all() and (ratios > 0).all():
        log_ratios = np.log(ratios)
        spread = float(log_ratios.std(ddof=1)) if len(ratios) > 1 else 0.0
        centre = abs(float(log_ratios.mean()))
        normal = 0.0 if spread == 0 else math.erfc(centre / (spread * math.sqrt(2)))
        p_value = min(p_value, normal)
    return BootstrapRatio(ratio, float(low), float(high), p_value)


def _bootstrap_ratios(
    a: Sequence[float], b: Sequence[float], n_boot: int, seed: int, percentile: float, name: str
) -> np.ndarray:
    """n_boot resampled P(b) / P(a), each run resampled independently with one seeded stream."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError(f"{name} needs at least one value in each sample")
    rng = np.random.default_rng(seed)
    stat_a = np.percentile(rng.choice(x, size=(n_boot, len(x))), percentile, axis=1)
    stat_b = np.percentile(rng.choice(y, size=(n_boot, len(y))), percentile, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return stat_b / stat_a


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


def quantile_interval(
    values: Sequence[float], q: float, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Distribution-free interval of the q-th percentile from two order statistics.

    [x_(l), x_(u)] covers the true quantile with probability P(l <= B < u), B ~ Bin(n, q/100),
    for any continuous distribution; the upper tail is kept <= (1 - confidence) / 2 and the
    lower takes the rest of 1 - confidence. None when n is too small for that (3 samples
    cannot give a 95% interval of a median; 200 cannot of a p99).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n, p, alpha = len(x), q / 100, 1 - confidence
    cdf = _binomial_cdf(n, p)  # cdf[k] = P(B <= k)
    highs = np.nonzero(1 - cdf <= alpha / 2)[0]  # P(B >= u) = 1 - cdf[u - 1] <= alpha / 2
    if n == 0 or highs[0] + 1 > n:
        return None
    high_rank = int(highs[0]) + 1  # 1-based
    # The lower tail takes what the discrete upper one left unused, so coverage stays near 95%.
    lows = np.nonzero(cdf <= alpha - (1 - cdf[high_rank - 1]))[0]  # P(B < l) = cdf[l - 1]
    if not len(lows):
        return None
    low_rank = int(lows[-1]) + 1
    return float(x[low_rank - 1]), float(x[high_rank - 1])


def quantile_upper_bound(
    values: Sequence[float], q: float, confidence: float = 0.95
) -> float | None:
    """One-sided distribution-free upper bound of the q-th percentile: the smallest order
    statistic x_(u) with P(B < u) >= confidence; None when even the maximum falls short
    (a p99 needs 299 samples: 0.99^299 < 0.05)."""
    x = np.sort(np.asarray(values, dtype=float))
    cdf = _binomial_cdf(len(x), q / 100)
    ranks = np.nonzero(cdf[: len(x)] >= confidence)[0]
    return float(x[int(ranks[0])]) if len(ranks) else None


def _binomial_cdf(n: int, p: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Bin(n, p), in log space so n in the thousands is exact."""
    k = np.arange(n + 1)
    if p <= 0 or p >= 1:
        return np.where(k >= (n if p >= 1 else 0), 1.0, 0.0)
    # log C(n, k) = sum over j <= k of log((n - j + 1) / j)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[1:] + 1) / k[1:]))])
    pmf = np.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p))
    return np.minimum(1.0, np.cumsum(pmf))


def t_critical_975(df: int) -> float:
    """t_{0.975, df}: the table for df <= 30, a Cornish-Fisher expansion beyond (error < 1e-3)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class WelchT:
    """Result of a two-sided Welch t-test of equal means (unequal variances)."""

    t: float
    """(mean(b) - mean(a)) / sqrt(var(a)/n_a + var(b)/n_b), sample variances (ddof=1)."""
    df: float
    """Welch-Satterthwaite degrees of freedom (not an integer in general)."""
    p_value: float
    """Two-sided p from Student's t with `df` degrees of freedom."""


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> WelchT:
    """Two-sided Welch t-test that b and a have the same mean; each needs two or more values.

    With no spread on either side the test is undefined: p = 1 when the means are equal, else 0.
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("welch_t_test needs at least two values in each sample")
    se2_a, se2_b = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    diff = float(y.mean() - x.mean())
    if se2_a + se2_b == 0:
        return WelchT(0.0 if diff == 0 else math.copysign(math.inf, diff), math.inf,
                      1.0 if diff == 0 else 0.0)  # fmt: skip
    t = diff / math.sqrt(se2_a + se2_b)
    df = (se2_a + se2_b) ** 2 / (se2_a**2 / (len(x) - 1) + se2_b**2 / (len(y) - 1))
    return WelchT(t, df, student_t_two_sided_p(t, df))


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df > 0 degrees of freedom (any real df).

    = I_x(df/2, 1/2) with x = df / (df + t^2), the regularised incomplete beta function.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2, 0.5, df / (df + t * t))


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    q_(i) = min over j >= i of p_(j) * m / j (p sorted ascending, capped at 1): rejecting every
    q <= alpha keeps the expected share of false discoveries among the rejections <= alpha.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"benjamini_hochberg needs p-values in [0, 1], got {p_values!r}")
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    q = np.empty(m)
    q[order] = q_sorted
    return q


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )  # fmt: skip
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below the mean; flip
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


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
