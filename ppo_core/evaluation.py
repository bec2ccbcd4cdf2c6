"""Judge a trained policy: its deterministic actions over a whole split, beside the baselines.

Used by `archbench train/evaluate` and the overfitting benchmark, so all report the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ppo_core.baselines import baseline_notes, trader_baselines
from ppo_core.data import PreparedData
from ppo_core.env import (
    EvalResult,
    evaluate_positions,
    policy_positions,
)
from ppo_core.market import TradingCost
from ppo_core.network import ActorCritic

__all__ = [
    "SHARPE_ERROR_LIMIT",
    "EvalContext",
    "evaluate_with_baselines",
    "greedy_actions",
    "greedy_positions",
    "sharpe_standard_error",
]


def greedy_actions(policy: ActorCritic) -> Callable[[torch.Tensor], torch.Tensor]:
    """obs (batch, obs_dim) -> the argmax action (batch,), without gradients."""

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        logits, _value = policy(obs)
        return logits.argmax(dim=-1)

    return act


def greedy_positions(policy: ActorCritic, data: PreparedData, split: str) -> np.ndarray:
    """The positions (n_bars,) in {-1, 0, 1} the argmax policy takes over every bar of `split`,
    each decision seeing the account state its predecessors left (when the network has one)."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    try:
        return policy_positions(
            greedy_actions(policy),
            data,
            split,
            device=device,
            network=policy.config,
        )
    finally:
        policy.train(was_training)


def evaluate_with_baselines(
    policy: ActorCritic, data: PreparedData, split: str, cost_bps: float
) -> dict[str, EvalResult]:
    """{"policy", "flat", "buy_and_hold", "trend", "random_matched", "oracle"?}: the policy and
    ppo_core.baselines' references, the random one at the policy's own turnover."""
    positions = greedy_positions(policy, data, split)
    result = evaluate_positions(positions, data, split, cost_bps)
    return {"policy": result, **trader_baselines(data, split, cost_bps, result.turnover)}


SHARPE_ERROR_LIMIT = 1.0
"""Above this standard error an annualised Sharpe is mostly noise and gets a caveat."""


def sharpe_standard_error(sharpe: float, n_bars: int, bars_per_year: float) -> float:
    """Standard error of an annualised Sharpe measured on `n_bars` iid bars (inf under two).

    The per-bar estimate s = sharpe / sqrt(bars_per_year) has SE sqrt((1 + s^2 / 2) / n_bars)
    for normal returns (Lo 2002); annualising multiplies by sqrt(bars_per_year), giving
    sqrt((1 + s^2 / 2) / years). Per bar s is small, so this is ~1 / sqrt(years): time, not
    the bar count, pins a Sharpe down (900 hourly FX bars, 7 weeks: ~+-2.6)."""
    if n_bars < 2:
        return math.inf
    per_bar = sharpe / math.sqrt(bars_per_year)
    years = n_bars / bars_per_year
    return math.sqrt((1.0 + per_bar**2 / 2.0) / years)


@dataclass(frozen=True)
class EvalContext:
    """What a split's figures must be read with: their period, annualisation, cost, the
    policy Sharpe's standard error and what each baseline is."""

    split: str
    """'train', 'validation' or 'test'."""
    first_bar: str
    """Time of the split's first decision bar, ISO 8601 (UTC)."""
    last_bar: str
    """Time of its last decision bar."""
    n_bars: int
    """Decision bars in the split."""
    bars_per_year: float
    """The data's observed bars per year (MarketData.periods_per_year): the annualisation."""
    years: float
    """n_bars / bars_per_year: the time the figures cover."""
    cost: TradingCost
    """The cost every figure is net of, where it came from, and any warning about it."""
    sharpe_standard_error: float
    """The policy Sharpe's standard error (`sharpe_standard_error`); inf under two bars
    (None in `to_dict`, which JSON can carry)."""
    caveat: str | None
    """Why the Sharpe figures are mostly noise, when the error exceeds SHARPE_ERROR_LIMIT."""
    baselines: dict[str, str]
    """What each baseline trades (ppo_core.baselines.baseline_notes)."""

    @classmethod
    def of(
        cls, data: PreparedData, split: str, cost: TradingCost, policy: EvalResult
    ) -> EvalContext:
        """The context of `policy`'s figures over `split` of `data` at `cost`."""
        start, end = data.splits.range(split)
        stamps = data.market.timestamps
        bars_per_year = data.market.periods_per_year
        years = (end - start) / bars_per_year
        error = sharpe_standard_error(policy.sharpe, end - start, bars_per_year)
        caveat = None
        if error > SHARPE_ERROR_LIMIT:
            caveat = (
                f"the {split} split has {end - start:,} bars ({years:.2f} years at "
                f"{bars_per_year:,.0f} bars a year): its Sharpe's standard error is "
                f"~+-{error:.1f}, above {SHARPE_ERROR_LIMIT:g}, so these Sharpe ratios are mostly "
                "noise; an error under 1 takes about a year of bars"
            )
        return cls(
            split=split,
            first_bar=str(np.datetime_as_string(stamps[start], unit="s")),
            last_bar=str(np.datetime_as_string(stamps[end - 1], unit="s")),
            n_bars=end - start,
            bars_per_year=bars_per_year,
            years=years,
            cost=cost,
            sharpe_standard_error=error,
            caveat=caveat,
            baselines=baseline_notes(policy.turnover),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not math.isfinite(self.sharpe_standard_error):
            out["sharpe_standard_error"] = None
        return out
