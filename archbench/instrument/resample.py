"""The one block bootstrap and the one Sharpe ratio, shared by the overfit suite (bench/) and the
reports (archbench.reports.scores), so both give one interval on the same bars. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["annualised_sharpe", "block_length", "circular_block_indices"]


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
    """Circular block bootstrap block length: sqrt(n) (41 bars of a 1,652-bar validation split,
    about the synthetic market's mean regime), so regimes of tens of bars stay whole."""
    return max(1, min(n_bars, round(math.sqrt(n_bars))))


def circular_block_indices(
    n_bars: int, n_boot: int, rng: np.random.Generator, block: int | None = None
) -> np.ndarray:
    """(n_boot, n_bars) bar indices: blocks of `block` bars (default block_length(n)) from
    random starts, wrapping past the end."""
    block = block_length(n_bars) if block is None else max(1, min(block, n_bars))
    n_blocks = math.ceil(n_bars / block)
    starts = rng.integers(0, n_bars, size=(n_boot, n_blocks, 1))
    idx = (starts + np.arange(block)) % n_bars  # (n_boot, n_blocks, block)
    return idx.reshape(n_boot, -1)[:, :n_bars]
