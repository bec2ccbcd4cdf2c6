"""`archbench evaluate`: score a checkpoint's policy on a split of its data (or new data)
beside the baselines a trader uses, at the data's cost, refusing in-sample bars unless asked."""

from __future__ import annotations

import argparse

from archbench.cli._common import default, print_json
from archbench.cli.run_data import add_data_options, checkpoint_market, evaluate_cost, warn
from archbench.cli.tables import eval_table
from ppo_core.config import PPOConfig

__all__ = ["add_commands"]


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    device = default(PPOConfig, "device")
    evaluate = subcommands.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a data split against baselines",
        description="Run a checkpoint's deterministic policy over a whole split and print total "
        "log return, annualised Sharpe, max drawdown, turnover and hit rate beside the baselines "
        "(flat, buy-and-hold, a trend rule, random at the policy's own turnover), with the cost "
        "and where it came from, the split's period, bars per year and the Sharpe's standard "
        "error (a warning above 1). Features are normalised with the statistics stored in the "
        "checkpoint.",
    )
    evaluate.add_argument("checkpoint", help="a checkpoint written by `archbench train`")
    add_data_options(evaluate, "the data the checkpoint was trained on")
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="validation")
    evaluate.add_argument("--seed", type=int, default=0, help="synthetic data seed (default 0)")
    evaluate.add_argument(
        "--allow-in-sample",
        action="store_true",
        help="score a split that overlaps the checkpoint's training bars anyway",
    )
    evaluate.add_argument(
        "--cost-bps",
        type=float,
        help="trading cost per unit of position change, bp (default: the checkpoint's on its own "
        "data, else the data's: eurusd-1h 1, sp500/nasdaq/googl 5, synthetic 30)",
    )
    evaluate.add_argument("--device", default=device, help=f"auto, cpu, cuda or cuda:N ({device})")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=_evaluate)


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


def _in_sample_overlap(ckpt, data, split: str) -> str | None:
    """Why `split` of `data` overlaps the checkpoint's training bars, or None when it does not.
    Bars are the same bars when the data is the same series (same name and, for synthetic
    data, the same seed and signal): then their times are compared."""
    import numpy as np

    from ppo_core.data import format_time

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
    lo, hi, first, last = map(format_time, (lo, hi, first, last))
    return (
        f"the {split} split ({lo} .. {hi}) overlaps the bars {ckpt.path} was trained on "
        f"({first} .. {last}); pass --allow-in-sample to score it anyway"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from ppo_core import checkpoint
    from ppo_core.data import Normalizer, prepare
    from ppo_core.device import resolve_device
    from ppo_core.errors import DataError
    from ppo_core.evaluation import EvalContext, evaluate_with_baselines
    from ppo_core.features import FEATURE_NAMES
    from ppo_core.network import ActorCritic

    ckpt = checkpoint.load(args.checkpoint)
    _check_features(ckpt, len(FEATURE_NAMES))
    normalizer = Normalizer.from_dict(ckpt.obs_norm) if ckpt.obs_norm else None
    market = checkpoint_market(args, ckpt, args.checkpoint)
    data = prepare(market, lookback=ckpt.config.lookback, normalizer=normalizer)
    overlap = _in_sample_overlap(ckpt, data, args.split)
    if overlap and not args.allow_in_sample:
        raise DataError(overlap)
    policy = ActorCritic(ckpt.config)
    policy.load_state_dict(ckpt.policy_state_dict)
    policy.to(resolve_device(args.device).device)
    cost = evaluate_cost(args, ckpt, market)
    warn(cost.warning)
    results = evaluate_with_baselines(policy, data, args.split, cost.bps)
    context = EvalContext.of(data, args.split, cost, results["policy"])
    if args.json:
        print_json(
            {
                "checkpoint": str(args.checkpoint),
                "data": market.name,
                "in_sample": bool(overlap),
                **context.to_dict(),
                "results": {name: r.to_dict() for name, r in results.items()},
            }
        )
    else:
        note = " (in-sample)" if overlap else ""
        eval_table(f"{args.split} split of {market.name}{note}", results, context)
    warn(context.caveat)
    return 0
