"""`archbench sweep`: run the bench/ suites in a pytest subprocess, show each finished case,
keep what finished on Ctrl-C or a crash, and render the HTML report next to the JSON.

The suites stream one JSON line per finished case (--archbench-records); if pytest-benchmark
could not write its JSON (killed, or benchmarks disabled), the run is rebuilt from those lines.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from archbench.instrument.runfile import (
    attach_run,
    finished_cases,
    lost_cases,
    previous_run,
    run_section,
    shard_entry,
)
from archbench.instrument.sweep.options import SweepOptions, check_data
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

__all__ = ["SweepResult", "bench_dir", "pytest_command", "run_name", "run_sweep"]

_POLL_S = 0.5
HANG_GRACE_S = 60.0
"""A case still running this long past its timeout is stuck where the timeout cannot reach it
(inside one long C or CUDA call): pytest is stopped and the case is recorded as lost."""


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left on disk and how it ended."""

    json_path: Path | None
    """The pytest-benchmark JSON (None when no case finished)."""
    html_path: Path | None
    """The rendered report (None when archbench.reports.render is missing or nothing finished)."""
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
    command += ["-p", "archbench.instrument.sweep.plugin", *options.pytest_args()]
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


def _output_folder(out_dir: str | Path) -> Path:
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
    render: bool = True,
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
    options = SweepOptions.parse(raw.__getitem__)
    bench = bench_dir()
    resolved, label = _device_label(options.device)
    options = dataclasses.replace(options, device=resolved)
    check_data(options.data, options.lookback)
    out = _output_folder(out_dir)
    name = run_name(platform.node(), label, datetime.now(timezone.utc))
    json_path, records_path, log_path, partial_json = (
        out / f"{name}{suffix}" for suffix in (".json", ".records.jsonl", ".log", ".json.partial")
    )
    timeout = CASE_TIMEOUT_S[options.profile] if case_timeout is None else case_timeout
    extra = [*raw["pytest_args"], "--archbench-case-timeout", str(timeout)]
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
        _write_run_section(json_path, progress, lost, raw, stopped, resumed)
    html_path, note = None, "no case finished, so there is nothing to report"
    if json_path is not None:
        html_path, note = _render(json_path, log_path) if render else (None, None)
    return SweepResult(
        json_path=json_path,
        html_path=html_path,
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


def _write_run_section(json_path, progress, lost, raw, stopped, resumed) -> None:
    """archbench_run into the run (and a resumed run's earlier cases before its own)."""
    entry = shard_entry(
        0, progress.session, cases_done=len(progress.records), cases_total=progress.collected
    )
    section = run_section(
        lost=lost,
        shards=[entry],
        options=_stored_options(raw),
        stopped_by=stopped,
        resumed_from=str(resumed[0]) if resumed else None,
    )
    attach_run(json_path, section, resumed[1] if resumed else None)


def _stored_options(raw: dict) -> dict:
    """The options a --resume of this run reuses (as given, before resolving)."""
    keys = ("profile", "presets", "hidden_dims", "data", "cost_bps", "lookback", "pytest_args")
    return {key: raw[key] for key in keys}


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


def _render(json_path: Path, log_path: Path) -> tuple[Path | None, str | None]:
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
