"""`archbench train` and `archbench evaluate`: train a policy on a dataset and score a
checkpoint against the buy-and-hold and flat baselines."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from archbench_cli._common import MAX_BARS, MAX_SEED, check_range, print_json
from archbench_cli.tables import eval_table
from ppo_core.errors import ConfigError

__all__ = ["add_commands"]

_DATA_HELP = "synthetic, sp500, nasdaq, eurusd-1h (the `data` extra) or a CSV/Parquet OHLCV file"


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    from ppo_core.presets import PRESETS, TRAINING_MODES

    train = subcommands.add_parser(
        "train",
        help="train one network size with PPO on market data and save a checkpoint",
        description="Train an actor-critic of one size with PPO on the trading environment, "
        "then print its validation metrics beside the flat, buy-and-hold, random and (synthetic "
        "data) oracle baselines. The checkpoint holds the full config, weights, Adam state and "
        "the training split's normalisation statistics.",
    )
    size = train.add_mutually_exclusive_group()
    size.add_argument("--preset", choices=list(PRESETS), help="network size (default: medium)")
    size.add_argument("--hidden-dims", metavar="W,W,...", help="custom widths, e.g. 768,384,192")
    size.add_argument(
        "--auto", action="store_true", help="hidden_dims, n_envs and minibatch from the GPU tier"
    )
    train.add_argument("--data", default="synthetic", help=_DATA_HELP + " (default: synthetic)")
    train.add_argument("--bars", type=int, help="bars of data to use (synthetic: length to make)")
    train.add_argument(
        "--signal-strength",
        type=float,
        default=None,
        help="synthetic data only: the planted edge per bar in units of volatility (default 0.1)",
    )
    train.add_argument("--timesteps", type=int, default=100_000, help="env steps (default 100k)")
    train.add_argument(
        "--mode", choices=list(TRAINING_MODES), default="quick", help="training mode (quick)"
    )
    train.add_argument("--n-envs", type=int, help="parallel environments (default 8)")
    train.add_argument("--n-steps", type=int, help="steps per environment per rollout")
    train.add_argument("--minibatch", type=int, help="minibatch size (default 256)")
    train.add_argument("--epochs", type=int, help="update epochs per rollout")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    train.add_argument(
        "--precision",
        choices=["auto", "fp32", "tf32", "bf16"],
        default="auto",
        help="matmul precision: fp32, tf32 (fp32 tensors, TF32 matmuls), bf16 (autocast); "
        "auto: tf32 on a CUDA GPU of compute capability 8.0+, else fp32",
    )
    train.add_argument("--compile", action="store_true", help="torch.compile the policy")
    train.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="iterations")
    train.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint")
    train.add_argument("--out", default="model.pt", help="checkpoint path (default model.pt)")
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    train.set_defaults(handler=_train)

    evaluate = subcommands.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a data split against baselines",
        description="Run a checkpoint's deterministic policy over a whole split and print total "
        "log return, annualised Sharpe, max drawdown, turnover and hit rate beside the baselines. "
        "Features are normalised with the statistics stored in the checkpoint.",
    )
    evaluate.add_argument("checkpoint", help="a checkpoint written by `archbench train`")
    evaluate.add_argument("--data", default="synthetic", help=_DATA_HELP + " (default: synthetic)")
    evaluate.add_argument("--bars", type=int, help="bars of data (synthetic: length to make)")
    evaluate.add_argument(
        "--signal-strength", type=float, default=None, help="synthetic data only (default 0.1)"
    )
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="validation")
    evaluate.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)


def _training_config(args: argparse.Namespace):  # -> PPOConfig
    from ppo_core.config import NetworkConfig, PPOConfig
    from ppo_core.presets import PRESETS, TRAINING_MODES, parse_hidden_dims

    if args.timesteps is not None and args.timesteps <= 0:
        raise ConfigError(f"--timesteps must be positive, got {args.timesteps}")
    if args.auto:
        from instrument.device.tiers import get_auto_config

        config = get_auto_config(args.timesteps, args.mode, device=args.device)
    else:
        dims = parse_hidden_dims(args.hidden_dims) if args.hidden_dims else PRESETS["medium"]
        if args.preset:
            dims = PRESETS[args.preset]
        config = PPOConfig(
            total_timesteps=args.timesteps,
            network=NetworkConfig(hidden_dims=dims),
            device=args.device,
            **TRAINING_MODES[args.mode],
        )
    overrides = {
        "n_envs": args.n_envs,
        "n_steps": args.n_steps,
        "minibatch_size": args.minibatch,
        "n_epochs": args.epochs,
        "learning_rate": args.lr,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    changes.update(seed=args.seed, precision=args.precision, compile=args.compile)
    if "minibatch_size" not in changes:
        batch = changes.get("n_envs", config.n_envs) * changes.get("n_steps", config.n_steps)
        changes["minibatch_size"] = min(config.minibatch_size, batch)
    return config.replace(**changes)


def _signal(args: argparse.Namespace) -> dict[str, float]:
    return {} if args.signal_strength is None else {"signal_strength": args.signal_strength}


def _train(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import Normalizer, load_market_data, prepare
    from ppo_core.device import resolve_device, resolve_precision
    from ppo_core.env import TradingEnv
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.trainer import PPOTrainer

    config = _training_config(args)
    check_range(args.bars, "--bars", 1, MAX_BARS)
    out = _check_train_out(args)
    device = resolve_device(config.device).device
    resolve_precision(config.precision, device)  # refuse tf32/bf16 on a CPU before any work
    market = load_market_data(args.data, bars=args.bars, seed=config.seed, **_signal(args))
    normalizer = None
    if args.resume:
        # Resumed weights were trained on the checkpoint's feature scaling: keep it.
        stored = checkpoint.load(args.resume, config=config.network).obs_norm
        normalizer = Normalizer.from_dict(stored) if stored else None
    data = prepare(market, lookback=config.network.lookback, normalizer=normalizer)
    env = TradingEnv(data, "train", config.n_envs, config.env, device=device, seed=config.seed)
    trainer = PPOTrainer(env, config.replace(device=str(device)))
    if args.resume:
        trainer.resume(args.resume)
    dims = ",".join(map(str, config.network.hidden_dims))
    with _StopAfterIteration() as stop:
        if not args.json:
            print(
                f"training hidden_dims ({dims}) on {market.name} ({len(market.timestamps):,} "
                f"bars) for {config.total_timesteps:,} steps on {device}: "
                f"{config.n_iterations} iterations of {config.n_envs} envs x "
                f"{config.n_steps} steps",
                file=sys.stderr,
            )
        try:
            stats = trainer.learn(
                checkpoint_path=out,
                checkpoint_every=args.checkpoint_every,
                on_iteration=stop.check,
            )
        except (_Stopped, KeyboardInterrupt):
            # A stop keeps the training done so far: the checkpoint resumes with --resume.
            trainer.save(out)
            name = signal.Signals(stop.signum or signal.SIGINT).name
            print(
                f"archbench train: interrupted by {name} after iteration {trainer.iteration} "
                f"of {config.n_iterations}; checkpoint written to {out} "
                f"(continue with --resume {out})",
                file=sys.stderr,
            )
            return 128 + (stop.signum or signal.SIGINT)
    results = evaluate_with_baselines(trainer.policy, data, "validation", config.env.cost_bps)
    summary = {
        "checkpoint": str(out),
        "hidden_dims": list(config.network.hidden_dims),
        "iterations": len(stats),
        "last_iteration": stats[-1].to_dict() if stats else None,
        "validation": {name: r.to_dict() for name, r in results.items()},
    }
    if args.json:
        print_json(summary)
    else:
        if stats:
            last = stats[-1]
            print(
                f"last iteration: {last.train_env_steps_per_s:,.0f} env-steps/s "
                f"(whole iteration, {trainer.precision}), "
                f"{last.update_samples_per_s:,.0f} update samples/s, "
                f"explained variance {last.explained_variance:.3f}"
            )
        eval_table("validation split", results)
        print(f"checkpoint written to {out}")
    return 0


def _check_train_out(args: argparse.Namespace):  # -> Path
    from pathlib import Path

    from ppo_core.atomic import check_output

    # --out may be --resume's file: the continued run replaces it (atomically), as intended.
    data = [args.data] if Path(args.data).is_file() else []
    return check_output(args.out, data, flag="--out", example="model.pt")


class _Stopped(Exception):
    """Raised between PPO iterations once a stop signal has arrived."""


class _StopAfterIteration:
    """SIGINT and SIGTERM during training: the first stops it at the end of the running
    iteration (weights and Adam state consistent), a second stops it at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _note(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"archbench train: {signal.Signals(signum).name}: stopping after this iteration and "
            "saving the checkpoint (again to stop at once)",
            file=sys.stderr,
        )

    def check(self, _stats: object) -> None:
        if self.signum is not None:
            raise _Stopped

    def __enter__(self) -> _StopAfterIteration:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _check_features(ckpt, n_features: int) -> None:  # ckpt: checkpoint.Checkpoint
    """The policy's input width against the data's, as one ArchitectureMismatch line (torch
    would say 'mat1 and mat2 shapes cannot be multiplied')."""
    from ppo_core.errors import ArchitectureMismatch

    config = ckpt.config
    if config.n_features != n_features:
        raise ArchitectureMismatch(
            f"checkpoint {ckpt.path} has n_features {config.n_features} "
            f"({config.obs_dim} inputs with lookback {config.lookback}); the data gives "
            f"{n_features} features per bar ({n_features * config.lookback} inputs): it was "
            "trained on other features, so it cannot be evaluated on these"
        )


def _evaluate(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import FEATURE_NAMES, Normalizer, load_market_data, prepare
    from ppo_core.device import resolve_device
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.network import ActorCritic

    ckpt = checkpoint.load(args.checkpoint)
    check_range(args.seed, "--seed", 0, MAX_SEED, low_inclusive=True)
    check_range(args.bars, "--bars", 1, MAX_BARS)
    _check_features(ckpt, len(FEATURE_NAMES))
    normalizer = Normalizer.from_dict(ckpt.obs_norm) if ckpt.obs_norm else None
    market = load_market_data(args.data, bars=args.bars, seed=args.seed, **_signal(args))
    data = prepare(market, lookback=ckpt.config.lookback, normalizer=normalizer)
    _check_features(ckpt, data.n_features)
    policy = ActorCritic(ckpt.config)
    policy.load_state_dict(ckpt.policy_state_dict)
    policy.to(resolve_device(args.device).device)
    cost_bps = ckpt.ppo_config.env.cost_bps if ckpt.ppo_config else 1.0
    results = evaluate_with_baselines(policy, data, args.split, cost_bps)
    if args.json:
        print_json({name: r.to_dict() for name, r in results.items()})
    else:
        eval_table(f"{args.split} split of {market.name}", results)
    return 0
