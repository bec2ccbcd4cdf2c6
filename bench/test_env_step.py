"""Environment steps per second with random actions at n_envs = 1, 64, 1024, beside the policy.

The env step must cost far less than the policy's forward pass at the same n_envs, or the
training throughput of every size would measure the environment instead of the network.
"""

from __future__ import annotations

from _cases import OPTIONS_KEY, is_oom, oom_record, sizes_for, timed_rounds

from archbench.instrument.record import Metric, Record

SUITE = "env"


def pytest_generate_tests(metafunc):
    if "n_envs" in metafunc.fixturenames:
        counts = metafunc.config.stash[OPTIONS_KEY].budget.env_n_envs
        metafunc.parametrize("n_envs", counts, ids=[f"n_envs{n}" for n in counts])


def test_env_step(benchmark, emit, options, market, n_envs):
    import statistics

    import torch

    from archbench.instrument.timing import time_callable
    from ppo_core.env import TradingEnv
    from ppo_core.network import ActorCritic

    budget = options.budget
    data = market(budget.data_bars)
    # The smallest size swept: the cheapest forward, so the hardest comparison for the env.
    size = sizes_for("infer", options)[0]
    network = size.network(data.n_features, data.lookback)
    base = Record(
        suite=SUITE,
        device=options.device,
        profile=options.profile,
        obs_dim=network.obs_dim,
        case={"n_envs": n_envs, "forward_preset": size.name},
    )
    try:
        env = TradingEnv(
            data,
            "train",
            n_envs=n_envs,
            device=options.device,
            seed=0,
            network=network,
        )
        obs = env.reset()
        generator = torch.Generator(device=options.device).manual_seed(0)
        actions = torch.randint(
            0, 3, (budget.env_steps, n_envs), device=options.device, generator=generator
        )  # (steps, n_envs), drawn before timing

        def run_steps():
            for action in actions:
                env.step(action)

        seconds = timed_rounds(
            benchmark, run_steps, rounds=budget.env_rounds, warmup=1, device=options.device
        )
        policy = ActorCritic(network).to(options.device).eval()

        def forward():
            with torch.inference_mode():
                policy(obs)

        forward_s = time_callable(
            forward, repeats=max(budget.env_rounds, 3), warmup=2, device=options.device
        )
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, n_envs=n_envs))
        return
    step_s = [s / budget.env_steps for s in seconds]
    step_median = statistics.median(step_s)
    forward_median = statistics.median(forward_s)
    metrics = {
        "env_steps_per_s": Metric.measured(
            n_envs / step_median, "1/s", "higher", [n_envs / s for s in step_s]
        ),
        "env_step_s": Metric.measured(step_median, "s", "lower", step_s),
        "policy_forward_s": Metric.measured(forward_median, "s", "lower", forward_s),
        "forward_over_step": Metric.measured(forward_median / step_median, "ratio", "higher"),
    }
    emit(base.replace(metrics=metrics))
