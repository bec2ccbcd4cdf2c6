"""The tiny CPU PPOConfig the fast trainer tests share (test_trainer.py, test_precision.py).

tests/trainer_golden.py keeps its own frozen copy on purpose: its golden figures must not move
when this one does.
"""

from __future__ import annotations

from typing import Any

from ppo_core.config import EnvConfig, NetworkConfig, PPOConfig

__all__ = ["LOOKBACK", "tiny_cpu_config"]

LOOKBACK = 8
"""Bars in the tiny config's market window: small windows keep these tests fast."""

_BATCH = 4 * 16
"""Env steps per iteration of the tiny config: 4 envs x 16 steps."""


def tiny_cpu_config(iterations: int = 4, **changes: Any) -> PPOConfig:
    """A (32, 16) network on 4 envs x 16 steps, 2 epochs of 32-sample minibatches and 24-bar
    episodes on the CPU, for `iterations` updates of the tiny batch; `changes` replace fields."""
    base = PPOConfig(
        total_timesteps=iterations * _BATCH,
        n_envs=4,
        n_steps=16,
        n_epochs=2,
        minibatch_size=32,
        device="cpu",
        network=NetworkConfig(lookback=LOOKBACK, hidden_dims=(32, 16)),
        env=EnvConfig(episode_bars=24),
    )
    return base.replace(**changes)
