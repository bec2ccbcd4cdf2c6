"""The `archbench` command line: one subcommand per job, each a thin layer over the library.

Every error the tool raises on purpose is printed as one line and exits 2; no tracebacks.
Heavy imports (torch, plotly) happen inside the handlers so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ppo_core import __version__
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = ["build_parser", "main"]


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


_MAX_MEMORY_GIB = 16_384.0
"""Largest device memory a flag may state (16 TiB): anything above is a typo."""
_MAX_BATCH = 2**31 - 1
"""Largest env, step or minibatch count a flag may state (a torch index is int64, but tensors
of more rows than this would not fit any device)."""
_MAX_SEED = 2**63 - 1
"""torch.manual_seed's limit."""
_MAX_BARS = 10**8
"""Most bars of data a flag may ask for (10^8 bars of 53 float32 features are ~21 GB)."""


def _refuse_non_finite(args: argparse.Namespace) -> None:
    """Every float flag of every command: inf and nan are refused in one line, before work."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"--{name.replace('_', '-')} {item}: not a finite number")


def _check_range(
    value: float | None, flag: str, low: float, high: float, *, low_inclusive: bool = False
) -> None:
    """`value` (None: not given) inside (low, high] ([low, high] with low_inclusive)."""
    if value is None:
        return
    above_low = value >= low if low_inclusive else value > low
    if not (above_low and value <= high):
        bracket = "[" if low_inclusive else "("
        raise ConfigError(f"{flag} {value:g}: must be in {bracket}{_num(low)}, {_num(high)}]")


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


# --- sizing: estimate, inspect, diff -----------------------------------------------------

_WRONG_TABLE_NOTE = (
    "The widely copied sizing table (tiny ~0.4M, small ~1.5M, large 12.6M params / ~148 MB) "
    "is wrong; these figures are exact for the network archbench builds (tests pin them)."
)


def _console():  # -> rich.console.Console
    from rich.console import Console

    # Not a terminal (a pipe, a file, a test): wide enough that no figure is wrapped.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


def _add_sizing_commands(subcommands: argparse._SubParsersAction) -> None:
    from ppo_core.presets import PRESETS

    estimate = subcommands.add_parser(
        "estimate",
        help="exact parameters, bytes, FLOPs and training memory of every network size",
        description="Size PPO actor-critic networks without building them: exact parameter "
        "counts, weight bytes, checkpoint file sizes with and without Adam state, matmul FLOPs "
        "per sample (forward and forward+backward) and the peak training memory of a PPO update. "
        "By default one row per preset; --preset or --hidden-dims sizes one network.",
    )
    size = estimate.add_mutually_exclusive_group()
    size.add_argument("--preset", choices=list(PRESETS), help="size one preset")
    size.add_argument("--hidden-dims", metavar="W,W,...", help="size custom widths: 768,384,192")
    estimate.add_argument("--features", type=int, default=53, help="features per bar (53)")
    estimate.add_argument("--lookback", type=int, default=100, help="bars per observation (100)")
    estimate.add_argument("--n-actions", type=int, default=3, help="discrete actions (3)")
    estimate.add_argument(
        "--trunk", choices=["shared", "separate"], default="shared", help="trunk layout (shared)"
    )
    estimate.add_argument("--layer-norm", action="store_true", help="LayerNorm in the trunk")
    estimate.add_argument(
        "--no-account-state",
        action="store_true",
        help="size the market window alone (no position, unrealised return, bars held inputs)",
    )
    estimate.add_argument("--n-envs", type=int, default=8, help="environments per rollout (8)")
    estimate.add_argument("--n-steps", type=int, default=256, help="steps per env per rollout")
    estimate.add_argument("--minibatch", type=int, default=256, help="samples per update (256)")
    estimate.add_argument(
        "--bars", type=int, help="bars of features kept on the device (default: not counted)"
    )
    estimate.add_argument("--json", action="store_true", help="print a list of estimate dicts")
    estimate.set_defaults(handler=_estimate)

    inspect = subcommands.add_parser(
        "inspect",
        help="show a checkpoint's architecture, parameters, size and origin",
        description="Load a checkpoint safely (no pickled code runs) and show its hidden_dims, "
        "trunk, obs_dim, parameter count, file size beside the sizing model's prediction, "
        "whether optimizer state is inside, and when and by which version it was written.",
    )
    inspect.add_argument("checkpoint", help="a checkpoint file written by archbench")
    inspect.add_argument("--json", action="store_true", help="print the record as JSON")
    inspect.set_defaults(handler=_inspect)

    diff = subcommands.add_parser(
        "diff",
        help="compare the configs of two checkpoints",
        description="List the architecture fields (and training fields, when both files carry "
        "them) that differ between two checkpoints, with both parameter counts. Exit status: "
        "0 same architecture, 1 different architecture, 2 error.",
    )
    diff.add_argument("a", help="first checkpoint")
    diff.add_argument("b", help="second checkpoint")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.set_defaults(handler=_diff)


def _estimate(args: argparse.Namespace) -> int:
    from ppo_core.config import NetworkConfig
    from ppo_core.presets import PRESETS, parse_hidden_dims, preset_name
    from ppo_core.sizing import CUDA_CONTEXT_BYTES, estimate

    if args.preset:
        sizes = [PRESETS[args.preset]]
    elif args.hidden_dims is not None:
        sizes = [parse_hidden_dims(args.hidden_dims)]
    else:
        sizes = list(PRESETS.values())
    estimates = [
        estimate(
            NetworkConfig(
                n_features=args.features,
                lookback=args.lookback,
                hidden_dims=dims,
                n_actions=args.n_actions,
                trunk=args.trunk,
                layer_norm=args.layer_norm,
                account_state=not args.no_account_state,
            ),
            n_envs=args.n_envs,
            n_steps=args.n_steps,
            minibatch=args.minibatch,
            n_bars=args.bars,
        )
        for dims in sizes
    ]
    if args.json:
        _print_json([e.to_dict() for e in estimates])
        return 0

    from rich.table import Table

    first = estimates[0]
    table = Table(
        title=f"Exact sizes: obs {args.features} x {args.lookback}"
        f"{'' if args.no_account_state else ' + 3 account'} = {first.config.obs_dim}, "
        f"{args.n_actions} actions, {args.trunk} trunk",
    )
    for header in ("size", "hidden_dims", "params", "first layer"):
        table.add_column(header, justify="left" if header != "params" else "right", no_wrap=True)
    for header in (
        "fp32 MB",
        "ckpt MB +Adam",
        "ckpt MB weights",
        "MFLOP/sample fwd",
        "MFLOP/sample fwd+bwd",
        "train MB",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for e in estimates:
        dims = e.config.hidden_dims
        table.add_row(
            preset_name(dims),
            ",".join(str(w) for w in dims),
            f"{e.params:,}",
            f"{e.first_layer_share:.1%}",
            f"{e.weight_bytes['fp32'] / 1e6:.1f}",
            f"{e.checkpoint_bytes / 1e6:.1f}",
            f"{e.checkpoint_bytes_no_optimizer / 1e6:.1f}",
            f"{e.forward_flops_per_sample / 1e6:.1f}",
            f"{e.train_flops_per_sample / 1e6:.1f}",
            f"{e.train_bytes / 1e6:.1f}",
        )
    console = _console()
    console.print(table)
    data = f" + {args.bars:,} bars of features" if args.bars else ""
    for line in (
        f"train MB: fp32 weights + grads + Adam moments + Adam's step temporaries + saved "
        f"activations and observations of one "
        f"{args.minibatch}-sample minibatch + the rollout ({args.n_envs} envs x {args.n_steps} "
        f"steps, stored as bar indices){data}. MB = 10^6 bytes.",
        f"On a GPU add the CUDA context, ~{CUDA_CONTEXT_BYTES / 1e6:.0f} MB (stated separately, "
        "varies by GPU and driver).",
        _WRONG_TABLE_NOTE,
    ):
        console.print(line, soft_wrap=True, highlight=False)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint

    info = checkpoint.inspect(args.checkpoint)
    if args.json:
        _print_json(info.to_dict())
        return 0

    from rich.table import Table

    table = Table(title=f"checkpoint {info.path}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    rows = {
        "hidden_dims": ",".join(str(w) for w in info.hidden_dims),
        "trunk": info.trunk,
        "obs_dim": f"{info.obs_dim} ({info.n_features} features x {info.lookback} bars)",
        "n_actions": str(info.n_actions),
        "activation": info.activation + (" + LayerNorm" if info.layer_norm else ""),
        "params": f"{info.params:,}",
        "file size": f"{info.file_bytes:,} B (sizing model predicts {info.predicted_bytes:,})",
        "optimizer state": "yes" if info.has_optimizer_state else "no",
        "obs normalisation": "yes" if info.has_obs_norm else "no",
        "created": info.created or "unknown",
        "written by": f"ppo-archbench {info.archbench_version}, torch {info.torch_version}",
        "git commit": info.git_commit or "unknown",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    _console().print(table)
    return 0


def _diff(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint

    result = checkpoint.diff(args.a, args.b)
    if args.json:
        _print_json(result.to_dict())
        return 0 if result.same_architecture else 1

    from rich.table import Table

    console = _console()
    verdict = "same architecture" if result.same_architecture else "different architecture"
    console.print(
        f"{verdict}: {result.params_a:,} params in {result.path_a}, "
        f"{result.params_b:,} in {result.path_b}"
    )
    for title, rows in (
        ("architecture", result.differences),
        ("training", result.training_differences),
    ):
        if rows:
            console.print(f"{title} fields that differ:", highlight=False)
            table = Table()
            for header in ("field", "a", "b"):
                table.add_column(header)
            for field, a, b in rows:
                table.add_row(field, str(a), str(b))
            console.print(table)
    return 0 if result.same_architecture else 1


# --- training: train, evaluate -----------------------------------------------------------

_DATA_HELP = "synthetic, sp500, nasdaq, eurusd-1h (the `data` extra) or a CSV/Parquet OHLCV file"


def _add_training_commands(subcommands: argparse._SubParsersAction) -> None:
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
    _add_timestamp_options(train)
    train.add_argument("--timesteps", type=int, default=100_000, help="env steps (default 100k)")
    train.add_argument(
        "--mode", choices=list(TRAINING_MODES), default="quick", help="training mode (quick)"
    )
    train.add_argument("--n-envs", type=int, help="parallel environments (default 8)")
    train.add_argument("--n-steps", type=int, help="steps per environment per rollout")
    train.add_argument("--minibatch", type=int, help="minibatch size (default 256)")
    train.add_argument("--epochs", type=int, help="update epochs per rollout")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--gamma", type=float, help="discount factor (default 0.99)")
    train.add_argument("--gae-lambda", type=float, help="GAE lambda (default 0.95)")
    train.add_argument("--ent-coef", type=float, help="entropy bonus weight (mode's default)")
    train.add_argument("--clip-coef", type=float, help="PPO ratio clip range (default 0.2)")
    train.add_argument(
        "--cost-bps", type=float, help="trading cost per unit of position change, bp (default 5)"
    )
    train.add_argument(
        "--no-account-state",
        action="store_true",
        help="observe the market window only, without position, unrealised return, bars held",
    )
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
    evaluate.add_argument(
        "--data", help=_DATA_HELP + " (default: the data the checkpoint was trained on)"
    )
    evaluate.add_argument("--bars", type=int, help="bars of data (synthetic: length to make)")
    evaluate.add_argument(
        "--signal-strength", type=float, default=None, help="synthetic data only (default 0.1)"
    )
    _add_timestamp_options(evaluate)
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="validation")
    evaluate.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    evaluate.add_argument(
        "--allow-in-sample",
        action="store_true",
        help="score a split that overlaps the checkpoint's training bars anyway",
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)


def _add_timestamp_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timestamp-column", metavar="NAME", help="files only: the column holding the bar times"
    )
    parser.add_argument(
        "--timestamp-format",
        metavar="FMT",
        help="files only: a strftime pattern ('%%d.%%m.%%Y %%H:%%M'), dayfirst, monthfirst, "
        "epoch_s or epoch_ms (default: detected)",
    )


def _training_config(args: argparse.Namespace):  # -> PPOConfig
    from ppo_core.config import NetworkConfig, PPOConfig
    from ppo_core.errors import ConfigError
    from ppo_core.presets import PRESETS, TRAINING_MODES, parse_hidden_dims

    if args.timesteps is not None and args.timesteps <= 0:
        raise ConfigError(f"--timesteps must be positive, got {args.timesteps}")
    if args.auto:
        from ppo_core.hardware import get_auto_config

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
        "gamma": args.gamma,
        "gae_lambda": args.gae_lambda,
        "ent_coef": args.ent_coef,
        "clip_coef": args.clip_coef,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    if args.cost_bps is not None:
        changes["env"] = dataclasses.replace(config.env, cost_bps=args.cost_bps)
    if args.no_account_state:
        changes["network"] = dataclasses.replace(config.network, account_state=False)
    changes.update(seed=args.seed, precision=args.precision, compile=args.compile)
    if "minibatch_size" not in changes:
        batch = changes.get("n_envs", config.n_envs) * changes.get("n_steps", config.n_steps)
        changes["minibatch_size"] = min(config.minibatch_size, batch)
    return config.replace(**changes)


def _signal(args: argparse.Namespace) -> dict[str, Any]:
    """load_market_data's keyword arguments from the command line's data options."""
    options: dict[str, Any] = {}
    if args.signal_strength is not None:
        options["signal_strength"] = args.signal_strength
    if args.timestamp_column is not None:
        options["timestamp_column"] = args.timestamp_column
    if args.timestamp_format is not None:
        options["timestamp_format"] = args.timestamp_format
    return options


def _eval_table(title: str, results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("policy", "log return", "Sharpe", "max drawdown", "turnover", "hit rate"):
        table.add_column(column, justify="right" if column != "policy" else "left")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r.total_log_return:+.4f}",
            f"{r.sharpe:+.2f}",
            f"{r.max_drawdown:.4f}",
            f"{r.turnover:.3f}",
            "-" if r.hit_rate is None else f"{r.hit_rate:.3f}",
        )
    Console().print(table)


def _train(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import Normalizer, load_market_data, prepare
    from ppo_core.env import TradingEnv
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.gpu import resolve_precision
    from ppo_core.hardware import detect_device
    from ppo_core.trainer import PPOTrainer

    config = _training_config(args)
    _check_range(args.bars, "--bars", 1, _MAX_BARS)
    out = _check_train_out(args)
    device = detect_device(config.device)[0]
    resolve_precision(config.precision, device)  # refuse tf32/bf16 on a CPU before any work
    market = load_market_data(args.data, bars=args.bars, seed=config.seed, **_signal(args))
    normalizer = None
    if args.resume:
        # Resumed weights were trained on the checkpoint's feature scaling: keep it.
        stored = checkpoint.load(args.resume, config=config.network).obs_norm
        normalizer = Normalizer.from_dict(stored) if stored else None
    data = prepare(market, lookback=config.network.lookback, normalizer=normalizer)
    env = TradingEnv(
        data,
        "train",
        config.n_envs,
        config.env,
        device=device,
        seed=config.seed,
        account_state=config.network.account_state,
    )
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
                f"{config.n_steps} steps; gamma {config.gamma}, gae_lambda "
                f"{config.gae_lambda}, cost {config.env.cost_bps:g} bp, account state "
                f"{'on' if config.network.account_state else 'off'}",
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
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "cost_bps": config.env.cost_bps,
        "account_state": config.network.account_state,
        "iterations": len(stats),
        "last_iteration": stats[-1].to_dict() if stats else None,
        "validation": {name: r.to_dict() for name, r in results.items()},
    }
    if args.json:
        _print_json(summary)
    else:
        if stats:
            last = stats[-1]
            print(
                f"last iteration: {last.train_env_steps_per_s:,.0f} env-steps/s "
                f"(whole iteration, {trainer.precision}), "
                f"{last.update_samples_per_s:,.0f} update samples/s, "
                f"explained variance {last.explained_variance:.3f}"
            )
        _eval_table("validation split", results)
        _sharpe_caveat("validation", results["policy"].n_bars, data.market.periods_per_year)
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


MIN_SHARPE_BARS = 252
"""Fewest bars for a Sharpe ratio worth printing without a caveat: a year of daily bars, where
the per-bar Sharpe's standard error is 1 / sqrt(252) = 0.063 (annualised: +-1.0 on daily bars;
below it the figure is mostly noise, as the +64 of a 2-bar split was)."""


def _sharpe_caveat(split: str, n_bars: int, bars_per_year: float) -> None:
    if n_bars < MIN_SHARPE_BARS:
        error = (bars_per_year / max(n_bars, 1)) ** 0.5
        print(
            f"warning: the {split} split has {n_bars:,} bars; a Sharpe ratio needs at least "
            f"{MIN_SHARPE_BARS} to mean much (its standard error here is ~+-{error:.1f})",
            file=sys.stderr,
        )


def _checkpoint_market(args: argparse.Namespace, ckpt):  # -> data.MarketData
    """The evaluation's bars: --data when given, else the checkpoint's own training data,
    rebuilt from its recorded origin and checked against its content hash."""
    from ppo_core.data import load_market_data
    from ppo_core.errors import DataError

    if args.data is not None:
        return load_market_data(args.data, bars=args.bars, seed=args.seed, **_signal(args))
    identity = ckpt.data or {}
    origin = identity.get("origin")
    if not isinstance(origin, dict) or "spec" not in origin:
        raise DataError(
            f"{args.checkpoint} does not record its training data (written before archbench "
            "recorded it); pass --data"
        )
    options = {k: v for k, v in origin.items() if k != "spec" and v is not None}
    market = load_market_data(origin["spec"], **options)
    if market.content_hash() != identity.get("sha256"):
        raise DataError(
            f"{args.checkpoint}: its training data {origin['spec']} has changed since training "
            f"(content hash differs); pass --data to evaluate on it as new data"
        )
    return market


def _in_sample_overlap(ckpt, data, split: str) -> str | None:
    """Why `split` of `data` overlaps the checkpoint's training bars, or None when it does not.
    Bars are the same bars when the data is the same series (same name and, for synthetic
    data, the same seed and signal): then their times are compared."""
    import numpy as np

    identity = ckpt.data
    if not identity or identity.get("name") != data.market.name:
        return None
    trained, now = identity.get("origin") or {}, data.market.origin or {}
    if any(trained.get(k) != now.get(k) for k in ("seed", "signal_strength")):
        return None
    first, last = (np.datetime64(t) for t in identity["split_times"]["train"])
    start, end = data.splits.range(split)
    lo, hi = data.market.timestamps[start], data.market.timestamps[end - 1]
    if hi < first or lo > last:
        return None
    return (
        f"the {split} split ({lo} .. {hi}) overlaps the bars {ckpt.path} was trained on "
        f"({first} .. {last}); pass --allow-in-sample to score it anyway"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import FEATURE_NAMES, Normalizer, prepare
    from ppo_core.errors import DataError
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.hardware import detect_device
    from ppo_core.network import ActorCritic

    ckpt = checkpoint.load(args.checkpoint)
    _check_range(args.seed, "--seed", 0, _MAX_SEED, low_inclusive=True)
    _check_range(args.bars, "--bars", 1, _MAX_BARS)
    _check_features(ckpt, len(FEATURE_NAMES))
    normalizer = Normalizer.from_dict(ckpt.obs_norm) if ckpt.obs_norm else None
    market = _checkpoint_market(args, ckpt)
    data = prepare(market, lookback=ckpt.config.lookback, normalizer=normalizer)
    overlap = _in_sample_overlap(ckpt, data, args.split)
    if overlap and not args.allow_in_sample:
        raise DataError(overlap)
    policy = ActorCritic(ckpt.config)
    policy.load_state_dict(ckpt.policy_state_dict)
    policy.to(detect_device(args.device)[0])
    cost_bps = ckpt.ppo_config.env.cost_bps if ckpt.ppo_config else 1.0
    results = evaluate_with_baselines(policy, data, args.split, cost_bps)
    if args.json:
        _print_json({name: r.to_dict() for name, r in results.items()})
    else:
        note = " (in-sample)" if overlap else ""
        _eval_table(f"{args.split} split of {market.name}{note}", results)
    _sharpe_caveat(args.split, results["policy"].n_bars, market.periods_per_year)
    return 0


# --- benchmarks: sweep -------------------------------------------------------------------


def _add_benchmarks_commands(subcommands: argparse._SubParsersAction) -> None:
    sweep = subcommands.add_parser(
        "sweep",
        help="run the benchmark suites over network sizes and render the HTML report",
        description="Run the pytest-benchmark suites in bench/ (training throughput, inference "
        "latency, peak memory, overfitting, env steps, machine ceilings) over the chosen sizes, "
        "showing one line per finished case. Writes DIR/run-<host>-<device>-<UTC time>.json "
        "(pytest-benchmark JSON with an archbench/1 record per case), the pytest log, and the "
        "HTML report next to them. Every option is checked before pytest starts. Ctrl-C, "
        "SIGTERM or SIGHUP stop the sweep and pytest and keep every finished case (JSON and "
        "report). Each finished case is also streamed to DIR/run-...records.jsonl: if the sweep "
        "itself is killed, `archbench report DIR/run-...records.jsonl` rebuilds the run. "
        "quick: minutes on a laptop CPU (all presets but xlarge for latency and memory; tiny "
        "and small for training and overfitting; one seed). full: every preset, 3 seeds, "
        "longer budgets, sized for a GPU. Needs a source checkout (bench/ is not installed).",
    )
    from ppo_core.sweep import SWEEP_OPTIONS

    for option in SWEEP_OPTIONS:  # the same flags, help and parsers as bench/conftest.py's
        option.declare(sweep.add_argument)
    sweep.add_argument(
        "--out", default="runs", metavar="DIR", help="folder for the JSON, log and report (runs)"
    )
    sweep.add_argument(
        "--no-report", action="store_true", help="write the JSON only; render it later"
    )
    _add_shard_options(sweep)
    sweep.add_argument(
        "pytest_args",
        nargs="*",
        metavar="-- PYTEST_ARGS",
        help="extra pytest arguments after --, e.g. -- -k 'infer or memory'",
    )
    sweep.set_defaults(handler=_sweep)


def _add_shard_options(sweep: argparse.ArgumentParser) -> None:
    shards = sweep.add_argument_group("several devices (ppo_core.multisweep)")
    shards.add_argument(
        "--devices",
        metavar="D,D,...",
        help="one shard per device, in parallel, merged into one run: cuda:0,cuda:1, all "
        "(every GPU) or cpu,cpu; with --ray, cpu,cpu asks for CPU shards",
    )
    shards.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each shard as a Ray task (one GPU each; one CPU on a cluster without GPUs): "
        "HOST:PORT, ray://HOST:PORT, auto, or local (start a cluster here)",
    )
    shards.add_argument(
        "--accelerator",
        metavar="TYPE,TYPE,...",
        help="with --ray: the whole sweep once per Ray accelerator type, e.g. H100,A100,L4",
    )
    shards.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="with --ray: shards per sweep (default: the cluster's GPUs, else its nodes)",
    )


def _sweep(args: argparse.Namespace) -> int:
    from ppo_core.sweep import run_sweep

    if args.devices or args.ray or args.accelerator or args.shards:
        from ppo_core.multisweep import sweep_command

        return sweep_command(args)

    result = run_sweep(
        profile=args.profile,
        presets=args.presets,
        hidden_dims=args.hidden_dims,
        device=args.device,
        data=args.data,
        out_dir=args.out,
        pytest_args=args.pytest_args,
        render=not args.no_report,
    )
    done = f"{result.finished}/{result.collected}" if result.collected else str(result.finished)
    print(f"{done} cases finished; pytest exit code {result.returncode}; log {result.log_path}")
    if result.json_path is not None:
        how = " (rebuilt from the streamed records)" if result.rebuilt else ""
        print(f"wrote {result.json_path}{how}")
    if result.html_path is not None:
        print(f"wrote {result.html_path}")
    elif result.report_note:
        print(f"no report: {result.report_note}")
    if result.stopped_by is not None:
        return 128 + result.stopped_by  # as a shell reports a command ended by that signal
    report_missing = not args.no_report and result.json_path and result.html_path is None
    return 0 if result.returncode == 0 and not report_missing else 1


# --- reports: report, compare ------------------------------------------------------------


def _add_reports_commands(subcommands: argparse._SubParsersAction) -> None:
    report = subcommands.add_parser(
        "report",
        help="benchmark JSON -> one HTML report with the recommended hidden_dims per use case",
        description="Render one HTML report from one or more pytest-benchmark JSON files "
        "(`pytest bench/ --benchmark-json run.json`). Several runs (e.g. one per GPU) sit side "
        "by side. The file is self-contained (plotly.js inlined, opens offline) unless "
        "--plotlyjs cdn. Reads JSON only: no torch needed.",
    )
    report.add_argument("runs", nargs="+", metavar="RUN.json", help="benchmark JSON file(s)")
    report.add_argument(
        "-o", "--output", default="report.html", help="HTML file to write (report.html)"
    )
    report.add_argument(
        "--plotlyjs",
        choices=["inline", "cdn"],
        default="inline",
        help="inline: one offline file (~5 MB); cdn: small file that loads plotly.js online",
    )
    report.add_argument(
        "--latency-budget-ms",
        type=float,
        default=1.0,
        help="live trading: batch-1 p99 latency budget in ms (1.0)",
    )
    report.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="training memory budget in GiB (default: the run's GPU memory; none on a CPU run)",
    )
    report.add_argument(
        "--min-throughput-fraction",
        type=float,
        default=0.25,
        metavar="F",
        help="production and extended training: a size must train at >= F x the fastest "
        "size's whole-iteration rate (0.25)",
    )
    report.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="also include an A-vs-B comparison section",
    )
    report.set_defaults(handler=_report_command)

    compare = subcommands.add_parser(
        "compare",
        help="run A vs run B: ratio B/A per preset and metric with a noise-aware verdict",
        description="Compare two benchmark JSON files (two GPUs, two commits). For every "
        "preset, case and metric: the ratio B/A, how many times better or worse B is, and a "
        "verdict on the statistic the metric reports, from the raw samples: a p99 by a "
        "bootstrap of the ratio of p99s, a median by a two-sided Mann-Whitney U, a mean by "
        "Welch's t. The p-values are corrected for the number of rows tested "
        "(Benjamini-Hochberg, q <= --alpha), and a change smaller than --min-effect is 'same'. "
        "Figures with too few samples for a test (byte counts, one seed) are judged against "
        "--tolerance instead, and say so; a case that ran in A and went OOM in B is a "
        "regression. Each run's host load per core is shown; a run is LOADED when its load "
        "beyond its own threads (1 per core on a CPU run, 0 on a GPU run) is above 0.5 per "
        "core and over 2x the other run's.",
    )
    compare.add_argument("a", metavar="A.json", help="baseline run")
    compare.add_argument("b", metavar="B.json", help="candidate run")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any judged metric got significantly worse (for CI). When one run is "
        "LOADED, its timing rows (seconds, rates, FLOP/s, and ratios of them; not bytes or "
        "counts) are not judged: one line on stderr says how many were left out, and the exit "
        "code comes from the other rows; --allow-loaded judges them too",
    )
    compare.add_argument(
        "--allow-loaded",
        action="store_true",
        help="with --fail-on-regression: judge timing rows even when one run is LOADED",
    )
    compare.add_argument("--html", metavar="OUT.html", help="also write the table as HTML")
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="significance level for the corrected q-values (0.05)",
    )
    compare.add_argument(
        "--min-effect",
        type=float,
        default=0.05,
        help="smallest relative change of a tested statistic that counts as improved or "
        "regressed, even when significant (0.05 = 5%%; 0 keeps every significant change)",
    )
    compare.add_argument(
        "--tolerance",
        type=float,
        default=0.10,
        help="relative change that counts as regressed/improved for figures with too few "
        "samples for the test: single-shot bytes, a few repeats, one seed (0.10 = 10%%); with "
        "two or more samples each, overlapping samples are 'same'",
    )
    compare.add_argument(
        "--all", action="store_true", help="show every row, not only the ones that changed"
    )
    compare.set_defaults(handler=_compare_command)


def _report_command(args: argparse.Namespace) -> int:
    from ppo_core.atomic import check_output
    from ppo_core.errors import ConfigError
    from ppo_core.sweep import resolve_run
    from reports.compare import compare_runs, comparison_html
    from reports.render import render_report
    from reports.use_cases import Budgets

    _check_range(args.latency_budget_ms, "--latency-budget-ms", 0, 1e6)
    _check_range(args.memory_budget_gb, "--memory-budget-gb", 0, _MAX_MEMORY_GIB)
    _check_range(args.min_throughput_fraction, "--min-throughput-fraction", 0, 1)
    inputs = [*args.runs, *(args.compare or ())]
    check_output(args.output, inputs, flag="-o", example="report.html")
    runs = []
    for run in args.runs:  # a killed sweep's records stream becomes its run JSON first
        path, note = resolve_run(run)
        if note:
            print(note)
        runs.append(path)
    check_output(args.output, runs, flag="-o", example="report.html")
    try:
        budgets = Budgets(
            latency_p99_s=args.latency_budget_ms / 1e3,
            memory_bytes=None if args.memory_budget_gb is None else args.memory_budget_gb * 2**30,
            min_throughput_fraction=args.min_throughput_fraction,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    section = None
    if args.compare:
        section = comparison_html(compare_runs(*args.compare))
    path = render_report(
        runs, args.output, plotlyjs=args.plotlyjs, budgets=budgets, compare_html=section
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {len(runs)} run(s)")
    return 0


def _compare_command(args: argparse.Namespace) -> int:
    import math

    from ppo_core.errors import ConfigError
    from reports.compare import (
        compare_runs,
        comparison_html,
        has_regression,
        print_comparison,
        unjudged_timing_rows,
    )

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if not (math.isfinite(args.min_effect) and 0 <= args.min_effect < 1):
        raise ConfigError(
            f"--min-effect must be a fraction in [0, 1) (0.05 = 5%), got {args.min_effect}"
        )
    _check_range(args.tolerance, "--tolerance", 0, 1e3, low_inclusive=True)
    if args.html:
        from ppo_core.atomic import check_output

        check_output(args.html, [args.a, args.b], flag="--html", example="compare.html")
    table = compare_runs(
        args.a, args.b, alpha=args.alpha, tolerance=args.tolerance, min_effect=args.min_effect
    )
    print_comparison(table, console=_console(), show_all=args.all)
    if args.html:
        from reports.render import write_section

        path = write_section(comparison_html(table), args.html, title="archbench compare")
        print(f"wrote {path}")
    if not args.fail_on_regression:
        return 0
    skipped = unjudged_timing_rows(table)
    if len(skipped) and not args.allow_loaded:
        loaded = table.attrs["host_load"].loaded
        looks_worse = int((skipped["verdict"] == "regressed").sum())
        print(
            f"--fail-on-regression: run {loaded} is LOADED (host load above); its "
            f"{len(skipped)} timing rows are not judged ({looks_worse} of them look regressed); "
            "--allow-loaded judges them",
            file=sys.stderr,
        )
    if has_regression(table, allow_loaded=args.allow_loaded):
        print("regression found (--fail-on-regression)", file=sys.stderr)
        return 1
    return 0


# --- pick --------------------------------------------------------------------------------


def _add_pick_commands(subcommands: argparse._SubParsersAction) -> None:
    pick = subcommands.add_parser(
        "pick",
        help="choose hidden_dims, n_envs and minibatch for a GPU and a use case",
        description="Judge every preset (and any --hidden-dims) on one device: does training "
        "fit (sizing model + CUDA context under the memory, minus a safety margin), how fast "
        "it trains (measured from a results file made on this device; else scaled from the "
        "nearest measured run by matmul-rate and bandwidth ratios, 'extrapolated'; else a "
        "roofline estimate), batch-1 latency (measured, or the weights/bandwidth floor) and "
        "overfitting risk for --data-bars (measured Sharpe gap, or a params-per-bar heuristic). "
        "Prints the recommendation with its reasons, then every candidate. Exit status: 0 with "
        "a recommendation, 1 when no size qualifies, 2 on bad input.",
    )
    where = pick.add_argument_group("device")
    where.add_argument(
        "--gpu",
        default="auto",
        metavar="auto|NAME",
        help="'auto' (detect; the default), 'cpu', or a card: T4, L4, A10G, 'RTX 4090', "
        "A100-80GB, 'NVIDIA H100 80GB HBM3', ... (spelling is loose)",
    )
    where.add_argument(
        "--vram-gb",
        type=float,
        metavar="N",
        help="device memory in GiB: sizes an unlisted card, or overrides a named one's "
        "(a MIG slice, or to tell A100 40GB from 80GB)",
    )
    pick.add_argument(
        "--use-case",
        metavar="NAME",
        help="quick iteration, standard production (default), live trading, complex / volatile "
        "symbols, limited data, extended training (loose: 'live', 'limited-data')",
    )
    pick.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="RUN.json",
        help="benchmark JSON from `pytest bench/ --benchmark-json` (repeatable); runs from "
        "another device are used only for extrapolation",
    )
    pick.add_argument("--data-bars", type=int, metavar="N", help="bars of training data")
    pick.add_argument(
        "--latency-budget-ms",
        type=float,
        metavar="X",
        help="batch-1 p99 latency budget (live trading defaults to reports' 1 ms)",
    )
    pick.add_argument("--n-envs", type=int, metavar="N", help="environments (default: tier's)")
    pick.add_argument(
        "--n-steps", type=int, metavar="N", help="steps per env per rollout (default: mode's)"
    )
    pick.add_argument(
        "--minibatch", type=int, metavar="N", help="samples per update (default: tier's)"
    )
    pick.add_argument(
        "--hidden-dims",
        action="append",
        default=[],
        metavar="W,W,...",
        help="an extra candidate size, e.g. 768,384,192 (repeatable)",
    )
    pick.add_argument(
        "--precision",
        choices=["auto", "fp32", "tf32", "bf16"],
        default="auto",
        help="training precision: auto (the default) ranks measured sizes at the precision each "
        "ran fastest and models tf32 where the card has it (as train's auto); fp32, tf32 or "
        "bf16 rank only cases trained in it",
    )
    pick.add_argument(
        "--obs-buffer",
        choices=["indices", "observations"],
        default="indices",
        help="rollout layout sized: bar indices (the trainer's default) or full observation rows",
    )
    pick.add_argument(
        "--safety-margin",
        type=float,
        default=0.10,
        metavar="F",
        help="share of device memory kept free (default 0.10)",
    )
    pick.add_argument("--json", action="store_true", help="print the whole result as JSON")
    pick.set_defaults(handler=_pick)


def _pick_device(gpu: str, vram_gb: float | None):  # -> gpus.GpuSpec
    import dataclasses

    from ppo_core import gpus
    from ppo_core.errors import ConfigError

    wanted = gpu.strip().lower()
    if wanted == "auto" and vram_gb is not None:
        return gpus.custom_spec(f"GPU with {vram_gb:g} GiB", vram_gb, "--vram-gb; no rates")
    if wanted == "auto":
        from ppo_core.hardware import detect_device

        _, name, memory_gb = detect_device("auto")
        if name is not None and not memory_gb:
            raise ConfigError(f"detected {name!r} but not its memory; give --vram-gb N")
        if name is not None:
            spec = gpus.find_gpu(name, memory_gb) or gpus.custom_spec(
                name, memory_gb, "detected; not in the GPU table, so no rates"
            )
            # Detected memory is what this device really offers (a MIG slice, reserved memory).
            return dataclasses.replace(spec, memory_gib=memory_gb)
    elif wanted != "cpu":
        spec = gpus.find_gpu(gpu, vram_gb)
        if spec is None:
            raise ConfigError(
                f"unknown GPU {gpu!r}; known: {', '.join(gpus.known_names())}; "
                "for another card give its memory with --vram-gb N"
            )
        return dataclasses.replace(spec, memory_gib=vram_gb) if vram_gb else spec
    elif vram_gb is not None:
        raise ConfigError("--vram-gb is for a GPU; --gpu cpu uses this machine's RAM")
    import psutil

    from ppo_core.machine import device_info, measure_ceilings

    print("measuring this CPU's matmul and copy rates (a few seconds)...", file=sys.stderr)
    ceilings = measure_ceilings("cpu")
    return gpus.cpu_spec(ceilings, device_info("cpu").cpu_model, psutil.virtual_memory().total)


def _pick(args: argparse.Namespace) -> int:
    from ppo_core.presets import parse_hidden_dims
    from reports.pick import pick

    _check_range(args.vram_gb, "--vram-gb", 0, _MAX_MEMORY_GIB)
    _check_range(args.latency_budget_ms, "--latency-budget-ms", 0, 1e6)
    _check_range(args.data_bars, "--data-bars", 0, 10**9)
    for flag in ("n_envs", "n_steps", "minibatch"):
        _check_range(getattr(args, flag), f"--{flag.replace('_', '-')}", 0, _MAX_BATCH)
    runs = None
    if args.results:
        from reports.load import load_runs

        runs = load_runs(args.results)
    device = _pick_device(args.gpu, args.vram_gb)
    result = pick(
        device,
        use_case=args.use_case,
        runs=runs,
        data_bars=args.data_bars,
        latency_budget_s=None if args.latency_budget_ms is None else args.latency_budget_ms / 1e3,
        n_envs=args.n_envs,
        n_steps=args.n_steps,
        minibatch=args.minibatch,
        extra_dims=[parse_hidden_dims(d) for d in args.hidden_dims],
        precision=args.precision,
        obs_buffer=args.obs_buffer,
        safety_margin=args.safety_margin,
    )
    if args.json:
        _print_json(result.to_dict())
        return 0 if result.recommended is not None else 1
    _print_pick(result)
    return 0 if result.recommended is not None else 1


_BASIS_TAGS = {
    "measured": "measured",
    "measured (other settings)": "measured*",
    "extrapolated": "extrapolated",
    "roofline estimate": "roofline",
    "floor": "floor",
    "heuristic": "heuristic",
    "unavailable": "-",
}


def _figure_text(figure, fmt) -> str:  # figure: pick.Figure
    if figure.value is None:
        return "-"
    return f"{fmt(figure.value)} [dim]{_BASIS_TAGS[figure.basis]}[/dim]"


def _print_pick(result) -> None:  # result: pick.PickResult
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    device = result.device
    if result.decision is None and not result.notes:
        console.print("[bold yellow]no measurements: the tier table's prior[/bold yellow]")
    variant = f" ({device.variant})" if device.variant else ""
    console.print(f"[bold]{escape(device.name)}{escape(variant)}[/bold]: {device.source}")
    rec = result.recommended
    if rec is None:
        console.print(f"[bold red]no recommendation[/bold red] for {result.use_case!r}")
    else:
        dims = ",".join(map(str, rec.hidden_dims))
        console.print(
            f"[bold green]recommended:[/bold green] hidden_dims {dims} ({rec.label}), "
            f"n_envs {result.n_envs}, minibatch {result.minibatch}"
        )
    for line in result.why:
        console.print(f"  - {escape(line)}")

    title = (
        f"candidates on {device.name}: n_envs {result.n_envs} x n_steps {result.n_steps}, "
        f"minibatch {result.minibatch}, {result.precision}, {result.obs_buffer} rollout buffer"
    )
    table = Table(title=title)
    for column in (
        "size",
        "hidden_dims",
        "params",
        f"memory (of {result.budget_bytes / 1e9:.2f} GB)",
        "rollout env steps/s",
        "update samples/s",
        "train steps/s",
        "batch-1 latency p50 / p99",
        "Sharpe gap / data",
        "excluded because",
    ):
        left = column in ("size", "Sharpe gap / data", "excluded because")
        table.add_column(column, justify="left" if left else "right")
    for c in result.candidates:
        style = "bold green" if rec is not None and c.hidden_dims == rec.hidden_dims else None
        if c.overfit.value is None:
            overfit = "-"
        elif c.overfit.basis == "heuristic":
            overfit = f"{c.overfit_risk}: {c.overfit.value:,.0f} params/bar [dim]heuristic[/dim]"
        else:
            overfit = f"gap {c.overfit.value:+.2f} [dim]measured[/dim]"
        latency = _figure_text(c.latency_p50_s, lambda v: f"{v * 1e3:.3g} ms")
        if c.latency_p99_s.value is not None:
            latency += f" / {c.latency_p99_s.value * 1e3:.3g} ms"
        table.add_row(
            c.label,
            ",".join(map(str, c.hidden_dims)),
            f"{c.params:,}",
            f"{c.need_bytes / 1e9:.2f} GB " + ("fits" if c.fits else "[red]too big[/red]"),
            _figure_text(c.env_steps_per_s, lambda v: f"{v:,.0f}"),
            _figure_text(c.update_samples_per_s, lambda v: f"{v:,.0f}"),
            _figure_text(c.train_steps_per_s, lambda v: f"{v:,.0f}"),
            latency,
            overfit,
            "; ".join(c.excluded),
            style=style,
        )
    console.print(table)
    context = "" if device.is_cpu else " + 0.5 GB CUDA context"
    console.print(
        f"train memory: sizing model{context}, against {device.memory_gib:.1f} GiB minus a "
        f"{result.safety_margin:.0%} safety margin. train steps/s: rollout plus "
        f"{result.n_epochs} update epochs per step."
    )
    basis_notes = {}
    for c in result.candidates:
        for figure in (c.env_steps_per_s, c.update_samples_per_s, c.latency_p50_s, c.overfit):
            basis_notes.setdefault(figure.basis, figure.note)
    for basis, note in basis_notes.items():
        tag = "unavailable (-)" if basis == "unavailable" else _BASIS_TAGS[basis]
        console.print(f"[dim]{tag}: e.g. {escape(note)}[/dim]")
    for note in result.notes:
        console.print(f"note: {escape(note)}")


# --- export ------------------------------------------------------------------------------

_EXPORT_CHECK_BATCH = 256


def _add_export_commands(subcommands: argparse._SubParsersAction) -> None:
    export = subcommands.add_parser(
        "export",
        help="write a checkpoint's policy as ONNX and check it against eager torch",
        description="Export a checkpoint's ActorCritic to ONNX (inputs 'obs' (batch, obs_dim) "
        "float32; outputs 'logits' and 'value'; dynamic batch axis), written atomically, then "
        "run it with onnxruntime on a random batch and print its agreement with eager torch. "
        "Needs the onnx extra: pip install 'ppo-archbench[onnx]'.",
    )
    export.add_argument("checkpoint", help="a checkpoint written by archbench train (model.pt)")
    export.add_argument(
        "--onnx", required=True, metavar="OUT", help="where to write the .onnx file"
    )
    export.add_argument(
        "--seed", type=int, default=0, help="seed of the random check batch (default: 0)"
    )
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from ppo_core import backends
    from ppo_core.atomic import check_output

    _check_range(args.seed, "--seed", 0, _MAX_SEED, low_inclusive=True)
    missing = backends.onnx_missing()
    if missing:
        raise ArchbenchError(
            f"archbench export needs the onnx extra: {', '.join(missing)} not installed "
            "(pip install 'ppo-archbench[onnx]')"
        )
    import torch

    from ppo_core import checkpoint
    from ppo_core.network import ActorCritic

    out = check_output(args.onnx, [args.checkpoint], flag="--onnx", example="policy.onnx")
    if not out.parent.is_dir():
        raise ArchbenchError(f"cannot write {out}: directory {out.parent} does not exist")
    ckpt = checkpoint.load(args.checkpoint)
    policy = ActorCritic(ckpt.config)
    policy.load_state_dict(ckpt.policy_state_dict)
    policy.eval()
    generator = torch.Generator().manual_seed(args.seed)
    # Normalised features are clipped z-scores, so a standard normal batch is in range.
    obs = torch.randn(_EXPORT_CHECK_BATCH, ckpt.config.obs_dim, generator=generator)
    backends.export_onnx(policy, out, obs)
    check = backends.onnx_agreement(out, policy, obs)
    print(f"wrote {out} ({out.stat().st_size:,} bytes, {ckpt.config.obs_dim} inputs)")
    print(f"onnxruntime {check.describe()}")
    return 0 if check.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Measure what each PPO actor-critic size costs and buys.",
    )
    parser.add_argument("--version", action="version", version=f"ppo-archbench {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # One call per section above, in the order a new user meets them in --help.
    _add_sizing_commands(subcommands)
    _add_benchmarks_commands(subcommands)
    _add_reports_commands(subcommands)
    _add_pick_commands(subcommands)
    _add_training_commands(subcommands)
    _add_export_commands(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _refuse_non_finite(args)
        return int(args.handler(args) or 0)
    except ArchbenchError as error:
        print(f"archbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
