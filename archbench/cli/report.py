"""`archbench report` and `archbench compare`: benchmark JSON -> an HTML page, or a table
and an exit code between two runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archbench.cli._common import output_file
from archbench.cli.tables import print_comparison, rich_console
from ppo_core.errors import ConfigError

__all__ = ["add_commands"]


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    _add_report(subcommands)
    _add_compare(subcommands)


def _add_report(subcommands: argparse._SubParsersAction) -> None:
    report = subcommands.add_parser(
        "report",
        help="benchmark JSON -> one HTML report with the recommended hidden_dims per use case",
        description="Render one HTML report from one or more pytest-benchmark JSON files "
        "(`pytest bench/ --benchmark-json run.json`). Several runs (e.g. one per GPU) sit side "
        "by side. The file is self-contained (plotly.js inlined, opens offline) unless "
        "--plotlyjs cdn. Reads JSON only: no torch needed.",
    )
    report.add_argument("runs", nargs="+", metavar="RUN.json", help="benchmark JSON file(s)")
    report.add_argument(
        "-o", "--output", default="report.html", help="HTML file to write (report.html)"
    )
    report.add_argument(
        "--plotlyjs",
        choices=["inline", "cdn"],
        default="inline",
        help="inline: one offline file (~5 MB); cdn: small file that loads plotly.js online",
    )
    report.add_argument(
        "--latency-budget-ms",
        type=float,
        default=1.0,
        help="live trading: batch-1 p99 latency budget in ms (1.0)",
    )
    report.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="training memory budget in GiB (default: the run's GPU memory; none on a CPU run)",
    )
    report.add_argument(
        "--min-throughput-fraction",
        type=float,
        default=0.25,
        metavar="F",
        help="production and extended training: a size must train at >= F x the fastest "
        "size's whole-iteration rate (0.25)",
    )
    report.add_argument(
        "--allow-loaded",
        action="store_true",
        help="use timings taken on a loaded host in the recommendations (by default they are "
        "marked on the page and left out: a record whose host load per core is more than 0.5 "
        "beyond its own threads', 1 on a CPU run and 0 on a GPU run, the rule compare uses)",
    )
    report.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="also include an A-vs-B comparison section",
    )
    report.set_defaults(handler=_report_command)


def _add_compare(subcommands: argparse._SubParsersAction) -> None:
    compare = subcommands.add_parser(
        "compare",
        help="run A vs run B: ratio B/A per preset and metric with a noise-aware verdict",
        description="Compare two benchmark JSON files (two GPUs, two commits). For every "
        "preset, case and metric: the ratio B/A, how many times better or worse B is, and a "
        "verdict on the statistic the metric reports, from the raw samples: a p99 by a "
        "bootstrap of the ratio of p99s, a median by a two-sided Mann-Whitney U, a mean by "
        "Welch's t. The p-values are corrected for the number of rows tested "
        "(Benjamini-Hochberg, q <= --alpha), and a change smaller than --min-effect is 'same'. "
        "Figures with too few samples for a test (byte counts, one seed) are judged against "
        "--tolerance instead, and say so; a case that ran in A and went OOM in B is a "
        "regression. Each run's host load per core is shown; a run is LOADED when its load "
        "beyond its own threads (1 per core on a CPU run, 0 on a GPU run) is above 0.5 per "
        "core and over 2x the other run's.",
    )
    compare.add_argument("a", metavar="A.json", help="baseline run")
    compare.add_argument("b", metavar="B.json", help="candidate run")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when any judged metric got significantly worse (for CI). When one run is "
        "LOADED, its timing rows (seconds, rates, FLOP/s, and ratios of them; not bytes or "
        "counts) are not judged: one line on stderr says how many were left out, and the exit "
        "code comes from the other rows; --allow-loaded judges them too",
    )
    compare.add_argument(
        "--allow-loaded",
        action="store_true",
        help="with --fail-on-regression: judge timing rows even when one run is LOADED",
    )
    compare.add_argument("--html", metavar="OUT.html", help="also write the table as HTML")
    compare.add_argument(
        "--drift",
        type=float,
        default=None,
        help="run-to-run drift allowed for timings (default 0.15, measured between two runs "
        "of one commit on one GPU): a common shift of every tested timing row within it is "
        "taken as drift and each row is judged relative to it; 0 judges the shift too",
    )
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="significance level for the corrected q-values (0.05)",
    )
    compare.add_argument(
        "--min-effect",
        type=float,
        default=0.05,
        help="smallest relative change of a tested statistic that counts as improved or "
        "regressed, even when significant (0.05 = 5%%; 0 keeps every significant change)",
    )
    compare.add_argument(
        "--tolerance",
        type=float,
        default=0.10,
        help="relative change that counts as regressed/improved for figures with too few "
        "samples for the test: single-shot bytes, a few repeats, one seed (0.10 = 10%%); with "
        "two or more samples each, overlapping samples are 'same'",
    )
    compare.add_argument(
        "--all", action="store_true", help="show every row, not only the ones that changed"
    )
    compare.set_defaults(handler=_compare_command)


def _report_command(args: argparse.Namespace) -> int:
    from archbench.instrument.sweep.rebuild import resolve_run
    from archbench.reports.compare import compare_runs
    from archbench.reports.compare_text import comparison_html
    from archbench.reports.decision_types import Limits
    from archbench.reports.render import render_report

    inputs = [*args.runs, *(args.compare or ())]
    output_file(args.output, inputs, flag="-o", example="report.html")
    runs, notes = [], []
    for run in args.runs:  # a killed sweep's records stream becomes its run JSON first
        path, note = resolve_run(run)
        note, stopped = _source_notes(path, note)
        if note:
            print(note)
        notes += stopped
        runs.append(path)
    output_file(args.output, runs, flag="-o", example="report.html")
    try:
        budgets = Limits(
            latency_p99_s=args.latency_budget_ms / 1e3,
            memory_bytes=None if args.memory_budget_gb is None else args.memory_budget_gb * 2**30,
            min_throughput_fraction=args.min_throughput_fraction,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    section = None
    if args.compare:
        section = comparison_html(compare_runs(*args.compare))
    path = render_report(
        runs,
        args.output,
        plotlyjs=args.plotlyjs,
        budgets=budgets,
        compare_html=section,
        allow_loaded=args.allow_loaded,
        notes=notes,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) from {len(runs)} run(s)")
    return 0


def _source_notes(path: Path, note: str | None) -> tuple[str | None, list[str]]:
    """What report says about where a run file came from, and the page's note when the records
    stream beside it shows the sweep stopped before every collected case finished."""
    records = path.with_name(path.name.removesuffix(".json") + ".records.jsonl")
    if _rebuilt(path) and (note is None or "the sweep wrote it" in note):
        # resolve_run found the JSON complete, but an earlier report rebuilt it, not the sweep.
        note = f"read {path}, rebuilt earlier from the records stream {records.name}"
    return note, _stopped_early(path, records)


def _stopped_early(path: Path, records: Path) -> list[str]:
    from archbench.instrument.sweep.progress import Progress

    if not records.is_file():
        return []
    progress = Progress(records, lambda _line: None)
    try:
        progress.poll()
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a damaged stream: the JSON says what it holds
    if progress.collected is None or progress.finished >= progress.collected:
        return []
    lost = progress.collected - progress.finished
    return [
        f"{path.name} is incomplete: its records stream says the sweep collected "
        f"{progress.collected} cases and {progress.finished} finished; the other {lost} never "
        "ran (the sweep was stopped), so their figures are missing from this page."
    ]


def _rebuilt(path: Path) -> bool:
    """True for a run JSON that rebuild wrote from a records stream, not pytest-benchmark."""
    import json

    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle).get("version") == "archbench-records"
    except (OSError, ValueError, AttributeError):
        return False


def _compare_command(args: argparse.Namespace) -> int:

    from archbench.reports.compare import compare_runs, has_regression, unjudged_timing_rows
    from archbench.reports.compare_text import comparison_html
    from archbench.reports.compare_verdicts import DEFAULT_DRIFT

    if args.html:
        output_file(args.html, [args.a, args.b], flag="--html", example="compare.html")
    drift = DEFAULT_DRIFT if args.drift is None else args.drift
    table = compare_runs(
        args.a,
        args.b,
        alpha=args.alpha,
        tolerance=args.tolerance,
        min_effect=args.min_effect,
        drift=drift,
    )
    print_comparison(table, console=rich_console(), show_all=args.all)
    if args.html:
        from archbench.reports.render import write_section

        path = write_section(comparison_html(table), args.html, title="archbench compare")
        print(f"wrote {path}")
    if not args.fail_on_regression:
        return 0
    skipped = unjudged_timing_rows(table)
    if len(skipped) and not args.allow_loaded:
        loaded = table.attrs["host_load"].loaded
        looks_worse = int((skipped["verdict"] == "regressed").sum())
        print(
            f"--fail-on-regression: run {loaded} is LOADED (host load above); its "
            f"{len(skipped)} timing rows are not judged ({looks_worse} of them look regressed); "
            "--allow-loaded judges them",
            file=sys.stderr,
        )
    if has_regression(table, allow_loaded=args.allow_loaded):
        print("regression found (--fail-on-regression)", file=sys.stderr)
        return 1
    return 0
