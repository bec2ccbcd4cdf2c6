"""Helpers every command group shares: range checks, the console, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import MISSING, fields
from typing import Any

from ppo_core.errors import ConfigError

__all__ = [
    "MAX_BARS",
    "MAX_BATCH",
    "MAX_MEMORY_GIB",
    "MAX_SEED",
    "check_range",
    "default",
    "print_json",
    "refuse_non_finite",
    "size_options",
]


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


MAX_MEMORY_GIB = 16_384.0
"""Largest device memory a flag may state (16 TiB): anything above is a typo."""
MAX_BATCH = 2**31 - 1
"""Largest env, step or minibatch count a flag may state (a torch index is int64, but tensors
of more rows than this would not fit any device)."""
MAX_SEED = 2**63 - 1
"""torch.manual_seed's limit."""
MAX_BARS = 10**8
"""Most bars of data a flag may ask for (10^8 bars of 53 float32 features are ~21 GB)."""


def refuse_non_finite(args: argparse.Namespace) -> None:
    """Every float flag of every command: inf and nan are refused in one line, before work."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"--{name.replace('_', '-')} {item}: not a finite number")


def check_range(
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


def default(config_class: type, name: str) -> Any:
    """The default of `config_class`'s field `name`: argparse takes its defaults from the
    config dataclasses, so a flag and the library can never disagree."""
    for item in fields(config_class):
        if item.name == name and item.default is not MISSING:
            return item.default
    raise LookupError(f"{config_class.__name__}.{name} has no plain default")


def size_options(parser: argparse.ArgumentParser, preset_help: str, dims_help: str):
    """--preset or --hidden-dims (one of them) on `parser`; returns the group for more."""
    from ppo_core.presets import PRESETS

    size = parser.add_mutually_exclusive_group()
    size.add_argument("--preset", choices=list(PRESETS), help=preset_help)
    size.add_argument("--hidden-dims", metavar="W,W,...", help=dims_help)
    return size
