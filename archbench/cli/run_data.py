"""The bars a `train` or `evaluate` run trades and the cost it pays: the --data options, a
checkpoint's own training data rebuilt and checked, and where the cost came from."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ppo_core.errors import ConfigError

__all__ = [
    "add_data_options",
    "checkpoint_market",
    "evaluate_cost",
    "market_options",
    "train_cost",
    "warn",
]

_DATA_HELP = (
    "synthetic, capacity-K, capacity-wK, sp500, nasdaq, eurusd-1h, googl (the `data` extra) "
    "or a CSV/Parquet OHLCV file"
)


def add_data_options(parser: argparse.ArgumentParser, default_data: str) -> None:
    """--data and the options that shape the data it names."""
    from ppo_core.synthetic import DEFAULT_SIGNAL_STRENGTH, SYNTHETIC_BARS

    parser.add_argument("--data", help=f"{_DATA_HELP} (default: {default_data})")
    parser.add_argument(
        "--bars",
        type=int,
        help=f"bars of the data to use (synthetic: length to make, default {SYNTHETIC_BARS:,})",
    )
    parser.add_argument(
        "--signal-strength",
        type=float,
        help="synthetic data: the planted edge per bar in units of volatility "
        f"(default {DEFAULT_SIGNAL_STRENGTH:g})",
    )
    _add_timestamp_options(parser)


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


def market_options(args: argparse.Namespace) -> dict[str, Any]:
    """load_market_data's keyword arguments from the command line's data options."""
    options: dict[str, Any] = {}
    if args.signal_strength is not None:
        options["signal_strength"] = args.signal_strength
    if args.timestamp_column is not None:
        options["timestamp_column"] = args.timestamp_column
    if args.timestamp_format is not None:
        options["timestamp_format"] = args.timestamp_format
    return options


def checkpoint_market(args: argparse.Namespace, ckpt, path: str):  # -> market.MarketData
    """The bars to evaluate on or resume with: --data when given, else the checkpoint's own
    training data (the checkpoint at `path`), rebuilt from its recorded origin and checked
    against its content hash."""
    from pathlib import Path

    from ppo_core.errors import DataError
    from ppo_core.loaders import DATASETS, load_market_data

    if args.data is not None:
        return load_market_data(args.data, bars=args.bars, seed=args.seed, **market_options(args))
    if args.bars is not None or market_options(args):
        raise ConfigError(
            "--bars, --signal-strength and the timestamp options shape the data --data names; "
            f"without --data the checkpoint's own data is used ({path})"
        )
    identity = ckpt.data or {}
    origin = identity.get("origin")
    if not isinstance(origin, dict) or "spec" not in origin:
        raise DataError(
            f"{path} does not record its training data (written before archbench "
            "recorded it); pass --data"
        )
    spec = str(origin["spec"])
    if spec.lower() not in ("synthetic", *DATASETS) and not Path(spec).exists():
        raise DataError(
            f"{path} was trained on the file {spec}, which is no longer there (moved or "
            "deleted); pass --data with the file's path now to use it"
        )
    options = {k: v for k, v in origin.items() if k != "spec" and v is not None}
    market = load_market_data(spec, **options)
    if market.content_hash() != identity.get("sha256"):
        raise DataError(
            f"{path}: its training data {spec} has changed since training "
            f"(content hash differs); pass --data to evaluate on it as new data"
        )
    return market


def train_cost(args: argparse.Namespace, market, stored):  # -> TradingCost
    """The cost training pays: --cost-bps, else a resumed run's own (`stored`, the checkpoint
    or None), else the data's default (a property of the data: 1 bp on hourly EUR/USD is not
    the synthetic market's 30 bp)."""
    from ppo_core.loaders import default_cost
    from ppo_core.market import TradingCost

    if args.cost_bps is not None:
        return TradingCost(args.cost_bps, "--cost-bps")
    if stored is not None and stored.ppo_config is not None:
        return TradingCost(stored.ppo_config.env.cost_bps, f"the cost {args.resume} was trained at")
    return default_cost(market)


def evaluate_cost(args: argparse.Namespace, ckpt, market):  # -> TradingCost
    """The cost a checkpoint is scored at: --cost-bps, else the cost it was trained at when
    scored on its own data series, else the data's default."""
    from ppo_core.loaders import default_cost
    from ppo_core.market import TradingCost

    if args.cost_bps is not None:
        return TradingCost(args.cost_bps, "--cost-bps")
    default = default_cost(market)
    # The same series: the same recorded spec (a file's resolved path, a dataset's name).
    trained = (ckpt.data or {}).get("origin") or {}
    if ckpt.ppo_config is None or trained.get("spec") != (market.origin or {}).get("spec"):
        return default
    bps = ckpt.ppo_config.env.cost_bps
    source = f"the cost {args.checkpoint} was trained at"
    if bps != default.bps:
        return TradingCost(bps, source)
    # The data's default, said as such; on a file, the synthetic default keeps its warning.
    return TradingCost(bps, f"{source}, {default.source}", default.warning)


def warn(message: str | None) -> None:
    """A cost warning or a Sharpe caveat, on stderr so that --json output stays clean."""
    if message:
        print(f"warning: {message}", file=sys.stderr)
