"""ppo_core's PPO beside stable-baselines3's on the same network, task and settings.

Both learn() in alternating rounds in one process (drift cancels in the per-round ratio);
env-steps/s, `speedup_ratio_vs_sb3` and the validation Sharpe each reaches are recorded.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

import pytest
from _cases import ALGORITHM, OPTIONS_KEY, is_oom, oom_record, size_record

from archbench.instrument.record import Metric
from ppo_core.presets import PRESETS
from ppo_core.sizing import estimate

SUITE = "peer"


@dataclass(frozen=True)
class _Settings:
    """The PPO settings one framework trains with in a case."""

    n_envs: int
    """Environments stepped together."""
    n_steps: int
    """Steps per environment per rollout."""
    minibatch: int
    """Samples per gradient step."""
    n_epochs: int
    """Passes over each rollout."""
    iterations: int
    """Rollout + update cycles in one timed learn()."""

    @property
    def env_steps(self) -> int:
        return self.iterations * self.n_envs * self.n_steps


# The reference settings (SB3 2.9.2: 8 envs, n_steps 256, minibatch 256, 4 epochs).
_IDENTICAL = _Settings(n_envs=8, n_steps=256, minibatch=256, n_epochs=4, iterations=2)
# Best throughput, chosen by hand (not searched): many envs amortise each step's Python and
# forward-launch cost; a large minibatch amortises Adam's pass over the weights. SB3 keeps full
# observations on the host, so its rollout is held smaller on a GPU.
_BEST = {
    "cpu": {
        "ppo_core": _Settings(n_envs=64, n_steps=64, minibatch=1024, n_epochs=4, iterations=2),
        "sb3": _Settings(n_envs=64, n_steps=64, minibatch=1024, n_epochs=4, iterations=2),
    },
    "cuda": {
        "ppo_core": _Settings(n_envs=1024, n_steps=128, minibatch=4096, n_epochs=4, iterations=2),
        "sb3": _Settings(n_envs=256, n_steps=128, minibatch=4096, n_epochs=4, iterations=2),
    },
}
_SMOKE = _Settings(n_envs=2, n_steps=16, minibatch=16, n_epochs=1, iterations=2)
_ROUNDS = {"quick": 2, "full": 3}
"""Alternating (ppo_core, sb3) rounds per case; each learn() starts from the same seed."""
_DEFAULT_PRESETS = {"quick": ("tiny",), "full": ("tiny", "medium")}


def pytest_generate_tests(metafunc):
    options = metafunc.config.stash[OPTIONS_KEY]
    if "peer_preset" in metafunc.fixturenames:
        names = options.presets or _DEFAULT_PRESETS[options.profile]
        metafunc.parametrize("peer_preset", names)


def _settings(options, kind: str) -> dict[str, _Settings]:
    if options.smoke:
        return {"ppo_core": _SMOKE, "sb3": _SMOKE}
    if kind == "identical":
        return {"ppo_core": _IDENTICAL, "sb3": _IDENTICAL}
    return _BEST["cuda" if options.cuda else "cpu"]


@pytest.mark.parametrize("kind", ["identical", "best"])
def test_peer_throughput(benchmark, emit, options, market, peer_preset, kind):
    pytest.importorskip("stable_baselines3", reason="the peers extra is not installed")
    import stable_baselines3
    import torch

    from archbench.instrument import peers
    from ppo_core.config import NetworkConfig, PPOConfig

    data = market(options.budget.data_bars)
    network = NetworkConfig(
        n_features=data.n_features,
        lookback=data.lookback,
        hidden_dims=PRESETS[peer_preset],
        trunk="separate",  # as SB3's MlpPolicy builds it
    )
    settings = _settings(options, kind)
    network_cost_bps = PPOConfig().env.cost_bps

    def config(framework: str) -> PPOConfig:
        s = settings[framework]
        return PPOConfig(
            total_timesteps=s.env_steps,
            n_envs=s.n_envs,
            n_steps=s.n_steps,
            n_epochs=s.n_epochs,
            minibatch_size=s.minibatch,
            device=options.device,
            precision="fp32",  # SB3 runs plain fp32: identical settings mean TF32 off too
            network=network,
            **ALGORITHM,  # the overfitting suite's algorithm and settings
        )

    sizing = estimate(network)
    base = size_record(
        SUITE,
        options,
        peer_preset,
        network,
        sizing,
        case={
            "kind": kind,
            "ppo_core": dataclasses.asdict(settings["ppo_core"]),
            "sb3": dataclasses.asdict(settings["sb3"]),
            "sb3_version": stable_baselines3.__version__,
            "torch_threads": torch.get_num_threads(),
            "timed": "whole learn(): rollouts, GAE and updates; construction excluded",
            "evaluation": "argmax actions over every validation bar (ppo_core.env)",
            **ALGORITHM,
            **peers.sb3_loss_settings(config("sb3")),
            "cost_bps": network_cost_bps,
            "account_state": network.account_state,
            "account_gain": network.observation_layout["account_gain"],
        },
        predicted={"params": sizing.params},
    )
    runs: dict[str, list] = {"ppo_core": [], "sb3": []}
    runners = {"ppo_core": peers.run_ppo_core, "sb3": peers.run_sb3}
    try:
        # Untimed warm-up of both (imports, allocator, first-call paths), at smoke size.
        smoke = config("ppo_core").replace(
            total_timesteps=_SMOKE.env_steps, n_envs=2, n_steps=16, minibatch_size=16, n_epochs=1
        )
        peers.run_ppo_core(data, smoke)
        peers.run_sb3(data, smoke)

        def one_round() -> None:
            for framework in ("ppo_core", "sb3"):
                runs[framework].append(runners[framework](data, config(framework)))

        rounds = _ROUNDS[options.profile] if benchmark.enabled else 1
        benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=0, iterations=1)
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, kind=kind))
        return
    emit(base.replace(metrics=_metrics(runs)))


def _metrics(runs: dict[str, list]) -> dict[str, Metric]:
    ours, theirs = runs["ppo_core"], runs["sb3"]
    # Paired per round: both ran back to back, so a busy spell on the machine hits both.
    ratios = [a.env_steps_per_s / b.env_steps_per_s for a, b in zip(ours, theirs, strict=True)]
    metrics = {
        "speedup_ratio_vs_sb3": Metric.measured(
            statistics.median(ratios), "ratio", "higher", ratios
        )
    }
    for name, framework_runs in (("ppo_core", ours), ("sb3", theirs)):
        rates = [r.env_steps_per_s for r in framework_runs]
        sharpes = [r.validation.sharpe for r in framework_runs]
        metrics[f"env_steps_per_s_{name}"] = Metric.measured(
            statistics.median(rates), "1/s", "higher", rates
        )
        metrics[f"validation_sharpe_{name}"] = Metric.measured(
            statistics.median(sharpes), "1", "higher", sharpes
        )
        metrics[f"params_{name}"] = Metric.measured(framework_runs[0].params, "count")
    return metrics
