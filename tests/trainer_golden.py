"""Fixed-seed CPU training scenarios whose exact figures pin the trainer's numbers.

`python tests/trainer_golden.py` records them to tests/golden/trainer-golden.json; the
trainer's equivalence test reruns them and compares bit for bit (floats as float.hex).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ppo_core.config import EnvConfig, NetworkConfig, PPOConfig
from ppo_core.data import prepare
from ppo_core.env import TradingEnv
from ppo_core.synthetic import make_synthetic
from ppo_core.trainer import PPOTrainer

# Not under fixtures/: that folder holds run files, and a test reads every one as a run.
GOLDEN = Path(__file__).parent / "golden" / "trainer-golden.json"
LOOKBACK = 8
FIGURES = (
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clipfrac",
    "explained_variance",
    "learning_rate",
    "mean_episode_return",
)


def machine() -> dict[str, str]:
    """What bit-identical CPU figures depend on: torch's version and its CPU kernels."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def _config(**changes: Any) -> PPOConfig:
    base = PPOConfig(
        total_timesteps=4 * 64,
        n_envs=4,
        n_steps=16,
        n_epochs=2,
        minibatch_size=32,
        device="cpu",
        network=NetworkConfig(lookback=LOOKBACK, hidden_dims=(32, 16)),
        env=EnvConfig(episode_bars=24),
    )
    return base.replace(**changes)


def _trainer(data: Any, config: PPOConfig) -> PPOTrainer:
    env = TradingEnv(
        data,
        "train",
        config.n_envs,
        config.env,
        device="cpu",
        seed=config.seed,
        network=config.network,
    )
    return PPOTrainer(env, config)


def _checksum(trainer: PPOTrainer) -> str:
    """sha256 of every parameter and every Adam moment, in order."""
    digest = hashlib.sha256()
    for param in trainer.policy.parameters():
        digest.update(param.detach().contiguous().numpy().tobytes())
        for key, value in sorted(trainer.optimizer.state[param].items()):
            digest.update(key.encode())
            digest.update(value.detach().contiguous().reshape(-1).numpy().tobytes())
    return digest.hexdigest()


def _figures(trainer: PPOTrainer) -> dict[str, Any]:
    return {
        "stats": [
            {
                **{name: float(getattr(s, name)).hex() for name in FIGURES},
                "epochs_run": s.epochs_run,
                "global_step": s.global_step,
            }
            for s in trainer.stats
        ],
        "weights": _checksum(trainer),
    }


def run_scenarios() -> dict[str, Any]:
    """Every scenario's per-iteration figures and final weights checksum, on one thread (a
    CPU's reductions may split otherwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_scenarios()
    finally:
        torch.set_num_threads(threads)


def _run_scenarios() -> dict[str, Any]:
    data = prepare(make_synthetic(bars=3_000, seed=1), lookback=LOOKBACK)
    out: dict[str, Any] = {}
    for name, changes in {
        "indices": {},
        "observations": {"obs_buffer": "observations"},
        "no_account": {
            "network": NetworkConfig(lookback=LOOKBACK, hidden_dims=(32, 16), account_state=False)
        },
        "target_kl": {
            "n_epochs": 8,
            "target_kl": 0.002,
            "learning_rate": 1e-2,
            "total_timesteps": 2 * 64,
        },
        "seed_3_no_anneal": {"seed": 3, "anneal_lr": False, "minibatch_size": 16},
    }.items():
        trainer = _trainer(data, _config(**changes))
        trainer.learn(progress=False)
        out[name] = _figures(trainer)
        if name == "indices":
            validation = TradingEnv(
                data, "validation", 4, trainer.config.env, seed=7, network=trainer.config.network
            )
            out[name]["validation_value_loss"] = float(trainer.value_loss(validation)).hex()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.pt"
        first = _trainer(data, _config())
        first.train_iteration()
        first.train_iteration()
        first.save(path)
        resumed = _trainer(data, _config())
        resumed.resume(path)
        resumed.learn(progress=False)
        out["resumed"] = _figures(resumed)
    return out


if __name__ == "__main__":
    record = {"machine": machine(), "scenarios": run_scenarios()}
    if "--print" in sys.argv:
        print(json.dumps(record, indent=1))
    else:
        GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {GOLDEN}")
