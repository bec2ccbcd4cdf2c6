"""`archbench sweep --devices` (and the parts `--ray` shares): one shard of the sweep per
device, each an ordinary single-device sweep process (archbench.instrument.sweep.runner),
merged into one run that says what it lacks (archbench.instrument.runfile); `archbench sweep`
renders it.

On one node the shards are subprocesses pinned with CUDA_VISIBLE_DEVICES; on a Ray cluster
(archbench.instrument.sweep.raysweep) each is a task asking for one GPU or one CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archbench.instrument.runfile import (
    RUN_KEY,
    ShardRun,
    finished_cases,
    lost_cases,
    run_section,
    shard_entry,
    write_merged,
)
from archbench.instrument.stopping import STOP_SIGNALS, StopGuard
from archbench.instrument.sweep.options import SweepOptions
from archbench.instrument.sweep.progress import Progress, print_now
from archbench.instrument.sweep.rebuild import write_json_from_records
from archbench.instrument.sweep.runner import out_folder, run_name
from archbench.instrument.sweep.shards import parse_devices, visible_device

__all__ = [
    "MultiSweepResult",
    "check_devices",
    "run_on_devices",
    "shard_command",
    "shard_json",
    "stored_options",
]


@dataclass(frozen=True)
class MultiSweepResult:
    """What a sharded sweep left on disk."""

    json_paths: tuple[Path, ...]
    """Merged runs: one, or one per accelerator type."""
    shard_dir: Path
    """Each shard's own JSON, records and log."""
    shards: int
    """Shards started."""
    finished: int
    """Shards that wrote a JSON (all of their cases, or those finished before a Ctrl-C)."""
    failed: tuple[str, ...] = field(default_factory=tuple)
    """One line per shard that left no JSON, saying why."""
    interrupted: bool = False
    """A stop signal ended the sweep; every finished case was kept."""
    lost: tuple[dict[str, str], ...] = ()
    """Cases (or whole shards) the merged runs lack, each with why (archbench_run.lost)."""
    stopped_by: str | None = None
    """The signal that stopped the sweep ('SIGINT', 'SIGTERM', ...), if one did."""
    html_path: Path | None = None
    """The one report across every merged run: the sweep never renders (None);
    `archbench sweep` fills it in."""

    @property
    def report_path(self) -> Path:
        """Where the report of these runs goes: beside the shards' folder, named like it."""
        return self.shard_dir.with_suffix(".html")


def shard_command(
    options: SweepOptions,
    device: str,
    out_dir: Path,
    index: int,
    n_shards: int,
    case_timeout: float | None = None,
) -> list[str]:
    """The single-device sweep of shard `index` (device as the shard sees it): the runner
    module, which renders nothing, never the command line above it."""
    flags = dataclasses.replace(options, device=device).argv()
    command = [sys.executable, "-m", "archbench.instrument.sweep.runner", *flags]
    command += ["--out", str(out_dir)]
    if case_timeout is not None:
        command += ["--case-timeout", str(case_timeout)]
    return [*command, "--", *options.pytest_args, "--archbench-split", f"{index}/{n_shards}"]


def check_devices(spec: str) -> list[str]:
    """--devices -> one device per shard, checked against this machine's CUDA devices."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return parse_devices(spec, count)


# --- one node, several devices -----------------------------------------------------------


def run_on_devices(
    devices: Sequence[str],
    options: SweepOptions,
    *,
    out_dir: str | Path = "runs",
    echo: Callable[[str], None] | None = None,
    case_timeout: float | None = None,
    previous: tuple[Path, dict[str, Any]] | None = None,
) -> MultiSweepResult:
    """One single-device sweep process per device, at once; merge what they wrote. `previous`
    (a run being resumed): its finished cases are kept and not rerun."""
    echo = echo or print_now
    out = out_folder(out_dir)
    stored = stored_options(options, previous)
    if previous is not None:
        done = finished_cases(previous[1])
        echo(f"resuming {previous[0]}: {len(done)} finished cases are kept, not rerun")
        options = options.without(done)
    label = "-".join(d.replace(":", "") for d in dict.fromkeys(devices))
    name = run_name(platform.node(), f"{len(devices)}x-{label}", datetime.now(timezone.utc))
    shard_root = out / f"{name}.shards"
    children = _start_shards(devices, options, shard_root, case_timeout, echo)
    stopped_by: list[str] = []
    interrupted = _wait_all([child.process for child in children], echo, stopped_by)
    runs, lost, entries, failed = _gather(children)
    stopped = (stopped_by or ["SIGINT"])[0] if interrupted else None
    paths = []
    if runs or previous is not None:
        section = run_section(
            lost=lost,
            shards=entries,
            options=stored,
            stopped_by=stopped,
            resumed_from=str(previous[0]) if previous else None,
        )
        paths = [write_merged(out / f"{name}.json", runs, section, previous and previous[1])]
    return MultiSweepResult(
        json_paths=tuple(paths),
        shard_dir=shard_root,
        shards=len(devices),
        finished=len(runs),
        failed=tuple(failed),
        interrupted=interrupted,
        lost=tuple(lost),
        stopped_by=stopped,
    )


@dataclass(frozen=True)
class _Child:
    """One shard's running sweep on this node."""

    index: int
    """Shard number."""
    device: str
    """The device as the driver names it ('cuda:1', 'cpu')."""
    folder: Path
    """Its JSON, records and log."""
    process: subprocess.Popen
    """Its sweep process."""
    reader: threading.Thread
    """Relays its output to the console and into `output`."""
    output: list[str]
    """Every line it printed."""


def _start_shards(devices, options, shard_root, case_timeout, echo) -> list[_Child]:
    """One sweep process per device, pinned to it, each in its own folder under shard_root."""
    cpu_shards = sum(d == "cpu" for d in devices)
    envs = [_shard_env(device, cpu_shards) for device in devices]  # may refuse: before any work
    echo(f"archbench sweep: {len(devices)} shards on {', '.join(devices)}; shards in {shard_root}")
    lock = threading.Lock()
    children = []
    for index, device in enumerate(devices):
        folder = shard_root / f"shard{index}-{device.replace(':', '')}"
        folder.mkdir(parents=True, exist_ok=True)
        command = shard_command(
            options, "cpu" if device == "cpu" else "cuda:0", folder, index, len(devices),
            case_timeout,
        )  # fmt: skip
        output: list[str] = []
        process, reader = _start_shard(command, envs[index], f"[{index}:{device}] ", echo, lock,
                                       output)  # fmt: skip
        children.append(_Child(index, device, folder, process, reader, output))
    return children


def _gather(children: Sequence[_Child]) -> tuple[list, list, list, list]:
    """(runs, lost cases, archbench_run.shards entries, one line per failed shard)."""
    runs, lost, entries, failed = [], [], [], []
    for child in children:
        child.reader.join()
        run, my_lost, entry = _device_outcome(
            child.index, child.device, child.folder, child.process, child.output
        )
        if run is not None:
            runs.append(run)
        elif my_lost:
            failed.append(my_lost[0]["reason"])
        lost += my_lost
        entries += [entry] if entry else []
    return runs, lost, entries, failed


def _device_outcome(index, device, folder, child, output):
    """(its run or None, its lost cases, its archbench_run.shards entry) for one shard."""
    data = shard_json(folder)
    if data is None:  # killed before its JSON: its streamed records, else the whole shard
        data = _from_records(folder)
    if data is None:
        if _had_no_cases("\n".join(output)):
            return None, [], None
        why = _last_line(output) or "no output"
        return None, [{"case": f"shard {index}", "reason": f"no result ({why})"}], None
    inner = data.get(RUN_KEY) or {}
    entry = {**((inner.get("shards") or [{}])[0]), "index": index, "device": device}
    run = ShardRun(index=index, device=device, data=data, complete=not inner.get("incomplete"))
    return run, list(inner.get("lost") or []), entry


def _from_records(folder: Path) -> dict[str, Any] | None:
    found = sorted(folder.glob("run-*.records.jsonl"))
    if not found:
        return None
    progress = Progress(found[0], lambda _line: None)
    progress.poll()
    if not progress.records:
        return None
    path = folder / "rebuilt.json"
    write_json_from_records(path, progress.session, progress.records)
    data = json.loads(path.read_text(encoding="utf-8"))
    lost = lost_cases(progress.plan, progress.cases, "not run: the shard was killed")
    entry = shard_entry(0, progress.session, cases_done=len(progress.records),
                        cases_total=progress.collected)  # fmt: skip
    data[RUN_KEY] = run_section(lost=lost, shards=[entry], options={})
    return data


def _last_line(output: Sequence[str]) -> str | None:
    lines = [line.strip() for line in output if line.strip()]
    return lines[-1][:300] if lines else None


def stored_options(options: SweepOptions, previous) -> dict[str, Any]:
    """The options a --resume of this run reuses (the earlier run's, when resuming one)."""
    if previous is not None and (previous[1].get(RUN_KEY) or {}).get("options"):
        return previous[1][RUN_KEY]["options"]
    return options.stored()


def _start_shard(
    command, env, prefix, echo, lock, kept
) -> tuple[subprocess.Popen, threading.Thread]:
    """One shard's sweep, its output relayed line by line with its prefix."""
    child = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own session: a terminal's Ctrl-C reaches the driver only, which then stops
        # each shard once (a second SIGINT would make the shard's sweep kill its pytest).
        start_new_session=True,
    )
    reader = threading.Thread(target=_relay, args=(child, prefix, echo, lock, kept), daemon=True)
    reader.start()
    return child, reader


def _shard_env(device: str, cpu_shards: int) -> dict[str, str]:
    env = dict(os.environ)
    if device != "cpu":
        env["CUDA_VISIBLE_DEVICES"] = visible_device(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    elif cpu_shards > 1:
        # CPU shards share the cores: give each its part instead of all of them fighting.
        per_shard = str(max(1, (os.cpu_count() or 1) // cpu_shards))
        env.setdefault("OMP_NUM_THREADS", per_shard)  # a user's own setting wins
        env.setdefault("MKL_NUM_THREADS", per_shard)
    return env


def _relay(
    child: subprocess.Popen, prefix: str, echo: Callable, lock: threading.Lock, kept: list[str]
) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        kept.append(line.rstrip("\n"))
        with lock:
            echo(prefix + kept[-1])


def _had_no_cases(output: str) -> bool:
    """The shard's sweep said it collected nothing: its share of the sizes was empty."""
    return re.search(r"^collected 0 cases$", output, re.MULTILINE) is not None


def _wait_all(
    children: list[subprocess.Popen], echo: Callable[[str], None], noted: list[str]
) -> bool:
    with _terminate_as_interrupt(noted):
        return _wait_or_stop(children, echo)


@contextlib.contextmanager
def _terminate_as_interrupt(noted: list[str]) -> Iterator[None]:
    """SIGTERM and SIGHUP stop the shards like Ctrl-C, so their finished cases are kept."""

    def interrupt(signum: int) -> None:
        noted.append(signal.Signals(signum).name)  # the run file says which signal
        raise KeyboardInterrupt

    signals = [number for number in STOP_SIGNALS if number != signal.SIGINT]
    with StopGuard(signals, on_signal=interrupt):
        yield


def _wait_or_stop(children: list[subprocess.Popen], echo: Callable[[str], None]) -> bool:
    try:
        while any(child.poll() is None for child in children):
            time.sleep(0.2)
    except KeyboardInterrupt:
        echo("interrupted: each shard keeps its finished cases (Ctrl-C again to abort)")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)  # the shard's own sweep saves what finished
        try:
            for child in children:
                child.wait()
        except KeyboardInterrupt:
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL)  # the shard and its pytest
                    child.wait()
        return True
    return False


# --- shared ------------------------------------------------------------------------------


def shard_json(folder: Path) -> dict[str, Any] | None:
    """The JSON a shard's sweep wrote into its own folder (None if it wrote none)."""
    for path in sorted(folder.glob("run-*.json")):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return None
