"""The two references a trained policy is judged against on a synthetic market: the oracle
that knows the planted edge of every bar of a split, and the causal ceiling that knows it only
up to now; plus the cost-aware hysteresis rule that turns any score into positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ppo_core.data import PreparedData
from ppo_core.env import EvalResult, evaluate_positions
from ppo_core.errors import ConfigError, DataError
from ppo_core.synthetic import oracle_positions

__all__ = [
    "Hysteresis",
    "Reference",
    "causal_ceiling",
    "expected_pnl",
    "fit_hysteresis",
    "oracle",
]

_ENTER_QUANTILES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
"""Entry thresholds tried, as quantiles of |score| on the training split."""
_LEAVE_FRACTIONS = (0.0, 0.5, 1.0)
"""Exit thresholds tried, as fractions of the entry threshold (1.0: no holding band)."""


@dataclass(frozen=True)
class Hysteresis:
    """Trade the sign of a score: enter beyond `enter`, go flat inside `leave`, else hold."""

    enter: float
    """Take sign(score) when |score| > enter."""
    leave: float
    """Go flat when |score| < leave (<= enter); between the two keep the last position."""
    sign: float = 1.0
    """+1 to follow the score, -1 to fade it."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.enter) and self.enter >= 0):
            raise ConfigError(f"Hysteresis.enter must be a finite number >= 0, got {self.enter!r}")
        if not (math.isfinite(self.leave) and 0 <= self.leave <= self.enter):
            raise ConfigError(
                f"Hysteresis.leave must lie in 0..enter ({self.enter!r}), got {self.leave!r}"
            )
        if self.sign not in (1.0, -1.0):
            raise ConfigError(f"Hysteresis.sign must be +1 or -1, got {self.sign!r}")

    def positions(self, score: np.ndarray) -> np.ndarray:
        """score (n,) -> positions (n,) in {-1, 0, 1}, starting flat (a causal state machine)."""
        score = self.sign * np.asarray(score, dtype=np.float64)
        target = np.where(np.abs(score) > self.enter, np.sign(score), np.nan)
        target[np.abs(score) < self.leave] = 0.0
        # Forward-fill the last decided position through the holding band.
        index = np.where(np.isnan(target), -1, np.arange(len(score)))
        index = np.maximum.accumulate(index) if len(index) else index
        return np.where(index >= 0, target[np.maximum(index, 0)], 0.0)


@dataclass(frozen=True)
class Reference:
    """A reference policy's positions on one split, how it was chosen, and how it did."""

    name: str
    """'oracle', 'causal_ceiling', 'one_bar_rule', 'trend_rule' or 'linear_window'."""
    how: str
    """What it knows and what was fitted (on the training split only)."""
    positions: np.ndarray
    """(n_bars,) in {-1, 0, 1} over the split."""
    result: EvalResult
    """Net-of-cost performance on the split (the same figures a trained policy gets)."""


def _net_sharpe(positions: np.ndarray, returns: np.ndarray, cost: float) -> float:
    """Per-bar net Sharpe (not annualised): enough to rank rules on one split."""
    net = positions * returns - cost * np.abs(np.diff(positions, prepend=0.0))
    std = net.std()
    return float(net.mean() / std) if std > 0 else -math.inf


def fit_hysteresis(
    score: np.ndarray, returns: np.ndarray, cost_bps: float, signs: tuple[float, ...] = (1.0,)
) -> tuple[Hysteresis, float]:
    """The entry and exit thresholds (and sign) with the best net Sharpe on these bars, from a
    small grid of |score| quantiles; returns (rule, its per-bar Sharpe there)."""
    score = np.asarray(score, dtype=np.float64)
    if len(score) != len(returns) or len(score) < 2:
        raise DataError(f"fit_hysteresis needs matching scores and returns, got {len(score)}")
    levels = np.quantile(np.abs(score), _ENTER_QUANTILES)
    best, best_sharpe = Hysteresis(0.0, 0.0), -math.inf
    for sign in signs:
        for enter in levels:
            for fraction in _LEAVE_FRACTIONS:
                rule = Hysteresis(float(enter), float(enter * fraction), sign)
                sharpe = _net_sharpe(rule.positions(score), returns, cost_bps * 1e-4)
                if sharpe > best_sharpe:
                    best, best_sharpe = rule, sharpe
    return best, best_sharpe


def expected_pnl(positions: np.ndarray, edge: np.ndarray, cost_bps: float) -> float:
    """sum(p_t mu_t - cost |p_t - p_(t-1)|): what the oracle maximises, from flat."""
    positions = np.asarray(positions, dtype=np.float64)
    change = np.abs(np.diff(positions, prepend=0.0))
    return float(positions @ edge - cost_bps * 1e-4 * change.sum())


def _edge(data: PreparedData) -> np.ndarray:
    if data.market.expected_return is None:
        raise DataError(
            f"{data.market.name}: has no planted edge (real data); the oracle and the causal "
            "ceiling exist for synthetic markets only"
        )
    return data.market.expected_return


def oracle(data: PreparedData, cost_bps: float, split: str = "validation") -> Reference:
    """The upper bound: the cost-aware dynamic programme on the planted edge of every bar of
    the split, future bars included (no causal policy can reach it)."""
    start, end = data.splits.range(split)
    positions = oracle_positions(_edge(data)[start:end], cost_bps).astype(np.float64)
    how = "knows the planted edge of every bar of the split (future included); exact DP"
    return Reference("oracle", how, positions, evaluate_positions(positions, data, split, cost_bps))


def causal_ceiling(data: PreparedData, cost_bps: float, split: str = "validation") -> Reference:
    """The best causal policy under the generative model, as far as a hysteresis rule goes:
    the planted edge mu_t, traded with the cost-aware hysteresis whose thresholds fit the
    training split best. On the capacity market mu_t is E[r_(t+1) | bars 0..t] exactly (its
    hidden state is a function of the observable past); on the old market it is the hidden
    regime at t, so there this is the oracle without foresight, not a causal bound."""
    edge = _edge(data)
    train = slice(*data.splits.train)
    rule, _ = fit_hysteresis(edge[train], data.log_returns[train], cost_bps)
    start, end = data.splits.range(split)
    positions = rule.positions(edge[start:end])
    how = (
        f"knows the planted edge up to t (= E[r(t+1) | bars up to t] on the capacity market); "
        f"hysteresis enter {rule.enter:.3g} leave "
        f"{rule.leave:.3g} (log return per bar), fitted on train"
    )
    result = evaluate_positions(positions, data, split, cost_bps)
    return Reference("causal_ceiling", how, positions, result)
