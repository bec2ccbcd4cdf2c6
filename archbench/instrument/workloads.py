"""Workloads that `memory.measure_isolated` runs in a fresh interpreter, one per measurement.

They must be importable module-level functions with JSON-able arguments and results; the
heavy imports sit at module level so the child's baseline RSS already includes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from archbench.instrument.memory import PeakMemory, reset_peak_rss
from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.data import prepare
from ppo_core.env import TradingEnv
from ppo_core.loaders import load_market_data
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
    """Prepare the market data, then build the PPO training setup (env, policy, Adam, rollout
    buffer) and run `iterations` full iterations, so every buffer of a real run reaches its peak.

    Returns what was built (params, feature rows on the device, rollout buffer bytes) and
    "train_rss_delta_bytes": the host RSS peak of the build-and-train region above the RSS it
    started at, plus the feature array when the env reads it in place (a CPU env shares it, so
    it was resident before the region), so data preparation's temporaries (pandas, raw bars)
    are not in it; None with "train_rss_reason" where the peak could not be measured.
    """
    prepared = prepare(load_market_data(data, bars=bars, seed=seed))
    # Restart the kernel's high-water mark so the region's peak is its own, not the data's.
    reset_peak_rss()
    with PeakMemory("cpu") as probe:  # host side only; the caller measures the device
        trainer, env = _build_and_train(
            prepared, hidden_dims, n_envs, n_steps, minibatch, iterations, device, n_epochs, seed
        )
    report = probe.report
    region = report.delta_bytes("rss")
    features = env.features
    shared = features.device.type == "cpu" and np.shares_memory(features.numpy(), prepared.features)
    data_before = int(prepared.features.nbytes) if shared else 0
    return {
        "params": sum(p.numel() for p in trainer.policy.parameters()),
        "n_bars": int(features.shape[0]),
        "rollout_buffer_bytes": int(trainer.rollout_buffer_bytes),
        "iterations": iterations,
        "train_rss_delta_bytes": None if region is None else region + data_before,
        "train_rss_data_bytes": data_before,
        "train_rss_method": report.rss_method,
        "train_rss_reason": report.reasons.get("rss"),
    }


def _build_and_train(
    prepared: Any,
    hidden_dims: list[int],
    n_envs: int,
    n_steps: int,
    minibatch: int,
    iterations: int,
    device: str,
    n_epochs: int,
    seed: int,
) -> tuple[PPOTrainer, TradingEnv]:
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
    env = TradingEnv(
        prepared,
        "train",
        n_envs=n_envs,
        config=config.env,
        device=device,
        seed=seed,
        network=network,
    )
    trainer = PPOTrainer(env, config)
    for _ in range(iterations):
        trainer.train_iteration()  # ends synchronised with the device
    return trainer, env
