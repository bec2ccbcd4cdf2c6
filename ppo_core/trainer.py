"""PPO (clipped objective, GAE) on the vectorised trading env, with the rollout on the device.

The math lives in pure functions (`compute_gae`, `ppo_loss`) that tests check against plain
loops, the storage in `RolloutBuffer`, CUDA-graph capture in `capture`, Adam's set-up and
resume in `adam`: `PPOTrainer` only sequences rollout -> GAE -> update and records the cost.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppo_core import adam, checkpoint
from ppo_core.capture import CapturedStep, check_capture
from ppo_core.config import PPOConfig
from ppo_core.device import (
    cuda_synchronize,
    matmul_precision,
    resolve_device,
    resolve_precision,
)
from ppo_core.env import TradingEnv
from ppo_core.errors import CheckpointError, ConfigError, TrainingDiverged
from ppo_core.network import ActorCritic, sample_actions, score_actions
from ppo_core.ppo import explained_variance, ppo_loss
from ppo_core.progress import ProgressBar
from ppo_core.rollout import Minibatch, RolloutBuffer
from ppo_core.sizing import estimate

__all__ = ["IterationStats", "PPOTrainer"]


@dataclass(frozen=True)
class IterationStats:
    """What one rollout + update cost and how the optimisation went."""

    iteration: int
    """1-based iteration number within the run (continues across resume)."""
    global_step: int
    """Environment steps collected so far, summed over environments."""
    train_env_steps_per_s: float
    """Whole-iteration throughput: n_envs * n_steps / (rollout + GAE + update seconds)."""
    rollout_env_steps_per_s: float
    """Rollout-only throughput: n_envs * n_steps / rollout seconds (policy forward + env)."""
    update_samples_per_s: float
    """Samples through forward+backward+Adam per second in the update phase."""
    rollout_s: float
    """Seconds collecting the rollout (policy forward + env step)."""
    gae_s: float
    """Seconds computing advantages and returns."""
    update_s: float
    """Seconds in the clipped-objective update (all epochs)."""
    iteration_s: float
    """Seconds of the whole iteration: rollout + GAE + update."""
    update_samples: int
    """Samples pushed through the update (epochs actually run x rollout size)."""
    policy_loss: float
    """Mean clipped surrogate loss over the update's minibatches."""
    value_loss: float
    """Mean value loss over the update's minibatches."""
    entropy: float
    """Mean policy entropy over the update's minibatches."""
    approx_kl: float
    """approx_kl of the last epoch (the early-stopping signal)."""
    clipfrac: float
    """Fraction of samples whose ratio was clipped, mean over minibatches."""
    explained_variance: float
    """How much of the return variance the value head explains (1 is perfect)."""
    learning_rate: float
    """Adam's step size in this iteration (after annealing)."""
    epochs_run: int
    """Epochs completed before target_kl stopped the update (n_epochs when it did not)."""
    mean_episode_return: float
    """Mean unscaled log return of episodes that ended in this rollout; NaN when none did."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PPOTrainer:
    """Trains an ActorCritic on a TradingEnv with PPO; `stats` holds every iteration's figures."""

    def __init__(self, env: TradingEnv, config: PPOConfig) -> None:
        _check_env(env, config)
        self.env = env
        self.config = config
        self.device = torch.device(resolve_device(config.device).device)
        self.precision = resolve_precision(config.precision, self.device)
        """The precision training runs in: config.precision with 'auto' resolved."""
        check_capture(config, self.device)
        torch.manual_seed(config.seed)
        self.policy = ActorCritic(config.network).to(self.device)
        self.optimizer = adam.make_adam(self.policy, config, self.device)
        self._forward: nn.Module = torch.compile(self.policy) if config.compile else self.policy
        self._generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self._autocast = self.precision == "bf16"
        self._captured: CapturedStep | None = None
        self.iteration = 0
        self.global_step = 0
        self.stats: list[IterationStats] = []
        network = config.network
        self.buffer = RolloutBuffer(
            config.n_steps,
            config.n_envs,
            network.obs_dim,
            network.account_dim,
            config.obs_buffer,
            self.device,
        )
        """The rollout storage: refilled by every iteration's rollout."""
        self._next_obs = env.reset()

    @property
    def rollout_buffer_bytes(self) -> int:
        """Bytes the rollout buffer holds now (obs or indices, actions, log-probs, values, ...)."""
        return self.buffer.nbytes

    def buffer_savings(self) -> dict[str, int]:
        """Rollout bytes with full observations vs bar indices (the sizing model's figures)."""
        cfg = self.config
        sizing = estimate(
            cfg.network, n_envs=cfg.n_envs, n_steps=cfg.n_steps, minibatch=cfg.minibatch_size
        )
        return {
            "observations": sizing.rollout_bytes_observations,
            "indices": sizing.rollout_bytes_indices,
            "saved": sizing.rollout_bytes_observations - sizing.rollout_bytes_indices,
        }

    # -- one iteration: the PPO loop ----------------------------------------------------

    def train_iteration(self) -> IterationStats:
        """One rollout, GAE and clipped update; returns (and records) what it cost."""
        with matmul_precision(self.precision):
            return self._train_iteration()

    def _train_iteration(self) -> IterationStats:
        cfg = self.config
        self.iteration += 1
        lr = self._anneal_lr()
        t0 = self._sync()
        next_value, finished = self._collect()
        t1 = self._sync()
        advantages, returns = self.buffer.advantages_and_returns(
            next_value, cfg.gamma, cfg.gae_lambda
        )
        t2 = self._sync()
        update = self._update(advantages, returns)
        t3 = self._sync()
        self.global_step += cfg.batch_size
        stats = self._record((t0, t1, t2, t3), update, returns, lr, finished)
        self.stats.append(stats)
        return stats

    def _anneal_lr(self) -> float:
        """Adam's step size for this iteration (linearly down to 0 when anneal_lr)."""
        cfg = self.config
        if cfg.anneal_lr:
            fraction = 1.0 - (self.iteration - 1) / cfg.n_iterations
            adam.set_lr(self.optimizer, cfg.learning_rate * max(fraction, 0.0))
        return float(self.optimizer.param_groups[0]["lr"])

    def _sync(self) -> float:
        # GPU work is asynchronous: a phase is only over once the device has finished it.
        cuda_synchronize(self.device)
        return time.perf_counter()

    def _collect(self) -> tuple[torch.Tensor, list[float]]:
        """The training rollout, on from where the last one stopped -> the value of the next
        observation (n_envs,) and the returns of the episodes that ended."""
        self.policy.eval()
        try:
            self._next_obs, next_value, finished = self._rollout(self.env, self._next_obs)
        except RuntimeError:
            # Sampling from NaN logits fails inside torch; name the real cause if it is that.
            self._check_parameters()
            raise
        return next_value, finished

    def _rollout(
        self, env: TradingEnv, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """Fill the buffer with n_steps on `env` from `obs` -> next obs, its value (n_envs,),
        and the returns of the episodes that ended."""
        cfg = self.config
        finished_returns: list[torch.Tensor] = []
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=self._autocast):
            for step in range(cfg.n_steps):
                self.buffer.add_observation(step, env, obs)
                action, log_prob, value = self._act(obs)
                obs, reward, done, info = env.step(action)
                if done.any():
                    reward = self._bootstrap_time_limits(env, reward, done, info)
                    finished_returns.append(info["equity"][done])
                self.buffer.add(step, action, log_prob, value, reward, done)
            next_value = self._forward.value(obs).float()
        returns = torch.cat(finished_returns).tolist() if finished_returns else []
        return obs, next_value, returns

    def _act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Through self._forward (compiled when asked), with the trainer's own random stream.
        logits, value = self._forward(obs)
        action, log_prob = sample_actions(logits, generator=self._generator)
        return action, log_prob, value.float()

    def _bootstrap_time_limits(
        self, env: TradingEnv, reward: torch.Tensor, done: torch.Tensor, info: dict[str, Any]
    ) -> torch.Tensor:
        """Every episode end is a time limit, not a terminal state: add gamma times the value
        of the observation the episode would have continued with (as SB3) -> reward (n_envs,)."""
        final_obs = env.observe(info["final_bar_index"][done], info["final_account"][done])
        reward = reward.clone()
        reward[done] += self.config.gamma * self._forward.value(final_obs).float()
        return reward

    def _update(self, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """K epochs of shuffled minibatch steps (fewer once approx_kl passes target_kl) ->
        the mean losses, the last approx_kl and the epochs run."""
        cfg = self.config
        self.policy.train()
        sums = torch.zeros(5, device=self.device)  # policy, value, entropy, clipfrac, non-finite
        n_minibatches = epochs_run = 0
        approx_kl = torch.zeros((), device=self.device)
        for _epoch in range(cfg.n_epochs):
            for minibatch in self.buffer.minibatches(
                advantages, returns, cfg.minibatch_size, self._generator, self.env.observe
            ):
                step_stats, approx_kl = self._step(minibatch)
                # Accumulate on the device; one host sync per epoch instead of per minibatch.
                sums += step_stats
                n_minibatches += 1
                del minibatch  # the next gather must not overlap this minibatch's rows
            epochs_run += 1
            self._check_finite_loss(sums[4], epochs_run)
            if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:
                break
        self._check_parameters()
        means = (sums[:4] / n_minibatches).tolist()
        return {
            "policy_loss": means[0],
            "value_loss": means[1],
            "entropy": means[2],
            "clipfrac": means[3],
            "approx_kl": float(approx_kl),
            "epochs_run": epochs_run,
        }

    def _step(self, minibatch: Minibatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One minibatch step, replayed from a CUDA graph when config.capture."""
        if self.config.capture:
            if self._captured is None:
                self._captured = CapturedStep(
                    self._minibatch_step, self.policy, self.optimizer, self.device, minibatch
                )
            return self._captured.replay(minibatch)
        step = self._minibatch_step(*minibatch)
        # Free the gradients now, not at the next step: the next minibatch's gather and
        # forward then never hold them (sizing's peak model).
        self.optimizer.zero_grad(set_to_none=True)
        return step

    def _minibatch_step(
        self,
        mb_obs: torch.Tensor,
        mb_actions: torch.Tensor,
        mb_log_probs: torch.Tensor,
        mb_advantages: torch.Tensor,
        mb_values: torch.Tensor,
        mb_returns: torch.Tensor,
        autocast_cache: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss, backward, gradient clip and Adam step on one minibatch (gradients must be
        None or zero on entry) -> its (policy, value, entropy, clipfrac, non-finite) terms (5,)
        and approx_kl, both on the device. The one step both the eager and the captured
        update run; autocast_cache is off while a CUDA graph is captured (torch requires it)."""
        cfg = self.config
        with torch.autocast(
            "cuda", torch.bfloat16, enabled=self._autocast, cache_enabled=autocast_cache
        ):
            new_log_prob, entropy, new_value = self._evaluate(mb_obs, mb_actions)
        terms = ppo_loss(
            new_log_prob,
            mb_log_probs,
            mb_advantages,
            new_value,
            mb_values,
            mb_returns,
            entropy,
            clip_coef=cfg.clip_coef,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
            clip_vloss=cfg.clip_vloss,
            norm_adv=cfg.norm_adv,
        )
        terms.loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        step_stats = torch.stack(
            [
                terms.policy_loss.detach(),
                terms.value_loss.detach(),
                terms.entropy.detach(),
                terms.clipfrac,
                (~torch.isfinite(terms.loss.detach())).float(),
            ]
        )
        return step_stats, terms.approx_kl

    def _evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, value = self._forward(obs)
        new_log_prob, entropy = score_actions(logits, actions)
        return new_log_prob, entropy, value.float()

    def _check_finite_loss(self, non_finite: torch.Tensor, epoch: int) -> None:
        if non_finite.item() > 0:
            raise TrainingDiverged(
                f"iteration {self.iteration}: the PPO loss became NaN or inf in epoch "
                f"{epoch}; lower the learning rate or check the data"
            )

    def _check_parameters(self) -> None:
        for name, param in self.policy.named_parameters():
            if not torch.isfinite(param).all():
                raise TrainingDiverged(
                    f"iteration {self.iteration}: parameter {name} became NaN or inf; "
                    "lower the learning rate or check the data"
                )

    def _record(
        self,
        times: tuple[float, float, float, float],
        update: dict[str, Any],
        returns: torch.Tensor,
        lr: float,
        finished: list[float],
    ) -> IterationStats:
        """The iteration's figures from its phase boundaries (start, rollout end, GAE end,
        update end), the update's means and the rollout's GAE returns."""
        t0, t1, t2, t3 = times
        batch = self.config.batch_size
        update_samples = update["epochs_run"] * batch
        return IterationStats(
            iteration=self.iteration,
            global_step=self.global_step,
            train_env_steps_per_s=batch / (t3 - t0),
            rollout_env_steps_per_s=batch / (t1 - t0),
            update_samples_per_s=update_samples / (t3 - t2),
            rollout_s=t1 - t0,
            gae_s=t2 - t1,
            update_s=t3 - t2,
            iteration_s=t3 - t0,
            update_samples=update_samples,
            policy_loss=update["policy_loss"],
            value_loss=update["value_loss"],
            entropy=update["entropy"],
            approx_kl=update["approx_kl"],
            clipfrac=update["clipfrac"],
            explained_variance=explained_variance(self.buffer.values.flatten(), returns.flatten()),
            learning_rate=lr,
            epochs_run=update["epochs_run"],
            mean_episode_return=sum(finished) / len(finished) if finished else math.nan,
        )

    def value_loss(self, env: TradingEnv) -> float:
        """0.5 * mean (V - GAE return)^2 of the current policy over one rollout on `env` (e.g.
        the validation split), collected, bootstrapped and discounted exactly as in training.
        It reuses the rollout buffer: call it between iterations, not inside one."""
        cfg = self.config
        _check_env(env, cfg)
        self.policy.eval()
        with matmul_precision(self.precision):
            _, next_value, _ = self._rollout(env, env.reset())
        _, returns = self.buffer.advantages_and_returns(next_value, cfg.gamma, cfg.gae_lambda)
        return float(0.5 * ((self.buffer.values - returns) ** 2).mean())

    # -- a whole run --------------------------------------------------------------------

    def learn(
        self,
        *,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 0,
        progress: bool | None = None,
        on_iteration: Callable[[IterationStats], None] | None = None,
    ) -> list[IterationStats]:
        """Run until config.n_iterations; checkpoint every N iterations (0: only at the end).

        progress: a rich progress bar (None: only when stderr is a terminal).
        """
        if progress is None:
            progress = sys.stderr.isatty()
        remaining = self.config.n_iterations - self.iteration
        with ProgressBar(remaining, enabled=progress) as bar:
            while self.iteration < self.config.n_iterations:
                stats = self.train_iteration()
                bar.advance(stats)
                if on_iteration is not None:
                    on_iteration(stats)
                if checkpoint_path and checkpoint_every and self.iteration % checkpoint_every == 0:
                    self.save(checkpoint_path)
        if checkpoint_path:
            self.save(checkpoint_path)
        return self.stats

    def save(self, path: str | Path) -> None:
        """Atomically write a checkpoint with the full config, weights, Adam state and obs norm."""
        checkpoint.save(
            path,
            self.config,
            self.policy,
            optimizer=self.optimizer,
            obs_norm=self.env.data.normalizer.to_dict(),
            extra_meta={
                "iteration": self.iteration,
                "global_step": self.global_step,
                "precision": self.precision,
            },
            data=self.env.data.identity(),
        )

    def resume(self, source: str | Path | checkpoint.Checkpoint) -> None:
        """Continue from a checkpoint (a path, or one already loaded) of the same architecture
        (ArchitectureMismatch otherwise)."""
        if isinstance(source, checkpoint.Checkpoint):
            ckpt = source
            ckpt.check_architecture(self.config.network)
        else:
            ckpt = checkpoint.load(source, config=self.config.network)
        self.policy.load_state_dict(ckpt.policy_state_dict)
        if ckpt.optimizer_state_dict is None:
            raise CheckpointError(f"{ckpt.path}: has no optimizer state, so training cannot resume")
        # Run the stored state the way this trainer runs Adam (a GPU's fused, maybe captured
        # Adam; a CPU's foreach).
        adam.load_state(self.optimizer, ckpt.optimizer_state_dict)
        self.iteration = int(ckpt.meta.get("iteration", 0))
        self.global_step = int(ckpt.meta.get("global_step", 0))


def _check_env(env: TradingEnv, config: PPOConfig) -> None:
    """Refuse an env of another width or observation layout than the network's: with the same
    width, a layout mismatch (the account gain) would train on inputs the network misreads."""
    if env.n_envs != config.n_envs:
        raise ConfigError(
            f"PPOConfig.n_envs is {config.n_envs} but the environment has {env.n_envs}"
        )
    network = config.network
    built, expected = env.network.observation_layout, network.observation_layout
    if env.obs_dim != network.obs_dim or built != expected:
        raise ConfigError(
            f"environment observations have {env.obs_dim} values ({built}) but the network "
            f"expects {network.obs_dim} ({expected}): build the TradingEnv with "
            "network=config.network"
        )
