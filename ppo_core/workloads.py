"""Workloads that `memory.measure_isolated` runs in a fresh interpreter, one per measurement.

They must be importable module-level functions with JSON-able arguments and results; the
heavy imports sit at module level so the child's baseline RSS already includes them.
"""

from __future__ import annotations

from typing import Any

import torch

from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.data import load_market_data, prepare
from ppo_core.env import TradingEnv
from ppo_core.trainer import PPOTrainer

__all__ = ["training_setup"]


def training_setup(
    hidden_dims: list[int],
    n_envs: int,
    n_steps: int,
    minibatch: int,
    iterations: int,
    device: str,
    data: str = "synthetic",
    bars: int | None = None,
    n_epochs: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the whole PPO training setup (data, env, policy, Adam, rollout buffer) and run
    `iterations` full iterations, so every buffer of a real run reaches its peak.

    Returns what was built: params, feature rows on the device and rollout buffer bytes.
    """
    prepared = prepare(load_market_data(data, bars=bars, seed=seed))
    network = NetworkConfig(
        n_features=prepared.n_features, lookback=prepared.lookback, hidden_dims=tuple(hidden_dims)
    )
    config = PPOConfig(
        total_timesteps=iterations * n_envs * n_steps,
        n_envs=n_envs,
        n_steps=n_steps,
        n_epochs=n_epochs,
        minibatch_size=minibatch,
        device=device,
        seed=seed,
        network=network,
    )
    env = TradingEnv(prepared, "train", n_envs=n_envs, config=config.env, device=device, seed=seed)
    trainer = PPOTrainer(env, config)
    for _ in range(iterations):
        trainer.train_iteration()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return {
        "params": sum(p.numel() for p in trainer.policy.parameters()),
        "n_bars": int(env.features.shape[0]),
        "rollout_buffer_bytes": int(trainer.rollout_buffer_bytes),
        "iterations": iterations,
    }
