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
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from _cases import ALGORITHM, OPTIONS_KEY, is_oom, oom_record, size_record, timed_rounds

from archbench.instrument.aggregates import (
    MIN_RUNS_PER_FOLD,
    backtest_overfitting,
    deflated_best,
    improvement_estimate,
    iqm,
    iqm_estimate,
    return_moments,
)
from archbench.instrument.record import Metric
from archbench.instrument.resample import annualised_sharpe, block_length, circular_block_indices
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


@dataclass
class _Curve:
    """One step size's training run, scored at evenly spaced points of its budget."""

    learning_rate: float
    steps: list[int] = field(default_factory=list)
    train_sharpe: list[float] = field(default_factory=list)
    val_sharpe: list[float] = field(default_factory=list)
    train_value_loss: list[float] = field(default_factory=list)
    val_value_loss: list[float] = field(default_factory=list)
    best: int = -1
    """Index of the point with the best validation Sharpe (the model this run offers)."""
    best_state: dict | None = None
    """The policy's weights at that point, on the CPU."""
    train_s: float = 0.0
    """Seconds spent training (the scoring at curve points excluded)."""
    env_steps: int = 0

    @property
    def best_val_sharpe(self) -> float:
        return self.val_sharpe[self.best]


def _train_with_curve(data, config, points: int) -> _Curve:
    """Train at `config`, scoring train and validation (Sharpe of the greedy policy, value
    loss) at `points` evenly spaced iterations; keep the weights at the best validation point."""
    import time

    from ppo_core.env import TradingEnv, evaluate_positions
    from ppo_core.evaluation import greedy_positions
    from ppo_core.trainer import PPOTrainer

    env = TradingEnv(
        data,
        "train",
        config.n_envs,
        config.env,
        config.device,
        seed=config.seed,
        network=config.network,
    )
    trainer = PPOTrainer(env, config)
    n = config.n_iterations
    at = {max(1, round(n * (k + 1) / points)) for k in range(points)}
    curve = _Curve(config.learning_rate)
    scoring = 0.0

    def score(stats) -> None:
        nonlocal scoring
        if trainer.iteration not in at:
            return
        began = time.perf_counter()
        curve.steps.append(trainer.global_step)
        for split, sharpes, losses in (
            ("train", curve.train_sharpe, curve.train_value_loss),
            ("validation", curve.val_sharpe, curve.val_value_loss),
        ):
            positions = greedy_positions(trainer.policy, data, split)
            sharpes.append(evaluate_positions(positions, data, split, config.env.cost_bps).sharpe)
            losses.append(trainer.value_loss(_fresh_env(data, split, config)))
        if curve.best < 0 or curve.val_sharpe[-1] > curve.val_sharpe[curve.best]:
            curve.best = len(curve.val_sharpe) - 1
            curve.best_state = {
                k: v.detach().cpu().clone() for k, v in trainer.policy.state_dict().items()
            }
        scoring += time.perf_counter() - began

    began = time.perf_counter()
    trainer.learn(progress=False, on_iteration=score)
    curve.train_s = time.perf_counter() - began - scoring
    curve.env_steps = trainer.global_step
    return curve


def _fresh_env(data, split, config):
    """Envs seeded apart from training: the same rollout, bootstrap and GAE as training, on
    `split`, so the value losses of the two splits are comparable."""
    from ppo_core.env import TradingEnv

    return TradingEnv(
        data,
        split,
        config.n_envs,
        config.env,
        config.device,
        config.seed + 1,
        network=config.network,
    )


@dataclass(frozen=True)
class _Scored:
    """The chosen model on every split: results beside baselines, per-bar net returns, value
    losses, and the oracle's per-bar returns where the data planted an edge."""

    results: dict
    returns: dict
    value_loss: dict
    oracle: dict


def _score_chosen(chosen: _Curve, data, config, network, device) -> _Scored:
    """Load the validation-chosen weights and judge them once on train, validation and test."""
    from ppo_core.baselines import trader_baselines
    from ppo_core.env import evaluate_positions, net_returns, oracle_split_positions
    from ppo_core.evaluation import greedy_positions
    from ppo_core.network import ActorCritic

    policy = ActorCritic(network).to(device)
    policy.load_state_dict(chosen.best_state)
    cost = config.env.cost_bps
    results, returns, oracle = {}, {}, {}
    for split in ("train", "validation", "test"):
        positions = greedy_positions(policy, data, split)
        judged = evaluate_positions(positions, data, split, cost)
        results[split] = {
            "policy": judged,
            **trader_baselines(data, split, cost, judged.turnover, seed=config.seed),
        }
        returns[split] = net_returns(positions, data, split, cost)
        planted = oracle_split_positions(data, split, cost)
        oracle[split] = None if planted is None else net_returns(planted, data, split, cost)
    value_loss = {
        "train": chosen.train_value_loss[chosen.best],
        "validation": chosen.val_value_loss[chosen.best],
    }
    return _Scored(results, returns, value_loss, oracle)


def _test_metrics(scored: _Scored, bars_per_year: float, seed: int) -> dict[str, Metric]:
    """The once-only judgement of the validation-chosen model on the test split."""
    test = scored.results["test"]
    low, high = _sharpe_interval(scored.returns["test"], bars_per_year, seed)
    metrics = {
        "test_sharpe": Metric.measured(test["policy"].sharpe, "ratio", "higher"),
        "test_mean_return": Metric.measured(
            float(scored.returns["test"].mean()), "log/bar", "higher"
        ),
        "test_sharpe_ci95_low": Metric.measured(low, "ratio", None),
        "test_sharpe_ci95_high": Metric.measured(high, "ratio", None),
        "test_buy_and_hold_sharpe": Metric.measured(test["buy_and_hold"].sharpe, "ratio", None),
        "test_trend_sharpe": Metric.measured(test["trend"].sharpe, "ratio", None),
        "test_random_matched_sharpe": Metric.measured(test["random_matched"].sharpe, "ratio", None),
        "test_turnover": Metric.measured(test["policy"].turnover, "ratio", None),
    }
    if "oracle" in test:
        metrics["test_oracle_sharpe"] = Metric.measured(test["oracle"].sharpe, "ratio", None)
    else:
        metrics["test_oracle_sharpe"] = Metric.unavailable_because(
            "real data has no known oracle", "ratio", None
        )
    return metrics


def _series(curves: list[_Curve], chosen: _Curve, scored: _Scored) -> dict[str, list[float]]:
    """Per-bar returns for pairing sizes on the same bars, the chosen step size's learning
    curve, and each step size's best validation Sharpe."""
    series = {
        "val_net_returns": scored.returns["validation"].tolist(),
        "test_net_returns": scored.returns["test"].tolist(),
        "curve_env_steps": [float(s) for s in chosen.steps],
        "curve_train_sharpe": chosen.train_sharpe,
        "curve_val_sharpe": chosen.val_sharpe,
        "curve_train_value_loss": chosen.train_value_loss,
        "curve_val_value_loss": chosen.val_value_loss,
        "lr_sweep_learning_rate": [c.learning_rate for c in curves],
        "lr_sweep_best_val_sharpe": [c.best_val_sharpe for c in curves],
    }
    for split in ("validation", "test"):
        if scored.oracle[split] is not None:
            key = "oracle_val_net_returns" if split == "validation" else "oracle_test_net_returns"
            series[key] = scored.oracle[split].tolist()
    return series


@dataclass(frozen=True)
class _Finished:
    """What the session summary keeps of a finished case."""

    dataset: str
    length: str
    size: str
    hidden_dims: tuple[int, ...]
    seed: int
    fold: int
    returns: dict
    oracle_test: np.ndarray | None
    bars_per_year: float
    learning_rate: float


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


def summary_lines(collected: list[_Finished]) -> list[str]:
    """The end-of-session overfitting summary, on the test split of each fold (the model chosen
    on validation): intervals per size, the step size each got, the spread across folds, the
    minimum detectable difference between neighbouring sizes, and the verdict in words."""
    if not collected:
        return []
    groups: dict = {}
    for done in collected:
        groups.setdefault((done.dataset, done.length), {}).setdefault(
            (sum(done.hidden_dims), done.size), []
        ).append(done)
    lines = [
        "",
        "overfitting: test mean net return per bar of the validation-chosen model, 95% interval "
        f"(seeds and folds x blocks of {block_length(len(collected[0].returns['test']))} bars); "
        "Sharpe beside the cost-aware oracle's on the same bars",
    ]
    for (dataset, label), sizes in groups.items():
        ranked = sorted(sizes.items())
        intervals = {}
        for (_width, name), runs in ranked:
            per_run = [r.returns["test"] for r in runs]
            mean, low, high = size_interval(per_run)
            intervals[name] = (mean, low, high)
            sharpes = [_sharpe(r.returns["test"], r.bars_per_year) for r in runs]
            oracles = [
                _sharpe(r.oracle_test, r.bars_per_year) for r in runs if r.oracle_test is not None
            ]
            beside = f" (oracle {np.mean(oracles):.1f})" if oracles else " (no oracle: real data)"
            chosen = Counter(r.learning_rate for r in runs)
            rates = ", ".join(f"{lr:g} x{n}" for lr, n in sorted(chosen.items()))
            lines.append(
                f"  {dataset} {label} {name:>8}: {mean * 1e4:+.2f} bp/bar "
                f"[{low * 1e4:+.2f}, {high * 1e4:+.2f}] over {len(runs)} seed-fold(s); "
                f"Sharpe {np.mean(sharpes):.1f}{_fold_spread(runs)}{beside}; lr {rates}"
            )
        lines += _neighbour_lines(dataset, label, ranked)
        lines += _aggregate_lines(dataset, label, ranked)
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


def _fold_spread(runs: list[_Finished]) -> str:
    """' (folds 1.2..3.4)': the range of the per-fold mean test Sharpe, when there are folds."""
    by_fold: dict[int, list[float]] = {}
    for r in runs:
        by_fold.setdefault(r.fold, []).append(_sharpe(r.returns["test"], r.bars_per_year))
    if len(by_fold) < 2:
        return ""
    means = [float(np.mean(v)) for v in by_fold.values()]
    return f" (folds {min(means):.1f}..{max(means):.1f})"


MDE_Z = 1.959964 + 0.841621
"""z_(0.975) + z_(0.80): a paired difference this many standard errors from 0 is found at
alpha 0.05 (two-sided) with 80% power (normal approximation)."""


def minimum_detectable_difference(differences: list[float]) -> float | None:
    """The smallest mean paired difference that `differences` (one per seed and fold) would
    detect at alpha 0.05 with 80% power, from their own spread; None under 3 pairs."""
    if len(differences) < 3:
        return None
    return float(MDE_Z * np.std(differences, ddof=1) / math.sqrt(len(differences)))


def _neighbour_lines(dataset: str, label: str, ranked: list) -> list[str]:
    """Per pair of neighbouring sizes: the paired test Sharpe difference (on the seeds and folds
    both ran) and the minimum difference those pairs can detect."""
    lines = []
    for ((_w, small), a_runs), ((_v, big), b_runs) in itertools.pairwise(ranked):
        a = {(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in a_runs}
        b = {(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in b_runs}
        diffs = [b[k] - a[k] for k in sorted(a.keys() & b.keys())]
        if not diffs:
            continue
        mde = minimum_detectable_difference(diffs)
        detect = (
            f"minimum detectable difference {mde:.2f} Sharpe"
            if mde is not None
            else "too few pairs for a minimum detectable difference (need 3)"
        )
        lines.append(
            f"  {dataset} {label}: {big} - {small} test Sharpe {np.mean(diffs):+.2f} over "
            f"{len(diffs)} paired seed-fold(s); {detect}"
        )
    return lines


def _aggregate_lines(dataset: str, label: str, ranked: list) -> list[str]:
    """rliable-style aggregates of the test Sharpe over the runs (seed x fold): each size's IQM
    with a stratified bootstrap interval, P(bigger > smaller) for neighbours, and the deflated
    Sharpe of the size with the highest mean from the sizes tried; 'insufficient' under
    MIN_RUNS_PER_FOLD seeds per fold."""
    by_size = {name: _test_sharpes_by_fold(runs) for (_width, name), runs in ranked}
    head = f"  {dataset} {label}"
    lines = []
    for name, folds in by_size.items():
        values = [v for runs in folds.values() for v in runs]
        lines.append(
            f"{head} {name:>8}: IQM test Sharpe {iqm(np.array(values)):.2f} "
            f"{_bracket(iqm_estimate(list(folds.values())))} over {len(values)} run(s)"
        )
    for small, big in itertools.pairwise(by_size):
        shared = sorted(by_size[small].keys() & by_size[big].keys())
        x, y = [by_size[big][f] for f in shared], [by_size[small][f] for f in shared]
        estimate = improvement_estimate(x, y) if shared else None
        point = f"{estimate.value:.2f} " if estimate else ""
        lines.append(f"{head}: P({big} > {small}) {point}{_bracket(estimate)}")
    return [*lines, _deflated_line(head, ranked, by_size)]


def _test_sharpes_by_fold(runs: list[_Finished]) -> dict[int, list[float]]:
    by_fold: dict[int, list[float]] = {}
    for r in runs:
        by_fold.setdefault(r.fold, []).append(_sharpe(r.returns["test"], r.bars_per_year))
    return by_fold


def _bracket(estimate) -> str:
    if estimate is None:
        return f"[insufficient: under {MIN_RUNS_PER_FOLD} seeds per fold]"
    return f"[{estimate.low:.2f}, {estimate.high:.2f}]"


def _deflated_line(head: str, ranked: list, by_size: dict) -> str:
    """The size with the highest mean test Sharpe, deflated for being the best of N sizes."""
    if len(ranked) < 2:
        return f"{head}: one size tried, no deflated Sharpe"
    seeds = min(len(v) for folds in by_size.values() for v in folds.values())
    means = {name: float(np.mean([v for f in folds.values() for v in f]))
             for name, folds in by_size.items()}  # fmt: skip
    best = max(means, key=means.__getitem__)
    if seeds < MIN_RUNS_PER_FOLD:
        return (
            f"{head}: selected {best} of {len(means)} sizes; deflated Sharpe insufficient "
            f"({seeds} seed(s) per fold, needs {MIN_RUNS_PER_FOLD})"
        )
    runs = {name: r for (_w, name), r in ranked}
    # Seeds on real data replay the same bars: count each fold's bars once.
    bars = sum(len(r.returns["test"]) for r in {r.fold: r for r in runs[best]}.values())
    skew, kurtosis = return_moments([r.returns["test"] for r in runs[best]]) or (0.0, 3.0)
    _, dsr = deflated_best(means, runs[best][0].bars_per_year, bars, skew, kurtosis)
    return (
        f"{head}: selected {best} (mean test Sharpe {means[best]:.2f}) of {len(means)} sizes; "
        f"deflated Sharpe {dsr:.2f} on {bars:,} bars (skew {skew:.2f}, kurtosis {kurtosis:.1f})"
        f"{_pbo_text(runs)}"
    )


def _pbo_text(runs: dict[str, list[_Finished]]) -> str:
    """'; PBO 0.12 over 30 paired runs' on the (seed, fold) runs every size ran, if 4 or more."""
    sharpes = [{(r.seed, r.fold): _sharpe(r.returns["test"], r.bars_per_year) for r in rs}
               for rs in runs.values()]  # fmt: skip
    shared = sorted(set.intersection(*(set(s) for s in sharpes)))
    if len(shared) < 4:
        return ""
    matrix = np.array([[s[key] for s in sharpes] for key in shared])  # (runs, sizes)
    used = len(shared) - len(shared) % 2  # CSCV halves: an odd last run is left out
    return f"; PBO {backtest_overfitting(matrix):.2f} over {used} paired runs"


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
        "val_trend_sharpe": Metric.measured(results["validation"]["trend"].sharpe, "ratio", None),
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
