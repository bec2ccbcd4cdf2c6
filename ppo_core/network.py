"""The actor-critic MLP every benchmark sizes: built from a NetworkConfig, nothing else.

Shared trunk (one MLP feeds both heads) or separate trunks (as SB3 and CleanRL build them);
64-wide actor and critic heads; orthogonal init as in the PPO implementation-details study.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

from ppo_core.config import NetworkConfig

__all__ = ["ActorCritic", "sample_actions", "score_actions"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _linear(in_dim: int, out_dim: int, gain: float, pad: int = 0) -> nn.Linear:
    """Linear(in_dim + pad, out_dim), orthogonal over the first in_dim inputs; the weights of the
    last `pad` inputs are 0. Those inputs are always 0 (the observation's zero padding), so the
    weights get zero gradients and zero Adam steps and stay 0: the layer computes exactly what
    Linear(in_dim, out_dim) would, on aligned rows."""
    layer = nn.Linear(in_dim + pad, out_dim)
    with torch.no_grad():
        layer.weight[:, in_dim:] = 0.0
    nn.init.orthogonal_(layer.weight[:, :in_dim], gain)
    nn.init.zeros_(layer.bias)
    return layer


def _trunk(config: NetworkConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    if config.late_account_dim:
        # Late fusion: the trunk reads the market window alone (a view of each padded row).
        in_dim, pad = config.market_dim, 0
    else:
        in_dim, pad = config.obs_dim - config.pad_dim, config.pad_dim
    widths = [in_dim, *config.hidden_dims]
    for i, (d_in, out_dim) in enumerate(itertools.pairwise(widths)):
        layers.append(_linear(d_in, out_dim, math.sqrt(2), pad=pad if i == 0 else 0))
        if config.layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        layers.append(_ACTIVATIONS[config.activation]())
    return nn.Sequential(*layers)


def _head(config: NetworkConfig, out_dim: int, out_gain: float) -> nn.Sequential:
    return nn.Sequential(
        _linear(config.hidden_dims[-1] + config.late_account_dim, config.head_dim, math.sqrt(2)),
        _ACTIVATIONS[config.activation](),
        _linear(config.head_dim, out_dim, out_gain),
    )


class ActorCritic(nn.Module):
    """Policy logits and state value from a flattened window of market features.

    With late account fusion the trunk reads obs[:, :market_dim] and each head reads the trunk's
    output with the account state (obs[:, market_dim:market_dim + account_dim]) beside it."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.actor_trunk = _trunk(config)
        # A shared trunk is the same module under both names, so parameters() counts it once.
        self.critic_trunk = self.actor_trunk if config.trunk == "shared" else _trunk(config)
        self.actor_head = _head(config, config.n_actions, out_gain=0.01)
        self.critic_head = _head(config, 1, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (batch, obs_dim) -> logits (batch, n_actions), value (batch,)."""
        trunk_input, account = self.split_obs(obs)
        actor_features = self.actor_trunk(trunk_input)
        if self.config.trunk == "shared":
            critic_features = actor_features
        else:
            critic_features = self.critic_trunk(trunk_input)
        logits = self.actor_head(self.head_input(actor_features, account))
        return logits, self.critic_head(self.head_input(critic_features, account)).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (batch, obs_dim) -> value (batch,)."""
        trunk_input, account = self.split_obs(obs)
        features = self.critic_trunk(trunk_input)
        return self.critic_head(self.head_input(features, account)).squeeze(-1)

    def split_obs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """obs (batch, obs_dim) -> the trunk's input, and the account state (batch,
        account_dim) the heads read (None unless late fusion)."""
        late = self.config.late_account_dim
        if not late:
            return obs, None
        market = self.config.market_dim
        return obs[..., :market], obs[..., market : market + late]

    @staticmethod
    def head_input(features: torch.Tensor, account: torch.Tensor | None) -> torch.Tensor:
        """Trunk output (batch, hidden) [+ account (batch, account_dim)] -> a head's input."""
        if account is None:
            return features
        return torch.cat([features, account.to(features.dtype)], dim=-1)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or take the argmax) action -> action (batch,), log_prob (batch,), value."""
        logits, value = self(obs)
        action, log_prob = sample_actions(logits, deterministic, generator)
        return action, log_prob, value.float()

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob and entropy of given actions, and the value: each (batch,)."""
        logits, value = self(obs)
        log_prob, entropy = score_actions(logits, actions)
        return log_prob, entropy, value.float()


def sample_actions(
    logits: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (batch, n_actions) -> sampled (or argmax) action (batch,), its log-prob (batch,)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if deterministic:
        action = log_probs.argmax(dim=-1)
    else:
        action = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
    return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def score_actions(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (batch, n_actions), actions (batch,) -> log-prob (batch,), entropy (batch,)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy
