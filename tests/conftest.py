"""Shared test fixtures: a small network config and a factory for real saved checkpoints.

Tests marked `gpu` are skipped where CUDA is unavailable (torch is imported only if one exists).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppo_core.config import NetworkConfig


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def small_config() -> NetworkConfig:
    """A network small enough to build, train and save in milliseconds (obs_dim 32)."""
    return NetworkConfig(n_features=4, lookback=8, hidden_dims=(32, 16))


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """make_checkpoint(config, name="model.pt", optimizer=False) -> path of a real save.

    `config` is a NetworkConfig or a PPOConfig (saved whole). With optimizer=True the Adam
    state holds moments after one real gradient step.
    """
    import torch

    from ppo_core import checkpoint
    from ppo_core.config import PPOConfig
    from ppo_core.network import ActorCritic

    def make(config, name="model.pt", optimizer=False, obs_norm=None):
        network = config.network if isinstance(config, PPOConfig) else config
        torch.manual_seed(0)
        policy = ActorCritic(network)
        adam = None
        if optimizer:
            adam = torch.optim.Adam(policy.parameters(), lr=1e-3)
            logits, value = policy(torch.randn(4, network.obs_dim))
            (logits.square().mean() + value.square().mean()).backward()
            adam.step()
        return checkpoint.save(tmp_path / name, config, policy, adam, obs_norm=obs_norm)

    return make
