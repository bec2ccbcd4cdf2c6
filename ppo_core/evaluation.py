"""Judge a trained policy: its deterministic actions over a whole split, beside the baselines.

Used by `archbench train/evaluate` and the overfitting benchmark, so all report the same figures.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ppo_core.data import PreparedData
from ppo_core.env import EvalResult, baselines, evaluate_policy
from ppo_core.network import ActorCritic

__all__ = ["evaluate_with_baselines", "greedy_actions"]


def greedy_actions(policy: ActorCritic) -> Callable[[torch.Tensor], torch.Tensor]:
    """obs (batch, obs_dim) -> the argmax action (batch,), without gradients."""

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        logits, _value = policy(obs)
        return logits.argmax(dim=-1)

    return act


def evaluate_with_baselines(
    policy: ActorCritic, data: PreparedData, split: str, cost_bps: float
) -> dict[str, EvalResult]:
    """{"policy": ..., "flat": ..., "buy_and_hold": ..., "random": ..., "oracle"?: ...}."""
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    try:
        result = evaluate_policy(greedy_actions(policy), data, split, cost_bps, device=device)
    finally:
        policy.train(was_training)
    return {"policy": result, **baselines(data, split, cost_bps)}
