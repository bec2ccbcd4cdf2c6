"""Judge a trained policy: its deterministic actions over a whole split, beside the baselines.

Used by `archbench train/evaluate` and the overfitting benchmark, so all report the same figures.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ppo_core.baselines import baseline_notes, trader_baselines
from ppo_core.data import PreparedData
from ppo_core.env import (
    EvalResult,
    TradingEnv,
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

CHUNK_BARS = 1024
"""Bars whose market-window part of the first layer one batched matmul computes."""
_MIN_SPAN = 8
"""Fewest bars one batched decision step guesses the position is held over."""
PROGRESS_AFTER_S = 10.0
"""An evaluation projected to take longer than this shows a progress bar (on a terminal)."""


def greedy_actions(policy: ActorCritic) -> Callable[[torch.Tensor], torch.Tensor]:
    """obs (batch, obs_dim) -> the argmax action (batch,), without gradients."""

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        logits, _value = policy(obs)
        return logits.argmax(dim=-1)

    return act


def greedy_positions(
    policy: ActorCritic, data: PreparedData, split: str, progress: bool | None = None
) -> np.ndarray:
    """The positions (n_bars,) in {-1, 0, 1} the argmax policy takes over every bar of `split`,
    each decision seeing the account state its predecessors left (when the network has one).

    progress: a bar on stderr when the pass is projected to exceed PROGRESS_AFTER_S (None: only
    when stderr is a terminal)."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    try:
        if not policy.config.account_state:
            # No decision depends on the last: the env's loop already runs in batches.
            return policy_positions(
                greedy_actions(policy), data, split, device=device, network=policy.config
            )
        return _positions_with_account(policy, data, split, device, progress)
    finally:
        policy.train(was_training)


@torch.no_grad()
def _positions_with_account(
    policy: ActorCritic,
    data: PreparedData,
    split: str,
    device: torch.device,
    progress: bool | None,
) -> np.ndarray:
    """greedy_positions for a network that sees its account state, which makes each decision
    depend on the last. The window part, nearly all of the work, is computed for CHUNK_BARS bars
    at once: with late fusion the whole trunk; otherwise the first layer, which is linear, so for
    obs = [window; account; pad] W·obs + b = (W_window·window + b) + W_account·account. Only
    the rest depends on the position. Same actions as policy_positions (up to rounding)."""
    env = TradingEnv(data, split, n_envs=1, device=device, network=policy.config)
    start, end = data.splits.range(split)
    # The position held into the next bar and the bar it was entered at, each (1,).
    held = (torch.zeros(1, dtype=torch.long, device=device), torch.tensor([start], device=device))
    actions: list[torch.Tensor] = []
    with _Progress(f"evaluating the {split} split", end - start, progress) as bar:
        for chunk_start in range(start, end, CHUNK_BARS):
            bars = torch.arange(chunk_start, min(chunk_start + CHUNK_BARS, end), device=device)
            window_part = _window_part(policy, env.observe(bars))  # (chunk, h)
            held = _chunk_actions(policy, env, bars, window_part, held, actions)
            bar.advance(len(bars))
    return torch.cat(actions).cpu().numpy() - 1


def _chunk_actions(
    policy: ActorCritic,
    env: TradingEnv,
    bars: torch.Tensor,
    window_part: torch.Tensor,
    held: tuple[torch.Tensor, torch.Tensor],
    actions: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append the actions over `bars` (chunk,) to `actions`; return the position and entry bar
    held after them. A policy holds its position for many bars, so each step guesses that it
    keeps it over the next `span` bars (the account state of each is then known) and decides them
    in one batch; the decisions up to the first change are the ones the bar-by-bar loop makes."""
    position, entry = held
    i, span = 0, _MIN_SPAN
    while i < len(bars):
        t = bars[i : i + span]  # (k,)
        k = len(t)
        account = env.account(t, position.expand(k), entry.expand(k))  # (k, 3)
        chosen = _logits(policy, window_part[i : i + k], account).argmax(dim=-1)  # (k,)
        moved = torch.nonzero(chosen - 1 != position).flatten()
        accepted = int(moved[0]) + 1 if len(moved) else k
        actions.append(chosen[:accepted])
        if len(moved):
            position, entry = chosen[accepted - 1 : accepted] - 1, t[accepted - 1 : accepted]
        i += accepted
        # Guess twice the last holding period: a flipping policy wastes little, a holder batches.
        span = min(max(2 * accepted, _MIN_SPAN), CHUNK_BARS)
    return position, entry


def _window_part(policy: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """obs (B, obs_dim) with a zero account state -> what of the actor does not depend on the
    account: the trunk's output (late fusion) or W_window·window + b, the first layer's."""
    trunk_input, _account = policy.split_obs(obs)
    if policy.config.late_account_dim:
        return policy.actor_trunk(trunk_input)  # (B, hidden_dims[-1])
    return policy.actor_trunk[0](trunk_input)  # (B, hidden_dims[0])


def _logits(policy: ActorCritic, window_part: torch.Tensor, account: torch.Tensor) -> torch.Tensor:
    """_window_part's (k, h) and the unscaled account state (k, 3) -> the actor's logits."""
    config = policy.config
    if config.late_account_dim:
        return policy.actor_head(policy.head_input(window_part, account))
    w_account = policy.actor_trunk[0].weight[:, config.market_dim :][:, : config.account_dim]
    hidden = window_part + (account * config.account_gain) @ w_account.T  # (k, h0)
    return policy.actor_head(policy.actor_trunk[1:](hidden))


class _Progress:
    """A rich progress bar on stderr, started once the pass is projected to run longer than
    PROGRESS_AFTER_S (a short one stays silent); never started when disabled."""

    def __init__(self, label: str, total: int, enabled: bool | None) -> None:
        self._label, self._total = label, total
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._done = 0
        self._start = time.perf_counter()
        self._bar = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done)
            return
        elapsed = time.perf_counter() - self._start
        if self._enabled and elapsed * self._total / self._done > PROGRESS_AFTER_S:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn(self._label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("bars"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task(self._label, total=self._total, completed=self._done)
            self._bar.start()


def evaluate_with_baselines(
    policy: ActorCritic,
    data: PreparedData,
    split: str,
    cost_bps: float,
    progress: bool | None = None,
) -> dict[str, EvalResult]:
    """{"policy", "flat", "buy_and_hold", "trend", "random_matched", "oracle"?}: the policy and
    ppo_core.baselines' references, the random one at the policy's own turnover."""
    positions = greedy_positions(policy, data, split, progress)
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
