"""Simple rules computed beside every result on a synthetic market: the best one-input one-bar
rule, a trend rule and a linear policy on the window, each fitted on the training split only
and traded with the same cost-aware hysteresis as the causal ceiling.
"""

from __future__ import annotations

import numpy as np

from ppo_core.ceiling import Hysteresis, Reference, causal_ceiling, fit_hysteresis, oracle
from ppo_core.data import PreparedData
from ppo_core.env import evaluate_positions

__all__ = ["TREND_LOOKBACKS", "references", "window_blocks"]

TREND_LOOKBACKS = (5, 10, 20, 50, 100, 200)
"""Momentum horizons (bars) the trend rule chooses from on the training split."""
_RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Ridge penalties tried, as multiples of the mean input variance per sample."""


def window_blocks(
    data: PreparedData, bars: np.ndarray, block: int, columns: list[int] | None = None
) -> np.ndarray:
    """The normalised observation window of each decision bar, averaged over runs of `block`
    lags: (len(bars), ceil(lookback / block) * n_features) float64, newest lags first;
    `columns` keeps only those features (n_features = len(columns)).

    A fixed linear map of the window: a linear model on it is a linear model on the window
    whose weights are constant within a block (the planted patterns are smooth in the lag)."""
    features = data.features if columns is None else data.features[:, columns]
    features = features.astype(np.float64)
    cumulative = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features, axis=0)])
    bars = np.asarray(bars)
    columns = []
    for newest in range(0, data.lookback, block):
        oldest = min(newest + block, data.lookback) - 1
        total = cumulative[bars - newest + 1] - cumulative[bars - oldest]
        columns.append(total / (oldest - newest + 1))
    return np.hstack(columns)


def _split_bars(data: PreparedData, split: str) -> np.ndarray:
    return np.arange(*data.splits.range(split))


def _score_rule(
    data: PreparedData,
    name: str,
    how: str,
    rule: Hysteresis,
    score: np.ndarray,
    split: str,
    cost_bps: float,
) -> Reference:
    """Trade `score` (the split's bars) with `rule` and judge it as a trained policy is judged."""
    positions = rule.positions(score)
    return Reference(name, how, positions, evaluate_positions(positions, data, split, cost_bps))


def one_bar_rule(data: PreparedData, cost_bps: float, split: str = "validation") -> Reference:
    """The best rule that reads one normalised feature at the decision bar: every feature,
    both signs and the threshold grid searched on the training split."""
    train, bars = _split_bars(data, "train"), _split_bars(data, split)
    best = None
    for j, name in enumerate(data.feature_names):
        rule, sharpe = fit_hysteresis(
            data.features[train, j], data.log_returns[train], cost_bps, signs=(1.0, -1.0)
        )
        if best is None or sharpe > best[2]:
            best = (j, rule, sharpe, name)
    j, rule, _, name = best
    how = f"{'+' if rule.sign > 0 else '-'}{name} at the bar, enter {rule.enter:.3g} leave "
    how += f"{rule.leave:.3g} (z-score); feature and thresholds fitted on train"
    return _score_rule(data, "one_bar_rule", how, rule, data.features[bars, j], split, cost_bps)


def _momentum(data: PreparedData, bars: np.ndarray, horizon: int) -> np.ndarray:
    log_close = np.log(data.market.ohlcv[:, 3])
    return log_close[bars] - log_close[np.maximum(bars - horizon, 0)]


def trend_rule(data: PreparedData, cost_bps: float, split: str = "validation") -> Reference:
    """Follow the sign of the last N bars' return, with a holding band; N and the band fitted
    on the training split (a private trend rule; baselines.py has the trader's own)."""
    train, bars = _split_bars(data, "train"), _split_bars(data, split)
    best = None
    for horizon in TREND_LOOKBACKS:
        rule, sharpe = fit_hysteresis(
            _momentum(data, train, horizon), data.log_returns[train], cost_bps
        )
        if best is None or sharpe > best[2]:
            best = (horizon, rule, sharpe)
    horizon, rule, _ = best
    how = f"sign of the {horizon}-bar return, enter {rule.enter:.3g} leave {rule.leave:.3g}"
    score = _momentum(data, bars, horizon)
    return _score_rule(data, "trend_rule", how + "; fitted on train", rule, score, split, cost_bps)


class _Ridge:
    """Ridge regression of y on x with the Gram matrix computed once for every penalty."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mean_x, self.mean_y = x.mean(axis=0), y.mean()
        xc = x - self.mean_x
        self.gram = xc.T @ xc  # (d, d)
        self.moment = xc.T @ (y - self.mean_y)  # (d,)

    def predictor(self, penalty: float) -> tuple[np.ndarray, float]:
        """Weights and intercept with `penalty` x n x the mean input variance."""
        ridge = penalty * np.trace(self.gram) / len(self.gram)
        weights = np.linalg.solve(self.gram + ridge * np.eye(len(self.gram)), self.moment)
        return weights, float(self.mean_y - self.mean_x @ weights)


def _choose_penalty(x: np.ndarray, y: np.ndarray, embargo: int) -> float:
    """The penalty whose fit on the first 75% of train best predicts the last 25% (R^2)."""
    cut = int(len(y) * 0.75)
    held = slice(min(cut + embargo, len(y) - 2), len(y))
    fit = _Ridge(x[:cut], y[:cut])
    scores = []
    for penalty in _RIDGE_PENALTIES:
        weights, intercept = fit.predictor(penalty)
        residual = y[held] - x[held] @ weights - intercept
        scores.append(1 - residual.var() / y[held].var())
    return _RIDGE_PENALTIES[int(np.argmax(scores))]


def linear_window(
    data: PreparedData, cost_bps: float, split: str = "validation", block: int = 5
) -> Reference:
    """Ridge regression of the next return on the normalised window (in `block`-lag means),
    penalty chosen inside train, then traded with the hysteresis fitted on train."""
    train, bars = _split_bars(data, "train"), _split_bars(data, split)
    x, y = window_blocks(data, train, block), data.log_returns[train]
    penalty = _choose_penalty(x, y, data.splits.embargo)
    weights, intercept = _Ridge(x, y).predictor(penalty)
    rule, _ = fit_hysteresis(x @ weights + intercept, y, cost_bps)
    score = window_blocks(data, bars, block) @ weights + intercept
    how = f"ridge (penalty {penalty:g}) on {x.shape[1]} window inputs ({block}-lag means), "
    how += f"enter {rule.enter:.3g} leave {rule.leave:.3g}; fitted on train"
    return _score_rule(data, "linear_window", how, rule, score, split, cost_bps)


def references(
    data: PreparedData, cost_bps: float, split: str = "validation"
) -> dict[str, Reference]:
    """The oracle, the causal ceiling and the three simple rules on one split, by name."""
    found = [oracle, causal_ceiling, one_bar_rule, trend_rule, linear_window]
    return {ref.name: ref for ref in (make(data, cost_bps, split) for make in found)}
