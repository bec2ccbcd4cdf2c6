"""The `archbench` command line: one subcommand per job, each a thin layer over the library.

Every error the tool raises on purpose is printed as one line and exits 2; no tracebacks. A
reader that closes stdout early (`| head -1`) ends the command quietly with status 141.
Heavy imports (torch, plotly) happen inside the handlers so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from archbench.cli import benchmarks, evaluate, export, pick, report, sizing, training
from archbench.cli._common import check_data_flags, check_numbers, exit_on_closed_pipe
from ppo_core import __version__
from ppo_core.errors import ArchbenchError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Measure what each PPO actor-critic size costs and buys.",
    )
    parser.add_argument("--version", action="version", version=f"ppo-archbench {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # One call per command group, in the order a new user meets them in --help.
    for group in (sizing, benchmarks, report, pick, training, evaluate, export):
        group.add_commands(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_numbers(args)
        check_data_flags(args)
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return code
    except BrokenPipeError:
        return exit_on_closed_pipe()
    except ArchbenchError as error:
        print(f"archbench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"archbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
