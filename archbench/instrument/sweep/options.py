"""The sweep's options, declared once for `archbench sweep` (argparse) and bench/conftest.py
(pytest addoption): each flag's parser, default and help, and the parsed SweepOptions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppo_core.device import check_device
from ppo_core.errors import ConfigError, DataError

__all__ = ["PROFILES", "SWEEP_OPTIONS", "SweepOption", "SweepOptions", "check_data"]

PROFILES = ("quick", "full")


def parse_profile(text: str) -> str:
    """'quick' or 'full' (any case)."""
    profile = str(text).strip().lower()
    if profile not in PROFILES:
        raise ConfigError(f"--profile {text!r}: choose quick or full")
    return profile


def parse_presets(text: str | None) -> tuple[str, ...] | None:
    """'tiny,small' or 'all' -> preset names, each checked; None: the profile's defaults."""
    from ppo_core.presets import PRESETS

    if text is None:
        return None
    names = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if names == ["all"]:
        return tuple(PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise ConfigError(
            f"--presets {text!r}: unknown preset {unknown[0] if unknown else '(none)'!r}; "
            f"choose from {', '.join(PRESETS)} or 'all'"
        )
    return tuple(dict.fromkeys(names))


def parse_hidden_dims_list(values: Sequence[str] | None) -> tuple[tuple[int, ...], ...]:
    """Repeatable --hidden-dims values ('768,384,192') -> width tuples, duplicates dropped."""
    from ppo_core.presets import parse_hidden_dims

    parsed = []
    for value in values or ():
        try:
            parsed.append(parse_hidden_dims(value))
        except ConfigError as error:
            raise ConfigError(f"--hidden-dims: {error}") from None
    return tuple(dict.fromkeys(parsed))


def parse_device(text: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N', checked for form only (resolve_device resolves it)."""
    try:
        return check_device(str(text).strip().lower())
    except ConfigError:
        raise ConfigError(f"--device {text!r}: give auto, cpu, cuda or cuda:N") from None


def parse_data(text: str) -> str:
    """'synthetic', 'capacity[-[w]K]', a named dataset, or an existing file (made absolute: pytest
    runs elsewhere). Its contents are checked by check_data, which reads it."""
    from ppo_core.loaders import DATASETS, is_generated

    spec = str(text).strip()
    if is_generated(spec) or spec.lower() in DATASETS:
        return spec.lower()
    path = Path(spec).expanduser()
    if path.is_dir():
        raise ConfigError(f"--data {spec}: is a directory; give an OHLCV CSV or Parquet file")
    if not path.is_file():
        raise ConfigError(
            f"--data {spec}: no such file, and not a dataset name "
            f"(synthetic, capacity-K, capacity-wK, {', '.join(DATASETS)})"
        )
    return str(path.resolve())


def parse_cost_bps(text: str | None) -> float | None:
    """Trading cost of the overfitting cases in bp per unit of position change, [0, 10,000];
    None: the suites' own (EnvConfig's default, what the synthetic market is built around)."""
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--cost-bps {text!r}: not a number") from None
    if not (math.isfinite(value) and 0 <= value <= 10_000):
        raise ConfigError(f"--cost-bps {text}: must be in [0, 10,000]")
    return value


def parse_lookback(text: str | None) -> int | None:
    """Bars per observation of every suite's network, (0, 65,536]; None: the reference 100."""
    from ppo_core.config import MAX_WIDTH

    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"--lookback {text!r}: not a whole number") from None
    if not 0 < value <= MAX_WIDTH:
        raise ConfigError(f"--lookback {text}: must be in (0, {MAX_WIDTH:,}]")
    return value


@dataclass(frozen=True)
class SweepOption:
    """One sweep option, declared once for `archbench sweep` (argparse) and pytest (addoption)."""

    flag: str
    """The command-line flag, e.g. '--presets'."""
    parse: Callable[[Any], Any]
    """The raw value (a list for a repeatable flag) -> its checked value; ConfigError if bad."""
    default: Any
    """The raw default (before parse)."""
    help: str
    """--help text."""
    metavar: str
    """How --help shows the value."""
    repeatable: bool = False
    """The flag may be given more than once (its values are collected into a list)."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def declare(self, add_option: Callable[..., Any]) -> None:
        """Declare this flag with argparse's add_argument or pytest's addoption."""
        if self.repeatable:
            add_option(self.flag, action="append", default=[], help=self.help, metavar=self.metavar)
        else:
            add_option(self.flag, default=self.default, help=self.help, metavar=self.metavar)


SWEEP_OPTIONS: tuple[SweepOption, ...] = (
    SweepOption(
        "--profile",
        parse_profile,
        "quick",
        "quick: minutes on a laptop CPU; full: all presets, 10 overfitting seeds, sized for a GPU "
        "(default: quick)",
        "quick|full",
    ),
    SweepOption(
        "--presets",
        parse_presets,
        None,
        "comma-separated presets (tiny,small,medium,large,xlarge) or 'all'; default: the "
        "profile's (quick: all but xlarge; tiny and small for training suites)",
        "P,P,...",
    ),
    SweepOption(
        "--hidden-dims",
        parse_hidden_dims_list,
        None,
        "a custom size swept beside the presets, e.g. 768,384,192 (repeatable)",
        "W,W,...",
        repeatable=True,
    ),
    SweepOption("--device", parse_device, "auto", "auto, cpu, cuda or cuda:N (auto)", "DEVICE"),
    SweepOption(
        "--data",
        parse_data,
        "synthetic",
        "synthetic, capacity-K or capacity-wK (the capacity market with K hidden patterns; w: "
        "the wide span where width binds), a named dataset "
        "(sp500, eurusd-1h, ...) or an OHLCV CSV/Parquet file",
        "DATA",
    ),
    SweepOption(
        "--cost-bps",
        parse_cost_bps,
        None,
        "trading cost of the overfitting cases, bp per unit of position change: your market's "
        "(default: 30, the synthetic market's); recorded in each case",
        "BP",
    ),
    SweepOption(
        "--lookback",
        parse_lookback,
        None,
        "bars per observation of every suite's network (default 100, the reference shape); a "
        "short --data file takes a shorter one",
        "BARS",
    ),
)
"""Every option the bench suites take, in the order --help shows them."""


@dataclass(frozen=True)
class SweepOptions:
    """The sweep's options, parsed and checked by SWEEP_OPTIONS: one type for the
    single-device sweep, every shard of a sharded one, and bench/conftest.py."""

    profile: str = "quick"
    """'quick' or 'full'."""
    presets: tuple[str, ...] | None = None
    """Presets asked for; None: the profile's defaults per suite."""
    hidden_dims: tuple[tuple[int, ...], ...] = ()
    """Custom sizes swept beside the presets."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda' or 'cuda:N' (resolved by ppo_core.device.resolve_device)."""
    data: str = "synthetic"
    """'synthetic', a named dataset or an absolute path to an OHLCV file."""
    cost_bps: float | None = None
    """Cost of the overfitting cases in bp; None: the suites' own."""
    lookback: int | None = None
    """Bars per observation of every network; None: the reference 100."""
    pytest_args: tuple[str, ...] = ()
    """Extra pytest arguments (after `--`), passed to every shard."""

    @classmethod
    def parse(cls, get: Callable[[str], Any], pytest_args: Sequence[str] = ()) -> SweepOptions:
        """`get(dest)` -> the raw value of each option (argparse's or pytest's); ConfigError
        naming the flag and the value for the first bad one."""
        parsed = {option.dest: option.parse(get(option.dest)) for option in SWEEP_OPTIONS}
        return cls(**parsed, pytest_args=tuple(pytest_args))

    @classmethod
    def from_text(cls, pytest_args: Sequence[str] = (), **given: Any) -> SweepOptions:
        """Options as typed (`presets="tiny,small"`, `lookback="30"`; the rest at their
        defaults), checked as the command line checks them."""
        unknown = set(given) - {option.dest for option in SWEEP_OPTIONS}
        if unknown:
            raise ConfigError(f"unknown sweep option {sorted(unknown)[0]!r}")
        defaults = {option.dest: option.default for option in SWEEP_OPTIONS}
        return cls.parse({**defaults, **given}.__getitem__, pytest_args)

    def argv(self) -> list[str]:
        """These options as flags, as `archbench sweep`, the shard's runner and
        bench/conftest.py read them back (the one serialiser; pytest_args are not included)."""
        args = ["--profile", self.profile, "--device", self.device, "--data", self.data]
        if self.presets is not None:
            args += ["--presets", ",".join(self.presets)]
        for dims in self.hidden_dims:
            args += ["--hidden-dims", ",".join(map(str, dims))]
        if self.cost_bps is not None:
            args += ["--cost-bps", repr(self.cost_bps)]
        if self.lookback is not None:
            args += ["--lookback", str(self.lookback)]
        return args

    def stored(self) -> dict[str, Any]:
        """The options a --resume of the run reuses (archbench_run.options), as text the
        flags take: the device is not among them (a resume may run elsewhere)."""
        return {
            "profile": self.profile,
            "presets": ",".join(self.presets) if self.presets is not None else None,
            "hidden_dims": [",".join(map(str, dims)) for dims in self.hidden_dims],
            "data": self.data,
            "cost_bps": repr(self.cost_bps) if self.cost_bps is not None else None,
            "lookback": str(self.lookback) if self.lookback is not None else None,
            "pytest_args": list(self.pytest_args),
        }

    def without(self, done: Sequence[str]) -> SweepOptions:
        """These options with the cases `done` deselected (a resumed run keeps them)."""
        deselect = tuple(arg for nodeid in done for arg in ("--deselect", nodeid))
        return dataclasses.replace(self, pytest_args=(*self.pytest_args, *deselect))


def check_data(spec: str, lookback: int | None = None) -> None:
    """Read --data whole and check that the suites can cut their splits from it (DataError
    naming the file otherwise), so a bad file stops the sweep before its first case."""
    from ppo_core.data import min_bars
    from ppo_core.loaders import is_generated, load_market_data

    if is_generated(spec):  # generated at each suite's own length
        return
    lookback = lookback or 100  # the reference shape, as the suites use by default
    market = load_market_data(spec)
    need = min_bars(lookback)
    if market.n_bars < need:
        raise DataError(
            f"--data {spec}: {market.n_bars:,} bars; the suites need at least {need:,} "
            f"(lookback {lookback}, feature warm-up, embargoes and three splits); "
            + _fitting_lookback(market.n_bars)
        )


def _fitting_lookback(n_bars: int) -> str:
    from ppo_core.data import longest_lookback, min_bars

    fits = longest_lookback(n_bars)
    if fits == 0:
        return f"no lookback fits: even --lookback 1 needs {min_bars(1):,} bars"
    return f"--lookback {fits} or less fits these bars"
