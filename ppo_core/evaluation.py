"""Judge a trained policy: its deterministic actions over a whole split, beside the baselines.

Used by `archbench train/evaluate` and the overfitting benchmark, so all report the same figures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from ppo_core.data import PreparedData
from ppo_core.env import (
    EvalResult,
    TradingEnv,
    baselines,
    evaluate_positions,
    policy_positions,
)
from ppo_core.network import ActorCritic

__all__ = ["evaluate_with_baselines", "greedy_actions", "greedy_positions"]

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
    depend on the last. The first layer is linear, so for obs = [window; account; pad]
    W·obs + b = (W_window·window + b) + W_account·account: the window part, nearly all of the
    work, is computed for CHUNK_BARS bars at once; only the account part and the small layers
    after the first depend on the position. Same actions as policy_positions (up to rounding)."""
    env = TradingEnv(data, split, n_envs=1, device=device, network=policy.config)
    start, end = data.splits.range(split)
    # The position held into the next bar and the bar it was entered at, each (1,).
    held = (torch.zeros(1, dtype=torch.long, device=device), torch.tensor([start], device=device))
    actions: list[torch.Tensor] = []
    with _Progress(f"evaluating the {split} split", end - start, progress) as bar:
        for chunk_start in range(start, end, CHUNK_BARS):
            bars = torch.arange(chunk_start, min(chunk_start + CHUNK_BARS, end), device=device)
            # With account None the env feeds zeros there (and in the padding): W_window·window + b.
            window_part = policy.actor_trunk[0](env.observe(bars))  # (chunk, h0)
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
    config = policy.config
    position, entry = held
    rest = policy.actor_trunk[1:]
    w_account = policy.actor_trunk[0].weight[:, config.market_dim :][:, : config.account_dim]
    i, span = 0, _MIN_SPAN
    while i < len(bars):
        t = bars[i : i + span]  # (k,)
        k = len(t)
        account = env.account(t, position.expand(k), entry.expand(k)) * config.account_gain
        hidden = window_part[i : i + k] + account @ w_account.T  # (k, h0)
        chosen = policy.actor_head(rest(hidden)).argmax(dim=-1)  # (k,)
        moved = torch.nonzero(chosen - 1 != position).flatten()
        accepted = int(moved[0]) + 1 if len(moved) else k
        actions.append(chosen[:accepted])
        if len(moved):
            position, entry = chosen[accepted - 1 : accepted] - 1, t[accepted - 1 : accepted]
        i += accepted
        # Guess twice the last holding period: a flipping policy wastes little, a holder batches.
        span = min(max(2 * accepted, _MIN_SPAN), CHUNK_BARS)
    return position, entry


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
    """{"policy": ..., "flat": ..., "buy_and_hold": ..., "random": ..., "oracle"?: ...}."""
    positions = greedy_positions(policy, data, split, progress)
    result = evaluate_positions(positions, data, split, cost_bps)
    return {"policy": result, **baselines(data, split, cost_bps)}
