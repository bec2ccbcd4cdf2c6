"""Training throughput per size and precision: whole PPO iterations (rollout + GAE + update).

train_env_steps_per_s is the whole iteration; rollout_env_steps_per_s the rollout alone;
update samples/s, seconds per phase, and the achieved matmul FLOP/s (sizing's exact per-sample
counts over measured seconds) as a fraction of the ceiling of the SAME precision (tf32 against
the TF32 GEMM ceiling, bf16 against bf16). A GPU measures each precision of the profile and,
beside the eager update, the update replayed from a CUDA graph (PPOConfig.capture); a CPU
measures fp32 eager only. A second case updates at minibatch >= 2048, where the update should
come near the ceiling.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from _cases import OPTIONS_KEY, is_oom, oom_record, session_ceilings, size_record, timed_rounds

from archbench.instrument.record import Metric
from ppo_core.sizing import estimate

SUITE = "train"


def precisions_for(options) -> list[str]:
    """The budget's training precisions this device can run: fp32 alone on a CPU or on a GPU
    without TF32/bf16 tensor cores (compute capability < 8.0)."""
    if not options.cuda:
        return ["fp32"]
    import torch

    if torch.cuda.get_device_capability(options.device)[0] < 8:
        return ["fp32"]
    return list(options.budget.train_precisions)


def pytest_generate_tests(metafunc):
    options = metafunc.config.stash[OPTIONS_KEY]
    if "precision" not in metafunc.fixturenames:
        return
    precisions = precisions_for(options)
    combos = [(p, False) for p in precisions]
    if "update" in metafunc.fixturenames and options.cuda and options.budget.train_capture:
        combos.insert(1, (precisions[0], True))  # captured beside eager, same precision
    if "update" in metafunc.fixturenames:
        ids = [f"{p}-{'captured' if c else 'eager'}" for p, c in combos]
        metafunc.parametrize(("precision", "update"), combos, ids=ids)
    else:
        metafunc.parametrize("precision", precisions)


def test_train_throughput(benchmark, emit, options, market, size, precision, update):
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
        precision=precision,
        capture=update,
    )


def test_update_large_minibatch(benchmark, emit, options, market, size, precision):
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
        precision=precision,
        capture=False,
    )


def _run_case(
    benchmark, emit, options, market, size, *, kind, n_envs, minibatch, precision, capture
):
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
        "precision": precision,
        "update": "captured" if capture else "eager",
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
        precision=precision,
    )
    try:
        trainer = _trainer(options, data, network, case, iterations)
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
    del trainer  # the ceiling's matmuls below need the memory the case held
    session = ceilings.matmul_flops_per_s_by_dtype.get(precision)
    ceiling, ceiling_metrics = case_ceiling(options.device, session, precision=precision)
    metrics = _metrics(stats, seconds, sizing, ceiling)
    metrics.update(ceiling_metrics)
    emit(base.replace(params=params, metrics=metrics))


def _trainer(options, data, network, case: dict, iterations: int):  # -> PPOTrainer
    """A trainer for the case's settings, with the budget of `iterations` whole iterations."""
    from ppo_core.config import PPOConfig
    from ppo_core.env import TradingEnv
    from ppo_core.trainer import PPOTrainer

    n_envs, n_steps = case["n_envs"], case["n_steps"]
    config = PPOConfig(
        total_timesteps=iterations * n_envs * n_steps,
        n_envs=n_envs,
        n_steps=n_steps,
        n_epochs=case["n_epochs"],
        minibatch_size=case["minibatch"],
        anneal_lr=False,  # a constant step size: every timed iteration does the same work
        device=options.device,
        precision=case["precision"],
        capture=case["update"] == "captured",
        network=network,
    )
    env = TradingEnv(
        data, "train", n_envs=n_envs, config=config.env, device=options.device, network=network
    )
    return PPOTrainer(env, config)


def case_ceiling(
    device: str,
    session_flops_per_s: float | None,
    measure: Callable[..., Any] | None = None,
    precision: str = "fp32",
) -> tuple[float, dict[str, Metric]]:
    """The `precision` matmul ceiling for this case: the session's and one measured right after
    the case (on a shared machine the session's first measurement may have met other load), the
    higher of the two. Measured with the case's memory released; where even so it runs out of
    memory, the session's ceiling is used and the record says so. `measure`: measure_ceilings."""
    import gc

    import torch

    from archbench.instrument.device.machine import measure_ceilings

    measure = measure or measure_ceilings
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    try:
        measured = measure(device, quick=True)
        local: float | None = measured.matmul_flops_per_s_by_dtype.get(precision)
        if local is None:
            why = measured.unavailable.get(precision, f"no {precision} ceiling on {device}")
            after = Metric.unavailable_because(why, "FLOP/s")
        else:
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
    rates = [r for r in (session_flops_per_s, local) if r is not None]
    if not rates:
        raise AssertionError(f"no {precision} matmul ceiling was measured on {device}")
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
    whole = [n_envs * n_steps / t for t in seconds]

    def median(values):
        return statistics.median(values)

    def per_iteration(name, unit, better, predicted=None):
        values = [getattr(s, name) for s in stats]
        return Metric.measured(median(values), unit, better, values, predicted)

    return {
        # The whole iteration (rollout + GAE + update), timed around train_iteration.
        "train_env_steps_per_s": Metric.measured(median(whole), "1/s", "higher", whole),
        "rollout_env_steps_per_s": per_iteration("rollout_env_steps_per_s", "1/s", "higher"),
        "update_samples_per_s": per_iteration("update_samples_per_s", "1/s", "higher"),
        # Predicted: the roofline floor, every matmul FLOP at the case precision's ceiling.
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
