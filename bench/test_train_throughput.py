"""Training throughput per size: whole PPO iterations (rollout + GAE + update) on the device.

Env steps/s, update samples/s, seconds per phase, and the achieved matmul FLOP/s (sizing's
exact per-sample counts over measured seconds) as a fraction of this run's measured ceiling;
a second case updates at minibatch >= 2048, where the update should come near that ceiling.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

from _cases import is_oom, oom_record, session_ceilings, size_record, timed_rounds

from ppo_core.record import Metric
from ppo_core.sizing import estimate

SUITE = "train"


def test_train_throughput(benchmark, emit, options, market, size):
    budget = options.budget
    _run_case(
        benchmark,
        emit,
        options,
        market,
        size,
        kind="iteration",
        n_envs=budget.train_n_envs,
        minibatch=budget.train_minibatch,
    )


def test_update_large_minibatch(benchmark, emit, options, market, size):
    budget = options.budget
    _run_case(
        benchmark,
        emit,
        options,
        market,
        size,
        kind="large_minibatch",
        n_envs=budget.big_n_envs,
        minibatch=budget.big_minibatch,
    )


def _run_case(benchmark, emit, options, market, size, *, kind, n_envs, minibatch):
    from ppo_core.config import PPOConfig
    from ppo_core.env import TradingEnv
    from ppo_core.trainer import PPOTrainer

    budget = options.budget
    data = market(budget.data_bars)
    network = size.network(data.n_features, data.lookback)
    n_steps = budget.train_n_steps
    iterations = budget.train_warmup + budget.train_iterations
    sizing = estimate(network, n_envs, n_steps, minibatch, n_bars=data.features.shape[0])
    ceilings = session_ceilings(options)
    case = {
        "kind": kind,
        "n_envs": n_envs,
        "n_steps": n_steps,
        "minibatch": minibatch,
        "n_epochs": budget.train_epochs,
    }
    base = size_record(
        SUITE,
        options,
        size.name,
        network,
        sizing,
        case=case,
        predicted={
            "params": sizing.params,
            "forward_flops_per_sample": sizing.forward_flops_per_sample,
            "train_flops_per_sample": sizing.train_flops_per_sample,
            "train_bytes": sizing.train_bytes,
            **sizing.memory_components(),
        },
    )
    try:
        config = PPOConfig(
            total_timesteps=iterations * n_envs * n_steps,
            n_envs=n_envs,
            n_steps=n_steps,
            n_epochs=budget.train_epochs,
            minibatch_size=minibatch,
            anneal_lr=False,  # a constant step size: every timed iteration does the same work
            device=options.device,
            network=network,
        )
        env = TradingEnv(data, "train", n_envs=n_envs, config=config.env, device=options.device)
        trainer = PPOTrainer(env, config)
        for _ in range(budget.train_warmup):
            trainer.train_iteration()  # allocator, cuBLAS heuristics and caches; never timed
        seconds = timed_rounds(
            benchmark,
            trainer.train_iteration,
            rounds=budget.train_iterations,
            warmup=0,
            device=options.device,
        )
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, n_envs=n_envs, n_steps=n_steps, minibatch=minibatch))
        return
    stats = trainer.stats[-len(seconds) :]
    params = sum(p.numel() for p in trainer.policy.parameters())
    del trainer, env  # the ceiling's matmuls below need the memory the case held
    ceiling, ceiling_metrics = case_ceiling(options.device, ceilings.matmul_flops_per_s)
    metrics = _metrics(stats, seconds, sizing, ceiling)
    metrics.update(ceiling_metrics)
    emit(dataclasses.replace(base, params=params, metrics=metrics))


def case_ceiling(
    device: str, session_flops_per_s: float, measure: Callable[..., Any] | None = None
) -> tuple[float, dict[str, Metric]]:
    """The matmul ceiling for this case: the session's and one measured right after the case
    (on a shared machine the session's first measurement may have met other load), the higher
    of the two. Measured with the case's memory released; where even so it runs out of memory,
    the session's ceiling is used and the record says so. `measure`: measure_ceilings."""
    import gc

    import torch

    from ppo_core.machine import measure_ceilings

    measure = measure or measure_ceilings
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    try:
        local: float | None = measure(device, quick=True).matmul_flops_per_s
        after = Metric.measured(local, "FLOP/s", None)
    except Exception as error:
        if not is_oom(error):
            raise
        local = None
        after = Metric.unavailable_because(
            f"out of memory measuring the ceiling after the case ({type(error).__name__}); "
            "the session's ceiling is used",
            "FLOP/s",
        )
    rates = [session_flops_per_s] if local is None else [session_flops_per_s, local]
    ceiling = max(rates)
    return ceiling, {
        "matmul_ceiling_flops_per_s": Metric.measured(ceiling, "FLOP/s", None, rates),
        "matmul_ceiling_after_case_flops_per_s": after,
    }


def _metrics(stats, seconds, sizing, ceiling) -> dict[str, Metric]:
    """Throughput, phase seconds and achieved FLOP/s of the timed iterations."""
    n_envs, n_steps = sizing.n_envs, sizing.n_steps
    # Rollout: a forward per env per step, plus the bootstrap value of the last observation.
    rollout_flops = n_envs * (n_steps + 1) * sizing.forward_flops_per_sample
    update_flops = [s.update_samples * sizing.train_flops_per_sample for s in stats]
    iteration_flops = [rollout_flops + u for u in update_flops]
    achieved = [f / t for f, t in zip(iteration_flops, seconds, strict=True)]
    update_rate = [u / s.update_s for u, s in zip(update_flops, stats, strict=True)]

    def median(values):
        return statistics.median(values)

    def per_iteration(name, unit, better, predicted=None):
        values = [getattr(s, name) for s in stats]
        return Metric.measured(median(values), unit, better, values, predicted)

    return {
        "env_steps_per_s": per_iteration("env_steps_per_s", "1/s", "higher"),
        "update_samples_per_s": per_iteration("update_samples_per_s", "1/s", "higher"),
        # Predicted: the roofline floor, every matmul FLOP at the measured fp32 ceiling.
        "iteration_s": Metric.measured(
            median(seconds), "s", "lower", seconds, median(iteration_flops) / ceiling
        ),
        "rollout_s": per_iteration("rollout_s", "s", "lower", rollout_flops / ceiling),
        "gae_s": per_iteration("gae_s", "s", "lower"),
        "update_s": per_iteration("update_s", "s", "lower", median(update_flops) / ceiling),
        "achieved_flops_per_s": Metric.measured(median(achieved), "FLOP/s", "higher", achieved),
        "ceiling_fraction": Metric.measured(
            median(achieved) / ceiling, "ratio", "higher", [a / ceiling for a in achieved]
        ),
        "update_flops_per_s": Metric.measured(median(update_rate), "FLOP/s", "higher", update_rate),
        "update_ceiling_fraction": Metric.measured(
            median(update_rate) / ceiling, "ratio", "higher", [u / ceiling for u in update_rate]
        ),
        "policy_loss": per_iteration("policy_loss", "1", None),
        "value_loss": per_iteration("value_loss", "1", None),
        "approx_kl": per_iteration("approx_kl", "1", None),
    }
