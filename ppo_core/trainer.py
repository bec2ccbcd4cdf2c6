"""PPO (clipped objective, GAE) on the vectorised trading env, with the rollout on the device.

The math lives in pure functions (`compute_gae`, `ppo_loss`) that tests check against plain
loops; `PPOTrainer` only sequences rollout -> GAE -> update and records what each phase cost.
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

from ppo_core import checkpoint
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
from ppo_core.ppo import compute_gae, explained_variance, ppo_loss
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
        _check_capture(config, self.device)
        torch.manual_seed(config.seed)
        self.policy = ActorCritic(config.network).to(self.device)
        self.optimizer = _adam(self.policy, config, self.device)
        self._forward: nn.Module = torch.compile(self.policy) if config.compile else self.policy
        self._generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self._autocast = self.precision == "bf16"
        self._captured: _CapturedStep | None = None
        self.iteration = 0
        self.global_step = 0
        self.stats: list[IterationStats] = []
        self._alloc_buffer()
        self._next_obs = env.reset()

    # -- the rollout buffer -------------------------------------------------------------

    def _alloc_buffer(self) -> None:
        cfg, dev = self.config, self.device
        shape = (cfg.n_steps, cfg.n_envs)
        if cfg.obs_buffer == "indices":
            # An observation is a window over env.features plus the account state, so the bar
            # index and the account reproduce it exactly.
            self.buf_obs = torch.zeros(shape, dtype=torch.long, device=dev)  # (n_steps, n_envs)
        else:
            self.buf_obs = torch.zeros((*shape, cfg.network.obs_dim), device=dev)
        self.buf_actions = torch.zeros(shape, dtype=torch.long, device=dev)
        self.buf_log_probs = torch.zeros(shape, device=dev)
        self.buf_values = torch.zeros(shape, device=dev)
        self.buf_rewards = torch.zeros(shape, device=dev)
        self.buf_dones = torch.zeros(shape, device=dev)
        account_dim = cfg.network.account_dim if cfg.obs_buffer == "indices" else 0
        self.buf_account = torch.zeros((*shape, account_dim), device=dev)  # (n_steps, n_envs, 3)

    @property
    def rollout_buffer_bytes(self) -> int:
        """Bytes the rollout buffer holds now (obs or indices, actions, log-probs, values, ...)."""
        tensors = (
            self.buf_obs,
            self.buf_actions,
            self.buf_log_probs,
            self.buf_values,
            self.buf_rewards,
            self.buf_dones,
            self.buf_account,
        )
        return sum(t.numel() * t.element_size() for t in tensors)

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

    def _observations(self, stored: torch.Tensor, account: torch.Tensor) -> torch.Tensor:
        """Buffer entries (B,) and their account states (B, account_dim) -> obs (B, obs_dim)."""
        if self.config.obs_buffer == "indices":
            return self.env.observe(stored, account if account.shape[-1] else None)
        return stored

    # -- one iteration ------------------------------------------------------------------

    def _sync(self) -> float:
        # GPU work is asynchronous: a phase is only over once the device has finished it.
        cuda_synchronize(self.device)
        return time.perf_counter()

    def _rollout(
        self, env: TradingEnv, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """Fill the buffer with n_steps on `env` from `obs` -> next obs, its value (n_envs,),
        and the returns of the episodes that ended."""
        cfg = self.config
        finished_returns: list[torch.Tensor] = []
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=self._autocast):
            for step in range(cfg.n_steps):
                if cfg.obs_buffer == "indices":
                    self.buf_obs[step] = env.bar_index
                    if env.account_state:
                        self.buf_account[step] = env.current_account()
                else:
                    self.buf_obs[step] = obs
                action, log_prob, value = self._act(obs)
                obs, reward, done, info = env.step(action)
                if done.any():
                    # Every episode end is a time limit, not a terminal state: bootstrap the
                    # value of the observation the episode would have continued with (as SB3).
                    final_obs = env.observe(
                        info["final_bar_index"][done], info["final_account"][done]
                    )
                    reward = reward.clone()
                    reward[done] += cfg.gamma * self._forward.value(final_obs).float()
                    finished_returns.append(info["equity"][done])
                self.buf_actions[step] = action
                self.buf_log_probs[step] = log_prob
                self.buf_values[step] = value
                self.buf_rewards[step] = reward
                self.buf_dones[step] = done.float()
            next_value = self._forward.value(obs).float()
        returns = torch.cat(finished_returns).tolist() if finished_returns else []
        return obs, next_value, returns

    def _act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Through self._forward (compiled when asked), with the trainer's own random stream.
        logits, value = self._forward(obs)
        action, log_prob = sample_actions(logits, generator=self._generator)
        return action, log_prob, value.float()

    def _update(self, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        batch = cfg.batch_size
        b_obs = self.buf_obs.reshape(batch, *self.buf_obs.shape[2:])
        b_account = self.buf_account.reshape(batch, -1)
        b_actions = self.buf_actions.reshape(batch)
        b_log_probs = self.buf_log_probs.reshape(batch)
        b_values = self.buf_values.reshape(batch)
        b_advantages = advantages.reshape(batch)
        b_returns = returns.reshape(batch)

        sums = torch.zeros(5, device=self.device)  # policy, value, entropy, clipfrac, non-finite
        n_minibatches = 0
        epochs_run = 0
        approx_kl = torch.zeros((), device=self.device)
        for _epoch in range(cfg.n_epochs):
            permutation = torch.randperm(batch, device=self.device, generator=self._generator)
            for start in range(0, batch, cfg.minibatch_size):
                mb_inds = permutation[start : start + cfg.minibatch_size]
                minibatch = (
                    self._observations(b_obs[mb_inds], b_account[mb_inds]),  # (mb, obs_dim)
                    b_actions[mb_inds],
                    b_log_probs[mb_inds],
                    b_advantages[mb_inds],
                    b_values[mb_inds],
                    b_returns[mb_inds],
                )
                if self.config.capture:
                    if self._captured is None:
                        self._captured = _CapturedStep(self, minibatch)
                    step_stats, approx_kl = self._captured.replay(minibatch)
                else:
                    step_stats, approx_kl = self._minibatch_step(*minibatch)
                    # Free the gradients now, not at the next step: the next minibatch's
                    # gather and forward then never hold them (sizing's peak model).
                    self.optimizer.zero_grad(set_to_none=True)
                # Accumulate on the device; one host sync per epoch instead of per minibatch.
                sums += step_stats
                n_minibatches += 1
                del minibatch  # the next gather must not overlap this minibatch's rows
            epochs_run += 1
            if sums[4].item() > 0:
                raise TrainingDiverged(
                    f"iteration {self.iteration}: the PPO loss became NaN or inf in epoch "
                    f"{epochs_run}; lower the learning rate or check the data"
                )
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

    def _check_parameters(self) -> None:
        for name, param in self.policy.named_parameters():
            if not torch.isfinite(param).all():
                raise TrainingDiverged(
                    f"iteration {self.iteration}: parameter {name} became NaN or inf; "
                    "lower the learning rate or check the data"
                )

    def train_iteration(self) -> IterationStats:
        """One rollout, GAE and clipped update; returns (and records) what it cost."""
        with matmul_precision(self.precision):
            return self._train_iteration()

    def _train_iteration(self) -> IterationStats:
        cfg = self.config
        self.iteration += 1
        if cfg.anneal_lr:
            fraction = 1.0 - (self.iteration - 1) / cfg.n_iterations
            _set_lr(self.optimizer, cfg.learning_rate * max(fraction, 0.0))
        lr = float(self.optimizer.param_groups[0]["lr"])

        self.policy.eval()
        t0 = self._sync()
        try:
            self._next_obs, next_value, finished = self._rollout(self.env, self._next_obs)
        except RuntimeError:
            # Sampling from NaN logits fails inside torch; name the real cause if it is that.
            self._check_parameters()
            raise
        t1 = self._sync()
        advantages, returns = compute_gae(
            self.buf_rewards, self.buf_values, self.buf_dones, next_value, cfg.gamma, cfg.gae_lambda
        )
        t2 = self._sync()
        self.policy.train()
        update = self._update(advantages, returns)
        t3 = self._sync()

        self.global_step += cfg.batch_size
        update_samples = update["epochs_run"] * cfg.batch_size
        stats = IterationStats(
            iteration=self.iteration,
            global_step=self.global_step,
            train_env_steps_per_s=cfg.batch_size / (t3 - t0),
            rollout_env_steps_per_s=cfg.batch_size / (t1 - t0),
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
            explained_variance=explained_variance(self.buf_values.flatten(), returns.flatten()),
            learning_rate=lr,
            epochs_run=update["epochs_run"],
            mean_episode_return=sum(finished) / len(finished) if finished else math.nan,
        )
        self.stats.append(stats)
        return stats

    def value_loss(self, env: TradingEnv) -> float:
        """0.5 * mean (V - GAE return)^2 of the current policy over one rollout on `env` (e.g.
        the validation split), collected, bootstrapped and discounted exactly as in training.
        It reuses the rollout buffer: call it between iterations, not inside one."""
        cfg = self.config
        _check_env(env, cfg)
        self.policy.eval()
        with matmul_precision(self.precision):
            _, next_value, _ = self._rollout(env, env.reset())
        _, returns = compute_gae(
            self.buf_rewards, self.buf_values, self.buf_dones, next_value, cfg.gamma, cfg.gae_lambda
        )
        return float(0.5 * ((self.buf_values - returns) ** 2).mean())

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
        bar = _ProgressBar(remaining, enabled=progress)
        with bar:
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
        # Adam; a CPU's foreach): load_state_dict places each `step` by the groups' flags.
        stored = ckpt.optimizer_state_dict
        own = self.optimizer.param_groups
        flags = ("fused", "foreach", "capturable")
        groups = [
            {**group, **{key: mine[key] for key in flags}, "lr": float(group["lr"])}
            for group, mine in zip(stored["param_groups"], own, strict=True)
        ]
        own_lrs = [group["lr"] for group in own]
        self.optimizer.load_state_dict({**stored, "param_groups": groups})
        for group, mine in zip(self.optimizer.param_groups, own_lrs, strict=True):
            if torch.is_tensor(mine):  # a captured graph reads this very tensor
                group["lr"] = mine.fill_(group["lr"])
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


def _check_capture(config: PPOConfig, device: torch.device) -> None:
    if not config.capture:
        return
    if device.type != "cuda":
        raise ConfigError(
            f"PPOConfig.capture replays CUDA graphs; device is {device}: set it false"
        )
    if config.compile:
        raise ConfigError("PPOConfig.capture and compile are two ways to cut launches: pick one")
    if config.batch_size % config.minibatch_size:
        raise ConfigError(
            f"PPOConfig.capture replays one minibatch shape: minibatch_size "
            f"{config.minibatch_size} must divide n_envs * n_steps = {config.batch_size}"
        )


def _adam(policy: nn.Module, config: PPOConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with eps=1e-5, as in the PPO implementation-details study (1e-8 is too small).

    CUDA: the fused kernel (one launch per step instead of a few per parameter tensor);
    captured, its step size lives in a device tensor so annealing reaches the replayed
    graph. CPU: foreach (torch would pick the per-tensor loop, ~1.8x slower per step)."""
    params = policy.parameters()
    if device.type != "cuda":
        return torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5, foreach=True)
    if config.capture:
        lr = torch.tensor(config.learning_rate, dtype=torch.float32, device=device)
        return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True, capturable=True)
    return torch.optim.Adam(params, lr=config.learning_rate, eps=1e-5, fused=True)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # in place: a captured graph reads this very tensor
        else:
            group["lr"] = lr


class _CapturedStep:
    """One minibatch step (`PPOTrainer._minibatch_step`) captured in a CUDA graph: replay
    copies the minibatch into static inputs and relaunches every kernel in one call.

    Capture needs a few warm-up steps (cuBLAS workspaces, Adam's state); they run on copies'
    worth of the real parameters and Adam state, which `_restore` puts back, so the first
    replayed step starts from exactly the state the eager update would have started from.
    """

    WARMUP_STEPS = 3

    def __init__(self, trainer: PPOTrainer, minibatch: tuple[torch.Tensor, ...]) -> None:
        self._static = tuple(t.detach().clone() for t in minibatch)
        saved = _snapshot(trainer)
        side = torch.cuda.Stream(trainer.device)
        side.wait_stream(torch.cuda.current_stream(trainer.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_STEPS):
                trainer.optimizer.zero_grad(set_to_none=True)
                trainer._minibatch_step(*self._static, autocast_cache=False)
        torch.cuda.current_stream(trainer.device).wait_stream(side)
        _restore(trainer, saved)
        trainer.optimizer.zero_grad(set_to_none=True)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._stats, self._approx_kl = trainer._minibatch_step(
                *self._static, autocast_cache=False
            )

    def replay(self, minibatch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        for static, value in zip(self._static, minibatch, strict=True):
            static.copy_(value)
        self._graph.replay()
        return self._stats.clone(), self._approx_kl.clone()


def _snapshot(trainer: PPOTrainer) -> dict[str, Any]:
    """Copies of the parameters and Adam's state (None for state not created yet)."""
    return {
        "params": [p.detach().clone() for p in trainer.policy.parameters()],
        "state": [
            {k: v.detach().clone() for k, v in trainer.optimizer.state[p].items()}
            if trainer.optimizer.state.get(p)
            else None
            for p in trainer.policy.parameters()
        ],
    }


def _restore(trainer: PPOTrainer, saved: dict[str, Any]) -> None:
    """Write `saved` back in place (the graph keeps these tensors' addresses); Adam state that
    did not exist before becomes zeros, which is exactly what a fresh Adam starts from."""
    with torch.no_grad():
        for param, value, state in zip(
            trainer.policy.parameters(), saved["params"], saved["state"], strict=True
        ):
            param.copy_(value)
            for key, tensor in trainer.optimizer.state[param].items():
                if isinstance(tensor, torch.Tensor):
                    tensor.copy_(state[key] if state is not None else torch.zeros_like(tensor))


class _ProgressBar:
    """A rich progress bar with the latest throughput and losses; silent when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            # On stderr: `archbench train --json | jq` would otherwise get the bar in its JSON.
            self._progress = Progress(
                TextColumn("[bold]PPO[/bold] it {task.completed}/{task.total}"),
                BarColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
                console=Console(stderr=True),
            )
            self._task = self._progress.add_task("train", total=total, status="")

    def __enter__(self) -> _ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, stats: IterationStats) -> None:
        if self._progress is not None:
            status = (
                f"{stats.train_env_steps_per_s:,.0f} env-steps/s  "
                f"{stats.update_samples_per_s:,.0f} "
                f"upd/s  vloss {stats.value_loss:.3g}  ent {stats.entropy:.3f}  "
                f"kl {stats.approx_kl:.4f}"
            )
            self._progress.update(self._task, advance=1, status=status)
