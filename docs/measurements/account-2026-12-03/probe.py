"""One run of the default workload (`archbench train --preset tiny --data synthetic`'s settings)
with the account options varied; prints one JSON line: validation Sharpes and saturation.

Run from the repository root: python docs/measurements/account-2026-12-03/probe.py --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.data import PreparedData, prepare
from ppo_core.env import TradingEnv
from ppo_core.evaluation import evaluate_with_baselines, greedy_positions
from ppo_core.loaders import load_market_data
from ppo_core.presets import PRESETS, TRAINING_MODES
from ppo_core.synthetic import oracle_positions


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fusion", default="gain", help="NetworkConfig.account_fusion")
    parser.add_argument("--inputs", default="bounded", help="NetworkConfig.account_inputs")
    parser.add_argument("--trunk", default="shared")
    parser.add_argument("--preset", default="tiny", help="size (records without it are tiny)")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--saturation-only", action="store_true", help="no training")
    return parser.parse_args()


def _entries(positions: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Decisions (n,) over a split from `start` -> the position held into each bar and the bar
    at which it was taken."""
    taken = np.empty(len(positions), dtype=np.int64)
    for j, position in enumerate(positions):
        before = positions[j - 1] if j else 0
        taken[j] = start + j if (position != before or j == 0) else taken[j - 1]
    return np.concatenate([[0], positions[:-1]]), np.concatenate([[start], taken[:-1]])


def saturation(data: PreparedData, net: NetworkConfig, positions: np.ndarray) -> dict:
    """Fractions of validation bars whose account inputs sit at a bound, legacy vs bounded."""
    start, end = data.splits.range("validation")
    held_into, entry = _entries(positions, start)
    bars, pos, ent = torch.arange(start, end), torch.as_tensor(held_into), torch.as_tensor(entry)
    out = {"in_market": float((held_into != 0).mean())}
    for kind in ("legacy", "bounded"):
        layout = dataclasses.replace(net, account_inputs=kind)
        acc = TradingEnv(data, "validation", 1, network=layout).account(bars, pos, ent).numpy()
        if kind == "legacy":
            out["legacy_unrealised_at_clip"] = float((np.abs(acc[:, 1]) >= 10 - 1e-6).mean())
            out["legacy_held_beyond_episode"] = float((acc[:, 2] * 100 > 256).mean())
            out["legacy_held_at_clip"] = float((acc[:, 2] >= 10 - 1e-6).mean())
            out["longest_hold"] = float(acc[:, 2].max() * 100)
        else:
            out["bounded_unrealised_saturated"] = float((np.abs(acc[:, 1]) >= 0.99).mean())
            out["bounded_held_at_cap"] = float((acc[:, 2] >= 1 - 1e-6).mean())
    return out


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    net = NetworkConfig(
        hidden_dims=PRESETS[args.preset],
        trunk=args.trunk,
        account_fusion=args.fusion,
        account_inputs=args.inputs,
    )
    config = PPOConfig(
        total_timesteps=args.steps,
        network=net,
        device="cpu",
        seed=args.seed,
        gamma=args.gamma,
        **TRAINING_MODES["quick"],
    )
    market = load_market_data("synthetic", bars=None, seed=args.seed)
    data = prepare(market, lookback=net.lookback)
    started = time.perf_counter()
    record = {k: getattr(args, k) for k in ("seed", "preset", "fusion", "inputs", "trunk", "gamma")}
    record.update(threads=args.threads, steps=args.steps)
    start, end = data.splits.range("validation")
    oracle = oracle_positions(market.expected_return[start:end], config.env.cost_bps)
    record["oracle_saturation"] = saturation(data, net, oracle)
    if not args.saturation_only:
        from ppo_core.trainer import PPOTrainer

        env = TradingEnv(data, "train", config.n_envs, config.env, seed=args.seed, network=net)
        trainer = PPOTrainer(env, config)
        trainer.learn(progress=False)
        results = evaluate_with_baselines(trainer.policy, data, "validation", config.env.cost_bps)
        record.update({name: result.sharpe for name, result in results.items()})
        record["policy_return"] = results["policy"].total_log_return
        record["oracle_return"] = results["oracle"].total_log_return
        record["turnover"] = results["policy"].turnover
        positions = greedy_positions(trainer.policy, data, "validation")
        record["policy_saturation"] = saturation(data, net, positions)
    record["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
