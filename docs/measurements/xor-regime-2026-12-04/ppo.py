"""PPO (the trainer at archbench train's quick settings) on the prototype market: one JSON line
appended to ppo.jsonl. Run from the repository root:
    python docs/measurements/xor-regime-2026-12-04/ppo.py --signal 0.5 --regime 8 --steps 500000
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from market import make_pairs

from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.data import prepare
from ppo_core.env import TradingEnv
from ppo_core.evaluation import evaluate_with_baselines
from ppo_core.presets import PRESETS, TRAINING_MODES
from ppo_core.trainer import PPOTrainer

p = argparse.ArgumentParser()
p.add_argument("--rho", type=float, default=0.9)
p.add_argument("--signal", type=float, default=0.3)
p.add_argument("--regime", type=int, default=40)
p.add_argument("--bars", type=int, default=100000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--dims", default="tiny")
p.add_argument("--steps", type=int, default=100000)
p.add_argument("--lookback", type=int, default=100)
p.add_argument("--linear", action="store_true")
p.add_argument("--lr", type=float, default=None)
a = p.parse_args()
torch.set_num_threads(1)
dims = PRESETS[a.dims] if a.dims in PRESETS else tuple(int(x) for x in a.dims.split(","))
net = NetworkConfig(hidden_dims=dims, lookback=a.lookback)
mode = dict(TRAINING_MODES["quick"])
if a.lr:
    mode["learning_rate"] = a.lr
config = PPOConfig(total_timesteps=a.steps, network=net, device="cpu", seed=a.seed, **mode)
market, filt = make_pairs(a.bars, a.seed, a.rho, a.signal, regime_bars=a.regime, linear=a.linear)
data = prepare(market, lookback=net.lookback)
t0 = time.perf_counter()
env = TradingEnv(data, "train", config.n_envs, config.env, seed=a.seed, network=net)
tr = PPOTrainer(env, config)
tr.learn(progress=False)
val = evaluate_with_baselines(tr.policy, data, "validation", config.env.cost_bps)
trn = evaluate_with_baselines(tr.policy, data, "train", config.env.cost_bps)
rec = dict(vars(a))
rec.update({k: round(v.sharpe, 2) for k, v in val.items()})
rec["turnover"] = round(val["policy"].turnover, 3)
rec["train_policy"] = round(trn["policy"].sharpe, 2)
rec["s"] = round(time.perf_counter() - t0)
print(json.dumps(rec), flush=True)
with (Path(__file__).parent / "ppo.jsonl").open("a") as f:
    f.write(json.dumps(rec) + "\n")
