"""`archbench sweep`: run the bench/ suites in a pytest subprocess, show each finished case,
keep what finished on Ctrl-C or a crash, and render the HTML report next to the JSON.

The suites stream one JSON line per finished case (--archbench-records); if pytest-benchmark
could not write its JSON (killed, or benchmarks disabled), the run is rebuilt from those lines.
"""

from __future__ import annotations

import json
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = [
    "HEADLINES",
    "SweepResult",
    "bench_dir",
    "pytest_command",
    "run_name",
    "run_sweep",
]

HEADLINES: dict[str, tuple[str, ...]] = {
    "ceiling": ("matmul_flops_per_s_fp32", "bandwidth_bytes_per_s"),
    "env": ("env_steps_per_s", "forward_over_step"),
    "infer": ("latency_p50_s", "latency_p99_s"),
    "memory": ("torch_allocated_bytes", "peak_rss_bytes", "memory_error_pct"),
    "train": ("train_env_steps_per_s", "update_samples_per_s", "ceiling_fraction"),
    "overfit": ("train_sharpe", "val_sharpe", "oracle_edge_fraction"),
}
"""Metrics shown on a case's progress line, per suite (the first available ones)."""

_POLL_S = 0.5


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left on disk and how it ended."""

    json_path: Path | None
    """The pytest-benchmark JSON (None when no case finished)."""
    html_path: Path | None
    """The rendered report (None when reports.render is missing or nothing finished)."""
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
    """The sweep was stopped with Ctrl-C (finished cases are kept)."""
    rebuilt: bool
    """The JSON was rebuilt from the streamed records (pytest-benchmark wrote none)."""
    report_note: str | None
    """Why no report was rendered, when none was."""


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
    *,
    profile: str,
    presets: str | None,
    hidden_dims: Sequence[str],
    device: str,
    data: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest invocation a sweep runs (also what to paste to rerun it by hand)."""
    command = [sys.executable, "-m", "pytest", str(bench), "-q", "-p", "no:cacheprovider"]
    command += ["--profile", profile, "--device", device, "--data", data]
    if presets:
        command += ["--presets", presets]
    for dims in hidden_dims:
        command += ["--hidden-dims", dims]
    if json_path is not None:
        command += ["--benchmark-json", str(json_path)]
    command += ["--archbench-records", str(records_path), *extra]
    return command


def _device_label(device: str) -> tuple[str, str]:
    """(torch device, label for the file name) for --device, e.g. ('cuda:0', 'cuda0-h100')."""
    from ppo_core.hardware import detect_device

    resolved, gpu_name, _memory = detect_device(device)
    if gpu_name is None:
        return resolved, resolved
    short = gpu_name.replace("NVIDIA", "").strip()
    return resolved, f"{resolved.replace(':', '')}-{short}"


def run_sweep(
    *,
    profile: str = "quick",
    presets: str | None = None,
    hidden_dims: Sequence[str] = (),
    device: str = "auto",
    data: str = "synthetic",
    out_dir: str | Path = "runs",
    pytest_args: Sequence[str] = (),
    render: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run the suites, print one line per finished case, keep finished cases on Ctrl-C."""
    echo = echo or _print_now
    if profile not in ("quick", "full"):
        raise ConfigError(f"profile must be quick or full, got {profile!r}")
    bench = bench_dir()
    resolved, label = _device_label(device)
    out = Path(out_dir).resolve()  # pytest runs from the checkout, not from here
    if Path(data).exists():
        data = str(Path(data).resolve())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchbenchError(f"cannot create the output folder {out}: {error}") from None
    name = run_name(platform.node(), label, datetime.now(timezone.utc))
    json_path = out / f"{name}.json"
    records_path, log_path = out / f"{name}.records.jsonl", out / f"{name}.log"
    partial_json = out / f"{name}.json.partial"
    command = pytest_command(
        bench,
        partial_json,
        records_path,
        profile=profile,
        presets=presets,
        hidden_dims=hidden_dims,
        device=resolved,
        data=data,
        extra=pytest_args,
    )
    echo(f"archbench sweep: profile {profile} on {resolved}; log {log_path}")
    returncode, interrupted, progress = _run_pytest(
        command, bench.parent, log_path, records_path, echo
    )

    rebuilt = False
    if _is_complete_json(partial_json):
        partial_json.replace(json_path)
    elif progress.records:
        _write_json_from_records(json_path, progress.records, resolved, profile)
        rebuilt = True
    else:
        json_path = None
    html_path, note = None, None
    if json_path is None:
        note = "no case finished, so there is nothing to report"
    elif render:
        html_path, note = _render(json_path)
    return SweepResult(
        json_path=json_path,
        html_path=html_path,
        log_path=log_path,
        records_path=records_path,
        returncode=returncode,
        finished=progress.finished,
        collected=progress.collected,
        interrupted=interrupted,
        rebuilt=rebuilt,
        report_note=note,
    )


def _print_now(line: str) -> None:
    print(line, flush=True)  # a line per case as it ends, even into a pipe or a file


class _Progress:
    """Reads the records stream as it grows and prints a line per finished case."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path = path
        self.echo = echo
        self.offset = 0
        self.collected: int | None = None
        self.finished = 0
        self.records: list[dict[str, Any]] = []
        self._started = time.monotonic()

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "collected":
            self.collected = int(event["count"])
            self.echo(f"collected {self.collected} cases")
            return
        if event.get("event") != "case":
            return
        self.finished += 1
        record = event.get("record")
        if record is not None:
            self.records.append(event)
        total = f"/{self.collected}" if self.collected is not None else ""
        case_id = event["nodeid"].split("::")[-1]
        elapsed = time.monotonic() - self._started
        detail = _headline(record) if record else (event.get("message") or "")
        self.echo(
            f"[{self.finished}{total}] {event['outcome']:<7} {case_id:<52} "
            f"{event['duration_s']:6.1f} s  {detail}  (elapsed {elapsed / 60:.1f} min)"
        )


def _headline(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"{record['status'].upper()}: {record.get('reason')}"
    shown = []
    for name in HEADLINES.get(record["suite"], ()):
        metric = record["metrics"].get(name)
        if metric and metric.get("value") is not None:
            shown.append(f"{name}={_fmt(metric['value'], metric.get('unit'))}")
    return "  ".join(shown)


def _fmt(value: float, unit: str | None) -> str:
    if unit == "B":
        return f"{value / 1e6:,.1f} MB"
    if unit == "s":
        return f"{value * 1e3:,.3f} ms"
    if unit in ("FLOP/s", "B/s"):
        return f"{value / 1e9:,.1f} G{unit}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _run_pytest(
    command: list[str],
    cwd: Path,
    log_path: Path,
    records_path: Path,
    echo: Callable[[str], None],
) -> tuple[int, bool, _Progress]:
    progress = _Progress(records_path, echo)
    interrupted = False
    with log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        child = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while child.poll() is None:
                progress.poll()
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            interrupted = True
            echo("interrupted: letting pytest write the finished cases (Ctrl-C again to abort)")
            # A terminal's Ctrl-C reaches the child too; a signal sent to us alone does not.
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
            try:
                child.wait()
            except KeyboardInterrupt:
                child.kill()
                child.wait()
        progress.poll()
    return child.returncode, interrupted, progress


def _is_complete_json(path: Path) -> bool:
    """pytest-benchmark's file, if it was written whole (a killed pytest can leave half)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _write_json_from_records(
    path: Path, events: list[dict[str, Any]], device: str, profile: str
) -> None:
    """A pytest-benchmark-shaped JSON holding every streamed record (no timing stats)."""
    from ppo_core.machine import device_info

    machine = {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "system": platform.system(),
        "archbench": device_info(device).to_dict(),
        "archbench_profile": profile,
        "archbench_device": device,
    }
    benchmarks = [
        {
            "group": None,
            "name": event["nodeid"].split("::")[-1],
            "fullname": event["nodeid"],
            "params": None,
            "param": None,
            "extra_info": {"archbench": event["record"]},
            "options": {},
            "stats": None,
        }
        for event in events
    ]
    data = {
        "machine_info": machine,
        "commit_info": _commit_info(),
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": "archbench-records",
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _commit_info() -> dict[str, Any]:
    try:
        from pytest_benchmark.utils import get_commit_info

        return get_commit_info()
    except Exception as error:  # the report shows the commit as unknown, with the reason
        return {"id": None, "error": f"{type(error).__name__}: {error}"}


def _render(json_path: Path) -> tuple[Path | None, str | None]:
    try:
        from reports.render import render_report
    except ImportError as error:
        return None, (
            f"reports.render is not available ({error}); render later with "
            f"`archbench report {json_path}`"
        )
    html_path = json_path.with_suffix(".html")
    render_report([json_path], html_path)
    return html_path, None
