"""`archbench sweep`: run the bench/ suites once (or sharded over devices or nodes) and
render the report: the sweep itself (archbench.instrument.sweep) only measures and writes."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from archbench.cli._common import output_folder
from ppo_core.errors import ConfigError

if TYPE_CHECKING:
    from archbench.instrument.sweep.multisweep import MultiSweepResult
    from archbench.instrument.sweep.options import SweepOptions

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
        "its options, into a new run holding both; works with --devices and --ray too. A run "
        "that lacks none: says so, writes nothing and exits 0",
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
    for dest in _RESUME_TAKES:
        if getattr(args, dest) != parser_defaults.get(dest, []):
            flag = "-- PYTEST_ARGS" if dest == "pytest_args" else "--" + dest.replace("_", "-")
            raise ConfigError(
                f"--resume takes the sweep's options from the run; drop {flag} "
                "(or start a new sweep)"
            )


def _sweep(args: argparse.Namespace) -> int:
    from archbench.instrument.runfile import previous_run
    from archbench.instrument.sweep.runner import (
        exit_status,
        nothing_to_resume,
        run_sweep,
        summary_lines,
    )

    output_folder(args.out, flag="--out")
    sharded = bool(args.devices or args.ray or args.accelerator or args.shards)
    if sharded:
        _check_shard_flags(args)
    previous = None
    if args.resume:
        _check_resume(
            args,
            {"profile": "quick", "presets": None, "hidden_dims": [], "data": "synthetic"}
            | {"cost_bps": None, "lookback": None},
        )
        previous = previous_run(args.resume)
        whole = nothing_to_resume(*previous)
        if whole is not None:  # the same answer whichever way it would have been run
            print(whole)
            return 0
    if sharded:
        return _sharded(args, previous)

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
        case_timeout=args.case_timeout,
        resume=args.resume,
    )
    if not args.no_report and result.json_path is not None:
        html_path, note = render_run(result.json_path, result.log_path)
        result = dataclasses.replace(result, html_path=html_path, report_note=note)
    for line in summary_lines(result):
        print(line)
    return exit_status(result, report_wanted=not args.no_report)


def render_run(json_path: Path, log_path: Path) -> tuple[Path | None, str | None]:
    """The report beside a finished run, or None and why not (a failure's traceback goes to
    the run's log: the run is kept whatever the report does)."""
    try:
        from archbench.reports.render import render_report
    except ImportError as error:
        return None, (
            f"archbench.reports.render is not available ({error}); render later with "
            f"`archbench report {json_path}`"
        )
    html_path = json_path.with_suffix(".html")
    try:
        render_report([json_path], html_path)
    except Exception as error:  # the run is safe on disk whatever the report does
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n$ archbench report {json_path}\n{traceback.format_exc()}")
        return None, (
            f"rendering failed ({type(error).__name__}: {error}; traceback in {log_path}); "
            f"the run is kept: render it later with `archbench report {json_path}`"
        )
    return html_path, None


def render_runs(paths: Sequence[Path], html_path: Path) -> Path | None:
    """One report over the merged runs; None where the reports part is not installed."""
    from archbench.instrument.sweep.progress import print_now

    try:
        from archbench.reports.render import render_report
    except ImportError:
        return None
    try:
        return render_report(list(paths), html_path)
    except Exception as error:  # the merged runs are safe on disk whatever the report does
        print_now(
            f"rendering failed ({type(error).__name__}: {error}); the runs are kept: render "
            f"them later with `archbench report {' '.join(map(str, paths))}`"
        )
        return None


# --- several devices or nodes ------------------------------------------------------------


def _check_shard_flags(args: argparse.Namespace) -> None:
    """The sharding flags agree with each other (checked before a run to resume is read)."""
    if not args.ray and (args.accelerator or args.shards):
        flag = "--accelerator" if args.accelerator else "--shards"
        raise ConfigError(f"{flag} needs --ray ADDRESS (on one machine, use --devices)")
    if args.devices and args.device != "auto":
        raise ConfigError(f"give --devices or --device, not both (got --device {args.device})")


def _sharded(args: argparse.Namespace, previous: tuple[Path, dict] | None) -> int:
    """`archbench sweep` with --devices, --ray, --accelerator or --shards; `previous`: the run
    --resume names, read."""
    from archbench.instrument.sweep.multisweep import check_devices, run_on_devices

    options = _sharded_options(args, previous)
    if args.ray:
        result = _on_ray(args, options, previous)
    else:
        result = run_on_devices(
            check_devices(args.devices),
            options,
            out_dir=args.out,
            case_timeout=args.case_timeout,
            previous=previous,
        )
    if not args.no_report and result.json_paths:
        html = render_runs(result.json_paths, result.report_path)
        result = dataclasses.replace(result, html_path=html)
    return _report(result)


def _sharded_options(args: argparse.Namespace, previous: tuple[Path, dict] | None) -> SweepOptions:
    """The options every shard runs: a resumed run's own, else the flags given."""
    from archbench.instrument.runfile import RUN_KEY
    from archbench.instrument.sweep.options import SweepOptions

    stored = ((previous[1].get(RUN_KEY) or {}).get("options") if previous else None) or {}
    given = {key: stored.get(key, getattr(args, key)) for key in _RESUME_TAKES}
    pytest_args = given.pop("pytest_args")
    return SweepOptions.from_text(pytest_args, **given)


def _on_ray(args: argparse.Namespace, options: SweepOptions, previous) -> MultiSweepResult:
    from archbench.instrument.sweep.raysweep import run_on_ray

    cpu_only = False
    if args.devices:
        parts = [p.strip().lower() for p in args.devices.split(",")]
        if set(parts) != {"cpu"}:
            raise ConfigError(
                f"--devices {args.devices} with --ray: Ray gives each shard its GPU; "
                "use --shards N (and --accelerator TYPE), or --devices cpu,cpu for CPU shards"
            )
        cpu_only = True
    accelerators = [a.strip() for a in (args.accelerator or "").split(",") if a.strip()]
    return run_on_ray(
        args.ray,
        options,
        accelerators=accelerators,
        shards=args.shards or (len(parts) if cpu_only else None),
        cpu_only=cpu_only,
        out_dir=args.out,
        case_timeout=args.case_timeout,
        previous=previous,
    )


def _report(result: MultiSweepResult) -> int:
    """Print how the sweep ended; the exit status: 130 stopped, 3 incomplete, 1 failed."""
    print(f"{result.finished}/{result.shards} shards finished; shards in {result.shard_dir}")
    for line in result.failed:
        print(f"  {line}")
    for path in result.json_paths:
        print(f"wrote {path}")
    if result.html_path is not None:
        print(f"wrote {result.html_path}")
    if result.lost:
        print(f"incomplete: {len(result.lost)} case(s) or shard(s) not in the run")
        for entry in result.lost[:5]:
            print(f"  {entry['case']}: {entry['reason']}")
        if result.json_paths:
            print(f"finish it with: archbench sweep --resume {result.json_paths[0]} ...")
    if result.interrupted:  # as a shell reports a command ended by that signal
        return 128 + int(getattr(signal, result.stopped_by or "SIGINT", signal.SIGINT))
    if result.lost:
        return 3
    return 0 if result.json_paths and not result.failed else 1
