"""The single-device sweep: run the bench/ suites in a pytest subprocess, show each finished
case and keep what finished on Ctrl-C or a crash; `archbench sweep` renders the report after it.
Each shard of a sharded sweep is `python -m archbench.instrument.sweep.runner` (see main).

The suites stream one JSON line per finished case (--archbench-records); if pytest-benchmark
could not write its JSON (killed, or benchmarks disabled), the run is rebuilt from those lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from archbench.instrument.runfile import (
    RUN_KEY,
    attach_run,
    finished_cases,
    lost_cases,
    previous_run,
    run_section,
    shard_entry,
)
from archbench.instrument.sweep.options import SWEEP_OPTIONS, SweepOptions, check_data
from archbench.instrument.sweep.plugin import CASE_TIMEOUT_S
from archbench.instrument.sweep.progress import Progress, print_now
from archbench.instrument.sweep.rebuild import is_complete_json, write_json_from_records
from archbench.instrument.sweep.signals import (
    STOP_GRACE_S,
    Stopper,
    parent_death_signal,
    signal_group,
)
from ppo_core.device import resolve_device
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = [
    "SweepResult",
    "bench_dir",
    "exit_status",
    "main",
    "nothing_to_resume",
    "pytest_command",
    "run_name",
    "run_sweep",
    "summary_lines",
]

_POLL_S = 0.5
HANG_GRACE_S = 60.0
"""A case still running this long past its timeout is stuck where the timeout cannot reach it
(inside one long C or CUDA call): pytest is stopped and the case is recorded as lost."""


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left on disk and how it ended."""

    json_path: Path | None
    """The pytest-benchmark JSON (None when no case finished)."""
    log_path: Path
    """pytest's full output."""
    records_path: Path
    """One JSON line per finished case, as streamed by the suites."""
    returncode: int
    """pytest's exit code (0 all passed, 1 some failed, 2 interrupted, ...)."""
    finished: int
    """Cases that finished (passed, failed or skipped)."""
    collected: int | None
    """Cases pytest collected; None if collection never finished."""
    interrupted: bool
    """The sweep was stopped by SIGINT, SIGTERM or SIGHUP (finished cases are kept)."""
    stopped_by: int | None
    """The signal that stopped it (None when it ran to the end)."""
    rebuilt: bool
    """The JSON was rebuilt from the streamed records (pytest-benchmark wrote none)."""
    report_note: str | None
    """Why no report was rendered, when none was."""
    lost: tuple[dict[str, str], ...] = ()
    """Cases the run lacks: {"case": node id, "reason": one line} (archbench_run.lost)."""
    html_path: Path | None = None
    """The rendered report: the sweep never renders (None); `archbench sweep` fills it in."""

    @property
    def incomplete(self) -> bool:
        """Some case is missing from the run, or the sweep was stopped."""
        return bool(self.lost) or self.interrupted


def bench_dir() -> Path:
    """The bench/ suites: beside the ppo_core package in a source checkout (or editable install)."""
    import ppo_core

    candidate = Path(ppo_core.__file__).resolve().parent.parent / "bench"
    if (candidate / "conftest.py").is_file():
        return candidate
    raise ArchbenchError(
        f"archbench sweep runs the pytest suites in bench/, which ship with the source checkout, "
        f"not with the installed package (looked for {candidate}/conftest.py): clone the "
        "repository and `pip install -e .` there, then run archbench sweep again"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def run_name(host: str, device: str, when: datetime) -> str:
    """'run-<host>-<device>-<UTC time>', file-name safe: run-box-cuda0-h100-20260101T120000Z."""
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{_slug(host)}-{_slug(device)}-{stamp}"


def pytest_command(
    bench: Path,
    json_path: Path | None,
    records_path: Path,
    options: SweepOptions,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest invocation a sweep runs (also what to paste to rerun it by hand)."""
    command = [sys.executable, "-m", "pytest", str(bench), "-q", "-p", "no:cacheprovider"]
    command += ["-p", "archbench.instrument.sweep.plugin", *options.argv()]
    if json_path is not None:
        command += ["--benchmark-json", str(json_path)]
    command += ["--archbench-records", str(records_path), *extra]
    return command


def _device_label(device: str) -> tuple[str, str]:
    """(torch device, label for the file name) for --device, e.g. ('cuda:0', 'cuda0-h100')."""
    found = resolve_device(device)
    resolved, gpu_name = found.device, found.name
    if gpu_name is None:
        return resolved, resolved
    short = gpu_name.replace("NVIDIA", "").strip()
    return resolved, f"{resolved.replace(':', '')}-{short}"


def out_folder(out_dir: str | Path) -> Path:
    """--out, made absolute and created (one line if it cannot be); every sweep's one check."""
    out = Path(out_dir).expanduser().resolve()  # pytest runs from the checkout, not from here
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file; give a folder for the run's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchbenchError(f"cannot create the output folder {out}: {error}") from None
    return out


def run_sweep(
    *,
    profile: str = "quick",
    presets: str | None = None,
    hidden_dims: Sequence[str] = (),
    device: str = "auto",
    data: str = "synthetic",
    cost_bps: str | float | None = None,
    lookback: str | int | None = None,
    out_dir: str | Path = "runs",
    pytest_args: Sequence[str] = (),
    echo: Callable[[str], None] | None = None,
    case_timeout: float | None = None,
    resume: str | Path | None = None,
) -> SweepResult:
    """Check every option, run the suites, print one line per finished case; on SIGINT,
    SIGTERM or SIGHUP stop pytest and keep (and report) every case that finished. With
    `resume` (an earlier run), run only the cases it lacks, with its options, into a new run
    that holds both."""
    echo = echo or print_now
    given = {"profile": profile, "presets": presets, "hidden_dims": list(hidden_dims)}
    given |= {"device": device, "data": data, "pytest_args": list(pytest_args)}
    given |= {"cost_bps": cost_bps, "lookback": lookback}
    raw, resumed_path, previous = _resumed(given, resume)
    options = SweepOptions.parse(raw.__getitem__, raw["pytest_args"])
    bench = bench_dir()
    resolved, label = _device_label(options.device)
    options = dataclasses.replace(options, device=resolved)
    check_data(options.data, options.lookback)
    out = out_folder(out_dir)
    name = run_name(platform.node(), label, datetime.now(timezone.utc))
    json_path, records_path, log_path, partial_json = (
        out / f"{name}{suffix}" for suffix in (".json", ".records.jsonl", ".log", ".json.partial")
    )
    timeout = CASE_TIMEOUT_S[options.profile] if case_timeout is None else case_timeout
    extra = [*options.pytest_args, "--archbench-case-timeout", str(timeout)]
    if previous is not None:
        extra += _skip_finished(resumed_path, previous, echo)
    command = pytest_command(bench, partial_json, records_path, options, extra=extra)
    echo(
        f"archbench sweep: profile {options.profile} on {resolved}; log {log_path}; "
        f"finished cases stream to {records_path}"
    )
    try:
        with Stopper() as stopper:
            returncode, progress, hung = _run_pytest(
                command, bench.parent, log_path, records_path, echo, stopper, timeout
            )
            json_path, rebuilt = _keep_json(partial_json, json_path, progress)
    finally:
        partial_json.unlink(missing_ok=True)  # a half-written one would only mislead
    stopped = signal.Signals(stopper.signum).name if stopper.signum is not None else None
    lost = _lost(progress, hung, stopped)
    if json_path is None and previous is not None:  # nothing new: the earlier cases still count
        json_path = out / f"{name}.json"
        write_json_from_records(json_path, progress.session, [])
    if json_path is not None:
        resumed = (resumed_path, previous) if previous is not None else None
        _write_run_section(json_path, progress, lost, options, stopped, resumed)
    note = "no case finished, so there is nothing to report" if json_path is None else None
    return SweepResult(
        json_path=json_path,
        log_path=log_path,
        records_path=records_path,
        returncode=returncode,
        finished=progress.finished,
        collected=progress.collected,
        interrupted=stopper.signum is not None,
        stopped_by=stopper.signum,
        rebuilt=rebuilt,
        report_note=note,
        lost=tuple(lost),
    )


def _resumed(raw: dict, resume: str | Path | None) -> tuple[dict, Path | None, dict | None]:
    """The options to run (a resumed run's own, when resuming), its path and its contents."""
    if resume is None:
        return raw, None, None
    path, previous = previous_run(resume)
    return {**raw, **((previous.get("archbench_run") or {}).get("options") or {})}, path, previous


def nothing_to_resume(path: Path, previous: Mapping) -> str | None:
    """The one line to print when the run at `path` holds every case of its sweep (its
    archbench_run lists no lost case and every shard knew its plan), else None: resume it.
    A run without archbench_run cannot say what its sweep was: it is resumed as before."""
    section = previous.get(RUN_KEY)
    if not isinstance(section, dict) or section.get("lost"):
        return None
    shards = section.get("shards") or []
    # A shard stopped (or crashed) before its plan was known lists no lost case yet may lack
    # every case it had to run: only a known plan with nothing lost is a whole run.
    if not shards or any(shard.get("cases_total") is None for shard in shards):
        return None
    done = len(finished_cases(previous))
    return (
        f"archbench sweep: {path} has every case of its sweep ({done} finished, none lost): "
        "nothing to resume, nothing written"
    )


def _keep_json(partial: Path, json_path: Path, progress: Progress) -> tuple[Path | None, bool]:
    """pytest-benchmark's JSON when it wrote one whole, else one rebuilt from the streamed
    records (True), else None: nothing finished."""
    if is_complete_json(partial):
        partial.replace(json_path)
        return json_path, False
    if progress.records:
        write_json_from_records(json_path, progress.session, progress.records)
        return json_path, True
    return None, False


def _skip_finished(path: Path, previous: dict, echo: Callable[[str], None]) -> list[str]:
    """pytest arguments that leave out the cases a resumed run already holds."""
    done = finished_cases(previous)
    echo(f"resuming {path}: {len(done)} finished cases are kept, not rerun")
    return [arg for nodeid in done for arg in ("--deselect", nodeid)]


def _write_run_section(json_path, progress, lost, options, stopped, resumed) -> None:
    """archbench_run into the run (and a resumed run's earlier cases before its own)."""
    entry = shard_entry(
        0, progress.session, cases_done=len(progress.records), cases_total=progress.collected
    )
    section = run_section(
        lost=lost,
        shards=[entry],
        options=options.stored(),
        stopped_by=stopped,
        resumed_from=str(resumed[0]) if resumed else None,
    )
    attach_run(json_path, section, resumed[1] if resumed else None)


def _lost(progress: Progress, hung: str | None, stopped: str | None) -> list[dict[str, str]]:
    """The cases of this pytest's plan that left no record, each with why."""
    if progress.plan is None:
        return []
    why = f"not run: the sweep was stopped by {stopped}" if stopped else "not run"
    if hung:
        why = "not run: the sweep stopped pytest after a hung case"
    lost = lost_cases(progress.plan, progress.cases, why)
    if hung and progress.running is not None:
        stuck = progress.running[0]
        lost = [{**e, "reason": hung} if e["case"] == stuck else e for e in lost]
    return lost


def _run_pytest(
    command: list[str],
    cwd: Path,
    log_path: Path,
    records_path: Path,
    echo: Callable[[str], None],
    stopper: Stopper,
    case_timeout: float = 0.0,
) -> tuple[int, Progress, str | None]:
    """pytest's exit code, what it streamed, and why a hung case was stopped (or None)."""
    progress = Progress(records_path, echo)
    hung = None
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        # Its own session and process group: a terminal's Ctrl-C reaches pytest only through
        # this loop, exactly once, and a stop reaches every process pytest started.
        child = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_signal(),
        )
        asked_at: float | None = None
        while True:
            try:
                child.wait(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            progress.poll()
            if hung is None and asked_at is None:
                hung = _hung(progress, case_timeout)
            if (stopper.received or hung) and asked_at is None:
                asked_at = time.monotonic()
                why = hung or f"interrupted by {signal.Signals(stopper.signum).name}"
                echo(
                    f"{why}: stopping pytest and keeping every finished case "
                    "(send a stop signal again to stop at once)"
                )
                signal_group(child, signal.SIGINT)  # pytest writes its JSON on SIGINT
            elif asked_at is not None and (
                len(stopper.received) > 1 or time.monotonic() - asked_at > STOP_GRACE_S
            ):
                echo("pytest killed; the finished cases are rebuilt from the streamed records")
                signal_group(child, signal.SIGKILL)
                child.wait()
                break
        if asked_at is not None:
            signal_group(child, signal.SIGKILL)  # whatever pytest started and left running
        progress.poll()
    return child.returncode, progress, hung


def _hung(progress: Progress, case_timeout: float) -> str | None:
    if not case_timeout or progress.running is None:
        return None
    nodeid, since = progress.running
    running = time.monotonic() - since
    if running < case_timeout + HANG_GRACE_S:
        return None
    return (
        f"{nodeid} hung: still running {running:.0f} s after it started "
        f"(case timeout {case_timeout:.0f} s)"
    )


def summary_lines(result: SweepResult) -> list[str]:
    """How the sweep ended, as `archbench sweep` (and each shard of a sharded one) prints it."""
    done = f"{result.finished}/{result.collected}" if result.collected else str(result.finished)
    lines = [f"{done} cases finished; pytest exit code {result.returncode}; log {result.log_path}"]
    if result.json_path is not None:
        how = " (rebuilt from the streamed records)" if result.rebuilt else ""
        lines.append(f"wrote {result.json_path}{how}")
    if result.html_path is not None:
        lines.append(f"wrote {result.html_path}")
    elif result.report_note:
        lines.append(f"no report: {result.report_note}")
    return lines + _lost_lines(result.lost, result.json_path)


def _lost_lines(lost, json_path) -> list[str]:
    """The run is incomplete: how much is missing, the first reasons, and how to finish."""
    if not lost:
        return []
    lines = [f"incomplete: {len(lost)} case(s) not in the run"]
    lines += [f"  {entry['case']}: {entry['reason']}" for entry in lost[:5]]
    if len(lost) > 5:
        lines.append(f"  ... and {len(lost) - 5} more (archbench_run.lost in the JSON)")
    if json_path is not None:
        lines.append(f"finish it with: archbench sweep --resume {json_path}")
    return lines


def exit_status(result: SweepResult, report_wanted: bool) -> int:
    """128 + the signal that stopped it, 3 incomplete, 1 a failed case (or a report asked for
    and not rendered), else 0."""
    if result.stopped_by is not None:
        return 128 + result.stopped_by  # as a shell reports a command ended by that signal
    if result.lost:
        return 3  # incomplete: the run lacks cases; --resume completes it
    report_missing = report_wanted and result.json_path and result.html_path is None
    return 0 if result.returncode == 0 and not report_missing else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m archbench.instrument.sweep.runner",
        description="One single-device sweep, unrendered: what each shard of `archbench sweep "
        "--devices` or `--ray` runs (the flags are SweepOptions.argv()'s).",
    )
    for option in SWEEP_OPTIONS:
        option.declare(parser.add_argument)
    parser.add_argument("--out", default="runs", metavar="DIR")
    parser.add_argument("--case-timeout", type=float, default=None, metavar="S")
    parser.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """A shard's sweep: the lines and exit codes of `archbench sweep --no-report`."""
    args = _parser().parse_args(argv)
    try:
        result = run_sweep(
            **{option.dest: getattr(args, option.dest) for option in SWEEP_OPTIONS},
            out_dir=args.out,
            pytest_args=args.pytest_args,
            case_timeout=args.case_timeout,
        )
        print("\n".join(summary_lines(result)), flush=True)
        return exit_status(result, report_wanted=False)
    except ArchbenchError as error:
        print(f"archbench sweep: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archbench sweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
