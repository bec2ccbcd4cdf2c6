"""The SB3 side of the peer benchmark builds the same network, settings and task as ppo_core.

Parameter layouts match exactly; SB3's learning-rate schedule equals ppo_core's annealing at
every update; the VecEnv bridge hands SB3 truncations it bootstraps; both runners finish.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3", reason="the peers extra is not installed")

from archbench.instrument import peers
from ppo_core.config import EnvConfig, NetworkConfig, PPOConfig
from ppo_core.data import prepare
from ppo_core.errors import ConfigError
from ppo_core.loaders import load_market_data
from ppo_core.network import ActorCritic


@pytest.fixture(scope="module")
def data():
    return prepare(load_market_data("synthetic", bars=1_500, seed=3), lookback=10)


def _config(data, **changes) -> PPOConfig:
    network = NetworkConfig(
        n_features=data.n_features, lookback=10, hidden_dims=(32, 16), trunk="separate"
    )
    base = PPOConfig(
        total_timesteps=64, n_envs=2, n_steps=16, n_epochs=1, minibatch_size=16,
        network=network, device="cpu", env=EnvConfig(episode_bars=8),
    )  # fmt: skip
    return base.replace(**changes)


def test_sb3_builds_the_same_layers_and_parameter_count(data):
    config = _config(data)
    model = peers.build_sb3_ppo(data, config)
    ours = ActorCritic(config.network)
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    theirs = sorted(tuple(p.shape) for p in model.policy.parameters())
    assert theirs == shapes
    assert sum(p.numel() for p in model.policy.parameters()) == 2 * (
        (536 * 32 + 32) + (32 * 16 + 16) + (16 * 64 + 64)  # 530 market + 3 account + 3 zeros
    ) + (64 * 3 + 3) + (64 * 1 + 1)
    assert isinstance(model.policy.mlp_extractor.policy_net[1], torch.nn.ReLU)
    assert model.policy.optimizer.defaults["eps"] == 1e-5


def test_shared_trunk_is_refused_with_the_field_named(data):
    config = _config(data)
    shared = config.replace(
        network=NetworkConfig(**{**config.network.to_dict(), "trunk": "shared"})
    )
    with pytest.raises(ConfigError, match=r"trunk=.separate.*got trunk=.shared."):
        peers.build_sb3_ppo(data, shared)


def test_sb3_learning_rate_equals_ppo_core_annealing_at_every_update(data):
    config = _config(data, total_timesteps=4 * 32, learning_rate=1e-3)
    model = peers.build_sb3_ppo(data, config)
    for iteration in range(1, config.n_iterations + 1):
        # SB3: progress_remaining after the iteration's rollout; ppo_core: before it.
        remaining = 1.0 - iteration * config.batch_size / (config.n_iterations * config.batch_size)
        expected = config.learning_rate * (1.0 - (iteration - 1) / config.n_iterations)
        assert math.isclose(model.lr_schedule(remaining), expected)


def test_vec_env_marks_time_limits_for_sb3_bootstrap(data):
    env = peers.sb3_vec_env(data, _config(data))
    obs = env.reset()
    assert obs.shape == (2, 536)
    assert obs.dtype == np.float32
    for _ in range(7):
        env.step_async(np.array([2, 0]))
        _obs, _reward, dones, infos = env.step_wait()
        assert not dones.any()
        assert infos == [{}, {}]
    bars = env.vector.env.bar_index + 1  # the bar each episode would observe next
    env.step_async(np.array([1, 1]))
    _obs, reward, dones, infos = env.step_wait()
    assert dones.tolist() == [True, True]
    assert reward.dtype == np.float32
    expected = env.vector.env.observe(bars).numpy()
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos[i]["terminal_observation"], expected[i])


def test_both_runners_train_and_evaluate_on_validation(data):
    config = _config(data)
    runs = [peers.run_ppo_core(data, config), peers.run_sb3(data, config)]
    for run in runs:
        assert run.env_steps == 64
        assert run.learn_s > 0
        assert run.env_steps_per_s == run.env_steps / run.learn_s
        start, end = data.splits.range("validation")
        assert run.validation.n_bars == end - start
        assert math.isfinite(run.validation.sharpe)
    assert runs[0].params == runs[1].params


def test_sb3_minimises_ppo_core_loss_with_half_the_value_coefficient(data):
    """SB3's value loss is F.mse_loss, ppo_core's 0.5 x MSE: with vf_coef halved, SB3's loss on
    one minibatch equals ppo_core's ppo_loss, and so do the gradients it steps with."""
    from ppo_core.ppo import ppo_loss

    config = _config(data, total_timesteps=32, ent_coef=0.01, max_grad_norm=1e6)
    assert config.batch_size == config.minibatch_size * 2  # two minibatches: use one
    config = config.replace(minibatch_size=config.batch_size)  # one minibatch, one step
    model = peers.build_sb3_ppo(data, config)
    assert model.vf_coef == 0.5 * config.vf_coef
    assert peers.sb3_loss_settings(config)["sb3_vf_coef"] == model.vf_coef
    step, seen = model.policy.optimizer.step, {}

    def capture(*args, **kwargs):
        # Before the step: the weights the loss was taken at and the gradient SB3 steps with.
        seen["weights"] = [p.detach().clone() for p in model.policy.parameters()]
        seen["grads"] = [p.grad.detach().clone() for p in model.policy.parameters()]
        return step(*args, **kwargs)

    model.policy.optimizer.step = capture
    model.learn(total_timesteps=config.batch_size)
    sb3_loss = model.logger.name_to_value["train/loss"]

    buffer = model.rollout_buffer  # flattened by SB3's get(): (batch, ...)
    with torch.no_grad():
        for p, w in zip(model.policy.parameters(), seen["weights"], strict=True):
            p.copy_(w)
    model.policy.zero_grad()
    flat = lambda a: torch.as_tensor(a).reshape(-1)  # noqa: E731
    obs, actions = torch.as_tensor(buffer.observations), flat(buffer.actions).long()
    values, log_prob, entropy = model.policy.evaluate_actions(obs, actions)
    terms = ppo_loss(
        log_prob, flat(buffer.log_probs), flat(buffer.advantages), values.flatten(),
        flat(buffer.values), flat(buffer.returns), entropy,
        clip_coef=config.clip_coef, vf_coef=config.vf_coef, ent_coef=config.ent_coef,
    )  # fmt: skip
    # Without the halving the two would differ by 0.5 x vf_coef x MSE = vf_coef x value_loss.
    assert config.vf_coef * terms.value_loss.item() > 1e-3
    assert terms.loss.item() == pytest.approx(sb3_loss, rel=1e-5, abs=1e-7)
    terms.loss.backward()
    for p, theirs in zip(model.policy.parameters(), seen["grads"], strict=True):
        torch.testing.assert_close(p.grad, theirs, rtol=1e-4, atol=1e-7)
