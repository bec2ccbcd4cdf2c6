"""Judge a trained policy: its deterministic actions over a whole split, beside the baselines.

Used by `archbench train/evaluate` and the overfitting benchmark, so all report the same figures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ppo_core.data import PreparedData
from ppo_core.env import (
    EvalResult,
    baselines,
    evaluate_positions,
    policy_positions,
)
from ppo_core.network import ActorCritic

__all__ = ["evaluate_with_baselines", "greedy_actions", "greedy_positions"]


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
    """{"policy": ..., "flat": ..., "buy_and_hold": ..., "random": ..., "oracle"?: ...}."""
    positions = greedy_positions(policy, data, split)
    result = evaluate_positions(positions, data, split, cost_bps)
    return {"policy": result, **baselines(data, split, cost_bps)}
