"""`archbench sweep --devices` and `--ray`: one shard of the sweep per device, each an ordinary
single-device `archbench sweep` process, merged into one run (archbench_sweep.shards) and rendered.

On one node the shards are subprocesses pinned with CUDA_VISIBLE_DEVICES; on a Ray cluster
each is a task asking for one GPU (or one CPU), retried when its node is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archbench_sweep.options import parse_cost_bps, parse_lookback
from archbench_sweep.runner import run_name
from archbench_sweep.shards import ShardRun, merge_shards, parse_devices, visible_device
from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError, ConfigError
from ppo_core.presets import PRESETS, parse_hidden_dims

__all__ = [
    "RAY_INSTALL_HINT",
    "MultiSweepResult",
    "SweepOptions",
    "check_devices",
    "run_on_devices",
    "run_on_ray",
    "shard_command",
    "sweep_command",
]

RAY_INSTALL_HINT = "--ray needs Ray: pip install 'ppo-archbench[ray]' (or pip install 'ray>=2.9')"
_CONNECT_TIMEOUT_S = 5.0
_RAY_RETRIES = 2
"""Times Ray reruns a shard whose node or worker died; a shard that fails as a test does not."""


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
    """Ctrl-C stopped the sweep; finished shards were kept."""


def shard_command(
    options: SweepOptions, device: str, out_dir: Path, index: int, n_shards: int
) -> list[str]:
    """The `archbench sweep` invocation of shard `index` (device as the shard sees it)."""
    command = [sys.executable, "-m", "archbench_cli.main", "sweep", "--profile", options.profile]
    command += ["--device", device, "--data", options.data, "--out", str(out_dir), "--no-report"]
    if options.presets:
        command += ["--presets", options.presets]
    for dims in options.hidden_dims:
        command += ["--hidden-dims", dims]
    for flag, value in (("--cost-bps", options.cost_bps), ("--lookback", options.lookback)):
        if value is not None:
            command += [flag, str(value)]
    return [*command, "--", "--archbench-shard", f"{index}/{n_shards}", *options.pytest_args]


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
    options = SweepOptions(
        profile=args.profile,
        presets=args.presets,
        hidden_dims=tuple(args.hidden_dims),
        data=str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        cost_bps=getattr(args, "cost_bps", None),
        lookback=getattr(args, "lookback", None),
        pytest_args=tuple(args.pytest_args),
    )
    if args.ray:
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
        result = run_on_ray(
            args.ray,
            options,
            accelerators=accelerators,
            shards=args.shards or (len(parts) if cpu_only else None),
            cpu_only=cpu_only,
            out_dir=args.out,
            render=not args.no_report,
        )
    else:
        result = run_on_devices(
            check_devices(args.devices), options, out_dir=args.out, render=not args.no_report
        )
    print(f"{result.finished}/{result.shards} shards finished; shards in {result.shard_dir}")
    for line in result.failed:
        print(f"  {line}")
    for path in result.json_paths:
        print(f"wrote {path}")
    if result.html_path is not None:
        print(f"wrote {result.html_path}")
    if result.interrupted:
        return 130
    return 0 if result.json_paths and not result.failed else 1


# --- one node, several devices -----------------------------------------------------------


def run_on_devices(
    devices: Sequence[str],
    options: SweepOptions,
    *,
    out_dir: str | Path = "runs",
    render: bool = True,
    echo: Callable[[str], None] | None = None,
) -> MultiSweepResult:
    """One `archbench sweep` process per device, at once; merge what they wrote."""
    echo = echo or _print_now
    out = _out_dir(out_dir)
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
        seen_as = "cpu" if device == "cpu" else "cuda:0"
        child = subprocess.Popen(
            shard_command(options, seen_as, folder, index, len(devices)),
            env=envs[index],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own session: a terminal's Ctrl-C reaches the driver only, which then stops
            # each shard once (a second SIGINT would make the shard's sweep kill its pytest).
            start_new_session=True,
        )
        outputs[index] = []
        reader = threading.Thread(
            target=_relay,
            args=(child, f"[{index}:{device}] ", echo, lock, outputs[index]),
            daemon=True,
        )
        reader.start()
        children.append((index, device, folder, child, reader))
    interrupted = _wait_all([child for *_, child, _reader in children], echo)
    runs, failed = [], []
    for index, device, folder, child, reader in children:
        reader.join()
        data = _shard_json(folder)
        if data is None and _had_no_cases("\n".join(outputs[index])):
            echo(f"shard {index} on {device}: no case fell to it (fewer sizes than shards)")
        elif data is None:
            failed.append(f"shard {index} on {device}: no JSON (exit {child.returncode})")
        else:
            runs.append(ShardRun(index=index, device=device, data=data))
    paths = [_write_merged(out / f"{name}.json", runs)] if runs else []
    html = _render(paths, out / f"{name}.html") if render and paths else None
    return MultiSweepResult(
        json_paths=tuple(paths),
        html_path=html,
        shard_dir=shard_root,
        shards=len(devices),
        finished=len(runs),
        failed=tuple(failed),
        interrupted=interrupted,
    )


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


def _wait_all(children: list[subprocess.Popen], echo: Callable[[str], None]) -> bool:
    with _terminate_as_interrupt():
        return _wait_or_stop(children, echo)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the shards like Ctrl-C, so their finished cases are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signals = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {number: signal.signal(number, interrupt) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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


# --- Ray: several machines ---------------------------------------------------------------


def run_on_ray(
    address: str,
    options: SweepOptions,
    *,
    accelerators: Sequence[str] = (),
    shards: int | None = None,
    cpu_only: bool = False,
    out_dir: str | Path = "runs",
    render: bool = True,
    echo: Callable[[str], None] | None = None,
    ray_init: dict[str, Any] | None = None,
) -> MultiSweepResult:
    """Each shard a Ray task (one GPU, or one CPU on a cluster without GPUs); with
    `accelerators`, the whole sweep once per accelerator type, one merged run each."""
    echo = echo or _print_now
    ray = _import_ray()
    out = _out_dir(out_dir)
    started_here = _connect(ray, address, ray_init or {})
    try:
        plan = _plan(ray, accelerators, shards, cpu_only)
        stamp = datetime.now(timezone.utc)
        shard_root = out / f"{run_name(platform.node(), 'ray', stamp)}.shards"
        echo(
            "archbench sweep on Ray: "
            + "; ".join(f"{acc or kind}: {n} shard(s)" for acc, kind, n in plan)
            + f"; shards in {shard_root}"
        )
        outcome = _run_tasks(ray, plan, options, shard_root, echo)
    finally:
        if started_here:
            ray.shutdown()
    runs, failed, interrupted = outcome
    paths = []
    for accelerator, kind, _n in plan:
        mine = [r for r in runs if r.accelerator == accelerator]
        if mine:
            label = f"ray-{accelerator or kind}"
            paths.append(
                _write_merged(out / f"{run_name(platform.node(), label, stamp)}.json", mine)
            )
    html = None
    if render and paths:
        html = _render(paths, out / f"{run_name(platform.node(), 'ray', stamp)}.html")
    return MultiSweepResult(
        json_paths=tuple(paths),
        html_path=html,
        shard_dir=shard_root,
        shards=sum(n for *_, n in plan),
        finished=len(runs),
        failed=tuple(failed),
        interrupted=interrupted,
    )


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ArchbenchError(RAY_INSTALL_HINT) from None
    return ray


def _connect(ray: Any, address: str, init: dict[str, Any]) -> bool:
    """ray.init; True when this call started a local cluster (which it then shuts down)."""
    if address != "local":
        _check_reachable(address)
    if ray.is_initialized():  # a cluster this process already joined (tests, notebooks)
        return False
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False, **init)
        return True
    try:
        ray.init(address=address, log_to_driver=False, **init)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArchbenchError(
            f"--ray {address}: cannot connect to a Ray cluster ({first})"
        ) from None
    return False


def _check_reachable(address: str) -> None:
    """A host:port that nothing answers fails in seconds, not after Ray's long retries."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if address == "auto":
        return
    if not match:
        raise ConfigError(
            f"--ray {address!r} is not an address: use local, auto, HOST:PORT or ray://HOST:PORT"
        )
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise ArchbenchError(
            f"--ray {address}: no Ray cluster answers at {host}:{port} "
            f"within {_CONNECT_TIMEOUT_S:.0f} s ({error.strerror or error})"
        ) from None


def _plan(
    ray: Any, accelerators: Sequence[str], shards: int | None, cpu_only: bool = False
) -> list[tuple[str | None, str, int]]:
    """(accelerator type or None, 'gpu' or 'cpu', shard count) per whole sweep to run."""
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if cpu_only:
        if accelerators:
            raise ConfigError("--accelerator picks GPU types; it cannot go with CPU shards")
        return [(None, "cpu", shards or len(nodes))]
    if not accelerators:
        gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        if gpus:
            return [(None, "gpu", shards or gpus)]
        return [(None, "cpu", shards or len(nodes))]
    plan = []
    for accelerator in accelerators:
        key = f"accelerator_type:{accelerator}"
        gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes if key in n["Resources"]))
        if not gpus:
            have = sorted(
                {k.split(":", 1)[1] for n in nodes for k in n["Resources"] if k.startswith("acc")}
            )
            raise ConfigError(
                f"--accelerator {accelerator}: the Ray cluster has no GPU of that type "
                f"(it has: {', '.join(have) or 'no typed GPUs'})"
            )
        plan.append((accelerator, "gpu", shards or gpus))
    return plan


def _shard_task(command: list[str], gpu: bool) -> dict[str, Any]:
    """Runs on a Ray worker: one shard's `archbench sweep`, returned as its JSON."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    with tempfile.TemporaryDirectory(prefix="archbench-shard-") as folder:
        command = [folder if part == "{out}" else part for part in command]
        env = dict(os.environ)
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU shard must not touch a GPU it was not given
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            output, _ = child.communicate()
        except KeyboardInterrupt:  # ray.cancel: stop the shard, leave nothing running
            child.send_signal(signal.SIGINT)
            child.wait()
            raise
        return {
            "node": platform.node(),
            "device": f"cuda:{visible.split(',')[0]}" if gpu and visible else "cpu",
            "returncode": child.returncode,
            "json": _shard_json(Path(folder)),
            "log_tail": output.decode("utf-8", "replace")[-2000:],
        }


def _run_tasks(
    ray: Any,
    plan: list[tuple[str | None, str, int]],
    options: SweepOptions,
    shard_root: Path,
    echo: Callable[[str], None],
) -> tuple[list[ShardRun], list[str], bool]:
    from rich.progress import Progress

    task = ray.remote(_shard_task)
    pending: dict[Any, tuple[int, str | None]] = {}
    index = 0
    for accelerator, kind, n_shards in plan:
        for shard in range(n_shards):
            device = "cuda:0" if kind == "gpu" else "cpu"
            command = shard_command(options, device, Path("{out}"), shard, n_shards)
            resources: dict[str, Any] = {"max_retries": _RAY_RETRIES, "retry_exceptions": False}
            if kind == "gpu":
                resources["num_gpus"] = 1
                if accelerator:
                    resources["accelerator_type"] = accelerator
            else:
                resources["num_cpus"] = 1
            pending[task.options(**resources).remote(command, kind == "gpu")] = (index, accelerator)
            index += 1
    runs: list[ShardRun] = []
    failed: list[str] = []
    per_node: dict[str, int] = {}
    interrupted = False
    with Progress(transient=False) as progress:
        bar = progress.add_task("shards", total=len(pending))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in done:
                    shard, accelerator = pending.pop(ref)
                    line, node = _collect(ray, ref, shard, accelerator, shard_root, runs, failed)
                    per_node[node] = per_node.get(node, 0) + 1
                    progress.console.print(line, soft_wrap=True)
                    progress.update(
                        bar,
                        advance=1,
                        description="shards per node: "
                        + ", ".join(f"{n} {k}" for n, k in sorted(per_node.items())),
                    )
        except KeyboardInterrupt:
            interrupted = True
            echo(f"interrupted: keeping {len(runs)} finished shard(s), cancelling {len(pending)}")
            for ref in pending:
                ray.cancel(ref)
    return sorted(runs, key=lambda r: r.index), failed, interrupted


def _collect(
    ray: Any,
    ref: Any,
    shard: int,
    accelerator: str | None,
    shard_root: Path,
    runs: list[ShardRun],
    failed: list[str],
) -> tuple[str, str]:
    """Keep one finished task's shard (its JSON and log under shard_root); (a line, its node)."""
    try:
        result = ray.get(ref)
    except Exception as error:  # a task lost beyond its retries costs its shard only
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        failed.append(f"shard {shard}: {type(error).__name__}: {reason}")
        return f"shard {shard} lost after {_RAY_RETRIES} retries: {reason}", "lost"
    folder = shard_root / f"shard{shard}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.txt").write_text(result["log_tail"], encoding="utf-8")
    where = f"on {result['node']} {result['device']}"
    if result["json"] is None and _had_no_cases(result["log_tail"]):
        return f"shard {shard} {where}: no case fell to it (fewer sizes than shards)", result[
            "node"
        ]
    if result["json"] is None:
        failed.append(f"shard {shard} {where}: no JSON (exit {result['returncode']})")
        line = f"shard {shard} {where}: no result (exit {result['returncode']}); see {folder}"
        return line, result["node"]
    (folder / "run.json").write_text(json.dumps(result["json"]), encoding="utf-8")
    runs.append(
        ShardRun(
            index=shard,
            device=result["device"],
            data=result["json"],
            node=result["node"],
            accelerator=accelerator,
        )
    )
    cases = len(result["json"].get("benchmarks") or [])
    return f"shard {shard} {where}: {cases} cases (exit {result['returncode']})", result["node"]


# --- shared ------------------------------------------------------------------------------


def _print_now(line: str) -> None:
    print(line, flush=True)


def _out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArchbenchError(f"cannot create the output folder {out}: {error}") from None
    return out


def _shard_json(folder: Path) -> dict[str, Any] | None:
    """The JSON a shard's sweep wrote into its own folder (None if it wrote none)."""
    for path in sorted(folder.glob("run-*.json")):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    return None


def _write_merged(path: Path, runs: Sequence[ShardRun]) -> Path:
    merged = merge_shards(runs)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    return path


def _render(paths: Sequence[Path], html_path: Path) -> Path | None:
    try:
        from archbench_reports.render import render_report
    except ImportError:
        return None
    return render_report(list(paths), html_path)
