"""Shared plumbing of the bench suites: options, profile budgets, sizes, timing and OOM records.

The suites only say what to measure; how long to measure it (quick, full, or the CI smoke run
under `--benchmark-disable`) and which sizes to sweep is decided here, in one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from archbench.instrument.record import Metric, Record
from archbench.instrument.sweep.options import PROFILES
from ppo_core.config import EnvConfig, NetworkConfig
from ppo_core.errors import is_out_of_memory
from ppo_core.presets import PRESETS, preset_name
from ppo_core.synthetic import DEFAULT_SIGNAL_STRENGTH

__all__ = [
    "ALGORITHM",
    "BUDGETS",
    "OPTIONS_KEY",
    "PROFILES",
    "SMOKE",
    "BenchOptions",
    "Budget",
    "Size",
    "is_oom",
    "latency_metrics",
    "observation_windows",
    "oom_record",
    "session_ceilings",
    "size_record",
    "sizes_for",
    "timed_rounds",
]

OPTIONS_KEY = pytest.StashKey["BenchOptions"]()
"""Where conftest keeps the session's BenchOptions on the pytest config."""
_TRAINING_SUITES = ("train", "overfit")

ALGORITHM: dict[str, float] = {
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_coef": 0.2,
    "ent_coef": 0.0,
    "learning_rate": 1e-3,
}
"""The PPO settings every suite that trains to learn (overfit, peer) uses, so they run one
algorithm: discounting on (the observation carries the position, the edge lasts a regime),
no entropy bonus and a step size that lets short budgets learn."""


OVERFIT_LEARNING_RATES = (3e-4, 1e-3, 3e-3)
"""The overfitting suite's step-size sweep: ALGORITHM's 1e-3 and a factor of ~3 either side."""


@dataclass(frozen=True)
class Budget:
    """How much work each suite does per case under one profile."""

    infer_warmup: int
    """Untimed forward passes before the timed ones."""
    infer_rounds: int
    """Timed forward passes per (size, batch, backend) case."""
    infer_batch: int
    """The 'batch n_envs' case: observations per forward, as in a rollout step."""
    infer_backends: tuple[str, ...]
    """archbench.instrument.backends names to time; int8 is skipped on a GPU, bf16 and fp16 on
    a CPU; cuda_graph on a CPU records why it is unavailable."""
    train_n_envs: int
    """Environments in the throughput case."""
    train_n_steps: int
    """Steps per environment per rollout in the throughput case."""
    train_minibatch: int
    """Minibatch of the throughput case."""
    train_epochs: int
    """Update epochs per iteration."""
    train_warmup: int
    """Untimed iterations before the timed ones (allocator, cuBLAS heuristics, caches)."""
    train_iterations: int
    """Timed PPO iterations per case."""
    train_precisions: tuple[str, ...]
    """Training precisions measured per size on a GPU (a CPU measures fp32 only; a GPU older
    than compute capability 8.0 measures fp32 only)."""
    train_capture: bool
    """On a GPU, also time the whole iteration with the update captured in a CUDA graph
    (PPOConfig.capture), at the first of train_precisions, beside the eager reference."""
    big_minibatch: int
    """Minibatch of the large-update case (>= 2048: where the update should near the ceiling)."""
    big_n_envs: int
    """Environments of the large-update case (n_envs x train_n_steps >= big_minibatch)."""
    overfit_bars: tuple[tuple[str, int], ...]
    """(label, bars) of the synthetic dataset lengths: short ~ a year of hourly bars, long."""
    overfit_signal: float
    """Planted signal strength of the synthetic data: the edge per bar inside a trend regime,
    in units of that bar's volatility (the CLI's default: one task everywhere)."""
    overfit_cost_bps: float
    """Trading cost of the overfitting cases, bp per unit of position change: above one bar's
    edge, so a policy must hold through a regime to profit (the CLI's default)."""
    overfit_seeds: tuple[int, ...]
    """Training seeds per (size, dataset) case."""
    overfit_timesteps: int
    """Environment steps of training per overfitting case."""
    overfit_n_envs: int
    """Environments while training for the overfitting case."""
    overfit_n_steps: int
    """Rollout length while training for the overfitting case."""
    overfit_minibatch: int
    """Minibatch while training for the overfitting case."""
    overfit_folds: int
    """Purged walk-forward folds per dataset (`ppo_core.data.walk_forward_folds`): fold k trains
    on blocks 0..k, selects on block k+1 and is judged on block k+2."""
    overfit_learning_rates: tuple[float, ...]
    """Adam step sizes each case trains at; the one (and the curve point) with the best
    validation Sharpe is the case's model, so capacity is not confounded with step size."""
    overfit_curve_points: int
    """Evenly spaced points of the budget at which train and validation are scored."""
    memory_n_envs: int
    """Environments of the memory case's training setup."""
    memory_n_steps: int
    """Rollout length of the memory case."""
    memory_minibatch: int
    """Minibatch of the memory case."""
    memory_iterations: int
    """Full PPO iterations run inside the measured child."""
    env_n_envs: tuple[int, ...]
    """Environment counts of the env-step suite."""
    env_steps: int
    """Env steps per timed round."""
    env_rounds: int
    """Timed rounds per env-step case."""
    ceiling_quick: bool
    """Short ceiling measurement (fewer repeats)."""
    data_bars: int
    """Bars of the synthetic dataset for the train, memory and env suites."""


# Duration of `archbench sweep --profile full`, measured on one H100 80GB (shared/runs/h100,
# before the training suite swept precisions and before the overfitting suite ran 5 seeds):
# perf suites 3.2 min for 69 cases, SB3 peers 2.0 min, overfitting 16-23 s per case (30
# synthetic cases, ~10 min): about 15 min in all; the quick profile 2.0 min (1.3 min on an H200,
# docs/measurements). Training now runs fp32, tf32 and bf16 plus the captured update per size,
# about three times its former cases, and overfitting 5 seeds (50 cases, ~1.7x). Other cards
# (estimated from FLOP counts, not measured): A100 ~1-1.5 h, RTX 4090 ~1 h, 16 GB cards ~2 h,
# T4 ~4-5 h; a CPU: days, use quick.
# The quick profile, measured on 2 AMD EPYC cores (torch 2.13 CPU): 2 min 45 s for 34 cases
# on an otherwise idle machine; 9-11 min while other jobs kept its load average at 3-6, where
# OpenMP threads contending for the cores also make the figures themselves unusable (each
# record's host_load_per_core says so).
BUDGETS: dict[str, Budget] = {
    "quick": Budget(
        infer_warmup=5,
        # A p99's distribution-free 95% upper bound needs 299 samples (0.99^299 < 0.05), a
        # two-sided interval 368; at 500 the bound is the 2nd-largest sample and covers ~96%,
        # not the maximum's 98-99%. Fewer and decisions say 'insufficient' (issue 23).
        infer_rounds=500,
        infer_batch=64,
        infer_backends=("eager", "onnx", "int8", "bf16", "fp16", "cuda_graph"),
        train_n_envs=8,
        train_n_steps=64,
        train_minibatch=256,
        train_epochs=2,
        train_warmup=1,
        train_iterations=3,
        train_precisions=("tf32",),
        train_capture=True,
        big_minibatch=2048,
        big_n_envs=32,
        overfit_bars=(("short", 6_000), ("long", 26_000)),
        # The CLI's market. At this budget the policies have barely started to learn (README,
        # "Telling sizes apart"): quick records show noise, and say OVERLAP.
        overfit_signal=DEFAULT_SIGNAL_STRENGTH,
        overfit_cost_bps=EnvConfig.cost_bps,
        overfit_seeds=(0,),
        overfit_timesteps=20_480,
        overfit_n_envs=16,
        overfit_n_steps=64,
        overfit_minibatch=256,
        overfit_folds=2,
        overfit_learning_rates=OVERFIT_LEARNING_RATES,
        overfit_curve_points=5,
        memory_n_envs=8,
        memory_n_steps=64,
        memory_minibatch=256,
        memory_iterations=2,
        env_n_envs=(1, 64, 1024),
        env_steps=32,
        env_rounds=5,
        ceiling_quick=True,
        data_bars=6_000,
    ),
    "full": Budget(
        infer_warmup=20,
        infer_rounds=500,  # as quick: what a p99's 95% bounds need
        infer_batch=1024,
        infer_backends=("eager", "compile", "onnx", "int8", "bf16", "fp16", "cuda_graph"),
        train_n_envs=1024,
        train_n_steps=128,
        train_minibatch=4096,
        train_epochs=4,
        train_warmup=2,
        train_iterations=5,
        train_precisions=("tf32", "bf16", "fp32"),
        train_capture=True,
        big_minibatch=8192,
        big_n_envs=1024,
        overfit_bars=(("short", 8_760), ("long", 43_800)),
        overfit_signal=DEFAULT_SIGNAL_STRENGTH,
        overfit_cost_bps=EnvConfig.cost_bps,
        # Ten seeds, each its own synthetic series, sizes paired on the same bars and folds: five
        # seeds detect only a ~4.6 Sharpe difference at 80% power on the H200 records (issue
        # 22), ten about 2.8. Each case trains 3 step sizes x 1M steps (the curve keeps the best
        # point), so the suite is 10 seeds x 3 folds x 3 lrs per size and length (estimated 3-4
        # h on an H100, not measured yet).
        overfit_seeds=tuple(range(10)),
        overfit_timesteps=1_000_000,
        overfit_n_envs=256,
        overfit_n_steps=256,
        overfit_minibatch=4096,
        overfit_folds=3,
        overfit_learning_rates=OVERFIT_LEARNING_RATES,
        overfit_curve_points=8,
        memory_n_envs=1024,
        memory_n_steps=256,
        memory_minibatch=4096,
        memory_iterations=2,
        env_n_envs=(1, 64, 1024),
        env_steps=256,
        env_rounds=20,
        ceiling_quick=False,
        data_bars=43_800,
    ),
}

SMOKE = Budget(
    infer_warmup=1,
    infer_rounds=1,
    infer_batch=8,
    infer_backends=("eager", "onnx", "int8", "bf16", "cuda_graph"),
    train_n_envs=2,
    train_n_steps=16,
    train_minibatch=16,
    train_epochs=1,
    train_warmup=0,
    train_iterations=1,
    train_precisions=("tf32", "bf16"),
    train_capture=True,
    big_minibatch=64,
    big_n_envs=4,
    overfit_bars=(("short", 1_500),),
    overfit_signal=DEFAULT_SIGNAL_STRENGTH,
    overfit_cost_bps=EnvConfig.cost_bps,
    overfit_seeds=(0,),
    overfit_timesteps=64,
    overfit_n_envs=2,
    overfit_n_steps=16,
    overfit_minibatch=16,
    overfit_folds=1,
    overfit_learning_rates=(1e-3,),
    overfit_curve_points=2,
    memory_n_envs=2,
    memory_n_steps=16,
    memory_minibatch=16,
    memory_iterations=1,
    env_n_envs=(1, 64),
    env_steps=4,
    env_rounds=1,
    ceiling_quick=True,
    data_bars=1_500,
)
"""`--benchmark-disable` (CI): every case once, seconds each; the figures prove the plumbing."""


@dataclass(frozen=True)
class Size:
    """One network size under test: a preset or a custom list of widths."""

    name: str
    """Readable id: the preset name, or the widths joined by 'x' ('768x384x192')."""
    hidden_dims: tuple[int, ...]
    """Trunk widths."""

    def network(self, n_features: int = 53, lookback: int = 100) -> NetworkConfig:
        """The NetworkConfig of this size for data of `n_features` x `lookback`."""
        return NetworkConfig(n_features=n_features, lookback=lookback, hidden_dims=self.hidden_dims)

    @property
    def preset(self) -> str:
        return self.name


@dataclass(frozen=True)
class BenchOptions:
    """The bench command line, parsed once per session."""

    presets: tuple[str, ...] | None
    """Presets asked for with --presets; None: the profile's defaults per suite."""
    hidden_dims: tuple[tuple[int, ...], ...]
    """Custom sizes from --hidden-dims, swept beside the presets."""
    profile: str
    """'quick' or 'full'."""
    device: str
    """Resolved torch device: 'cpu' or 'cuda:N'."""
    data: str
    """'synthetic', a named dataset or a path to an OHLCV file."""
    smoke: bool
    """--benchmark-disable: every case once with the SMOKE budget."""
    budget: Budget = field(repr=False)
    """The budget in force (SMOKE when smoke, else the profile's)."""
    lookback: int = 100
    """Bars per observation of every network (--lookback; 100 is the reference shape)."""
    cost_bps: float | None = None
    """--cost-bps as given; None: synthetic data at the budget's cost, a real dataset at its
    own (ppo_core.loaders.default_cost)."""

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def sizes_for(suite: str, options: BenchOptions) -> list[Size]:
    """The sizes a suite sweeps: --presets if given, else the profile's, plus custom sizes.

    quick: every preset but xlarge for inference and memory; tiny and small for training and
    overfitting. full: every preset everywhere.
    """
    if options.presets is not None:
        names: tuple[str, ...] = options.presets
    elif options.profile == "full":
        names = tuple(PRESETS)
    elif suite in _TRAINING_SUITES:
        names = ("tiny", "small")
    else:
        names = tuple(n for n in PRESETS if n != "xlarge")
    sizes = [Size(n, PRESETS[n]) for n in names]
    known = {s.hidden_dims for s in sizes}
    sizes += [Size(preset_name(d), d) for d in options.hidden_dims if d not in known]
    return sizes


_CEILINGS: dict[tuple[str, bool], Any] = {}


def session_ceilings(options: BenchOptions) -> Any:
    """This machine's Ceilings (archbench.instrument.device.machine), measured on first use, then
    reused."""
    from archbench.instrument.device.machine import measure_ceilings

    key = (options.device, options.budget.ceiling_quick)
    if key not in _CEILINGS:
        _CEILINGS[key] = measure_ceilings(options.device, quick=options.budget.ceiling_quick)
    return _CEILINGS[key]


def is_oom(error: BaseException) -> bool:
    """True for a host or device out-of-memory error (ppo_core.errors.is_out_of_memory)."""
    return is_out_of_memory(error)


def size_record(
    suite: str,
    options: BenchOptions,
    preset: str,
    network: Any,
    sizing: Any,
    case: dict[str, Any],
    predicted: dict[str, Any],
    precision: str | None = None,
) -> Record:
    """A size's record before its metrics: the suite, machine, profile, architecture and
    precision it measured, so every figure traces back to a config."""
    return Record(
        suite=suite,
        device=options.device,
        precision=precision,
        profile=options.profile,
        preset=preset,
        hidden_dims=network.hidden_dims,
        trunk=network.trunk,
        obs_dim=network.obs_dim,
        params=sizing.params,
        case=case,
        predicted=predicted,
    )


def oom_record(base: Record, **where: Any) -> Record:
    """`base` marked as out of memory at the given case settings; its metrics are dropped."""
    at = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in where.items())
    return Record(
        suite=base.suite,
        device=base.device,
        profile=base.profile,
        preset=base.preset,
        hidden_dims=base.hidden_dims,
        trunk=base.trunk,
        obs_dim=base.obs_dim,
        params=base.params,
        precision=base.precision,
        status="oom",
        reason=f"out of memory at {at}" if at else "out of memory",
        case=dict(base.case),
        metrics={},
        predicted=dict(base.predicted),
    )


def timed_rounds(
    benchmark: Any, fn: Callable[[], Any], *, rounds: int, warmup: int, device: str
) -> list[float]:
    """Time `fn` through pytest-benchmark's pedantic mode; return the timed rounds' seconds.

    Each call is timed by `archbench.instrument.timing.Timer` (CUDA events on a GPU, so the figure
    is the device's, not the launch's); warm-up rounds are run but not returned. Under
    --benchmark-disable pytest-benchmark calls the target once, so warm-up runs here instead.
    """
    from archbench.instrument.timing import Timer

    timer = Timer(device)
    target = timer(fn)
    if benchmark.enabled:
        benchmark.pedantic(target, rounds=rounds, warmup_rounds=warmup, iterations=1)
        return timer.samples[warmup:]
    for _ in range(warmup):
        fn()
    benchmark.pedantic(target)
    return list(timer.samples)


def latency_metrics(samples: list[float], predicted: float | None = None) -> dict[str, Metric]:
    """p50 and p99 latency (seconds) of raw samples; the floor prediction beside p50."""
    from archbench.instrument.timing import Latency

    stats = Latency.from_samples(samples)
    return {
        "latency_p50_s": Metric.measured(stats.median, "s", "lower", samples, predicted),
        "latency_p99_s": Metric.measured(stats.p99, "s", "lower", samples),
    }


def observation_windows(
    data: Any, n: int, seed: int = 0, split: str = "train", device: str = "cpu"
) -> Any:
    """`n` real observations (n, obs_dim) float32 at random bars of a split, on `device`:
    exactly what TradingEnv observes, gathered by TradingEnv.observe."""
    import torch

    from ppo_core.env import TradingEnv

    env = TradingEnv(data, split, n_envs=1, device=device)
    generator = torch.Generator().manual_seed(seed)
    bars = torch.randint(env.split_start, env.split_end, (n,), generator=generator)  # (n,)
    return env.observe(bars)
