"""`archbench estimate`, `inspect` and `diff`: what a size costs, read from the config
and the checkpoint files, before anything is trained."""

from __future__ import annotations

import argparse

from archbench.cli._common import default, print_json, size_options
from archbench.cli.tables import diff_table, estimate_table, inspect_table, rich_console
from ppo_core.config import MAX_INPUT_MULTIPLE, NetworkConfig, PPOConfig
from ppo_core.errors import ConfigError

__all__ = ["add_commands"]

_WRONG_TABLE_NOTE = (
    "The widely copied sizing table (tiny ~0.4M, small ~1.5M, large 12.6M params / ~148 MB) "
    "is wrong; these figures are exact for the network archbench builds (tests pin them)."
)


def add_commands(subcommands: argparse._SubParsersAction) -> None:

    estimate = subcommands.add_parser(
        "estimate",
        help="exact parameters, bytes, FLOPs and training memory of every network size",
        description="Size PPO actor-critic networks without building them: exact parameter "
        "counts, weight bytes, checkpoint file sizes with and without Adam state, matmul FLOPs "
        "per sample (forward and forward+backward) and the peak training memory of a PPO update. "
        "By default one row per preset; --preset or --hidden-dims sizes one network.",
    )
    size_options(estimate, "size one preset", "size custom widths: 768,384,192")
    for flag, config_class, name, what in (
        ("--features", NetworkConfig, "n_features", "features per bar"),
        ("--lookback", NetworkConfig, "lookback", "bars per observation"),
        ("--n-actions", NetworkConfig, "n_actions", "discrete actions"),
    ):
        value = default(config_class, name)
        estimate.add_argument(flag, type=int, default=value, help=f"{what} ({value})")
    trunk = default(NetworkConfig, "trunk")
    estimate.add_argument(
        "--trunk", choices=["shared", "separate"], default=trunk, help=f"trunk layout ({trunk})"
    )
    estimate.add_argument("--layer-norm", action="store_true", help="LayerNorm in the trunk")
    estimate.add_argument(
        "--no-account-state",
        action="store_true",
        help="size the market window alone (no position, unrealised return, bars held inputs)",
    )
    multiple = default(NetworkConfig, "input_multiple")
    estimate.add_argument(
        "--input-multiple",
        type=int,
        default=multiple,
        metavar="N",
        help=f"zero-pad the observation to a multiple of N inputs, 1 to {MAX_INPUT_MULTIPLE} "
        f"({multiple}: aligned first-layer GEMMs; 1: no padding, the unpadded counts)",
    )
    for flag, name, what in (
        ("--n-envs", "n_envs", "environments per rollout"),
        ("--n-steps", "n_steps", "steps per env per rollout"),
        ("--minibatch", "minibatch_size", "samples per update"),
    ):
        value = default(PPOConfig, name)
        estimate.add_argument(flag, type=int, default=value, help=f"{what} ({value})")
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
        "whether optimizer state is inside, when and by which version it was written, the "
        "training config (budget, lr, gamma, cost...) and the data it was trained on.",
    )
    inspect.add_argument("checkpoint", help="a checkpoint file written by archbench")
    inspect.add_argument("--json", action="store_true", help="print the record as JSON")
    inspect.set_defaults(handler=_inspect)

    diff = subcommands.add_parser(
        "diff",
        help="compare the configs of two checkpoints",
        description="List the architecture fields (and training fields, when both files carry "
        "them, and the training data's identity) that differ between two checkpoints, with both "
        "parameter counts. Exit status: "
        "0 same architecture, 1 different architecture, 2 error.",
    )
    diff.add_argument("a", help="first checkpoint")
    diff.add_argument("b", help="second checkpoint")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON")
    diff.set_defaults(handler=_diff)


def _estimate(args: argparse.Namespace) -> int:
    from ppo_core.config import NetworkConfig
    from ppo_core.presets import PRESETS, parse_hidden_dims
    from ppo_core.sizing import CUDA_CONTEXT_BYTES, estimate

    rollout = args.n_envs * args.n_steps
    if args.minibatch > rollout:  # as train and pick refuse it: a PPO update could not run
        raise ConfigError(
            f"--minibatch {args.minibatch} exceeds the rollout n_envs x n_steps = {rollout}"
        )
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
                input_multiple=args.input_multiple,
            ),
            n_envs=args.n_envs,
            n_steps=args.n_steps,
            minibatch=args.minibatch,
            n_bars=args.bars,
        )
        for dims in sizes
    ]
    if args.json:
        print_json([e.to_dict() for e in estimates])
        return 0

    first = estimates[0].config
    pad = f" + {first.pad_dim} zero" if first.pad_dim else ""
    title = (
        f"Exact sizes: obs {args.features} x {args.lookback}"
        f"{'' if args.no_account_state else ' + 3 account'}{pad} = {first.obs_dim}, "
        f"{args.n_actions} actions, {args.trunk} trunk"
    )
    console = rich_console()
    console.print(estimate_table(estimates, title))
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
        print_json(info.to_dict())
        return 0

    rich_console().print(inspect_table(info))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint

    result = checkpoint.diff(args.a, args.b)
    if args.json:
        print_json(result.to_dict())
        return 0 if result.same_architecture else 1

    console = rich_console()
    verdict = "same architecture" if result.same_architecture else "different architecture"
    console.print(
        f"{verdict}: {result.params_a:,} params in {result.path_a}, "
        f"{result.params_b:,} in {result.path_b}"
    )
    for title, rows in (
        ("architecture", result.differences),
        ("training", result.training_differences),
        ("training data", result.data_differences),
    ):
        if rows:
            console.print(f"{title} fields that differ:", highlight=False)
            console.print(diff_table(rows))
    return 0 if result.same_architecture else 1
