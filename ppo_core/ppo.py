"""The PPO math as pure functions: GAE, the clipped surrogate loss, explained variance.

Names follow the paper and CleanRL (gae_lambda, clip_coef); tests check each against a plain loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LossTerms", "compute_gae", "explained_variance", "ppo_loss"]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns.

    rewards, values, dones: (n_steps, n_envs); dones[t] = 1 where the transition at t ended an
    episode (time-limit truncations are bootstrapped into rewards[t] by the caller);
    next_value: (n_envs,) the value of the observation after the last step.
    """
    n_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(n_steps)):
        next_values = next_value if t == n_steps - 1 else values[t + 1]
        next_nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
        last_gae = delta + gamma * gae_lambda * next_nonterminal * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


@dataclass(frozen=True)
class LossTerms:
    """The scalar tensors of one PPO minibatch loss; only `loss` carries gradients."""

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clipfrac: torch.Tensor


def ppo_loss(
    new_log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_vloss: bool = False,
    norm_adv: bool = True,
) -> LossTerms:
    """Clipped surrogate + value loss - entropy bonus for one minibatch; every input (batch,)."""
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    with torch.no_grad():
        # Schulman's low-variance KL estimator, as in CleanRL.
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).to(ratio.dtype).mean()
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    policy_loss = torch.max(pg_loss1, pg_loss2).mean()
    if clip_vloss:
        v_loss_unclipped = (new_value - returns) ** 2
        v_clipped = old_value + torch.clamp(new_value - old_value, -clip_coef, clip_coef)
        v_loss_clipped = (v_clipped - returns) ** 2
        value_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        value_loss = 0.5 * ((new_value - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    return LossTerms(loss, policy_loss, value_loss, entropy_mean, approx_kl, clipfrac)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target); NaN when the target has no variance."""
    var_target = target.var()
    if var_target.item() == 0.0:
        return math.nan
    return float(1.0 - (target - predicted).var() / var_target)
