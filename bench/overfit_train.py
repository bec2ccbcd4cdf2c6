"""One overfit case's work: train at one step size scoring a learning curve, judge the validation-
chosen weights once on every split, and turn the results into the record's metrics and series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from overfit_stats import _sharpe_interval, block_bootstrap_means

from archbench.instrument.record import Metric


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
