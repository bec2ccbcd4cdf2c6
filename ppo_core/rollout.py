"""The rollout buffer: n_steps x n_envs transitions on the device, their advantages, minibatches.

Storage beside the algorithm (as SB3's `RolloutBuffer`): the trainer fills it step by step, asks
it for GAE advantages and returns, and draws shuffled minibatches from it each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from ppo_core.env import TradingEnv
from ppo_core.ppo import compute_gae

__all__ = ["Minibatch", "RolloutBuffer"]


class Minibatch(NamedTuple):
    """One shuffled slice of the rollout, in the order `ppo_loss` reads it."""

    obs: torch.Tensor
    """Observations (mb, obs_dim), rebuilt from bar indices when the buffer stores those."""
    actions: torch.Tensor
    """Actions taken (mb,), long."""
    log_probs: torch.Tensor
    """Log-probabilities of those actions under the rollout's policy (mb,)."""
    advantages: torch.Tensor
    """GAE advantages (mb,)."""
    values: torch.Tensor
    """Values the rollout's critic predicted (mb,)."""
    returns: torch.Tensor
    """GAE returns, the value head's targets (mb,)."""


class RolloutBuffer:
    """n_steps x n_envs transitions; with obs_buffer 'indices' it keeps each observation as its
    bar index plus the account state, and rebuilds the window from the env when sampled."""

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_dim: int,
        account_dim: int,
        obs_buffer: str,
        device: torch.device,
    ) -> None:
        shape = (n_steps, n_envs)
        self.indices = obs_buffer == "indices"
        if self.indices:
            # An observation is a window over env.features plus the account state, so the bar
            # index and the account reproduce it exactly.
            self.obs = torch.zeros(shape, dtype=torch.long, device=device)  # (n_steps, n_envs)
        else:
            self.obs = torch.zeros((*shape, obs_dim), device=device)  # (n_steps, n_envs, obs)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.log_probs = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, device=device)
        self.account = torch.zeros(  # (n_steps, n_envs, account_dim); width 0 unless indices
            (*shape, account_dim if self.indices else 0), device=device
        )

    @property
    def nbytes(self) -> int:
        """Bytes the buffer holds (obs or indices, actions, log-probs, values, ...)."""
        tensors = (
            self.obs,
            self.actions,
            self.log_probs,
            self.values,
            self.rewards,
            self.dones,
            self.account,
        )
        return sum(t.numel() * t.element_size() for t in tensors)

    def add_observation(self, step: int, env: TradingEnv, obs: torch.Tensor) -> None:
        """Store step's observation `obs` (n_envs, obs_dim), or the env's bar index and account."""
        if not self.indices:
            self.obs[step] = obs
            return
        self.obs[step] = env.bar_index
        if env.account_state:
            self.account[step] = env.current_account()

    def add(
        self,
        step: int,
        action: torch.Tensor,
        log_prob: torch.Tensor,
        value: torch.Tensor,
        reward: torch.Tensor,
        done: torch.Tensor,
    ) -> None:
        """Store what step's action led to; each tensor is (n_envs,)."""
        self.actions[step] = action
        self.log_probs[step] = log_prob
        self.values[step] = value
        self.rewards[step] = reward
        self.dones[step] = done.float()

    def advantages_and_returns(
        self, next_value: torch.Tensor, gamma: float, gae_lambda: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over the stored rollout, bootstrapped with next_value (n_envs,) -> advantages and
        returns, each (n_steps, n_envs)."""
        return compute_gae(self.rewards, self.values, self.dones, next_value, gamma, gae_lambda)

    def minibatches(
        self,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        minibatch_size: int,
        generator: torch.Generator,
        observe: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    ) -> Iterator[Minibatch]:
        """One epoch: the rollout shuffled with `generator`, in minibatches of minibatch_size.
        `observe(bar_index, account)` rebuilds observations when the buffer stores indices."""
        batch = self.actions.numel()
        b_obs = self.obs.reshape(batch, *self.obs.shape[2:])
        b_account = self.account.reshape(batch, -1)
        b_actions = self.actions.reshape(batch)
        b_log_probs = self.log_probs.reshape(batch)
        b_values = self.values.reshape(batch)
        b_advantages = advantages.reshape(batch)
        b_returns = returns.reshape(batch)
        permutation = torch.randperm(batch, device=self.obs.device, generator=generator)
        for start in range(0, batch, minibatch_size):
            mb_inds = permutation[start : start + minibatch_size]
            # Built in the yield, held by no name here: the caller drops each minibatch before
            # the next gather, so two never share memory (sizing's peak model).
            yield Minibatch(
                self._observations(b_obs[mb_inds], b_account[mb_inds], observe),
                b_actions[mb_inds],
                b_log_probs[mb_inds],
                b_advantages[mb_inds],
                b_values[mb_inds],
                b_returns[mb_inds],
            )

    def _observations(
        self,
        stored: torch.Tensor,
        account: torch.Tensor,
        observe: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    ) -> torch.Tensor:
        """Stored entries (B,) and their account states (B, account_dim) -> obs (B, obs_dim)."""
        if self.indices:
            return observe(stored, account if account.shape[-1] else None)
        return stored
