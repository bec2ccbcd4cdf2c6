"""The overfit suite's statistics: block-bootstrap intervals of a case and of a size over its
seeds, and the session summary (intervals, neighbours' paired differences, rliable aggregates).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from archbench.instrument.aggregates import (
    MIN_RUNS_PER_FOLD,
    backtest_overfitting,
    deflated_best,
    improvement_estimate,
    iqm,
    iqm_estimate,
    minimum_detectable_difference,
    return_moments,
)
from archbench.instrument.resample import annualised_sharpe, block_length, circular_block_indices

BOOTSTRAP_RESAMPLES = 1000
"""Bootstrap resamples per interval."""


@dataclass(frozen=True)
class _Finished:
    """What the session summary keeps of a finished case."""

    dataset: str
    length: str
    size: str
    hidden_dims: tuple[int, ...]
    seed: int
    fold: int
    returns: dict
    oracle_test: np.ndarray | None
    bars_per_year: float
    learning_rate: float


def block_bootstrap_means(
    returns: np.ndarray,
    block: int | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Means of `resamples` circular block-bootstrap resamples of per-bar `returns` (n,):
    blocks (the reports' block_length(n) unless given) keep a regime's serial dependence."""
    index = circular_block_indices(len(returns), resamples, np.random.default_rng(seed), block)
    return returns[index].mean(axis=1)


def _sharpe_interval(returns: np.ndarray, bars_per_year: float, seed: int) -> tuple[float, float]:
    """95% block-bootstrap interval of the annualised Sharpe of per-bar `returns`: the same
    blocks and Sharpe the reports use."""
    index = circular_block_indices(len(returns), BOOTSTRAP_RESAMPLES, np.random.default_rng(seed))
    low, high = np.percentile(annualised_sharpe(returns[index], bars_per_year), [2.5, 97.5])
    return float(low), float(high)


def size_interval(per_seed: list[np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): a size's validation mean net return per bar over its seeds, with a
    95% interval from resampling seeds and, within each, blocks of bars (seeds x bootstrap)."""
    rng = np.random.default_rng(seed)
    boots = [block_bootstrap_means(r, seed=seed + i) for i, r in enumerate(per_seed)]
    pick = rng.integers(0, len(per_seed), size=(BOOTSTRAP_RESAMPLES, len(per_seed)))
    column = rng.integers(0, BOOTSTRAP_RESAMPLES, size=pick.shape)
    stacked = np.stack(boots)  # (seeds, R)
    samples = stacked[pick, column].mean(axis=1)  # (R,)
    mean = float(np.mean([r.mean() for r in per_seed]))
    low, high = np.percentile(samples, [2.5, 97.5])
    return mean, float(low), float(high)


def _sharpe(returns: np.ndarray, bars_per_year: float) -> float:
    return float(annualised_sharpe(returns, bars_per_year)) if len(returns) > 1 else 0.0


def summary_lines(collected: list[_Finished]) -> list[str]:
    """The end-of-session overfitting summary, on the test split of each fold (the model chosen
    on validation): intervals per size, the step size each got, the spread across folds, the
    minimum detectable difference between neighbouring sizes, and the verdict in words."""
    if not collected:
        return []
    groups: dict = {}
    for done in collected:
        groups.setdefault((done.dataset, done.length), {}).setdefault(
            (sum(done.hidden_dims), done.size), []
        ).append(done)
    lines = [
        "",
        "overfitting: test mean net return per bar of the validation-chosen model, 95% interval "
        f"(seeds and folds x blocks of {block_length(len(collected[0].returns['test']))} bars); "
        "Sharpe beside the cost-aware oracle's on the same bars",
    ]
    for (dataset, label), sizes in groups.items():
        ranked = sorted(sizes.items())
        intervals = {}
        for (_width, name), runs in ranked:
            per_run = [r.returns["test"] for r in runs]
            mean, low, high = size_interval(per_run)
            intervals[name] = (mean, low, high)
            sharpes = [_sharpe(r.returns["test"], r.bars_per_year) for r in runs]
            oracles = [
                _sharpe(r.oracle_test, r.bars_per_year) for r in runs if r.oracle_test is not None
            ]
            beside = f" (oracle {np.mean(oracles):.1f})" if oracles else " (no oracle: real data)"
            chosen = Counter(r.learning_rate for r in runs)
            rates = ", ".join(f"{lr:g} x{n}" for lr, n in sorted(chosen.items()))
            lines.append(
                f"  {dataset} {label} {name:>8}: {mean * 1e4:+.2f} bp/bar "
                f"[{low * 1e4:+.2f}, {high * 1e4:+.2f}] over {len(runs)} seed-fold(s); "
                f"Sharpe {np.mean(sharpes):.1f}{_fold_spread(runs)}{beside}; lr {rates}"
            )
        lines += _neighbour_lines(dataset, label, ranked)
        lines += _aggregate_lines(dataset, label, ranked)
        if len(ranked) > 1:
            first, last = ranked[0][0][1], ranked[-1][0][1]
            a, b = intervals[first], intervals[last]
            overlap = a[1] <= b[2] and b[1] <= a[2]
            verdict = (
                "OVERLAP: this run cannot tell them apart"
                if overlap
                else "separate: the difference exceeds the noise"
            )
            lines.append(f"  {dataset} {label}: {first} vs {last} intervals {verdict}")
    return lines


def _fold_spread(runs: list[_Finished]) -> str:
    """' (folds 1.2..3.4)': the range of the per-fold mean test Sharpe, when there are folds."""
    by_fold: dict[int, list[float]] = {}
    for r in runs:
        by_fold.setdefault(r.fold, []).append(_sharpe(r.returns["test"], r.bars_per_year))
    if len(by_fold) < 2:
        return ""
    means = [float(np.mean(v)) for v in by_fold.values()]
    return f" (folds {min(means):.1f}..{max(means):.1f})"


def _neighbour_lines(dataset: str, label: str, ranked: list) -> list[str]:
    """Per pair of neighbouring sizes: the paired test Sharpe difference (on the seeds and folds
    both ran) and the minimum difference those pairs can detect."""
    lines = []
    for ((_w, small), a_runs), ((_v, big), b_runs) in itertools.pairwise(ranked):
        a = {(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in a_runs}
        b = {(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in b_runs}
        diffs = [b[k] - a[k] for k in sorted(a.keys() & b.keys())]
        if not diffs:
            continue
        mde = minimum_detectable_difference(diffs)
        detect = (
            f"minimum detectable difference {mde:.2f} Sharpe"
            if mde is not None
            else "too few pairs for a minimum detectable difference (need 3)"
        )
        lines.append(
            f"  {dataset} {label}: {big} - {small} test Sharpe {np.mean(diffs):+.2f} over "
            f"{len(diffs)} paired seed-fold(s); {detect}"
        )
    return lines


def _aggregate_lines(dataset: str, label: str, ranked: list) -> list[str]:
    """rliable-style aggregates of the test Sharpe over the runs (seed x fold): each size's IQM
    with a stratified bootstrap interval, P(bigger > smaller) for neighbours, and the deflated
    Sharpe of the size with the highest mean from the sizes tried; 'insufficient' under
    MIN_RUNS_PER_FOLD seeds per fold."""
    by_size = {name: _test_sharpes_by_fold(runs) for (_width, name), runs in ranked}
    head = f"  {dataset} {label}"
    lines = []
    for name, folds in by_size.items():
        values = [v for runs in folds.values() for v in runs]
        lines.append(
            f"{head} {name:>8}: IQM test Sharpe {iqm(np.array(values)):.2f} "
            f"{_bracket(iqm_estimate(list(folds.values())))} over {len(values)} run(s)"
        )
    for small, big in itertools.pairwise(by_size):
        shared = sorted(by_size[small].keys() & by_size[big].keys())
        x, y = [by_size[big][f] for f in shared], [by_size[small][f] for f in shared]
        estimate = improvement_estimate(x, y) if shared else None
        point = f"{estimate.value:.2f} " if estimate else ""
        lines.append(f"{head}: P({big} > {small}) {point}{_bracket(estimate)}")
    return [*lines, _deflated_line(head, ranked, by_size)]


def _test_sharpes_by_fold(runs: list[_Finished]) -> dict[int, list[float]]:
    by_fold: dict[int, list[float]] = {}
    for r in runs:
        by_fold.setdefault(r.fold, []).append(_sharpe(r.returns["test"], r.bars_per_year))
    return by_fold


def _bracket(estimate) -> str:
    if estimate is None:
        return f"[insufficient: under {MIN_RUNS_PER_FOLD} seeds per fold]"
    return f"[{estimate.low:.2f}, {estimate.high:.2f}]"


def _deflated_line(head: str, ranked: list, by_size: dict) -> str:
    """The size with the highest mean test Sharpe, deflated for being the best of N sizes."""
    if len(ranked) < 2:
        return f"{head}: one size tried, no deflated Sharpe"
    seeds = min(len(v) for folds in by_size.values() for v in folds.values())
    means = {name: float(np.mean([v for f in folds.values() for v in f]))
             for name, folds in by_size.items()}  # fmt: skip
    best = max(means, key=means.__getitem__)
    if seeds < MIN_RUNS_PER_FOLD:
        return (
            f"{head}: selected {best} of {len(means)} sizes; deflated Sharpe insufficient "
            f"({seeds} seed(s) per fold, needs {MIN_RUNS_PER_FOLD})"
        )
    runs = {name: r for (_w, name), r in ranked}
    # Seeds on real data replay the same bars: count each fold's bars once.
    bars = sum(len(r.returns["test"]) for r in {r.fold: r for r in runs[best]}.values())
    skew, kurtosis = return_moments([r.returns["test"] for r in runs[best]]) or (0.0, 3.0)
    _, dsr = deflated_best(means, runs[best][0].bars_per_year, bars, skew, kurtosis)
    return (
        f"{head}: selected {best} (mean test Sharpe {means[best]:.2f}) of {len(means)} sizes; "
        f"deflated Sharpe {dsr:.2f} on {bars:,} bars (skew {skew:.2f}, kurtosis {kurtosis:.1f})"
        f"{_pbo_text(runs)}"
    )


def _pbo_text(runs: dict[str, list[_Finished]]) -> str:
    """'; PBO 0.12 over 30 paired runs' on the (seed, fold) runs every size ran, if 4 or more."""
    sharpes = [{(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in rs}
               for rs in runs.values()]  # fmt: skip
    shared = sorted(set.intersection(*(set(s) for s in sharpes)))
    if len(shared) < 4:
        return ""
    matrix = np.array([[s[key] for s in sharpes] for key in shared])  # (runs, sizes)
    used = len(shared) - len(shared) % 2  # CSCV halves: an odd last run is left out
    return f"; PBO {backtest_overfitting(matrix):.2f} over {used} paired runs"
