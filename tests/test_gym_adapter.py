"""The gymnasium adapters pose exactly TradingEnv's task: gymnasium's own checker passes, and
single and vector steps agree with the native environment step for step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium", reason="gymnasium is in the dev and peers extras")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from ppo_core.config import EnvConfig, NetworkConfig  # noqa: E402
from ppo_core.data import prepare  # noqa: E402
from ppo_core.env import TradingEnv  # noqa: E402
from ppo_core.gym_adapter import TradingGymEnv, TradingVectorEnv  # noqa: E402
from ppo_core.synthetic import make_synthetic  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return prepare(make_synthetic(1000, seed=2), lookback=10)


def test_gymnasium_env_checker_passes_without_warnings(data):
    env = TradingGymEnv(data, "train", EnvConfig(episode_bars=5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def test_single_env_truncates_with_the_next_observation(data):
    env = TradingGymEnv(data, "validation", EnvConfig(episode_bars=3), seed=0)
    obs, info = env.reset(seed=4)
    assert obs.shape == (536,)  # the 530-wide window, the account state, 3 zeros
    assert env.observation_space.shape == (536,)
    assert not obs[533:].any()
    assert obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    first_bar = info["bar_index"]
    for step in range(3):
        obs, reward, terminated, truncated, details = env.step(2)
        assert isinstance(reward, float)
        assert terminated is False
        assert truncated == (step == 2)
        assert details["position"] == 1
        assert details["trades"] == 1
    # The observation the episode would have continued with: long for 3 bars since first_bar.
    # The bounded inputs: the z-score of 3 bars' return over 4 x the RMS of the 50 bars before.
    now = first_bar + 3
    volatility = float(np.sqrt(np.mean(data.log_returns[now - 50 : now] ** 2)))
    z = float(data.log_returns[first_bar:now].sum()) / (4.0 * volatility * np.sqrt(3))
    account = torch.tensor([[1.0, np.tanh(z), np.log1p(3) / np.log1p(256)]])
    expected = env.env.observe(torch.tensor([first_bar + 3]), account)[0].numpy()
    np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)
    total = float(data.log_returns[first_bar : first_bar + 3].sum()) - 30e-4  # one 30 bp entry
    assert details["equity"] == pytest.approx(total)


def test_vector_env_matches_the_native_env(data):
    config = EnvConfig(episode_bars=4, cost_bps=2.0)
    vector = TradingVectorEnv(data, "train", num_envs=6, config=config, seed=1)
    native = TradingEnv(data, "train", n_envs=6, config=config, seed=1)
    obs, _info = vector.reset()
    assert vector.observation_space.contains(obs)
    assert np.array_equal(obs, native.reset().numpy())
    rng = np.random.default_rng(0)
    saw_final = False
    for _ in range(9):
        actions = rng.integers(0, 3, size=6)
        assert vector.action_space.contains(actions)
        obs, reward, terminated, truncated, infos = vector.step(actions)
        n_obs, n_reward, n_done, n_info = native.step(torch.as_tensor(actions))
        assert np.array_equal(obs, n_obs.numpy())
        assert reward == pytest.approx(n_reward.numpy().astype(np.float64))
        assert not terminated.any()
        assert np.array_equal(truncated, n_done.numpy())
        assert np.array_equal(infos["equity"], n_info["equity"].numpy())
        if truncated.any():
            saw_final = True
            assert np.array_equal(infos["_final_obs"], truncated)
            finals = native.observe(n_info["final_bar_index"], n_info["final_account"]).numpy()
            for i in np.flatnonzero(truncated):
                assert np.array_equal(infos["final_obs"][i], finals[i])
            assert all(infos["final_obs"][i] is None for i in np.flatnonzero(~truncated))
    assert saw_final


def test_adapters_follow_the_networks_observation_layout(data):
    """An unpadded network (input_multiple 1, as checkpoints made before the padding) gets
    533-wide observations from both adapters, and the spaces bound the account state at its
    gain: every observation lies inside them."""
    network = NetworkConfig(lookback=10, input_multiple=1)
    single = TradingGymEnv(data, "train", network=network)
    vector = TradingVectorEnv(data, "train", num_envs=2, network=network)
    assert single.observation_space.shape == vector.single_observation_space.shape == (533,)
    obs, _info = single.reset(seed=0)
    assert obs.shape == (533,)
    assert vector.reset(seed=0)[0].shape == (2, 533)
    for _ in range(20):
        obs, *_rest = single.step(2)
        assert single.observation_space.contains(obs)
    assert obs[530] == np.float32(network.account_gain)  # long, at the gain
    assert single.observation_space.high[530] == 10 * np.float32(network.account_gain)
