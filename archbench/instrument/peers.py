"""ppo_core's PPO side by side with stable-baselines3's: the same network, task and settings.

SB3 trains on TradingEnv through the gymnasium vector adapter; both are judged by the same
deterministic evaluation on the validation split, so throughput and learning compare directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.data import PreparedData
from ppo_core.device import TENSOR_FLOAT_PRECISIONS
from ppo_core.env import EvalResult, TradingEnv, evaluate_policy
from ppo_core.errors import ConfigError
from ppo_core.evaluation import greedy_actions

__all__ = [
    "PeerRun",
    "build_sb3_ppo",
    "run_ppo_core",
    "run_sb3",
    "sb3_greedy_actions",
    "sb3_loss_settings",
    "sb3_policy_kwargs",
    "sb3_vec_env",
]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass(frozen=True)
class PeerRun:
    """One timed training run of one framework, and what the trained policy reaches."""

    framework: str
    """'ppo_core' or 'sb3'."""
    env_steps: int
    """Environment steps collected by the timed learn() call (all environments together)."""
    learn_s: float
    """Wall seconds of the whole learn() call: rollouts, GAE and updates; no construction."""
    params: int
    """Trainable parameters of the policy as built."""
    validation: EvalResult
    """Deterministic (argmax) policy over every bar of the validation split."""

    @property
    def env_steps_per_s(self) -> float:
        """Whole-run throughput: env_steps / learn_s."""
        return self.env_steps / self.learn_s


def _check_network(network: NetworkConfig) -> None:
    if network.trunk != "separate" or network.layer_norm:
        raise ConfigError(
            "the SB3 comparison needs NetworkConfig.trunk='separate' and layer_norm=false "
            f"(SB3's MlpPolicy builds that); got trunk={network.trunk!r}, "
            f"layer_norm={network.layer_norm!r}"
        )


def sb3_policy_kwargs(network: NetworkConfig) -> dict[str, Any]:
    """MlpPolicy kwargs that build exactly ActorCritic(network) with separate trunks.

    SB3's MlpExtractor is Linear+activation per net_arch width and its heads one Linear, so
    net_arch [*hidden_dims, head_dim] per side reproduces trunk + Linear(h, 64) + act +
    Linear(64, out); ortho_init uses the same gains (sqrt 2, 0.01 policy, 1 value).
    """
    _check_network(network)
    widths = [*network.hidden_dims, network.head_dim]
    return {
        "net_arch": {"pi": list(widths), "vf": list(widths)},
        "activation_fn": _ACTIVATIONS[network.activation],
        "ortho_init": True,
        "share_features_extractor": True,
    }


def sb3_vec_env(data: PreparedData, config: PPOConfig, split: str = "train") -> Any:
    """An SB3 VecEnv over TradingVectorEnv: same-step autoreset, truncations marked for SB3's
    time-limit bootstrap ("terminal_observation", "TimeLimit.truncated")."""
    from stable_baselines3.common.vec_env import VecEnv

    from ppo_core.gym_adapter import TradingVectorEnv

    class _TradingSB3VecEnv(VecEnv):
        def __init__(self) -> None:
            self.vector = TradingVectorEnv(
                data,
                split,
                num_envs=config.n_envs,
                config=config.env,
                seed=config.seed,
                network=config.network,
            )
            self.render_mode = None
            super().__init__(
                config.n_envs,
                self.vector.single_observation_space,
                self.vector.single_action_space,
            )
            self._actions: np.ndarray | None = None

        def reset(self) -> np.ndarray:
            obs, _info = self.vector.reset()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = actions

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
            obs, reward, _terminated, truncated, info = self.vector.step(self._actions)
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(truncated):
                infos[i] = {
                    "terminal_observation": info["final_obs"][i],
                    "TimeLimit.truncated": True,
                }
            return obs, reward.astype(np.float32), truncated, infos

        def close(self) -> None:
            pass

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            if attr_name == "render_mode":
                return [None] * self.num_envs
            raise AttributeError(f"TradingVectorEnv has no per-env attribute {attr_name!r}")

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            raise AttributeError(f"TradingVectorEnv has no per-env attribute {attr_name!r}")

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kw: Any) -> Any:
            raise AttributeError(f"TradingVectorEnv has no per-env method {method_name!r}")

        def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
            return [False] * self.num_envs

    return _TradingSB3VecEnv()


def _sb3_learning_rate(config: PPOConfig) -> float | Callable[[float], float]:
    if not config.anneal_lr:
        return config.learning_rate
    # SB3 passes 1 - steps_done / total after each rollout; ppo_core anneals before it,
    # so shift by one iteration to give both the same learning rate at every update.
    step = 1.0 / config.n_iterations
    return lambda remaining: config.learning_rate * min(1.0, remaining + step)


_SB3_VF_COEF_REASON = (
    "SB3's value loss is F.mse_loss (the mean squared error) and ppo_core's is 0.5 x MSE, "
    "so SB3 gets half of vf_coef: both then weigh the critic's error the same"
)


def sb3_loss_settings(config: PPOConfig) -> dict[str, Any]:
    """The loss coefficients SB3 is given to minimise ppo_core's loss, with the reason, as the
    peer record states them: {"sb3_vf_coef": ..., "sb3_vf_coef_reason": ...}."""
    return {"sb3_vf_coef": 0.5 * config.vf_coef, "sb3_vf_coef_reason": _SB3_VF_COEF_REASON}


def build_sb3_ppo(data: PreparedData, config: PPOConfig) -> Any:
    """stable_baselines3.PPO with ppo_core's network and every PPO setting of `config`, its
    loss matched to ppo_core's (see `sb3_loss_settings`)."""
    from stable_baselines3 import PPO

    lower_precision = config.precision in TENSOR_FLOAT_PRECISIONS
    if config.target_kl is not None or config.clip_vloss or lower_precision or config.compile:
        raise ConfigError(
            "the SB3 comparison takes target_kl=None, clip_vloss=false, precision fp32 and "
            "compile=false (SB3 runs plain fp32 and has no equivalent of compile)"
        )
    return PPO(
        "MlpPolicy",
        sb3_vec_env(data, config),
        learning_rate=_sb3_learning_rate(config),
        n_steps=config.n_steps,
        batch_size=config.minibatch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_coef,
        clip_range_vf=None,
        normalize_advantage=config.norm_adv,
        ent_coef=config.ent_coef,
        vf_coef=sb3_loss_settings(config)["sb3_vf_coef"],
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=sb3_policy_kwargs(config.network),
        seed=config.seed,
        device="cpu" if config.device == "auto" else config.device,
        verbose=0,
    )


def sb3_greedy_actions(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """obs (batch, obs_dim) -> argmax action (batch,) of an SB3 PPO's policy, no gradients."""
    policy = model.policy

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        latent_pi = policy.mlp_extractor.forward_actor(policy.extract_features(obs))
        return policy.action_net(latent_pi).argmax(dim=-1)  # (batch,)

    return act


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def run_ppo_core(data: PreparedData, config: PPOConfig) -> PeerRun:
    """Build, then time trainer.learn() for config.n_iterations; evaluate on validation."""
    from ppo_core.trainer import PPOTrainer

    _check_network(config.network)
    env = TradingEnv(
        data,
        "train",
        config.n_envs,
        config.env,
        config.device,
        config.seed,
        network=config.network,
    )
    trainer = PPOTrainer(env, config)
    start = time.perf_counter()
    trainer.learn(progress=False)  # each iteration ends synchronised with the device
    learn_s = time.perf_counter() - start
    trainer.policy.eval()
    validation = evaluate_policy(
        greedy_actions(trainer.policy),
        data,
        "validation",
        config.env.cost_bps,
        trainer.device,
        network=config.network,
    )
    return PeerRun("ppo_core", trainer.global_step, learn_s, _count(trainer.policy), validation)


def run_sb3(data: PreparedData, config: PPOConfig) -> PeerRun:
    """Build an SB3 PPO with the same settings, time model.learn(); evaluate on validation."""
    model = build_sb3_ppo(data, config)
    total = config.n_iterations * config.batch_size
    start = time.perf_counter()
    model.learn(total_timesteps=total, progress_bar=False)
    learn_s = time.perf_counter() - start
    model.policy.set_training_mode(False)
    validation = evaluate_policy(
        sb3_greedy_actions(model),
        data,
        "validation",
        config.env.cost_bps,
        model.device,
        network=config.network,
    )
    return PeerRun("sb3", int(model.num_timesteps), learn_s, _count(model.policy), validation)
