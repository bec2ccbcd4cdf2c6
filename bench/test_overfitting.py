"""What each size buys on a short vs a long dataset: in-sample vs out-of-sample results.

Per size x dataset x length x seed: train for a fixed budget with the shared PPO settings
(`_cases.ALGORITHM`, as the peers suite), then run the deterministic policy over the training
split and over the validation split (after the embargo): Sharpe beside the cost-aware oracle's
on the same bars, mean net return per bar, the share of the oracle's edge captured (synthetic
data), the value loss on each split, and the per-bar validation returns (`series`) so a report
can pair sizes on the same bars and bootstrap them. At the end of the session the suite prints,
per dataset and length, each size's validation mean return with a 95% interval (seeds plus a
block bootstrap over bars) and says plainly whether tiny's and the largest size's overlap;
then rliable-style aggregates over the runs (seed x fold): each size's IQM test Sharpe, P(bigger >
smaller) for neighbours, and the selected size's deflated Sharpe (archbench.instrument.aggregates).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from _cases import ALGORITHM, OPTIONS_KEY, is_oom, oom_record, size_record, timed_rounds
from overfit_stats import _Finished, summary_lines
from overfit_train import (
    _Curve,
    _intervals,
    _metrics,
    _score_chosen,
    _series,
    _test_metrics,
    _train_with_curve,
)

from archbench.instrument.record import Metric
from ppo_core.sizing import estimate

SUITE = "overfit"


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
    if "fold" in metafunc.fixturenames:
        folds = range(options.budget.overfit_folds)
        metafunc.parametrize("fold", folds, ids=[f"fold{k}" for k in folds])


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
    """Generated bars ('synthetic', 'capacity-K'): seeded, cut to each length, an oracle known."""
    from ppo_core.loaders import is_generated

    return is_generated(dataset)


def test_overfitting(
    benchmark, emit, options, market_for, overfit_summary, size, dataset, length, seed, fold
):
    from ppo_core.config import EnvConfig, PPOConfig

    budget = options.budget
    label, bars = length
    data = market_for(dataset, bars, seed, label, budget.overfit_signal, fold)
    network = size.network(data.n_features, data.lookback)
    sizing = estimate(network)

    def config_at(learning_rate: float) -> PPOConfig:
        return PPOConfig(
            total_timesteps=budget.overfit_timesteps,
            n_envs=budget.overfit_n_envs,
            n_steps=budget.overfit_n_steps,
            minibatch_size=budget.overfit_minibatch,
            seed=seed,
            device=options.device,
            network=network,
            env=EnvConfig(cost_bps=_cost_bps(options, dataset, data)),
            **{**ALGORITHM, "learning_rate": learning_rate},
        )

    config = config_at(ALGORITHM["learning_rate"])
    case = _case(data, dataset, label, seed, fold, config, network, budget)
    base = size_record(
        SUITE, options, size.name, network, sizing, case=case, predicted={"params": sizing.params}
    )
    curves: list[_Curve] = []
    try:
        seconds = timed_rounds(
            benchmark,
            lambda: curves.extend(
                _train_with_curve(data, config_at(lr), budget.overfit_curve_points)
                for lr in budget.overfit_learning_rates
            ),
            rounds=1,
            warmup=0,
            device=options.device,
        )
        chosen = max(curves, key=lambda c: c.best_val_sharpe)
        scored = _score_chosen(chosen, data, config, network, options.device)
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, n_envs=config.n_envs, minibatch=config.minibatch_size))
        return
    metrics = _metrics(
        scored.results, scored.value_loss, scored.returns["validation"], scored.oracle["validation"]
    )
    metrics.update(_test_metrics(scored, data.market.periods_per_year, seed))
    metrics.update(_intervals(scored.returns["validation"], data.market.periods_per_year, seed))
    train_s = sum(c.train_s for c in curves)
    metrics["train_s"] = Metric.measured(train_s, "s", "lower", [c.train_s for c in curves])
    metrics["train_env_steps_per_s"] = Metric.measured(
        sum(c.env_steps for c in curves) / train_s, "1/s", "higher"
    )
    metrics["case_s"] = Metric.measured(seconds[0], "s", None)
    metrics["chosen_learning_rate"] = Metric.measured(chosen.learning_rate, "1", None)
    metrics["chosen_env_steps"] = Metric.measured(chosen.steps[chosen.best], "1", None)
    emit(base.replace(metrics=metrics, series=_series(curves, chosen, scored)))
    overfit_summary.append(
        _Finished(
            dataset,
            label,
            size.name,
            network.hidden_dims,
            seed,
            fold,
            scored.returns,
            scored.oracle["test"],
            data.market.periods_per_year,
            chosen.learning_rate,
        )
    )


def _cost_bps(options, dataset: str, data) -> float:
    """--cost-bps when given; else the synthetic market's budget cost, or a real dataset's own
    cost (30 bp, calibrated on the synthetic market, would swamp an FX edge)."""
    from ppo_core.loaders import default_cost

    if options.cost_bps is not None:
        return options.cost_bps
    if _is_synthetic(dataset):
        return options.budget.overfit_cost_bps
    return default_cost(data.market).bps


def _case(data, dataset, label, seed, fold, config, network, budget) -> dict:
    """The record's case: what the data, the fold, the budget and the algorithm were."""
    case = {
        "dataset": dataset,
        "length": label,
        "bars": int(data.market.n_bars),
        "bars_per_year": round(float(data.market.periods_per_year), 1),
        "seed": seed,
        "fold": fold,
        "n_folds": budget.overfit_folds,
        "train_bars": int(np.subtract(*data.splits.train[::-1])),
        "val_bars": int(np.subtract(*data.splits.validation[::-1])),
        "test_bars": int(np.subtract(*data.splits.test[::-1])),
        "val_start": int(data.splits.validation[0]),
        "test_start": int(data.splits.test[0]),
        "train_env_steps": config.n_iterations * config.batch_size,
        "timesteps": budget.overfit_timesteps,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "ent_coef": config.ent_coef,
        "learning_rates": list(budget.overfit_learning_rates),
        "curve_points": budget.overfit_curve_points,
        "cost_bps": config.env.cost_bps,
        "volatility": round(_annual_volatility(data), 6),
        "account_state": network.account_state,
        "account_gain": network.observation_layout["account_gain"],
    }
    if _is_synthetic(dataset):
        case["signal_strength"] = data.market.origin.get("signal_strength", budget.overfit_signal)
    return case


def _annual_volatility(data) -> float:
    """Annualised standard deviation of the dataset's bar log returns (all bars)."""
    r = data.log_returns[:-1]
    return float(r.std(ddof=1) * math.sqrt(data.market.periods_per_year))


@pytest.fixture(scope="session")
def market_for(options):
    """(dataset, bars, seed, label, signal, fold) -> PreparedData of that walk-forward fold at
    --lookback; real data: 'short' is its last `bars` (the signal strength applies to synthetic
    data only). The normaliser is fitted on the fold's own training bars."""
    from ppo_core.data import prepare, walk_forward_folds
    from ppo_core.loaders import load_market_data

    markets, cache = {}, {}

    def market(dataset, bars, seed, label, signal):
        if _is_synthetic(dataset):
            # The budget's signal is the default market's; another generator keeps its own.
            own = signal if dataset.strip().lower() == "synthetic" else None
            return load_market_data(dataset, bars=bars, seed=seed, signal_strength=own)
        if (dataset, label) not in markets:
            full = load_market_data(dataset)
            if label == "long" or full.n_bars <= bars:
                if label != "long":
                    pytest.skip(f"{dataset} has only {full.n_bars:,} bars; no shorter cut")
                markets[dataset, label] = full
            else:
                markets[dataset, label] = full.tail(bars)
        return markets[dataset, label]

    def get(dataset, bars, seed, label, signal, fold):
        key = (dataset, bars, seed if _is_synthetic(dataset) else None, label, signal, fold)
        if key not in cache:
            data = market(dataset, bars, seed, label, signal)
            folds = walk_forward_folds(data.n_bars, options.lookback, options.budget.overfit_folds)
            cache[key] = prepare(data, lookback=options.lookback, splits=folds[fold])
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
