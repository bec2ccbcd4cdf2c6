"""Gymnasium views of TradingEnv, so third-party trainers (stable-baselines3, CleanRL-style
loops) train on exactly the task, data, splits, costs and episodes the native trainer sees.

`TradingGymEnv` is a single gymnasium.Env; `TradingVectorEnv` a gymnasium.vector.VectorEnv
stepping all environments as one TradingEnv, with same-step autoreset.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from ppo_core.config import ACCOUNT_DIM, EnvConfig, NetworkConfig
from ppo_core.data import NORMALIZED_CLIP, PreparedData
from ppo_core.env import TradingEnv

__all__ = ["TradingGymEnv", "TradingVectorEnv"]


def _observation_space(env: TradingEnv, num_envs: int | None = None) -> spaces.Box:
    """The bounds of env's observations: +-NORMALIZED_CLIP, the account state's times its gain;
    (num_envs, obs_dim) for a batch of them."""
    high = np.full(env.obs_dim, NORMALIZED_CLIP, dtype=np.float32)
    if env.account_state:
        market_dim = env.network.market_dim
        high[market_dim : market_dim + ACCOUNT_DIM] *= env.network.account_gain
    if num_envs is not None:
        high = np.tile(high, (num_envs, 1))
    return spaces.Box(-high, high, dtype=np.float32)


class TradingGymEnv(gym.Env):
    """One trading episode at a time. Episodes end by truncation only (a time limit or the
    split's end); the observation returned then is the one that would have come next."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        data: PreparedData,
        split: str = "train",
        config: EnvConfig | None = None,
        seed: int = 0,
        network: NetworkConfig | None = None,
    ) -> None:
        self.env = TradingEnv(
            data,
            split,
            n_envs=1,
            config=config,
            device="cpu",
            seed=seed,
            network=network,
        )
        self.observation_space = _observation_space(self.env)
        self.action_space = spaces.Discrete(TradingEnv.n_actions)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.env.reset(seed=seed)
        return obs[0].numpy(), {"bar_index": int(self.env.bar_index[0])}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, done, info = self.env.step(torch.tensor([int(action)]))
        truncated = bool(done[0])
        if truncated:
            obs = self.env.observe(info["final_bar_index"], info["final_account"])
        details = {
            "equity": float(info["equity"][0]),
            "trades": int(info["trades"][0]),
            "position": int(info["position"][0]),
        }
        return obs[0].numpy(), float(reward[0]), False, truncated, details


class TradingVectorEnv(VectorEnv):
    """num_envs episodes stepped as one TradingEnv (optionally on CUDA), numpy in and out.

    Same-step autoreset: where an episode ends, the returned observation starts the next one
    and info["final_obs"][i] (mask info["_final_obs"]) holds the observation that would have
    come next; info also carries "equity", "trades" and "position" arrays.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(
        self,
        data: PreparedData,
        split: str = "train",
        num_envs: int = 8,
        config: EnvConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        network: NetworkConfig | None = None,
    ) -> None:
        self.env = TradingEnv(
            data,
            split,
            n_envs=num_envs,
            config=config,
            device=device,
            seed=seed,
            network=network,
        )
        self.num_envs = num_envs
        self.single_observation_space = _observation_space(self.env)
        self.single_action_space = spaces.Discrete(TradingEnv.n_actions)
        self.observation_space = _observation_space(self.env, num_envs)
        self.action_space = spaces.MultiDiscrete(np.full(num_envs, TradingEnv.n_actions))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        obs = self.env.reset(seed=seed)
        return obs.cpu().numpy(), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        action = torch.as_tensor(np.asarray(actions, dtype=np.int64), device=self.env.device)
        obs, reward, done, info = self.env.step(action)
        done_np = done.cpu().numpy()
        infos: dict[str, Any] = {}
        for key in ("equity", "trades", "position"):
            infos[key] = info[key].cpu().numpy()
            infos[f"_{key}"] = np.ones(self.num_envs, dtype=bool)
        if done_np.any():
            final_obs_rows = self.env.observe(
                info["final_bar_index"][done], info["final_account"][done]
            )
            final = final_obs_rows.cpu().numpy()
            final_obs = np.full(self.num_envs, None, dtype=object)
            for row, i in enumerate(np.flatnonzero(done_np)):
                final_obs[i] = final[row]
            infos["final_obs"], infos["_final_obs"] = final_obs, done_np.copy()
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy().astype(np.float64),
            np.zeros(self.num_envs, dtype=bool),
            done_np,
            infos,
        )
