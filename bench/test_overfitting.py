"""What each size buys on a short vs a long dataset: in-sample vs out-of-sample results.

Per size x dataset x length x seed: train for a fixed budget with the shared PPO settings
(`_cases.ALGORITHM`, as the peers suite), then run the deterministic policy over the training
split and over the validation split (after the embargo): Sharpe beside the cost-aware oracle's
on the same bars, mean net return per bar, the share of the oracle's edge captured (synthetic
data), the value loss on each split, and the per-bar validation returns (`series`) so a report
can pair sizes on the same bars and bootstrap them. At the end of the session the suite prints,
per dataset and length, each size's validation mean return with a 95% interval (seeds plus a
block bootstrap over bars) and says plainly whether tiny's and the largest size's overlap.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from _cases import ALGORITHM, OPTIONS_KEY, is_oom, oom_record, size_record, timed_rounds

from archbench_instrument.record import Metric
from archbench_instrument.resample import annualised_sharpe, block_length, circular_block_indices
from ppo_core.sizing import estimate

SUITE = "overfit"
BOOTSTRAP_RESAMPLES = 1000
"""Bootstrap resamples per interval."""


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
    from ppo_core.loaders import DATASETS

    return [
        name
        for name in REAL_DATASETS
        if name != exclude.lower() and importlib.util.find_spec(DATASETS[name][0]) is not None
    ]


def _dataset_id(spec: str) -> str:
    from pathlib import Path

    return Path(spec).stem if ("/" in spec or "." in spec) else spec


def _is_synthetic(dataset: str) -> bool:
    return dataset.strip().lower() == "synthetic"


def test_overfitting(
    benchmark, emit, options, market_for, overfit_summary, size, dataset, length, seed
):
    from ppo_core.config import EnvConfig, PPOConfig
    from ppo_core.env import (
        TradingEnv,
        baselines,
        evaluate_positions,
        net_returns,
        oracle_split_positions,
    )
    from ppo_core.evaluation import greedy_positions
    from ppo_core.trainer import PPOTrainer

    budget = options.budget
    label, bars = length
    data = market_for(dataset, bars, seed, label, budget.overfit_signal)
    network = size.network(data.n_features, data.lookback)
    sizing = estimate(network)
    config = PPOConfig(
        total_timesteps=budget.overfit_timesteps,
        n_envs=budget.overfit_n_envs,
        n_steps=budget.overfit_n_steps,
        minibatch_size=budget.overfit_minibatch,
        seed=seed,
        device=options.device,
        network=network,
        env=EnvConfig(cost_bps=budget.overfit_cost_bps),
        **ALGORITHM,
    )
    train_start, train_end = data.splits.train
    val_start, val_end = data.splits.validation
    case = {
        "dataset": dataset,
        "length": label,
        "bars": int(data.market.n_bars),
        "bars_per_year": round(float(data.market.periods_per_year), 1),
        "seed": seed,
        "train_bars": int(train_end - train_start),
        "val_bars": int(val_end - val_start),
        "val_start": int(val_start),
        "train_env_steps": config.n_iterations * config.batch_size,
        "timesteps": budget.overfit_timesteps,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "ent_coef": config.ent_coef,
        "learning_rate": config.learning_rate,
        "cost_bps": config.env.cost_bps,
        "volatility": round(_annual_volatility(data), 6),
        "account_state": network.account_state,
        "account_gain": network.observation_layout["account_gain"],
    }
    if _is_synthetic(dataset):
        case["signal_strength"] = budget.overfit_signal
    base = size_record(
        SUITE, options, size.name, network, sizing, case=case, predicted={"params": sizing.params}
    )
    try:
        env = TradingEnv(
            data,
            "train",
            config.n_envs,
            config.env,
            options.device,
            seed=seed,
            network=network,
        )
        trainer = PPOTrainer(env, config)
        # One round that is the whole fixed-budget training run.
        seconds = timed_rounds(
            benchmark,
            lambda: trainer.learn(progress=False),
            rounds=1,
            warmup=0,
            device=options.device,
        )
        cost = config.env.cost_bps
        results, returns = {}, {}
        for split in ("train", "validation"):
            positions = greedy_positions(trainer.policy, data, split)
            results[split] = {
                "policy": evaluate_positions(positions, data, split, cost),
                **baselines(data, split, cost),
            }
            returns[split] = net_returns(positions, data, split, cost)
        oracle = oracle_split_positions(data, "validation", cost)
        oracle_returns = None if oracle is None else net_returns(oracle, data, "validation", cost)
        # Fresh envs seeded apart from training: the same rollout, bootstrap and GAE as
        # training, on each split, so the two value losses are comparable.
        value_loss = {
            split: trainer.value_loss(
                TradingEnv(
                    data,
                    split,
                    config.n_envs,
                    config.env,
                    options.device,
                    config.seed + 1,
                    network=network,
                )
            )
            for split in ("train", "validation")
        }
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, n_envs=config.n_envs, minibatch=config.minibatch_size))
        return
    metrics = _metrics(results, value_loss, returns["validation"], oracle_returns)
    metrics.update(_intervals(returns["validation"], data.market.periods_per_year, seed))
    metrics["train_s"] = Metric.measured(seconds[0], "s", "lower", seconds)
    metrics["train_env_steps_per_s"] = Metric.measured(
        trainer.global_step / seconds[0], "1/s", "higher"
    )
    series = {"val_net_returns": returns["validation"].tolist()}
    if oracle_returns is not None:
        series["oracle_val_net_returns"] = oracle_returns.tolist()
    emit(base.replace(metrics=metrics, series=series))
    overfit_summary.append(
        (dataset, label, size.name, network.hidden_dims, seed, returns, oracle_returns,
         data.market.periods_per_year)
    )  # fmt: skip


def _annual_volatility(data) -> float:
    """Annualised standard deviation of the dataset's bar log returns (all bars)."""
    r = data.log_returns[:-1]
    return float(r.std(ddof=1) * math.sqrt(data.market.periods_per_year))


def block_bootstrap_means(
    returns: np.ndarray,
    block: int | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Means of `resamples` circular block-bootstrap resamples of per-bar `returns` (n,):
    blocks (the reports' block_length(n) unless given) keep a regime's serial dependence."""
    index = circular_block_indices(len(returns), resamples, np.random.default_rng(seed), block)
    return returns[index].mean(axis=1)


def _sharpe_interval(returns: np.ndarray, bars_per_year: float, seed: int) -> tuple[float, float]:
    """95% block-bootstrap interval of the annualised Sharpe of per-bar `returns`: the same
    blocks and Sharpe the reports use."""
    index = circular_block_indices(len(returns), BOOTSTRAP_RESAMPLES, np.random.default_rng(seed))
    low, high = np.percentile(annualised_sharpe(returns[index], bars_per_year), [2.5, 97.5])
    return float(low), float(high)


@pytest.fixture(scope="session")
def market_for():
    """(dataset, bars, seed, label, signal) -> PreparedData; real data: 'short' is its last
    `bars` (the signal strength applies to synthetic data only)."""
    from ppo_core.data import prepare
    from ppo_core.loaders import load_market_data

    cache = {}

    def get(dataset, bars, seed, label, signal):
        if _is_synthetic(dataset):
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


class _SummaryPlugin:
    """Prints the overfitting summary in pytest's terminal summary, outside output capture."""

    def __init__(self) -> None:
        self.collected: list = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for line in summary_lines(self.collected):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def overfit_summary(request):
    """Collects every case's validation returns; at the session's end pytest's terminal summary
    prints, per dataset and length, each size's mean return per bar with its interval, its
    Sharpe beside the oracle's, and whether tiny's and the largest size's intervals overlap."""
    plugin = _SummaryPlugin()
    request.config.pluginmanager.register(plugin, "archbench-overfit-summary")
    return plugin.collected


def size_interval(per_seed: list[np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): a size's validation mean net return per bar over its seeds, with a
    95% interval from resampling seeds and, within each, blocks of bars (seeds x bootstrap)."""
    rng = np.random.default_rng(seed)
    boots = [block_bootstrap_means(r, seed=seed + i) for i, r in enumerate(per_seed)]
    pick = rng.integers(0, len(per_seed), size=(BOOTSTRAP_RESAMPLES, len(per_seed)))
    column = rng.integers(0, BOOTSTRAP_RESAMPLES, size=pick.shape)
    stacked = np.stack(boots)  # (seeds, R)
    samples = stacked[pick, column].mean(axis=1)  # (R,)
    mean = float(np.mean([r.mean() for r in per_seed]))
    low, high = np.percentile(samples, [2.5, 97.5])
    return mean, float(low), float(high)


def _sharpe(returns: np.ndarray, bars_per_year: float) -> float:
    return float(annualised_sharpe(returns, bars_per_year)) if len(returns) > 1 else 0.0


def summary_lines(collected: list) -> list[str]:
    """The end-of-session overfitting summary: intervals per size, and the verdict in words."""
    if not collected:
        return []
    groups: dict = {}
    for dataset, label, name, dims, _seed, returns, oracle, per_year in collected:
        runs = groups.setdefault((dataset, label), {}).setdefault((sum(dims), name), [])
        runs.append((returns["validation"], oracle, per_year))
    lines = [
        "",
        "overfitting: validation mean net return per bar, 95% interval (seeds x blocks of "
        f"{block_length(len(collected[0][5]['validation']))} bars); Sharpe beside the "
        "cost-aware oracle's on the same bars",
    ]
    for (dataset, label), sizes in groups.items():
        ranked = sorted(sizes.items())
        intervals = {}
        for (_width, name), runs in ranked:
            per_seed = [r for r, _, _ in runs]
            mean, low, high = size_interval(per_seed)
            intervals[name] = (mean, low, high)
            sharpe = np.mean([_sharpe(r, y) for r, _, y in runs])
            oracles = [_sharpe(o, y) for _, o, y in runs if o is not None]
            beside = f" (oracle {np.mean(oracles):.1f})" if oracles else " (no oracle: real data)"
            lines.append(
                f"  {dataset} {label} {name:>8}: {mean * 1e4:+.2f} bp/bar "
                f"[{low * 1e4:+.2f}, {high * 1e4:+.2f}] over {len(per_seed)} seed(s); "
                f"Sharpe {sharpe:.1f}{beside}"
            )
        if len(ranked) > 1:
            first, last = ranked[0][0][1], ranked[-1][0][1]
            a, b = intervals[first], intervals[last]
            overlap = a[1] <= b[2] and b[1] <= a[2]
            verdict = (
                "OVERLAP: this run cannot tell them apart"
                if overlap
                else "separate: the difference exceeds the noise"
            )
            lines.append(f"  {dataset} {label}: {first} vs {last} intervals {verdict}")
    return lines


def _intervals(val_returns: np.ndarray, bars_per_year: float, seed: int) -> dict[str, Metric]:
    """This case's 95% block-bootstrap intervals over its validation bars (one seed's noise;
    the session summary adds the seeds')."""
    means = block_bootstrap_means(val_returns, seed=seed)
    low, high = np.percentile(means, [2.5, 97.5])
    sharpe_low, sharpe_high = _sharpe_interval(val_returns, bars_per_year, seed)
    return {
        "val_mean_return_ci95_low": Metric.measured(float(low), "log/bar", None),
        "val_mean_return_ci95_high": Metric.measured(float(high), "log/bar", None),
        "val_sharpe_ci95_low": Metric.measured(sharpe_low, "ratio", None),
        "val_sharpe_ci95_high": Metric.measured(sharpe_high, "ratio", None),
    }


def _metrics(results, value_loss, val_returns, oracle_returns) -> dict[str, Metric]:
    train, val = results["train"]["policy"], results["validation"]["policy"]
    metrics = {
        "train_sharpe": Metric.measured(train.sharpe, "ratio", "higher"),
        "val_sharpe": Metric.measured(val.sharpe, "ratio", "higher"),
        "train_return": Metric.measured(train.total_log_return, "log", "higher"),
        "val_return": Metric.measured(val.total_log_return, "log", "higher"),
        "val_mean_return": Metric.measured(float(val_returns.mean()), "log/bar", "higher"),
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
        reason = "real data has no known oracle"
        for name, unit in (
            ("oracle_val_sharpe", "ratio"),
            ("edge_capture", "ratio"),
            ("oracle_edge_fraction", "ratio"),
        ):
            metrics[name] = Metric.unavailable_because(reason, unit, None)
        return metrics
    metrics["oracle_val_sharpe"] = Metric.measured(oracle.sharpe, "ratio", None)
    metrics["val_oracle_sharpe"] = metrics["oracle_val_sharpe"]  # the name sweep.py reads
    oracle_mean = float(oracle_returns.mean())
    if oracle_mean <= 0:
        reason = f"the oracle did not make money on this validation split ({oracle_mean:.2e})"
        metrics["edge_capture"] = Metric.unavailable_because(reason, "ratio", "higher")
    else:
        metrics["edge_capture"] = Metric.measured(
            float(val_returns.mean()) / oracle_mean, "ratio", "higher"
        )
    metrics["oracle_edge_fraction"] = metrics["edge_capture"]  # the name sweep.py reads
    return metrics
