"""What each size buys on a short vs a long dataset: in-sample vs out-of-sample results.

Per size x dataset length x seed: train for a fixed budget, then run the deterministic policy
over the training split and over the validation split (after the embargo): Sharpe, return,
the generalisation gap, the share of the oracle's edge captured (synthetic data) and the
value loss on each split.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
from _cases import OPTIONS_KEY, is_oom, oom_record, size_record, timed_rounds

from instrument.record import Metric
from ppo_core.sizing import estimate

SUITE = "overfit"
LEARNING_RATE = 1e-3
ENT_COEF = 0.0
GAMMA = 0.0
"""The observation holds no position, so an action changes no later observation: the planted
edge pays on the next bar only and later rewards are noise to its advantage. gamma 0 (as in
the trainer's learning test) and a larger step size let a short budget learn the signal."""


def pytest_generate_tests(metafunc):
    options = metafunc.config.stash[OPTIONS_KEY]
    if "dataset" in metafunc.fixturenames:
        datasets = [options.data]
        if options.profile == "full" and not options.smoke:
            datasets += _installed_named_datasets(exclude=options.data)
        metafunc.parametrize("dataset", datasets, ids=[_dataset_id(d) for d in datasets])
    if "length" in metafunc.fixturenames:
        lengths = options.budget.overfit_bars
        metafunc.parametrize("length", lengths, ids=[label for label, _ in lengths])
    if "seed" in metafunc.fixturenames:
        seeds = options.budget.overfit_seeds
        metafunc.parametrize("seed", seeds, ids=[f"seed{s}" for s in seeds])


REAL_DATASETS = ("sp500", "eurusd-1h")
"""Named datasets the full profile adds when the `data` extra is installed: daily equities and
hourly FX, both shorter than the synthetic 'short' cut, so each is run whole ('long')."""


def _installed_named_datasets(exclude: str) -> list[str]:
    from ppo_core.data import DATASETS

    return [
        name
        for name in REAL_DATASETS
        if name != exclude.lower() and importlib.util.find_spec(DATASETS[name][0]) is not None
    ]


def _dataset_id(spec: str) -> str:
    from pathlib import Path

    return Path(spec).stem if ("/" in spec or "." in spec) else spec


def test_overfitting(benchmark, emit, options, market_for, size, dataset, length, seed):

    from ppo_core.config import PPOConfig
    from ppo_core.env import TradingEnv
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.trainer import PPOTrainer

    budget = options.budget
    label, bars = length
    data = market_for(dataset, bars, seed, label, budget.overfit_signal)
    network = size.network(data.n_features, data.lookback)
    sizing = estimate(network)
    train_start, train_end = data.splits.train
    case = {
        "dataset": dataset,
        "length": label,
        "bars": int(data.market.n_bars),
        "bars_per_year": round(float(data.market.periods_per_year), 1),
        "train_bars": int(train_end - train_start),
        "seed": seed,
        "timesteps": budget.overfit_timesteps,
    }
    if dataset.strip().lower() == "synthetic":
        case["signal_strength"] = budget.overfit_signal
    base = size_record(
        SUITE,
        options,
        size.name,
        network,
        sizing,
        case=case,
        predicted={"params": sizing.params},
    )
    config = PPOConfig(
        total_timesteps=budget.overfit_timesteps,
        n_envs=budget.overfit_n_envs,
        n_steps=budget.overfit_n_steps,
        minibatch_size=budget.overfit_minibatch,
        learning_rate=LEARNING_RATE,
        ent_coef=ENT_COEF,
        gamma=GAMMA,
        seed=seed,
        device=options.device,
        network=network,
    )
    try:
        env = TradingEnv(data, "train", config.n_envs, config.env, options.device, seed=seed)
        trainer = PPOTrainer(env, config)
        # One round that is the whole fixed-budget training run.
        seconds = timed_rounds(
            benchmark,
            lambda: trainer.learn(progress=False),
            rounds=1,
            warmup=0,
            device=options.device,
        )
        splits = ("train", "validation")
        results = {
            split: evaluate_with_baselines(trainer.policy, data, split, config.env.cost_bps)
            for split in splits
        }
        # Fresh envs seeded apart from training: the same rollout, bootstrap and GAE as
        # training, on each split, so the two value losses are comparable.
        value_loss = {
            split: trainer.value_loss(
                TradingEnv(data, split, config.n_envs, config.env, options.device, config.seed + 1)
            )
            for split in splits
        }
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, n_envs=config.n_envs, minibatch=config.minibatch_size))
        return
    metrics = _metrics(results, value_loss)
    metrics["train_s"] = Metric.measured(seconds[0], "s", "lower", seconds)
    metrics["train_env_steps_per_s"] = Metric.measured(
        trainer.global_step / seconds[0], "1/s", "higher"
    )
    emit(dataclasses.replace(base, metrics=metrics))


@pytest.fixture(scope="session")
def market_for():
    """(dataset, bars, seed, label, signal) -> PreparedData; real data: 'short' is its last
    `bars` (the signal strength applies to synthetic data only)."""
    from ppo_core.data import load_market_data, prepare

    cache = {}

    def get(dataset, bars, seed, label, signal):
        if dataset.strip().lower() == "synthetic":
            key = (dataset, bars, seed, signal)
            if key not in cache:
                market = load_market_data("synthetic", bars=bars, seed=seed, signal_strength=signal)
                cache[key] = prepare(market)
            return cache[key]
        key = (dataset, label)
        if key not in cache:
            full = load_market_data(dataset)
            if label == "long" or full.n_bars <= bars:
                if label != "long":
                    pytest.skip(f"{dataset} has only {full.n_bars:,} bars; no shorter cut")
                cache[key] = prepare(full)
            else:
                cache[key] = prepare(full.tail(bars))
        return cache[key]

    return get


def _metrics(results, value_loss) -> dict[str, Metric]:
    train, val = results["train"]["policy"], results["validation"]["policy"]
    metrics = {
        "train_sharpe": Metric.measured(train.sharpe, "ratio", "higher"),
        "val_sharpe": Metric.measured(val.sharpe, "ratio", "higher"),
        "train_return": Metric.measured(train.total_log_return, "log", "higher"),
        "val_return": Metric.measured(val.total_log_return, "log", "higher"),
        # In-sample minus out-of-sample: how much of the training result does not carry over.
        "sharpe_gap": Metric.measured(train.sharpe - val.sharpe, "ratio", "lower"),
        "val_turnover": Metric.measured(val.turnover, "ratio", None),
        "val_buy_and_hold_sharpe": Metric.measured(
            results["validation"]["buy_and_hold"].sharpe, "ratio", None
        ),
        "train_value_loss": Metric.measured(value_loss["train"], "1", "lower"),
        "val_value_loss": Metric.measured(value_loss["validation"], "1", "lower"),
    }
    oracle = results["validation"].get("oracle")
    if oracle is None:
        metrics["oracle_edge_fraction"] = Metric.unavailable_because(
            "real data has no known oracle", "ratio", "higher"
        )
    elif oracle.total_log_return <= 0:
        metrics["oracle_edge_fraction"] = Metric.unavailable_because(
            f"the oracle lost money on this validation split ({oracle.total_log_return:.4f})",
            "ratio",
            "higher",
        )
    else:
        fraction = val.total_log_return / oracle.total_log_return
        metrics["oracle_edge_fraction"] = Metric.measured(fraction, "ratio", "higher")
        metrics["val_oracle_sharpe"] = Metric.measured(oracle.sharpe, "ratio", None)
    return metrics
