"""`archbench sweep`: run the bench/ suites in a pytest subprocess, show each finished case,
keep what finished on Ctrl-C or a crash, and render the HTML report next to the JSON.

The suites stream one JSON line per finished case (--archbench-records); if pytest-benchmark
could not write its JSON (killed, or benchmarks disabled), the run is rebuilt from those lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ppo_core.atomic import atomic_path
from ppo_core.device import check_device, resolve_device
from ppo_core.errors import ArchbenchError, ConfigError, DataError

__all__ = [
    "HEADLINES",
    "SWEEP_OPTIONS",
    "SweepOption",
    "SweepOptions",
    "SweepResult",
    "bench_dir",
    "check_data",
    "pytest_command",
    "rebuild_run",
    "resolve_run",
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

# -- the sweep's options: declared once, for `archbench sweep` and for bench/conftest.py --------

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
    """'synthetic', a named dataset, or an existing file (made absolute: pytest runs elsewhere).
    Its contents are checked by check_data, which reads it."""
    from ppo_core.data import DATASETS

    spec = str(text).strip()
    if spec.lower() == "synthetic" or spec.lower() in DATASETS:
        return spec.lower()
    path = Path(spec).expanduser()
    if path.is_dir():
        raise ConfigError(f"--data {spec}: is a directory; give an OHLCV CSV or Parquet file")
    if not path.is_file():
        raise ConfigError(
            f"--data {spec}: no such file, and not a dataset name "
            f"(synthetic, {', '.join(DATASETS)})"
        )
    return str(path.resolve())


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
        "quick: minutes on a laptop CPU; full: all presets, 3 seeds, sized for a GPU "
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
        "synthetic, a named dataset (sp500, eurusd-1h, ...) or an OHLCV CSV/Parquet file",
        "DATA",
    ),
)
"""Every option the bench suites take, in the order --help shows them."""


@dataclass(frozen=True)
class SweepOptions:
    """The sweep's options, parsed and checked by SWEEP_OPTIONS."""

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

    @classmethod
    def parse(cls, get: Callable[[str], Any]) -> SweepOptions:
        """`get(dest)` -> the raw value of each option (argparse's or pytest's); ConfigError
        naming the flag and the value for the first bad one."""
        return cls(**{option.dest: option.parse(get(option.dest)) for option in SWEEP_OPTIONS})

    def pytest_args(self) -> list[str]:
        """These options as bench/conftest.py reads them back."""
        args = ["--profile", self.profile, "--device", self.device, "--data", self.data]
        if self.presets is not None:
            args += ["--presets", ",".join(self.presets)]
        for dims in self.hidden_dims:
            args += ["--hidden-dims", ",".join(map(str, dims))]
        return args


def check_data(spec: str, lookback: int = 100) -> None:
    """Read --data whole and check that the suites can cut their splits from it (DataError
    naming the file otherwise), so a bad file stops the sweep before its first case."""
    from ppo_core.data import load_market_data, min_bars

    if spec == "synthetic":
        return
    market = load_market_data(spec)
    need = min_bars(lookback)
    if market.n_bars < need:
        raise DataError(
            f"--data {spec}: {market.n_bars:,} bars; the suites need at least {need:,} "
            f"(lookback {lookback}, feature warm-up, embargoes and three splits)"
        )


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
    """The sweep was stopped by SIGINT, SIGTERM or SIGHUP (finished cases are kept)."""
    stopped_by: int | None
    """The signal that stopped it (None when it ran to the end)."""
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
    options: SweepOptions,
    extra: Sequence[str] = (),
) -> list[str]:
    """The pytest invocation a sweep runs (also what to paste to rerun it by hand)."""
    command = [sys.executable, "-m", "pytest", str(bench), "-q", "-p", "no:cacheprovider"]
    command += options.pytest_args()
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
    out_dir: str | Path = "runs",
    pytest_args: Sequence[str] = (),
    render: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Check every option, run the suites, print one line per finished case; on SIGINT,
    SIGTERM or SIGHUP stop pytest and keep (and report) every case that finished."""
    echo = echo or _print_now
    raw = {
        "profile": profile,
        "presets": presets,
        "hidden_dims": list(hidden_dims),
        "device": device,
        "data": data,
    }
    options = SweepOptions.parse(raw.__getitem__)
    bench = bench_dir()
    resolved, label = _device_label(options.device)
    options = dataclasses.replace(options, device=resolved)
    check_data(options.data)
    out = _output_folder(out_dir)
    name = run_name(platform.node(), label, datetime.now(timezone.utc))
    json_path = out / f"{name}.json"
    records_path, log_path = out / f"{name}.records.jsonl", out / f"{name}.log"
    partial_json = out / f"{name}.json.partial"
    command = pytest_command(bench, partial_json, records_path, options, extra=pytest_args)
    echo(
        f"archbench sweep: profile {options.profile} on {resolved}; log {log_path}; "
        f"finished cases stream to {records_path}"
    )
    try:
        with _Stopper() as stopper:
            returncode, progress = _run_pytest(
                command, bench.parent, log_path, records_path, echo, stopper
            )
            rebuilt = False
            if _is_complete_json(partial_json):
                partial_json.replace(json_path)
            elif progress.records:
                _write_json_from_records(json_path, progress.session, progress.records)
                rebuilt = True
            else:
                json_path = None
    finally:
        partial_json.unlink(missing_ok=True)  # a half-written one would only mislead
    html_path, note = None, None
    if json_path is None:
        note = "no case finished, so there is nothing to report"
    elif render:
        html_path, note = _render(json_path, log_path)
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
    )


def _print_now(line: str) -> None:
    try:
        print(line, flush=True)  # a line per case as it ends, even into a pipe or a file
    except OSError:  # the terminal hung up (SIGHUP) or the pipe closed: the sweep goes on
        pass


class _Progress:
    """Reads the records stream as it grows and prints a line per finished case."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path = path
        self.echo = echo
        self.offset = 0
        self.collected: int | None = None
        self.finished = 0
        self.records: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        """The 'collected' event: case count, device, profile, machine and commit."""
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
            self.session = event
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
    shown, unavailable = [], []
    for name in HEADLINES.get(record["suite"], ()):
        metric = record["metrics"].get(name)
        if metric and metric.get("value") is not None:
            shown.append(f"{name}={_fmt(metric['value'], metric.get('unit'))}")
        elif metric and metric.get("unavailable"):
            unavailable.append(str(metric["unavailable"]))
    if not shown and unavailable:  # e.g. an ONNX case without the onnx extra: say why
        return f"not measured: {unavailable[0]}"
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


_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
STOP_GRACE_S = 60.0
"""How long pytest gets to finish the JSON after the first stop signal before it is killed (a
case inside a long CUDA call only sees the interrupt when the call returns)."""


class _Stopper:
    """While active, SIGINT, SIGTERM and SIGHUP are noted instead of ending the sweep, so it can
    stop pytest and still write what finished. Outside the main thread it notes nothing."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def signum(self) -> int | None:
        """The first stop signal received, if any."""
        return self.received[0] if self.received else None

    def _note(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)

    def __enter__(self) -> _Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the sweep dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG); None where that does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    """`signum` to the child's process group: pytest and every process it started."""
    try:
        os.killpg(child.pid, signum)
    except OSError:  # the group is already gone
        pass


def _run_pytest(
    command: list[str],
    cwd: Path,
    log_path: Path,
    records_path: Path,
    echo: Callable[[str], None],
    stopper: _Stopper,
) -> tuple[int, _Progress]:
    progress = _Progress(records_path, echo)
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
            preexec_fn=_parent_death_signal(),
        )
        asked_at: float | None = None
        while True:
            try:
                child.wait(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            progress.poll()
            if stopper.received and asked_at is None:
                asked_at = time.monotonic()
                echo(
                    f"interrupted by {signal.Signals(stopper.signum).name}: stopping pytest and "
                    "keeping every finished case (send it again to stop at once)"
                )
                _signal_group(child, signal.SIGINT)  # pytest writes its JSON on SIGINT
            elif asked_at is not None and (
                len(stopper.received) > 1 or time.monotonic() - asked_at > STOP_GRACE_S
            ):
                echo("pytest killed; the finished cases are rebuilt from the streamed records")
                _signal_group(child, signal.SIGKILL)
                child.wait()
                break
        if asked_at is not None:
            _signal_group(child, signal.SIGKILL)  # whatever pytest started and left running
        progress.poll()
    return child.returncode, progress


def _is_complete_json(path: Path) -> bool:
    """pytest-benchmark's file, if it was written whole (a killed pytest can leave half)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _write_json_from_records(
    path: Path, session: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """A pytest-benchmark-shaped JSON holding every streamed record (no timing stats), with
    the machine and commit the suites streamed when the session started."""
    machine = dict(session.get("machine_info") or {})
    machine.setdefault("archbench_profile", session.get("profile"))
    machine.setdefault("archbench_device", session.get("device"))
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
        "commit_info": session.get("commit_info")
        or {"id": None, "error": "the records stream did not say"},
        "benchmarks": benchmarks,
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": "archbench-records",
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")


_RECORDS_SUFFIX = ".records.jsonl"


def _run_stem(records_path: Path) -> str:
    return records_path.name.removesuffix(_RECORDS_SUFFIX)


def rebuild_run(records_path: str | Path, json_path: str | Path | None = None) -> Path:
    """Rebuild a run's JSON from its streamed records (a sweep killed before writing it):
    DIR/run-X.records.jsonl -> DIR/run-X.json unless `json_path` says otherwise."""
    records_path = Path(records_path)
    if json_path is None:
        json_path = records_path.with_name(
            records_path.name.removesuffix(_RECORDS_SUFFIX) + ".json"
        )
    progress = _Progress(records_path, lambda _line: None)
    try:
        progress.poll()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArchbenchError(f"{records_path}: not an archbench records stream ({error})") from None
    if not progress.records:
        raise ArchbenchError(
            f"{records_path}: no finished case with a record in it, so there is no run to rebuild"
        )
    _write_json_from_records(Path(json_path), progress.session, progress.records)
    return Path(json_path)


def resolve_run(path: str | Path) -> tuple[Path, str | None]:
    """The run JSON to read for `path`, and what was done to get it: a records stream (or a
    missing run-X.json beside its run-X.records.jsonl) is rebuilt into run-X.json first."""
    path = Path(path)
    if path.name.endswith(_RECORDS_SUFFIX):
        records = path
        target = path.with_name(_run_stem(path) + ".json")
    elif not path.exists() and path.suffix == ".json":
        records, target = path.with_name(path.stem + _RECORDS_SUFFIX), path
        if not records.is_file():
            return path, None  # the loader says the file is missing
    else:
        return path, None
    if _is_complete_json(target):
        return target, f"read {target} (the sweep wrote it) rather than {records.name}"
    rebuild_run(records, target)
    return target, f"rebuilt {target} from the streamed records {records}"


def _render(json_path: Path, log_path: Path) -> tuple[Path | None, str | None]:
    try:
        from reports.render import render_report
    except ImportError as error:
        return None, (
            f"reports.render is not available ({error}); render later with "
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
