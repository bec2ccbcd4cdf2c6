"""Aggregates over runs (seed x fold) a practitioner can trust: the interquartile mean with a
stratified bootstrap interval, the probability of improvement, and the deflated Sharpe ratio.

rliable's estimators (Agarwal et al. 2021), written again with numpy only: a run is one
(seed, fold), a stratum is one fold (folds see different bars, as rliable's tasks do), and
bootstrap resamples draw seeds within each fold. The deflated Sharpe ratio is Bailey and
Lopez de Prado (2014); the minimum detectable difference is from the paired t-test's exact
power. Shared by the overfit suite (bench/) and the reports, as resample is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ppo_core.errors import ConfigError

__all__ = [
    "MIN_RUNS_PER_FOLD",
    "PBO_SPLITS",
    "Estimate",
    "backtest_overfitting",
    "deflated_best",
    "deflated_sharpe",
    "expected_max_sharpe",
    "improvement_estimate",
    "iqm",
    "iqm_estimate",
    "minimum_detectable_difference",
    "probability_of_improvement",
    "return_moments",
]

MIN_RUNS_PER_FOLD = 5
"""Fewest runs (seeds) per fold for an interval. Simulated, the widened 95% interval covers
0.93-0.94 at 5 and 10 seeds per fold but only about 0.90 at 3-4 (normal runs), and one seed
per fold has no spread to resample at all (tests/test_aggregates.py checks the first)."""

RESAMPLES = 2000
"""Bootstrap resamples per interval."""

PBO_SPLITS = 2000
"""Most in-sample / out-of-sample splits the PBO enumerates; beyond, a seeded random sample."""

_EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% bootstrap interval."""

    value: float
    """The estimate on the runs as measured."""
    low: float
    """Lower end of the 95% interval."""
    high: float
    """Upper end of the 95% interval."""
    runs: int
    """How many runs (seed x fold) it stands on, per size."""


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean of the middle half once the lowest
    and highest quarter (int(n / 4) runs each, as scipy's trim_mean) are cut."""
    scores = np.sort(np.asarray(scores, dtype=float), axis=-1)
    n = scores.shape[-1]
    cut = int(0.25 * n)
    return scores[..., cut : n - cut].mean(axis=-1)


def _stratified_resample(
    by_fold: Sequence[np.ndarray], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, runs): each fold's runs drawn with replacement within that fold."""
    parts = [f[rng.integers(0, len(f), size=(resamples, len(f)))] for f in by_fold]
    return np.concatenate(parts, axis=1)


def _folds(by_fold: Sequence[Sequence[float]]) -> list[np.ndarray] | None:
    """The folds as arrays, or None when any has too few runs for an interval."""
    folds = [np.asarray(f, dtype=float) for f in by_fold]
    if not folds or min(len(f) for f in folds) < MIN_RUNS_PER_FOLD:
        return None
    return folds


def _widened(value: float, samples: np.ndarray, runs_per_fold: int) -> tuple[float, float]:
    """The 2.5/97.5 percentiles, widened about the estimate by sqrt(n / (n - 1)): a bootstrap
    resample's spread is the plug-in (n - 1) / n of the unbiased one, and at 5-10 seeds per
    fold the plain percentile interval covers 90-92%, not 95%."""
    low, high = np.percentile(samples, [2.5, 97.5])
    scale = math.sqrt(runs_per_fold / (runs_per_fold - 1))
    return value + scale * (float(low) - value), value + scale * (float(high) - value)


def iqm_estimate(by_fold: Sequence[Sequence[float]], seed: int = 0) -> Estimate | None:
    """IQM over all runs with a stratified bootstrap interval (strata = folds); None when a
    fold has fewer than MIN_RUNS_PER_FOLD runs."""
    folds = _folds(by_fold)
    if folds is None:
        return None
    value = float(iqm(np.concatenate(folds)))
    samples = iqm(_stratified_resample(folds, RESAMPLES, np.random.default_rng(seed)))
    low, high = _widened(value, samples, min(len(f) for f in folds))
    return Estimate(value, low, high, sum(len(f) for f in folds))


def probability_of_improvement(
    x_by_fold: Sequence[np.ndarray], y_by_fold: Sequence[np.ndarray]
) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 between the runs of each fold (the Mann-Whitney U over
    n_x n_y), averaged over folds, as rliable; arrays (..., n) give one value per row."""
    per_fold = []
    for x, y in zip(x_by_fold, y_by_fold, strict=True):
        x = np.asarray(x, dtype=float)[..., :, None]  # (..., n_x, 1)
        y = np.asarray(y, dtype=float)[..., None, :]  # (..., 1, n_y)
        per_fold.append(((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1)))
    return np.mean(per_fold, axis=0)


def improvement_estimate(
    x_by_fold: Sequence[Sequence[float]], y_by_fold: Sequence[Sequence[float]], seed: int = 0
) -> Estimate | None:
    """Probability of improvement of X over Y with an interval from resampling each size's
    runs independently within each fold (rliable's StratifiedIndependentBootstrap); None when
    either has a fold with too few runs."""
    xs, ys = _folds(x_by_fold), _folds(y_by_fold)
    if xs is None or ys is None or len(xs) != len(ys):
        return None
    value = float(probability_of_improvement(xs, ys))
    rng = np.random.default_rng(seed)
    x_boot = [f[rng.integers(0, len(f), size=(RESAMPLES, len(f)))] for f in xs]
    y_boot = [f[rng.integers(0, len(f), size=(RESAMPLES, len(f)))] for f in ys]
    samples = probability_of_improvement(x_boot, y_boot)
    low, high = _widened(value, samples, min(len(f) for f in (*xs, *ys)))
    return Estimate(value, max(0.0, low), min(1.0, high), sum(len(f) for f in xs))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """E[max of n_trials Sharpe ratios] when every trial's true Sharpe is 0 and the estimates
    vary with `variance` (Bailey and Lopez de Prado 2014, eq. 2; same units as variance)."""
    if n_trials < 2:
        raise ConfigError(f"n_trials must be at least 2 for a maximum, got {n_trials}")
    tail = (1 - _EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n_trials)
    tail += _EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n_trials * math.e))
    return math.sqrt(max(variance, 0.0)) * tail


def deflated_sharpe(
    sharpe: float,
    n_trials: int,
    variance: float,
    bars: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Probability that the selected trial's true Sharpe exceeds 0 after selecting it as the
    best of n_trials: the probabilistic Sharpe ratio against expected_max_sharpe.

    `sharpe` and `variance` (the trials' Sharpe estimates' variance) are per bar, not
    annualised; `bars` is the sample length; skew and kurtosis (3 = normal) are the selected
    trial's per-bar returns'."""
    if bars < 2:
        raise ConfigError(f"bars must be at least 2, got {bars}")
    benchmark = expected_max_sharpe(n_trials, variance)
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if spread <= 0:
        raise ConfigError(
            f"skew {skew:.3g} and kurtosis {kurtosis:.3g} give no Sharpe standard error "
            f"at Sharpe {sharpe:.3g} per bar"
        )
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(bars - 1) / math.sqrt(spread))


def deflated_best(
    sharpes: Mapping[str, float],
    bars_per_year: float,
    bars: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> tuple[str, float]:
    """(name, DSR) of the trial with the highest annualised Sharpe among `sharpes` (one per
    trial, at least 2), deflated by the trials' own spread (deflated_sharpe, per bar)."""
    if len(sharpes) < 2:
        raise ConfigError(f"n_trials must be at least 2 for a selection, got {len(sharpes)}")
    best = max(sharpes, key=sharpes.__getitem__)
    per_bar = np.array(list(sharpes.values())) / math.sqrt(bars_per_year)  # (n_trials,)
    dsr = deflated_sharpe(
        sharpes[best] / math.sqrt(bars_per_year),
        len(sharpes),
        float(np.var(per_bar, ddof=1)),
        bars,
        skew,
        kurtosis,
    )
    return best, dsr


def return_moments(series: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """(skew, kurtosis) of per-bar returns, the mean over the runs' series (each run's own
    spread, since runs differ in volatility); None when no series has 4 bars and a spread."""
    found = []
    for returns in series:
        r = np.asarray(returns, dtype=float)
        if len(r) > 3 and r.std() > 0:
            z = (r - r.mean()) / r.std()
            found.append(((z**3).mean(), (z**4).mean()))
    if not found:
        return None
    skew, kurtosis = np.mean(found, axis=0)
    return float(skew), float(kurtosis)


def backtest_overfitting(performance: np.ndarray, seed: int = 0) -> float:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation
    (Bailey, Borwein, Lopez de Prado and Zhu 2017) of a (runs, trials) matrix: over every
    split of the runs into two halves, how often the trial best on one half ranks in the
    bottom half of the trials on the other. An odd last run is left out."""
    performance = np.asarray(performance, dtype=float)
    runs, trials = performance.shape
    runs -= runs % 2
    if runs < 4 or trials < 2:
        raise ConfigError(f"PBO needs at least 4 runs and 2 trials, got {runs} and {trials}")
    in_sample = _half_splits(runs, np.random.default_rng(seed))  # (splits, runs) bool
    matrix = performance[:runs]
    is_mean = in_sample @ matrix  # (splits, trials); halves are equal, so sums rank as means
    oos_mean = ~in_sample @ matrix
    best = is_mean.argmax(axis=1)
    oos_best = oos_mean[np.arange(len(best)), best][:, None]
    # Its out-of-sample rank among the trials, 1 = worst; ties share the mean rank.
    rank = (oos_mean < oos_best).sum(axis=1) + ((oos_mean == oos_best).sum(axis=1) + 1) / 2
    omega = rank / (trials + 1)
    return float(np.mean(np.log(omega / (1 - omega)) <= 0))


def _half_splits(runs: int, rng: np.random.Generator) -> np.ndarray:
    """(splits, runs) masks of the in-sample half: all of them up to PBO_SPLITS, else that
    many drawn at random."""
    if math.comb(runs, runs // 2) <= PBO_SPLITS:
        chosen = np.array(list(itertools.combinations(range(runs), runs // 2)))
    else:
        chosen = np.argsort(rng.random((PBO_SPLITS, runs)), axis=1)[:, : runs // 2]
    mask = np.zeros((len(chosen), runs), dtype=bool)
    np.put_along_axis(mask, chosen, True, axis=1)
    return mask


MDE_ALPHA, MDE_POWER = 0.05, 0.80
"""Two-sided level and power of the paired t-test a minimum detectable difference is for."""

_QUADRATURE = 2001
"""Grid points over sqrt(chi-square) in t_test_power: power to ~1e-5 at df >= 2."""


def t_test_power(shift: float, df: int, critical: float) -> float:
    """Power of a two-sided one-sample t-test that rejects when |T| > critical, when the true
    mean is `shift` standard errors away from 0 (noncentrality): P(|Z + shift| > critical S)
    with S = sqrt(V / df), V ~ chi-square(df), Z ~ N(0, 1), integrated over W = sqrt(V),
    whose density 2 w^(df-1) e^(-w^2/2) / (2^(df/2) Gamma(df/2)) is smooth at 0 for df >= 1."""
    if df < 1:
        raise ConfigError(f"degrees of freedom must be at least 1, got {df}")
    w = np.linspace(0.0, math.sqrt(df) + 12.0, _QUADRATURE)  # (grid,)
    log_density = (df - 1) * np.log(np.maximum(w, 1e-300)) - w**2 / 2
    log_density += math.log(2) - (df / 2) * math.log(2) - math.lgamma(df / 2)
    density = np.exp(log_density)
    s = w / math.sqrt(df)
    tails = _normal_cdf(-critical * s + shift) + _normal_cdf(-critical * s - shift)
    integrand = tails * density
    return float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(w)))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise (math.erf; numpy has none)."""
    return 0.5 * (1 + np.frompyfunc(math.erf, 1, 1)(x / math.sqrt(2)).astype(float))


def _solve(f, target: float, low: float, high: float) -> float:
    """x in [low, high] with f(x) = target for an increasing f, by bisection to 1e-6."""
    while high - low > 1e-6:
        middle = (low + high) / 2
        low, high = (middle, high) if f(middle) < target else (low, middle)
    return (low + high) / 2


def minimum_detectable_difference(differences: Sequence[float]) -> float | None:
    """The smallest true mean paired difference that a two-sided paired t-test at MDE_ALPHA on
    len(differences) pairs detects with MDE_POWER probability, taking their sample standard
    deviation as the true one; None under 3 pairs (too little spread to speak of).

    Exact t power, not the normal approximation 2.80 x se, which at 5 pairs has only 56% power
    (tests/test_aggregates.py checks the power by simulation)."""
    values = np.asarray(differences, dtype=float)
    if len(values) < 3:
        return None
    df = len(values) - 1
    # The critical value is where the power at no shift (the level) is MDE_ALPHA; the level
    # falls as the critical value rises, so _solve, which wants an increasing f, gets -level.
    critical = _solve(lambda c: -t_test_power(0.0, df, c), -MDE_ALPHA, 0.0, 100.0)
    shift = _solve(lambda d: t_test_power(d, df, critical), MDE_POWER, 0.0, 100.0)
    return float(shift * values.std(ddof=1) / math.sqrt(len(values)))
