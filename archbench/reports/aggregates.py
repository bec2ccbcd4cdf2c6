"""The overfit suite's runs (seed x fold) per size, aggregated as a practitioner trusts: IQM
with an interval, P(bigger > smaller) for neighbouring sizes, the selected size's DSR.

The math is archbench.instrument.aggregates (shared with the suite's printed summary); this
module reads the records: which runs belong together, which size was selected, and from how many.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from archbench.instrument.aggregates import (
    MIN_RUNS_PER_FOLD,
    Estimate,
    backtest_overfitting,
    deflated_best,
    improvement_estimate,
    iqm,
    iqm_estimate,
    probability_of_improvement,
    return_moments,
)
from ppo_core.errors import ConfigError

__all__ = ["Improvement", "Selection", "SizeAggregate", "SweepAggregates", "overfit_aggregates"]

_KEYS = ["run", "case_dataset", "case_length"]


@dataclass(frozen=True)
class SizeAggregate:
    """One size's runs of one (run, dataset, length)."""

    preset: str
    """The size's preset name."""
    runs: int
    """How many (seed, fold) runs it has."""
    folds: int
    """How many folds those runs span."""
    value: float
    """IQM of the metric over the runs (the plain mean under 4 runs, where nothing is cut)."""
    interval: Estimate | None
    """The IQM with its stratified bootstrap interval; None when too few runs per fold."""


@dataclass(frozen=True)
class Improvement:
    """P(bigger > smaller) between two neighbouring sizes."""

    bigger: str
    """The preset with more parameters."""
    smaller: str
    """Its neighbour with fewer."""
    value: float
    """P(a run of bigger beats a run of smaller on the same fold), ties counted half."""
    interval: Estimate | None
    """The same with its bootstrap interval; None when too few runs per fold."""


@dataclass(frozen=True)
class Selection:
    """The size with the highest mean Sharpe, deflated for having been picked from N."""

    preset: str
    """The selected preset."""
    n_trials: int
    """How many sizes it was picked from."""
    sharpe: float
    """Its mean annualised Sharpe over its runs."""
    dsr: float | None
    """Probability that its Sharpe is real after the selection; None when it cannot be had."""
    pbo: float | None
    """Probability of backtest overfitting (CSCV) over the runs every size ran; None under 4."""
    why: str
    """What the DSR stands on, or why there is none."""


@dataclass(frozen=True)
class SweepAggregates:
    """The aggregates of one (run, dataset, length)."""

    run: str
    """The run's name."""
    dataset: str
    """The dataset."""
    length: str
    """'short' or 'long' (the data length)."""
    metric: str
    """The metric aggregated: test Sharpe where records have folds, else validation Sharpe."""
    sizes: tuple[SizeAggregate, ...]
    """Per size, fewest parameters first."""
    improvements: tuple[Improvement, ...]
    """Per pair of neighbouring sizes."""
    selection: Selection
    """The selected size and its DSR, or why there is none."""


def overfit_aggregates(df: pd.DataFrame) -> list[SweepAggregates]:
    """Aggregates of the overfit suite's records in `df`, per run, dataset and length."""
    rows = df[(df["suite"] == "overfit") & df["value"].notna()]
    if rows.empty or not set(_KEYS) <= set(rows.columns):
        return []
    found = []
    for (run, dataset, length), group in rows.groupby(_KEYS, sort=False, dropna=False):
        metric = "test_sharpe" if (group["metric"] == "test_sharpe").any() else "val_sharpe"
        by_size = _runs_by_size(group[group["metric"] == metric])
        if not by_size:
            continue
        sizes = tuple(_size(preset, folds) for preset, folds in by_size.items())
        improvements = tuple(
            _improvement(big, small, by_size)
            for small, big in itertools.pairwise(by_size)  # by_size is smallest first
        )
        selection = _selection(group, metric, by_size)
        found.append(
            SweepAggregates(
                str(run), str(dataset), str(length), metric, sizes, improvements, selection
            )
        )
    return found


def _runs_by_size(rows: pd.DataFrame) -> dict[str, dict[int, list[float]]]:
    """preset -> fold -> the values of its seeds, presets by parameter count."""
    order = rows.sort_values("params", kind="stable") if "params" in rows else rows
    by_size: dict[str, dict[int, list[float]]] = {}
    # Records written before folds (one train/validation cut) are one fold.
    folds = order["case_fold"] if "case_fold" in order else pd.Series(0, index=order.index)
    for preset, fold, value in zip(order["preset"], folds, order["value"], strict=True):
        fold_key = 0 if pd.isna(fold) else int(fold)  # NaN or NA: a record without folds
        by_size.setdefault(str(preset), {}).setdefault(fold_key, []).append(float(value))
    return by_size


def _size(preset: str, folds: dict[int, list[float]]) -> SizeAggregate:
    values = np.concatenate([np.asarray(v) for v in folds.values()])
    return SizeAggregate(
        preset,
        len(values),
        len(folds),
        float(iqm(values)),
        iqm_estimate(list(folds.values())),
    )


def _improvement(bigger: str, smaller: str, by_size: dict) -> Improvement:
    """P(bigger > smaller) on the folds both ran."""
    shared = sorted(by_size[bigger].keys() & by_size[smaller].keys())
    x = [by_size[bigger][f] for f in shared]
    y = [by_size[smaller][f] for f in shared]
    value = float(probability_of_improvement(x, y)) if shared else math.nan
    return Improvement(bigger, smaller, value, improvement_estimate(x, y) if shared else None)


def _selection(group: pd.DataFrame, metric: str, by_size: dict) -> Selection:
    """The size with the highest mean Sharpe and its deflated Sharpe ratio among the sizes."""
    means = {
        p: float(np.mean([v for f in folds.values() for v in f])) for p, folds in by_size.items()
    }
    preset = max(means, key=means.__getitem__)
    n_trials = len(means)

    def without(why: str) -> Selection:
        return Selection(preset, n_trials, means[preset], None, None, why)

    if n_trials < 2:
        return without("one size tried: nothing to deflate")
    seeds = min(len(runs) for folds in by_size.values() for runs in folds.values())
    if seeds < MIN_RUNS_PER_FOLD:
        # One seed's luck decides the pick, and the DSR counts the bars' noise, not the seeds'.
        return without(
            f"insufficient: {seeds} seed(s) per fold, the selection needs {MIN_RUNS_PER_FOLD}"
        )
    chosen = group[(group["preset"] == preset) & (group["metric"] == metric)]
    bars_per_year = _first(chosen, "case_bars_per_year")
    test = metric == "test_sharpe"
    bars = _distinct_fold_bars(chosen, "case_test_bars" if test else "case_val_bars")
    if not bars_per_year or not bars:
        return without("unavailable: the records carry no bars per year or split length")
    moments = _moments(chosen, "test_net_returns" if test else "val_net_returns")
    try:
        _, dsr = deflated_best(means, bars_per_year, bars, *moments[:2])
    except ConfigError as exc:
        return without(f"unavailable: {exc}")
    why = f"best of {n_trials} sizes on {bars:,} bars (distinct folds); {moments[2]}"
    paired = _paired_runs(group[group["metric"] == metric], list(by_size))
    pbo = backtest_overfitting(paired) if len(paired) >= 4 else None
    if pbo is not None:
        why += f"; PBO over {len(paired) - len(paired) % 2} runs every size ran"
    return Selection(preset, n_trials, means[preset], dsr, pbo, why)


def _paired_runs(rows: pd.DataFrame, presets: list[str]) -> np.ndarray:
    """(runs, sizes): the metric on each (seed, fold) that every size ran."""
    if not {"case_seed", "case_fold"} <= set(rows.columns):
        return np.empty((0, len(presets)))
    table = rows.pivot_table(
        index=["case_seed", "case_fold"], columns="preset", values="value", aggfunc="mean"
    )
    return table.reindex(columns=presets).dropna().to_numpy()


def _first(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows:
        return None
    values = rows[column].dropna()
    return float(values.iloc[0]) if len(values) else None


def _distinct_fold_bars(rows: pd.DataFrame, column: str) -> int:
    """Bars of the split summed over distinct folds: seeds on real data replay the same bars,
    so only folds surely add new ones (on synthetic data this understates the sample: the
    DSR errs low)."""
    if column not in rows:
        return 0
    rows = rows.dropna(subset=[column])
    per_fold = rows.drop_duplicates("case_fold") if "case_fold" in rows else rows.iloc[:1]
    return int(per_fold[column].sum())


def _moments(rows: pd.DataFrame, series_name: str) -> tuple[float, float, str]:
    """Skew and kurtosis of the per-bar returns where the records carry them, else a
    normal's, said so."""
    series = rows["series"] if "series" in rows else []
    found = return_moments(
        [s[series_name] for s in series if isinstance(s, dict) and s.get(series_name)]
    )
    if found is None:
        return 0.0, 3.0, "returns taken as normal (the records carry no per-bar series)"
    skew, kurtosis = found
    return skew, kurtosis, f"skew {skew:.2f}, kurtosis {kurtosis:.1f} of its returns"
