"""Helpers every command group shares: the range of every numeric flag, the output-path
policy, a closed stdout, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from ppo_core.config import MAX_INPUT_MULTIPLE, MAX_SEED, MAX_WIDTH
from ppo_core.errors import ConfigError

__all__ = [
    "FLAG_RANGES",
    "LOOKBACK_HELP",
    "MAX_BARS",
    "MAX_BATCH",
    "MAX_MEMORY_GIB",
    "MAX_SEED",
    "check_data_flags",
    "check_numbers",
    "check_range",
    "default",
    "exit_on_closed_pipe",
    "make_parent",
    "output_file",
    "output_folder",
    "print_json",
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
MAX_BARS = 10**8
"""Most bars of data a flag may ask for (10^8 bars of 53 float32 features are ~21 GB)."""


LOOKBACK_HELP = (
    "bars of market features the network sees per decision (default 100, the reference "
    "shape); data needs 3 bars per bar of lookback on top of the 199-bar feature warm-up, so a "
    "short file takes a shorter lookback (its error names the longest that fits)"
)


def _refuse_non_finite(args: argparse.Namespace) -> None:
    """Every float flag of every command: inf and nan are refused in one line, before work."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"--{name.replace('_', '-')} {item}: not a finite number")


@dataclass(frozen=True)
class Range:
    """The values one numeric flag accepts: low < value <= high unless told otherwise."""

    low: float
    """The lower bound."""
    high: float
    """The upper bound."""
    low_inclusive: bool = False
    """low itself is accepted."""
    high_inclusive: bool = True
    """high itself is accepted."""

    def check(self, value: float, flag: str) -> None:
        """ConfigError naming `flag` and `value` (as typed: an int in full) when outside."""
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        if not (above and below):
            shown = str(value) if isinstance(value, int) else f"{value:g}"
            left, right = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
            raise ConfigError(
                f"{flag} {shown}: must be in {left}{_num(self.low)}, {_num(self.high)}{right}"
            )


_POSITIVE_COUNT = Range(0, MAX_BATCH)
_FRACTION = Range(0, 1, low_inclusive=True)
FLAG_RANGES: dict[str, Range] = {
    # What every command's numeric flag of this name (its argparse dest) accepts. A flag that
    # means one thing keeps one name across commands, so one range serves them all; a test
    # checks that every int and float flag of every command is listed here.
    "seed": Range(0, MAX_SEED, low_inclusive=True),
    "bars": Range(1, MAX_BARS),
    "data_bars": Range(0, 10**9),
    "signal_strength": Range(0, 100, low_inclusive=True),
    "timesteps": Range(0, MAX_SEED),
    "n_envs": _POSITIVE_COUNT,
    "n_steps": _POSITIVE_COUNT,
    "minibatch": _POSITIVE_COUNT,
    "epochs": _POSITIVE_COUNT,
    "lr": Range(0, 1),
    "gamma": _FRACTION,
    "gae_lambda": _FRACTION,
    "ent_coef": Range(0, 1e3, low_inclusive=True),
    "clip_coef": Range(0, 10),
    "cost_bps": Range(0, 10_000, low_inclusive=True),
    "checkpoint_every": Range(0, MAX_BATCH, low_inclusive=True),
    "features": Range(0, MAX_WIDTH),
    "lookback": Range(0, MAX_WIDTH),
    "n_actions": Range(0, MAX_WIDTH),
    "input_multiple": Range(1, MAX_INPUT_MULTIPLE, low_inclusive=True),
    "shards": Range(0, 100_000),
    "latency_budget_ms": Range(0, 1e6),
    "memory_budget_gb": Range(0, MAX_MEMORY_GIB),
    "vram_gb": Range(0, MAX_MEMORY_GIB),
    "min_throughput_fraction": Range(0, 1),
    "safety_margin": Range(0, 1, low_inclusive=True, high_inclusive=False),
    "alpha": Range(0, 1, high_inclusive=False),
    "min_effect": Range(0, 1, low_inclusive=True, high_inclusive=False),
    "tolerance": Range(0, 1e3, low_inclusive=True),
    "drift": Range(0, 1, low_inclusive=True, high_inclusive=False),
}
"""argparse dest -> the range of that flag, checked by check_numbers for every command."""


def check_numbers(args: argparse.Namespace) -> None:
    """Every numeric flag given to any command inside its FLAG_RANGES range, before work: one
    ConfigError naming the first flag that is not."""
    _refuse_non_finite(args)
    for name, value in vars(args).items():
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and name in FLAG_RANGES:
            FLAG_RANGES[name].check(value, f"--{name.replace('_', '-')}")


def check_range(
    value: float | None, flag: str, low: float, high: float, *, low_inclusive: bool = False
) -> None:
    """`value` (None: not given) inside (low, high] ([low, high] with low_inclusive)."""
    if value is not None:
        Range(low, high, low_inclusive=low_inclusive).check(value, flag)


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


def check_data_flags(args: argparse.Namespace) -> None:
    """Options that shape one kind of data, refused in one line with another kind (the loader
    would ignore them): timestamp options read a file's times, --signal-strength makes
    synthetic bars."""
    data = getattr(args, "data", None)
    kind = None if data is None else _data_kind(data)
    for flag in ("timestamp_format", "timestamp_column"):
        if getattr(args, flag, None) is not None and kind != "file":
            given = "no --data" if data is None else f"--data {data} is not a file"
            raise ConfigError(
                f"--{flag.replace('_', '-')} reads the times of an OHLCV file given with "
                f"--data FILE; {given}"
            )
    if getattr(args, "signal_strength", None) is not None and kind not in (None, "synthetic"):
        raise ConfigError(f"--signal-strength shapes synthetic data, not --data {data}")


def _data_kind(spec: str) -> str:
    from ppo_core.loaders import DATASETS

    key = str(spec).strip().lower()
    if key == "synthetic":
        return "synthetic"
    return "named" if key in DATASETS else "file"


def output_file(
    target: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    *,
    flag: str,
    example: str,
) -> Path:
    """The one output-path policy of every command that writes a file (report -o, compare
    --html, train --out, export --onnx) or a folder (sweep --out): missing folders are made
    when the file is written (make_parent), as `sweep --out runs` always has; what cannot work
    is refused before any work starts: check_output's cases (a folder, a path under a file, one
    of `inputs`) and a folder that could not be made. Returns the path."""
    from ppo_core.atomic import check_output

    path = check_output(target, inputs, flag=flag, example=example)
    _check_creatable(path.parent, f"{flag} {os.fspath(target)}")
    return path


def output_folder(target: str | os.PathLike[str], *, flag: str) -> Path:
    """output_file's policy for a folder of files (sweep --out): a file there is refused."""
    path = Path(target).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {os.fspath(target)}: is a file; give a folder")
    _check_creatable(path, f"{flag} {os.fspath(target)}")
    return path


def make_parent(path: Path) -> Path:
    """Make the folders `path` will be written in (output_file has checked that they can be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_creatable(folder: Path, what: str) -> None:
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{what}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: cannot write in {existing} (no write permission)")


def exit_on_closed_pipe() -> int:
    """stdout's reader has gone (`archbench ... --json | head -1`): point stdout at /dev/null so
    Python's flush at exit does not raise again, and return the exit status a shell gives a
    command ended by SIGPIPE (141), as `cat` or `grep` would have."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a captured or replaced stdout
        return 128 + signal.SIGPIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return 128 + signal.SIGPIPE
