"""`archbench sweep`: run the bench/ suites once (or sharded over devices or nodes) and
render the report."""

from __future__ import annotations

import argparse

from archbench.cli._common import output_folder

__all__ = ["add_commands"]


def add_commands(subcommands: argparse._SubParsersAction) -> None:
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
        "itself is killed, `archbench report DIR/run-...records.jsonl` rebuilds the run. A run "
        "that lacks cases says so in its JSON (archbench_run) and its report, and the sweep exits "
        "3 (128 + the signal when one stopped it); `--resume RUN.json` runs only what it lacks. "
        "quick: minutes on a laptop CPU (all presets but xlarge for latency and memory; tiny "
        "and small for training and overfitting; one seed, two folds). full: every preset, 10 "
        "overfitting seeds x 3 folds, longer budgets, sized for a GPU. Needs a source checkout "
        "(bench/ is not installed).",
    )
    from archbench.instrument.sweep.options import SWEEP_OPTIONS

    for option in SWEEP_OPTIONS:  # the same flags, help and parsers as bench/conftest.py's
        option.declare(sweep.add_argument)
    sweep.add_argument(
        "--out", default="runs", metavar="DIR", help="folder for the JSON, log and report (runs)"
    )
    sweep.add_argument(
        "--no-report", action="store_true", help="write the JSON only; render it later"
    )
    sweep.add_argument(
        "--resume",
        metavar="RUN",
        help="run only the cases an earlier run (its JSON, or a folder holding one) lacks, with "
        "its options, into a new run holding both; works with --devices and --ray too",
    )
    sweep.add_argument(
        "--case-timeout",
        type=_seconds,
        default=None,
        metavar="S",
        help="fail a case that runs longer than S seconds; 0: no limit (default: 900 for "
        "quick, 7200 for full)",
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
    shards = sweep.add_argument_group("several devices (archbench.instrument.sweep.multisweep)")
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or a positive number, got {text}")
    return value


_RESUME_TAKES = ("profile", "presets", "hidden_dims", "data", "cost_bps", "lookback", "pytest_args")


def _check_resume(args: argparse.Namespace, parser_defaults: dict) -> None:
    """--resume reuses the run's own options: one given beside it would be silently ignored."""
    from ppo_core.errors import ConfigError

    for dest in _RESUME_TAKES:
        if getattr(args, dest) != parser_defaults.get(dest, []):
            flag = "-- PYTEST_ARGS" if dest == "pytest_args" else "--" + dest.replace("_", "-")
            raise ConfigError(
                f"--resume takes the sweep's options from the run; drop {flag} "
                "(or start a new sweep)"
            )


def _sweep(args: argparse.Namespace) -> int:
    from archbench.instrument.sweep.runner import run_sweep

    output_folder(args.out, flag="--out")
    if args.resume:
        _check_resume(
            args,
            {"profile": "quick", "presets": None, "hidden_dims": [], "data": "synthetic"}
            | {"cost_bps": None, "lookback": None},
        )
    if args.devices or args.ray or args.accelerator or args.shards:
        from archbench.instrument.sweep.multisweep import sweep_command

        return sweep_command(args)

    result = run_sweep(
        profile=args.profile,
        presets=args.presets,
        hidden_dims=args.hidden_dims,
        device=args.device,
        data=args.data,
        cost_bps=args.cost_bps,
        lookback=args.lookback,
        out_dir=args.out,
        pytest_args=args.pytest_args,
        render=not args.no_report,
        case_timeout=args.case_timeout,
        resume=args.resume,
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
    _print_lost(result.lost, result.json_path)
    if result.stopped_by is not None:
        return 128 + result.stopped_by  # as a shell reports a command ended by that signal
    report_missing = not args.no_report and result.json_path and result.html_path is None
    if result.lost:
        return 3  # incomplete: the run lacks cases; --resume completes it
    return 0 if result.returncode == 0 and not report_missing else 1


def _print_lost(lost, json_path) -> None:
    """The run is incomplete: say how much is missing, the first reasons, and how to finish."""
    if not lost:
        return
    print(f"incomplete: {len(lost)} case(s) not in the run")
    for entry in lost[:5]:
        print(f"  {entry['case']}: {entry['reason']}")
    if len(lost) > 5:
        print(f"  ... and {len(lost) - 5} more (archbench_run.lost in the JSON)")
    if json_path is not None:
        print(f"finish it with: archbench sweep --resume {json_path}")
