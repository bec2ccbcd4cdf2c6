"""The `archbench` command line: one subcommand per job, each a thin layer over the library.

Every error the tool raises on purpose is printed as one line and exits 2; no tracebacks.
Heavy imports (torch, plotly) happen inside the handlers so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ppo_core import __version__
from ppo_core.errors import ArchbenchError

__all__ = ["build_parser", "main"]


def _print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# --- sizing: estimate, inspect, diff -----------------------------------------------------


# --- training: train, evaluate -----------------------------------------------------------


# --- benchmarks: sweep -------------------------------------------------------------------


# --- reports: report, compare ------------------------------------------------------------


# --- pick --------------------------------------------------------------------------------


# --- export ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Measure what each PPO actor-critic size costs and buys.",
    )
    parser.add_argument("--version", action="version", version=f"ppo-archbench {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each section above adds its subcommands here, one call per section.
    del subcommands
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ArchbenchError as error:
        print(f"archbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
