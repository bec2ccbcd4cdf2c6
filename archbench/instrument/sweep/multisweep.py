"""`archbench sweep --devices` (and the parts `--ray` shares): one shard of the sweep per
device, each an ordinary single-device `archbench sweep` process, merged into one run
(archbench.instrument.sweep.shards) that says what it lacks
(archbench.instrument.sweep.runfile), and rendered.

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

from archbench.instrument.stopping import STOP_SIGNALS, StopGuard
from archbench.instrument.sweep.options import parse_cost_bps, parse_lookback
from archbench.instrument.sweep.progress import Progress, print_now
from archbench.instrument.sweep.rebuild import write_json_from_records
from archbench.instrument.sweep.runfile import (
    RUN_KEY,
    finished_cases,
    fold_in,
    lost_cases,
    previous_run,
    run_section,
    shard_entry,
)
from archbench.instrument.sweep.runner import run_name
from archbench.instrument.sweep.shards import ShardRun, merge_shards, parse_devices, visible_device
from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError, ConfigError
from ppo_core.presets import PRESETS, parse_hidden_dims

__all__ = [
    "MultiSweepResult",
    "SweepOptions",
    "check_devices",
    "out_folder",
    "render_runs",
    "run_on_devices",
    "shard_command",
    "shard_json",
    "stored_options",
    "sweep_command",
    "write_merged",
]


@dataclass(frozen=True)
class SweepOptions:
    """The sweep every shard runs (the single-device `archbench sweep` options)."""

    profile: str = "quick"
    """quick or full."""
    presets: str | None = None
    """--presets as given, or None for the profile's."""
    hidden_dims: tuple[str, ...] = ()
    """--hidden-dims values as given."""
    data: str = "synthetic"
    """--data as given (a file path must exist on every node)."""
    cost_bps: str | None = None
    """--cost-bps as given, or None for the suites' own."""
    lookback: str | None = None
    """--lookback as given, or None for the reference 100."""
    pytest_args: tuple[str, ...] = ()
    """Extra pytest arguments, passed to every shard."""

    def __post_init__(self) -> None:
        # Checked here, once, so that a typo is one line and not one failed shard per device.
        if self.profile not in ("quick", "full"):
            raise ConfigError(f"profile must be quick or full, got {self.profile!r}")
        names = [p.strip().lower() for p in (self.presets or "all").split(",") if p.strip()]
        unknown = [n for n in names if n not in PRESETS and names != ["all"]]
        if unknown or not names:
            bad = unknown[0] if unknown else "(none)"
            raise ConfigError(
                f"--presets {self.presets!r}: unknown preset {bad!r}; "
                f"choose from {', '.join(PRESETS)} or 'all'"
            )
        for dims in self.hidden_dims:
            parse_hidden_dims(dims)
        parse_cost_bps(self.cost_bps)
        parse_lookback(self.lookback)

    def without(self, done: Sequence[str]) -> SweepOptions:
        """These options with the cases `done` deselected (a resumed run keeps them)."""
        deselect = tuple(arg for nodeid in done for arg in ("--deselect", nodeid))
        return dataclasses.replace(self, pytest_args=(*self.pytest_args, *deselect))


@dataclass(frozen=True)
class MultiSweepResult:
    """What a sharded sweep left on disk."""

    json_paths: tuple[Path, ...]
    """Merged runs: one, or one per accelerator type."""
    html_path: Path | None
    """One report across every merged run (None when nothing finished or --no-report)."""
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


def shard_command(
    options: SweepOptions,
    device: str,
    out_dir: Path,
    index: int,
    n_shards: int,
    case_timeout: float | None = None,
) -> list[str]:
    """The `archbench sweep` invocation of shard `index` (device as the shard sees it)."""
    command = [sys.executable, "-m", "archbench.cli.main", "sweep", "--profile", options.profile]
    command += ["--device", device, "--data", options.data, "--out", str(out_dir), "--no-report"]
    if options.presets:
        command += ["--presets", options.presets]
    for dims in options.hidden_dims:
        command += ["--hidden-dims", dims]
    for flag, value in (("--cost-bps", options.cost_bps), ("--lookback", options.lookback)):
        if value is not None:
            command += [flag, str(value)]
    if case_timeout is not None:
        command += ["--case-timeout", str(case_timeout)]
    return [*command, "--", *options.pytest_args, "--archbench-split", f"{index}/{n_shards}"]


def check_devices(spec: str) -> list[str]:
    """--devices -> one device per shard, checked against this machine's CUDA devices."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return parse_devices(spec, count)


def sweep_command(args: Any) -> int:
    """`archbench sweep` with --devices, --ray, --accelerator or --shards (args: argparse's)."""
    if not args.ray and (args.accelerator or args.shards):
        flag = "--accelerator" if args.accelerator else "--shards"
        raise ConfigError(f"{flag} needs --ray ADDRESS (on one machine, use --devices)")
    if args.devices and args.device != "auto":
        raise ConfigError(f"give --devices or --device, not both (got --device {args.device})")
    previous = previous_run(args.resume) if getattr(args, "resume", None) else None
    options = _options(args, previous)
    timeout = getattr(args, "case_timeout", None)
    if args.ray:
        result = _on_ray(args, options, timeout, previous)
    else:
        result = run_on_devices(
            check_devices(args.devices),
            options,
            out_dir=args.out,
            render=not args.no_report,
            case_timeout=timeout,
            previous=previous,
        )
    return _report(result)


def _options(args: Any, previous: tuple[Path, dict[str, Any]] | None) -> SweepOptions:
    stored = ((previous[1].get(RUN_KEY) or {}).get("options") if previous else None) or {}
    given = {
        "profile": args.profile,
        "presets": args.presets,
        "hidden_dims": args.hidden_dims,
        "data": str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        "cost_bps": getattr(args, "cost_bps", None),
        "lookback": getattr(args, "lookback", None),
        "pytest_args": args.pytest_args,
    }
    given.update(stored)
    return SweepOptions(
        profile=given["profile"],
        presets=given["presets"],
        hidden_dims=tuple(given["hidden_dims"]),
        data=given["data"],
        cost_bps=given["cost_bps"],
        lookback=given["lookback"],
        pytest_args=tuple(given["pytest_args"]),
    )


def _on_ray(args: Any, options: SweepOptions, timeout, previous) -> MultiSweepResult:
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
        render=not args.no_report,
        case_timeout=timeout,
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


# --- one node, several devices -----------------------------------------------------------


def run_on_devices(
    devices: Sequence[str],
    options: SweepOptions,
    *,
    out_dir: str | Path = "runs",
    render: bool = True,
    echo: Callable[[str], None] | None = None,
    case_timeout: float | None = None,
    previous: tuple[Path, dict[str, Any]] | None = None,
) -> MultiSweepResult:
    """One `archbench sweep` process per device, at once; merge what they wrote. `previous`
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
    cpu_shards = sum(d == "cpu" for d in devices)
    children: list[tuple[int, str, Path, subprocess.Popen, threading.Thread]] = []
    outputs: dict[int, list[str]] = {}
    lock = threading.Lock()
    envs = [_shard_env(device, cpu_shards) for device in devices]  # may refuse: before any work
    echo(f"archbench sweep: {len(devices)} shards on {', '.join(devices)}; shards in {shard_root}")
    for index, device in enumerate(devices):
        folder = shard_root / f"shard{index}-{device.replace(':', '')}"
        folder.mkdir(parents=True, exist_ok=True)
        command = shard_command(
            options, "cpu" if device == "cpu" else "cuda:0", folder, index, len(devices),
            case_timeout,
        )  # fmt: skip
        outputs[index] = []
        child, reader = _start_shard(command, envs[index], f"[{index}:{device}] ", echo, lock,
                                     outputs[index])  # fmt: skip
        children.append((index, device, folder, child, reader))
    stopped_by: list[str] = []
    interrupted = _wait_all([child for *_, child, _reader in children], echo, stopped_by)
    runs, lost, entries, failed = [], [], [], []
    for index, device, folder, child, reader in children:
        reader.join()
        run, my_lost, entry = _device_outcome(index, device, folder, child, outputs[index])
        if run is not None:
            runs.append(run)
        elif my_lost:
            failed.append(my_lost[0]["reason"])
        lost += my_lost
        entries += [entry] if entry else []
    paths = []
    if runs or previous is not None:
        section = run_section(
            lost=lost,
            shards=entries,
            options=stored,
            stopped_by=(stopped_by or ["SIGINT"])[0] if interrupted else None,
            resumed_from=str(previous[0]) if previous else None,
        )
        paths = [write_merged(out / f"{name}.json", runs, section, previous and previous[1])]
    html = render_runs(paths, out / f"{name}.html") if render and paths else None
    return MultiSweepResult(
        json_paths=tuple(paths),
        html_path=html,
        shard_dir=shard_root,
        shards=len(devices),
        finished=len(runs),
        failed=tuple(failed),
        interrupted=interrupted,
        lost=tuple(lost),
        stopped_by=(stopped_by or ["SIGINT"])[0] if interrupted else None,
    )


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
    return {
        "profile": options.profile,
        "presets": options.presets,
        "hidden_dims": list(options.hidden_dims),
        "data": options.data,
        "cost_bps": options.cost_bps,
        "lookback": options.lookback,
        "pytest_args": list(options.pytest_args),
    }


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


def out_folder(out_dir: str | Path) -> Path:
    """--out, made absolute and created (one line if it cannot be)."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file; give a folder for the run's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchbenchError(f"cannot create the output folder {out}: {error}") from None
    return out


def shard_json(folder: Path) -> dict[str, Any] | None:
    """The JSON a shard's sweep wrote into its own folder (None if it wrote none)."""
    for path in sorted(folder.glob("run-*.json")):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return None


def write_merged(
    path: Path,
    runs: Sequence[ShardRun],
    section: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> Path:
    """The shards' runs merged (with a resumed run's earlier cases) and `section` as its
    archbench_run, written through a temporary file."""
    merged = merge_shards(runs) if runs else {"machine_info": {}, "benchmarks": []}
    if previous is not None:
        merged = fold_in(merged, previous)
        for key in ("machine_info", "commit_info", "datetime", "version"):
            merged.setdefault(key, previous.get(key))
        if not merged.get("machine_info"):
            merged["machine_info"] = previous.get("machine_info") or {}
    merged[RUN_KEY] = section
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    return path


def render_runs(paths: Sequence[Path], html_path: Path) -> Path | None:
    """One report over the merged runs; None where the reports part is not installed."""
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
