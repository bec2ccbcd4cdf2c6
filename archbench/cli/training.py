"""`archbench train`: train one network size with PPO on a dataset (or continue a checkpoint's
run), stop cleanly on a signal, and print the validation metrics beside the baselines."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from archbench.cli._common import LOOKBACK_HELP, default, output_file, print_json, size_options
from archbench.cli.run_data import (
    add_data_options,
    checkpoint_market,
    market_options,
    train_cost,
    warn,
)
from archbench.cli.tables import eval_table, observation_words
from archbench.instrument.stopping import StopGuard
from ppo_core.config import EnvConfig, PPOConfig
from ppo_core.device import TRAINING_PRECISIONS
from ppo_core.errors import ConfigError
from ppo_core.presets import hidden_dims_text

__all__ = ["add_commands"]


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    _add_train(subcommands)


def _add_train(subcommands: argparse._SubParsersAction) -> None:
    from ppo_core.presets import TRAINING_MODES

    train = subcommands.add_parser(
        "train",
        help="train one network size with PPO on market data and save a checkpoint",
        description="Train an actor-critic of one size with PPO on the trading environment, "
        "then print its validation metrics beside the flat, buy-and-hold, trend-rule, "
        "matched-turnover random and (synthetic data) oracle baselines, with the cost, the period, "
        "bars per year and the Sharpe's standard error. The checkpoint holds the full config, "
        "weights, Adam state and the training split's normalisation statistics.",
    )
    size = size_options(
        train,
        "network size (default: tiny, which trains in minutes on a CPU; medium, the reference "
        "size, wants a GPU; with --resume, the checkpoint's)",
        "custom widths, e.g. 768,384,192",
    )
    size.add_argument(
        "--auto", action="store_true", help="hidden_dims, n_envs and minibatch from the GPU tier"
    )
    add_data_options(train, "synthetic; with --resume, the checkpoint's data")
    train.add_argument("--lookback", type=int, metavar="BARS", help=LOOKBACK_HELP)
    timesteps = default(PPOConfig, "total_timesteps")
    train.add_argument(
        "--timesteps",
        type=int,
        help=f"env steps (default {timesteps:,}); with --resume, steps MORE than the checkpoint "
        "has run (default: what is left of its own budget)",
    )
    train.add_argument(
        "--mode",
        choices=list(TRAINING_MODES),
        help="training mode (default quick; with --resume, the checkpoint's settings)",
    )
    _add_ppo_options(train)
    _add_run_options(train)
    train.set_defaults(handler=_train)


def _add_ppo_options(train: argparse.ArgumentParser) -> None:
    """The rollout, PPO and environment settings a run may override."""
    train.add_argument(
        "--n-envs", type=int, help=f"parallel environments (default {default(PPOConfig, 'n_envs')})"
    )
    train.add_argument("--n-steps", type=int, help="steps per environment per rollout")
    train.add_argument(
        "--minibatch",
        type=int,
        help=f"minibatch size (default {default(PPOConfig, 'minibatch_size')})",
    )
    train.add_argument("--epochs", type=int, help="update epochs per rollout")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument(
        "--gamma", type=float, help=f"discount factor (default {default(PPOConfig, 'gamma')})"
    )
    train.add_argument(
        "--gae-lambda", type=float, help=f"GAE lambda (default {default(PPOConfig, 'gae_lambda')})"
    )
    train.add_argument("--ent-coef", type=float, help="entropy bonus weight (mode's default)")
    train.add_argument(
        "--clip-coef",
        type=float,
        help=f"PPO ratio clip range (default {default(PPOConfig, 'clip_coef')})",
    )
    train.add_argument(
        "--cost-bps",
        type=float,
        help="trading cost per unit of position change, bp (default: the data's: "
        f"synthetic {default(EnvConfig, 'cost_bps'):g}, eurusd-1h 1, sp500/nasdaq/googl 5; a file "
        f"{default(EnvConfig, 'cost_bps'):g} with a warning)",
    )
    train.add_argument(
        "--no-account-state",
        action="store_true",
        help="observe the market window only, without position, unrealised return, bars held",
    )


def _add_run_options(train: argparse.ArgumentParser) -> None:
    """Where and how the run executes, and where its checkpoint goes."""
    seed, device = default(PPOConfig, "seed"), default(PPOConfig, "device")
    train.add_argument(
        "--seed",
        type=int,
        help=f"seed of the weights, the environments and synthetic data (default {seed}; with "
        "--resume, the checkpoint's: another seed is another run, refused)",
    )
    train.add_argument("--device", default=device, help=f"auto, cpu, cuda or cuda:N ({device})")
    train.add_argument(
        "--precision",
        choices=["auto", *TRAINING_PRECISIONS],
        default=default(PPOConfig, "precision"),
        help="matmul precision: fp32, tf32 (fp32 tensors, TF32 matmuls), bf16 (autocast); "
        "auto: tf32 on a CUDA GPU of compute capability 8.0+, else fp32",
    )
    train.add_argument("--compile", action="store_true", help="torch.compile the policy")
    train.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="iterations")
    train.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue this checkpoint's run: its architecture, data, costs, seed and settings, "
        "for what is left of its budget (or --timesteps more steps)",
    )
    train.add_argument(
        "--out", help="checkpoint path (default model.pt; with --resume, the checkpoint itself)"
    )
    train.add_argument("--json", action="store_true", help="print the summary as JSON")


def _training_config(args: argparse.Namespace, stored=None):  # -> PPOConfig
    """The run's PPOConfig: a new run's from the size options and --mode, a resumed run's
    (`stored`, its checkpoint) from the checkpoint; then every flag given overrides."""
    from ppo_core.config import NetworkConfig, PPOConfig
    from ppo_core.presets import PRESETS, TRAINING_MODES, parse_hidden_dims

    if args.timesteps is not None and args.timesteps <= 0:
        raise ConfigError(f"--timesteps must be positive, got {args.timesteps}")
    timesteps = args.timesteps or default(PPOConfig, "total_timesteps")
    if stored is not None:
        config = _resumed_config(args, stored)
    elif args.auto:
        from archbench.instrument.device.tiers import get_auto_config

        config = get_auto_config(timesteps, args.mode or "quick", device=args.device)
    else:
        dims = parse_hidden_dims(args.hidden_dims) if args.hidden_dims else PRESETS["tiny"]
        if args.preset:
            dims = PRESETS[args.preset]
        config = PPOConfig(
            total_timesteps=timesteps,
            network=NetworkConfig(hidden_dims=dims),
            device=args.device,
            **TRAINING_MODES[args.mode or "quick"],
        )
    overrides = {
        "n_envs": args.n_envs,
        "n_steps": args.n_steps,
        "minibatch_size": args.minibatch,
        "n_epochs": args.epochs,
        "learning_rate": args.lr,
        "gamma": args.gamma,
        "gae_lambda": args.gae_lambda,
        "ent_coef": args.ent_coef,
        "clip_coef": args.clip_coef,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    if args.cost_bps is not None:
        changes["env"] = dataclasses.replace(config.env, cost_bps=args.cost_bps)
    network = {"account_state": False} if args.no_account_state else {}
    if args.lookback is not None:
        network["lookback"] = args.lookback
    if network and stored is None:  # a resumed run's architecture is the checkpoint's
        changes["network"] = dataclasses.replace(config.network, **network)
    seed = _run_seed(args.seed, stored, config.seed)
    changes.update(seed=seed, precision=args.precision, compile=args.compile)
    if "minibatch_size" not in changes:
        batch = changes.get("n_envs", config.n_envs) * changes.get("n_steps", config.n_steps)
        changes["minibatch_size"] = min(config.minibatch_size, batch)
    config = config.replace(**changes)
    return config if stored is None else _resumed_budget(config, stored, args.timesteps)


def _resumed_config(args: argparse.Namespace, stored):  # -> PPOConfig
    """The checkpoint's run: its architecture (a size flag that asks for another one is refused
    in one line), data layout, costs and settings; --mode, when given, resets what modes set."""
    from ppo_core.config import PPOConfig
    from ppo_core.presets import TRAINING_MODES, parse_hidden_dims

    if args.auto:
        raise ConfigError(
            f"--auto picks a size for a new run; --resume continues {stored.path} at its own "
            f"size {tuple(stored.config.hidden_dims)}: drop --auto"
        )
    wanted = stored.config
    if args.preset or args.hidden_dims:
        dims = parse_hidden_dims(args.preset or args.hidden_dims)
        wanted = dataclasses.replace(wanted, hidden_dims=dims)
    if args.no_account_state:
        wanted = dataclasses.replace(wanted, account_state=False)
    if args.lookback is not None:
        wanted = dataclasses.replace(wanted, lookback=args.lookback)
    stored.check_architecture(wanted)
    if stored.ppo_config is None:  # saved with its network alone: today's defaults train it
        config = PPOConfig(network=stored.config, **TRAINING_MODES[args.mode or "quick"])
    else:
        config = stored.ppo_config.replace(network=stored.config)
        if args.mode:
            config = config.replace(**TRAINING_MODES[args.mode])
    return config.replace(device=args.device)


def _run_seed(given: int | None, stored, run_seed: int) -> int:
    """--seed, else the run's own: today's default for a new run, the checkpoint's for a
    resumed one (`stored`), which refuses another seed in one line naming both."""
    if given is None:
        return run_seed
    if stored is not None and stored.ppo_config is not None and given != run_seed:
        raise ConfigError(
            f"--seed {given}: {stored.path} was trained with seed {run_seed}, and a resume "
            f"continues that run; drop --seed (or pass --seed {run_seed}), or start a new run "
            "with this seed without --resume"
        )
    return given


def _resumed_budget(config, stored, more: int | None):  # -> PPOConfig
    """A resumed run's total_timesteps: `more` steps past the checkpoint's iterations, or
    (`more` None) what is left of its own budget; a finished run is refused, nothing written."""
    done = int(stored.meta.get("iteration", 0))
    if more is None:
        more = config.total_timesteps - int(stored.meta.get("global_step", 0))
        if more < config.batch_size:
            raise ConfigError(
                f"{stored.path} has run its whole budget ({config.total_timesteps:,} steps, "
                f"iteration {done}): nothing is left to resume; add --timesteps N to train "
                "N more steps"
            )
    iterations = done + max(1, more // config.batch_size)
    return config.replace(total_timesteps=iterations * config.batch_size)


def _train(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import Normalizer, prepare
    from ppo_core.device import resolve_device, resolve_precision
    from ppo_core.env import TradingEnv
    from ppo_core.evaluation import EvalContext, evaluate_with_baselines
    from ppo_core.loaders import load_market_data
    from ppo_core.trainer import PPOTrainer

    # Read once (a checkpoint with Adam's state can be hundreds of MB).
    stored = checkpoint.load(args.resume) if args.resume else None
    config = _training_config(args, stored)
    out = _check_train_out(args)
    device = resolve_device(config.device).device
    resolve_precision(config.precision, device)  # refuse tf32/bf16 on a CPU before any work
    # Resumed weights were trained on the checkpoint's feature scaling: keep it.
    normalizer = Normalizer.from_dict(stored.obs_norm) if stored and stored.obs_norm else None
    if stored is not None and args.data is None:
        market = checkpoint_market(args, stored, args.resume)
    else:
        options = market_options(args)
        market = load_market_data(
            args.data or "synthetic", bars=args.bars, seed=config.seed, **options
        )
    # Data that cannot be used is refused before any warning about how it would be traded.
    data = prepare(market, lookback=config.network.lookback, normalizer=normalizer)
    cost = train_cost(args, market, stored)
    warn(cost.warning)  # before the training it would spoil
    config = config.replace(env=dataclasses.replace(config.env, cost_bps=cost.bps))
    env = TradingEnv(
        data,
        "train",
        config.n_envs,
        config.env,
        device=device,
        seed=config.seed,
        network=config.network,
    )
    trainer = PPOTrainer(env, config.replace(device=str(device)))
    if stored is not None:
        trainer.resume(stored)
    stats = _learn(
        trainer, out, args, _banner(config, market, device, trainer.iteration, args.resume)
    )
    if isinstance(stats, int):
        return stats  # stopped by a signal: the checkpoint is written, the exit status says so
    try:
        results = evaluate_with_baselines(trainer.policy, data, "validation", config.env.cost_bps)
    except KeyboardInterrupt:
        print(
            "archbench train: interrupted during the final validation pass; the trained "
            f"checkpoint {out} was kept (score it with: archbench evaluate {out})",
            file=sys.stderr,
        )
        return 128 + signal.SIGINT
    context = EvalContext.of(data, "validation", cost, results["policy"])
    _print_trained(args, config, stats, results, context, trainer.precision, market.name, out)
    warn(context.caveat)
    return 0


def _print_trained(args, config, stats, results, context, precision, market, out) -> None:
    """The training summary: JSON, or the last iteration's rates and the validation table."""
    summary = {
        "checkpoint": str(out),
        "hidden_dims": list(config.network.hidden_dims),
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "cost_bps": config.env.cost_bps,
        "account_state": config.network.account_state,
        "account_gain": config.network.observation_layout["account_gain"],
        "iterations": len(stats),
        "last_iteration": stats[-1].to_dict() if stats else None,
        "validation": {name: r.to_dict() for name, r in results.items()},
        "validation_context": context.to_dict(),
    }
    if args.json:
        print_json(summary)
    else:
        if stats:
            last = stats[-1]
            print(
                f"last iteration: {last.train_env_steps_per_s:,.0f} env-steps/s "
                f"(whole iteration, {precision}), "
                f"{last.update_samples_per_s:,.0f} update samples/s, "
                f"explained variance {last.explained_variance:.3f}"
            )
        eval_table(f"validation split of {market}", results, context)
        print(f"checkpoint written to {out}")


def _learn(trainer, out, args: argparse.Namespace, banner: str):  # -> list[IterationStats] | int
    """trainer.learn with the stop signals handled: the stats, or the exit status of a run a
    signal stopped (its checkpoint written, the command that continues it printed)."""
    with _StopAfterIteration() as stop:
        if not args.json:
            print(banner, file=sys.stderr)
        try:
            return trainer.learn(
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
                f"of {trainer.config.n_iterations}; checkpoint written to {out} "
                f"(continue with: archbench train --resume {out})",
                file=sys.stderr,
            )
            return 128 + (stop.signum or signal.SIGINT)


def _check_train_out(args: argparse.Namespace):  # -> Path
    from pathlib import Path

    # --out may be --resume's file: the continued run replaces it (atomically), as intended.
    data = [args.data] if args.data and Path(args.data).is_file() else []
    out = args.out or args.resume or "model.pt"
    return output_file(out, data, flag="--out", example="model.pt")


def _banner(config, market, device, done: int, resumed: str | None) -> str:
    """What `train` is about to do, on one line: size, data, budget, discounting, cost, input."""
    dims = hidden_dims_text(config.network.hidden_dims)
    todo = config.n_iterations - done
    start = f"resuming {resumed} after iteration {done}: training" if resumed else "training"
    return (
        f"{start} hidden_dims ({dims}) on {market.name} ({len(market.timestamps):,} bars) for "
        f"{todo * config.batch_size:,} steps on {device}: {todo} iterations of "
        f"{config.n_envs} envs x {config.n_steps} steps; gamma {config.gamma}, gae_lambda "
        f"{config.gae_lambda}, cost {config.env.cost_bps:g} bp, input "
        f"{observation_words(config.network)}"
    )


class _Stopped(Exception):
    """Raised between PPO iterations once a stop signal has arrived."""


class _StopAfterIteration:
    """SIGINT and SIGTERM during training: the first stops it at the end of the running
    iteration (weights and Adam state consistent), a second stops it at once."""

    def __init__(self) -> None:
        self._guard = StopGuard((signal.SIGINT, signal.SIGTERM), on_signal=self._note)

    @property
    def signum(self) -> int | None:
        """The first stop signal received, if any."""
        return self._guard.signum

    def _note(self, signum: int) -> None:
        if len(self._guard.received) > 1:
            raise KeyboardInterrupt
        print(
            f"archbench train: {signal.Signals(signum).name}: stopping after this iteration and "
            "saving the checkpoint (again to stop at once)",
            file=sys.stderr,
        )

    def check(self, _stats: object) -> None:
        if self.signum is not None:
            raise _Stopped

    def __enter__(self) -> _StopAfterIteration:
        self._guard.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._guard.__exit__(*exc)
