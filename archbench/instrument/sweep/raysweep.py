"""`archbench sweep --ray`: each shard a Ray task spread over the nodes (one GPU, or one CPU on
a cluster without GPUs), streaming every finished case to the driver as it ends.

A collector actor on the driver's node receives each shard's records stream line by line, and
the driver keeps it on its own disk; so a stop (SIGINT, SIGTERM, SIGHUP), a lost worker or a
lost node keeps every finished case, a retried shard skips what it had finished, and the run
file names the cases it lacks and why.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archbench.instrument.runfile import (
    ShardRun,
    finished_cases,
    lost_cases,
    run_section,
    shard_entry,
    write_merged,
)
from archbench.instrument.sweep.multisweep import (
    MultiSweepResult,
    shard_command,
    stored_options,
)
from archbench.instrument.sweep.options import SweepOptions
from archbench.instrument.sweep.progress import Progress, print_now
from archbench.instrument.sweep.rebuild import write_json_from_records
from archbench.instrument.sweep.runner import out_folder, run_name
from archbench.instrument.sweep.signals import Stopper, parent_death_signal
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = ["RAY_INSTALL_HINT", "run_on_ray"]

RAY_INSTALL_HINT = "--ray needs Ray: pip install 'ppo-archbench[ray]' (or pip install 'ray>=2.9')"
CONNECT_TIMEOUT_S = 20.0
"""How long --ray ADDRESS may take to answer and let this driver join, all told."""
_RAY_RETRIES = 2
"""Times Ray reruns a shard whose node or worker died; a shard that fails as a test does not."""
_STOP_GRACE_S = 15.0
"""After a stop, how long the shards get to stream their last cases before they are killed."""
_POLL_S = 0.5
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class _Shard:
    """One shard the driver asked Ray to run."""

    key: str
    """'I' or 'ACCELERATOR/I': the collector's name for it."""
    index: int
    """Shard number within its sweep."""
    n_shards: int
    """Shards of that sweep."""
    accelerator: str | None
    """The Ray accelerator type it asked for, if any."""
    gpu: bool
    """It asked for a GPU (else one CPU)."""


def run_on_ray(
    address: str,
    options: SweepOptions,
    *,
    accelerators: Sequence[str] = (),
    shards: int | None = None,
    cpu_only: bool = False,
    out_dir: str | Path = "runs",
    echo: Callable[[str], None] | None = None,
    ray_init: dict[str, Any] | None = None,
    case_timeout: float | None = None,
    previous: tuple[Path, dict[str, Any]] | None = None,
) -> MultiSweepResult:
    """Each shard a Ray task; with `accelerators`, the whole sweep once per accelerator type,
    one merged run each. `previous` (a run being resumed): its finished cases are not rerun."""
    echo = echo or print_now
    ray = _import_ray()
    out = out_folder(out_dir)
    stored = stored_options(options, previous)
    started_here = _connect(ray, address, ray_init or {})
    try:
        plan = _plan(ray, accelerators, shards, cpu_only)
        stamp = datetime.now(timezone.utc)
        shard_root = out / f"{run_name(platform.node(), 'ray', stamp)}.shards"
        echo(
            "archbench sweep on Ray: "
            + "; ".join(f"{acc or kind}: {n} shard(s)" for acc, kind, n in plan)
            + f"; streamed to {shard_root}"
        )
        if previous is not None:
            done = finished_cases(previous[1])
            echo(f"resuming {previous[0]}: {len(done)} finished cases are kept, not rerun")
            options = options.without(done)
        with Stopper() as stopper:
            outcome = _Driver(ray, plan, options, shard_root, echo, case_timeout).run(stopper)
    finally:
        if started_here:
            ray.shutdown()
    return _finish(outcome, plan, out, stamp, shard_root, stored, previous, stopper)


def _finish(outcome, plan, out, stamp, shard_root, stored, previous, stopper):
    """One merged run per accelerator type (every finished case, what was lost)."""
    runs, lost, entries, failed = outcome
    stopped = signal.Signals(stopper.signum).name if stopper.signum is not None else None
    paths = []
    for accelerator, kind, _n in plan:
        mine = [r for r in runs if r.accelerator == accelerator]
        my_lost = [e for key, e in lost if _accelerator_of(key) == accelerator]
        my_entries = [e for key, e in entries if _accelerator_of(key) == accelerator]
        if not mine and previous is None:
            continue
        section = run_section(
            lost=my_lost,
            shards=my_entries,
            options=stored,
            stopped_by=stopped,
            resumed_from=str(previous[0]) if previous else None,
        )
        label = f"ray-{accelerator or kind}"
        path = out / f"{run_name(platform.node(), label, stamp)}.json"
        paths.append(write_merged(path, mine, section, previous[1] if previous else None))
    return MultiSweepResult(
        json_paths=tuple(paths),
        shard_dir=shard_root,
        shards=sum(n for *_, n in plan),
        finished=sum(n for *_, n in plan) - len(failed),
        failed=tuple(failed),
        interrupted=stopper.signum is not None,
        lost=tuple(e for _key, e in lost),
        stopped_by=stopped,
    )


def _accelerator_of(key: str) -> str | None:
    return key.split("/")[0] if "/" in key else None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ArchbenchError(RAY_INSTALL_HINT) from None
    return ray


# --- connecting ------------------------------------------------------------------------------


def _connect(ray: Any, address: str, init: dict[str, Any]) -> bool:
    """ray.init; True when this call started a local cluster (which it then shuts down)."""
    if address != "local":
        _check_reachable(address)
    if ray.is_initialized():  # a cluster this process already joined (tests, notebooks)
        return False
    if address == "local":
        ray.init(include_dashboard=False, log_to_driver=False, **init)
        return True
    _init_within(ray, address, init)
    return False


def _init_within(ray: Any, address: str, init: dict[str, Any]) -> None:
    """ray.init(address), refused in one line if it fails or has not joined in time (an
    address that accepts TCP but never speaks Ray would otherwise hang for minutes)."""
    outcome: dict[str, BaseException | None] = {}

    def join() -> None:
        try:
            ray.init(address=address, log_to_driver=False, **init)
            outcome["error"] = None
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=join, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if "error" not in outcome:
        raise ArchbenchError(
            f"--ray {address}: no Ray cluster answered within {CONNECT_TIMEOUT_S:.0f} s "
            "(is it the cluster's GCS port, 6379 by default, as `ray status` shows?)"
        )
    error = outcome["error"]
    if error is not None:
        raise ArchbenchError(
            f"--ray {address}: cannot connect to a Ray cluster ({_one_line(str(error))})"
        ) from None


def _check_reachable(address: str) -> None:
    """A host:port that nothing answers, or a web server, fails in seconds with one line."""
    if address == "auto":
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not match:
        raise ConfigError(
            f"--ray {address!r} is not an address: use local, auto, HOST:PORT or ray://HOST:PORT"
        )
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=5.0) as probe:
            probe.settimeout(5.0)
            probe.sendall(b"GET / HTTP/1.0\r\nHost: archbench\r\n\r\n")
            reply = probe.recv(16)
    except TimeoutError:
        return  # silent to HTTP: perhaps Ray; ray.init's own deadline decides
    except OSError as error:
        if isinstance(error, ConnectionResetError):
            return
        raise ArchbenchError(
            f"--ray {address}: no Ray cluster answers at {host}:{port} ({error.strerror or error})"
        ) from None
    if reply.startswith(b"HTTP/"):
        raise ArchbenchError(
            f"--ray {address}: a web server answers there, not a Ray cluster (the dashboard is "
            "on 8265; give the GCS port, 6379 by default, as `ray status` shows)"
        )


# --- placement ---------------------------------------------------------------------------


def _plan(
    ray: Any, accelerators: Sequence[str], shards: int | None, cpu_only: bool = False
) -> list[tuple[str | None, str, int]]:
    """(accelerator type or None, 'gpu' or 'cpu', shard count) per whole sweep to run."""
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if cpu_only and accelerators:
        raise ConfigError("--accelerator picks GPU types; it cannot go with CPU shards")
    if accelerators:
        return [_typed_sweep(nodes, asked, shards) for asked in accelerators]
    gpus = 0 if cpu_only else _gpus(nodes)
    if gpus:
        return [(None, "gpu", shards or gpus)]
    return [(None, "cpu", shards or len(nodes))]


def _gpus(nodes: Sequence[dict[str, Any]], key: str | None = None) -> int:
    """GPUs on `nodes` (only those with the resource `key`, when given)."""
    chosen = [n for n in nodes if key is None or key in n["Resources"]]
    return int(sum(n["Resources"].get("GPU", 0) for n in chosen))


def _typed_sweep(
    nodes: Sequence[dict[str, Any]], asked: str, shards: int | None
) -> tuple[str, str, int]:
    """The whole sweep on one accelerator type, spelled as the cluster spells it."""
    have = sorted(
        {k.split(":", 1)[1] for n in nodes for k in n["Resources"] if k.startswith("accelerator")}
    )
    accelerator = next((h for h in have if h.lower() == asked.lower()), asked)
    gpus = _gpus(nodes, f"accelerator_type:{accelerator}")
    if not gpus:
        raise ConfigError(
            f"--accelerator {asked}: the Ray cluster has no GPU of that type "
            f"(it has: {', '.join(have) or 'no typed GPUs'})"
        )
    return accelerator, "gpu", shards or gpus


def _task_options(shard: _Shard) -> dict[str, Any]:
    # SPREAD: one CPU shard per node while nodes last (by default Ray packs them onto one).
    asked: dict[str, Any] = {
        "max_retries": _RAY_RETRIES,
        "retry_exceptions": False,
        "scheduling_strategy": "SPREAD",
    }
    if shard.gpu:
        asked["num_gpus"] = 1
        if shard.accelerator:
            asked["accelerator_type"] = shard.accelerator
    else:
        asked["num_cpus"] = 1
    return asked


# --- on the worker -----------------------------------------------------------------------


class _Collector:
    """A Ray actor on the driver's node: every line each shard streamed, kept as it arrives,
    so a retried shard can ask what it already finished and the driver can drain the rest."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}
        self._outbox: list[tuple[str, str | None, dict[str, Any] | None]] = []
        self._attempts: dict[str, int] = {}

    def begin(self, key: str, note: dict[str, Any]) -> int:
        self._attempts[key] = self._attempts.get(key, 0) + 1
        self._outbox.append((key, None, {**note, "attempt": self._attempts[key]}))
        return self._attempts[key]

    def put(self, key: str, lines: list[str]) -> None:
        self._lines.setdefault(key, []).extend(lines)
        self._outbox.extend((key, line, None) for line in lines)

    def finished(self, key: str) -> list[str]:
        done = []
        for line in self._lines.get(key, []):
            event = json.loads(line)
            if event.get("event") == "case" and event.get("record") is not None:
                done.append(event["nodeid"])
        return done

    def drain(self) -> list[tuple[str, str | None, dict[str, Any] | None]]:
        out, self._outbox = self._outbox, []
        return out

    def attempts(self) -> dict[str, int]:
        return dict(self._attempts)


class _Tail:
    """The complete lines a shard's sweep has appended to its records stream since last read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offset = 0

    def read(self) -> list[str]:
        found = sorted(self.folder.glob("run-*.records.jsonl"))
        if not found:
            return []
        with found[0].open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [line for line in complete.decode("utf-8").splitlines() if line.strip()]


def _temp_prefix(run_id: str, key: str) -> str:
    return f"archbench-{run_id}-{key.replace('/', '-')}-"


def _remove_temp_folders(prefix: str) -> None:
    for stale in Path(tempfile.gettempdir()).glob(prefix + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _threads_here(ray: Any, gpu: bool, per_node: int) -> int:
    """Torch threads for this shard: the node's cores over the shards it runs (the plain sweep's
    rule; Ray's own OMP_NUM_THREADS=1 would time every CPU op on one core)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if gpu:
        node_id = ray.get_runtime_context().get_node_id()
        found = [n["Resources"].get("GPU", 1) for n in ray.nodes() if n["NodeID"] == node_id]
        per_node = int(found[0]) if found else 1
    return max(1, (cpus or 1) // max(1, per_node))


def _shard_task(
    command: list[str], gpu: bool, collector: Any, key: str, per_node: int, run_id: str
) -> dict:
    """Runs on a Ray worker: one shard's `archbench sweep`, its records streamed to `collector`
    as cases finish; a retry skips the cases an earlier attempt finished."""
    import ray

    threads = _threads_here(ray, gpu, per_node)
    note = {
        "node": platform.node(),
        "ray_node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "threads": threads,
    }
    attempt = ray.get(collector.begin.remote(key, note))
    done = ray.get(collector.finished.remote(key))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    prefix = _temp_prefix(run_id, key)
    _remove_temp_folders(prefix)  # a dead attempt's: its cases came home
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        skip = Path(folder) / "skip.json"
        skip.write_text(json.dumps(done), encoding="utf-8")
        argv = [folder if part == "{out}" else part for part in command]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if not gpu:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU shard must not touch a GPU it was not given
        log_path = Path(folder) / "shard.log"
        with log_path.open("w", encoding="utf-8") as log:
            child = subprocess.Popen(
                [*argv, "--archbench-skip", str(skip)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped by this task only, once
                preexec_fn=parent_death_signal(),  # and by the worker's death
            )
            returncode = _follow(ray, child, collector, key, _Tail(Path(folder)))
        from archbench.instrument.sweep.multisweep import shard_json

        return {
            "node": platform.node(),
            "device": f"cuda:{visible.split(',')[0]}" if gpu and visible else "cpu",
            "returncode": returncode,
            "json": shard_json(Path(folder)),
            "log_tail": log_path.read_text(encoding="utf-8", errors="replace")[-65536:],
            "threads": threads,
            "attempt": attempt,
        }


def _follow(ray: Any, child: subprocess.Popen, collector: Any, key: str, tail: _Tail) -> int:
    """Stream the shard's finished cases until it ends; on ray.cancel stop it, stream what it
    finished, and let the cancel through."""
    try:
        while child.poll() is None:
            _push(ray, collector, key, tail)
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        _stop_child(child)
        _push(ray, collector, key, tail)
        raise
    _push(ray, collector, key, tail)
    return child.returncode


def _push(ray: Any, collector: Any, key: str, tail: _Tail) -> None:
    lines = tail.read()
    if lines:
        ray.get(collector.put.remote(key, lines))  # stored before the shard goes on


def _stop_child(child: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signal.SIGINT)  # the shard's sweep stops its pytest
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


# --- on the driver -----------------------------------------------------------------------


class _Driver:
    """Starts the shards, keeps what they stream on this disk, and settles each one."""

    def __init__(self, ray, plan, options, shard_root, echo, case_timeout) -> None:
        self.ray, self.echo, self.shard_root = ray, echo, shard_root
        self.shards = [
            _Shard(
                key=f"{accelerator}/{index}" if accelerator else str(index),
                index=index,
                n_shards=n_shards,
                accelerator=accelerator,
                gpu=kind == "gpu",
            )
            for accelerator, kind, n_shards in plan
            for index in range(n_shards)
        ]
        self.options, self.case_timeout = options, case_timeout
        self.progress: dict[str, Progress] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.reasons: dict[str, str] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.stopped: str | None = None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpu_shards = sum(not s.gpu for s in self.shards)
        self.per_node = max(1, math.ceil(cpu_shards / max(1, len(nodes))))

    def run(self, stopper: Stopper):
        ray = self.ray
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.collector = (
            ray.remote(_Collector)
            .options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
            )
            .remote()
        )
        _preflight(ray, gpu_only=all(shard.gpu for shard in self.shards))
        task = ray.remote(_shard_task)
        pending = {}
        for shard in self.shards:
            folder = self.shard_root / f"shard{shard.key.replace('/', '-')}"
            folder.mkdir(parents=True, exist_ok=True)
            self.progress[shard.key] = Progress(
                folder / "records.jsonl", self.echo, prefix=f"[{shard.key}] "
            )
            command = self._command(shard)
            ref = task.options(**_task_options(shard)).remote(
                command, shard.gpu, self.collector, shard.key, self.per_node, self.shard_root.name
            )
            pending[ref] = shard
        self._wait(pending, stopper)
        self._sweep_temp_folders()
        return self._outcome(stopper)

    def _sweep_temp_folders(self) -> None:
        """A worker killed mid-shard leaves its temp folder: remove it on its node (its cases
        came home already), within a few seconds or not at all."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remove = self.ray.remote(_remove_temp_folders)
        refs = []
        for key, note in self.notes.items():
            if key not in self.reasons or not note.get("ray_node"):
                continue
            strategy = NodeAffinitySchedulingStrategy(note["ray_node"], soft=False)
            prefix = _temp_prefix(self.shard_root.name, key)
            with contextlib.suppress(Exception):  # its node is gone: so is the folder
                refs.append(remove.options(num_cpus=0, scheduling_strategy=strategy).remote(prefix))
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=5)

    def _command(self, shard: _Shard) -> list[str]:
        device = "cuda:0" if shard.gpu else "cpu"
        return shard_command(
            self.options, device, Path("{out}"), shard.index, shard.n_shards, self.case_timeout
        )

    def _wait(self, pending: dict, stopper: Stopper) -> None:
        while pending and not stopper.received:
            self._settle_ready(pending)
        if not pending:
            return
        name = self.stopped = signal.Signals(stopper.signum).name
        self.echo(
            f"interrupted by {name}: stopping {len(pending)} shard(s) and keeping every finished "
            "case (send it again to stop at once)"
        )
        for ref in pending:
            self.ray.cancel(ref)  # the task stops its sweep and streams what finished
        deadline = time.monotonic() + _STOP_GRACE_S
        while pending and time.monotonic() < deadline and len(stopper.received) < 2:
            self._settle_ready(pending)
        for ref, shard in pending.items():
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            self.reasons[shard.key] = f"stopped by {name} before it finished"
        pending.clear()
        self._drain()

    def _settle_ready(self, pending: dict) -> None:
        ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=_POLL_S)
        self._drain()
        for ref in ready:
            self._settle(ref, pending.pop(ref))

    def _drain(self) -> None:
        with contextlib.suppress(Exception):  # the actor's node lost: what came is on disk
            for key, line, note in self.ray.get(self.collector.drain.remote(), timeout=30):
                progress = self.progress[key]
                if note is not None:
                    self.notes[key] = note
                    again = f" (Ray's retry {note['attempt'] - 1})" if note["attempt"] > 1 else ""
                    self.echo(
                        f"[{key}] on {note['node']} (Ray node {note['ray_node'][:8]}), worker "
                        f"pid {note['pid']}, {note['threads']} torch threads{again}"
                    )
                    continue
                with progress.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            for progress in self.progress.values():
                progress.poll()

    def _settle(self, ref: Any, shard: _Shard) -> None:
        try:
            result = self.ray.get(ref)
        except Exception as error:  # lost beyond its retries, or failed: its cases came home
            self.reasons[shard.key] = self._failure(shard, error)
            self.echo(f"[{shard.key}] {self.reasons[shard.key]}")
            return
        self.results[shard.key] = result
        if result["json"] is None and not _had_no_cases(result["log_tail"]):
            why = _last_error_line(result["log_tail"]) or "no output"
            self.reasons[shard.key] = f"no result (exit {result['returncode']}): {why}"
            self.echo(f"[{shard.key}] {self.reasons[shard.key]}")
            return
        folder = self.shard_root / f"shard{shard.key.replace('/', '-')}"
        (folder / "shard.log").write_text(result["log_tail"], encoding="utf-8")
        cases = len((result["json"] or {}).get("benchmarks") or [])
        self.echo(f"[{shard.key}] done on {result['node']}: {cases} cases")

    def _failure(self, shard: _Shard, error: BaseException) -> str:
        attempts = 1
        with contextlib.suppress(Exception):
            attempts = self.ray.get(self.collector.attempts.remote(), timeout=30).get(shard.key, 1)
        cause = _cause(error)
        if self.stopped is not None:
            return f"stopped by {self.stopped} before it finished"
        if attempts > 1:
            return f"lost after {attempts - 1} {'retry' if attempts == 2 else 'retries'}: {cause}"
        return f"failed: {cause}"

    def _outcome(self, stopper: Stopper):
        """(shard runs, [(key, lost case)], [(key, shard entry)], failure lines)."""
        runs, lost, entries, failed = [], [], [], []
        for shard in self.shards:
            run, my_lost, entry = self._shard_outcome(shard, stopper)
            if run is not None:
                runs.append(run)
            lost += [(shard.key, e) for e in my_lost]
            entries.append((shard.key, entry))
            if shard.key in self.reasons:
                failed.append(f"shard {shard.key}: {self.reasons[shard.key]}")
        lost += self._not_collected(runs, lost)
        return runs, lost, entries, failed

    def _not_collected(self, runs, lost) -> list[tuple[str, dict[str, str]]]:
        """Cases some node collected that no shard ran or lost: another node could not collect
        them (an extra missing there), so its split left them out."""
        accounted = {e["case"] for _key, e in lost}
        for run in runs:
            accounted |= _done(dict(run.data))
        for shard in self.shards:
            accounted |= set(self.progress[shard.key].plan or ())
        missing = []
        seen: dict[str, list[str]] = {}
        for shard in self.shards:
            for nodeid in self.progress[shard.key].collected_ids or ():
                seen.setdefault(nodeid, []).append(shard.key)
        counts = {
            s.key: len(self.progress[s.key].collected_ids)
            for s in self.shards
            if self.progress[s.key].collected_ids is not None
        }
        for nodeid, keys in seen.items():
            if nodeid not in accounted:
                others = sorted(set(counts) - set(keys))
                reason = (
                    f"not run: shard(s) {', '.join(others)} collected {min(counts.values())} of "
                    f"{max(counts.values())} cases on their node (an extra missing there?)"
                )
                missing.append((keys[0], {"case": nodeid, "reason": reason}))
        return missing

    def _shard_outcome(self, shard: _Shard, stopper: Stopper):
        """(its run or None, its lost cases, its archbench_run.shards entry) for one shard."""
        progress = self.progress[shard.key]
        result = self.results.get(shard.key) or {}
        note = self.notes.get(shard.key) or {}
        data = _shard_data(progress, result.get("json"))
        my_lost = _shard_lost(shard, progress, result, data, self.reasons.get(shard.key))
        node = result.get("node") or note.get("node")
        device = result.get("device") or ("cuda:0" if shard.gpu else "cpu")
        entry = _ray_shard_entry(shard, progress, note, data, my_lost, node, device)
        run = None
        if data is not None and data.get("benchmarks"):
            run = ShardRun(
                index=shard.index,
                device=device,
                data=data,
                node=node,
                accelerator=shard.accelerator,
                complete=not my_lost and shard.key not in self.reasons,
            )
        return run, my_lost, entry


def _shard_lost(shard: _Shard, progress: Progress, result: dict, data, reason: str | None):
    """The cases a shard lacks: its sweep's own account when it wrote a JSON (less what an
    earlier attempt streamed), else its plan less what it streamed, else the whole shard."""
    if result.get("json") is not None:
        inner = result["json"].get("archbench_run") or {}
        return [e for e in inner.get("lost") or [] if e["case"] not in _done(data)]
    if progress.plan is not None:
        return lost_cases(progress.plan, progress.cases, reason or "not run")
    return [{"case": f"shard {shard.key}", "reason": reason or "never started"}]


def _ray_shard_entry(shard, progress, note, data, my_lost, node, device) -> dict[str, Any]:
    """A Ray shard's archbench_run.shards entry: where it ran, what it did, how many tries."""
    done = len(_done(data)) if data else 0
    entry = shard_entry(
        shard.index,
        progress.session,
        node=node,
        device=device,
        torch_threads=None if progress.session else note.get("threads"),
        cases_done=done,
        cases_total=done + len(my_lost),
    )
    entry["ray_node"] = note.get("ray_node")  # hosts may share a name; Ray's node id not
    if progress.collected_ids is not None:
        entry["collected"] = len(progress.collected_ids)
    entry["attempts"] = note.get("attempt")
    return entry


def _probe_node(executable: str) -> dict[str, Any]:
    """Runs on each node before any shard: can it run the shards' command?"""
    from importlib import metadata

    found = {}
    for package in ("ppo-archbench", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return {"python": os.access(executable, os.X_OK), **found}


def _preflight(ray: Any, gpu_only: bool = False) -> None:
    """Refuse in one line, before any work, a node that lacks the driver's interpreter path or
    the project (each shard runs `sys.executable -m archbench.instrument.sweep.runner` there).
    With GPU shards only, nodes without a GPU (a head that only coordinates) are not asked."""
    import sys
    from importlib import metadata

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if gpu_only:
        nodes = [n for n in nodes if n["Resources"].get("GPU", 0) > 0]
    probe = ray.remote(_probe_node)
    refs = [
        probe.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(sys.executable)
        for n in nodes
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=CONNECT_TIMEOUT_S * 3)
    mine = {p: metadata.version(p) for p in ("ppo-archbench", "torch")}
    problems = []
    for node, ref in zip(nodes, refs, strict=True):
        where = node.get("NodeManagerAddress") or node["NodeID"][:8]
        if ref not in ready:
            problems.append(f"node {where} did not answer")
            continue
        found = ray.get(ref)
        if not found["python"]:
            problems.append(f"node {where} has no {sys.executable}")
        elif found["ppo-archbench"] is None:
            problems.append(f"node {where} lacks ppo-archbench")
        elif found["torch"] != mine["torch"]:
            problems.append(f"node {where} has torch {found['torch']}, this one {mine['torch']}")
    if problems:
        raise ArchbenchError(
            f"--ray: {'; '.join(problems[:3])}: every node needs this checkout installed at the "
            f"same path with the same torch (the shards run {sys.executable} there)"
        )


def _done(data: dict[str, Any] | None) -> set[str]:
    return set(finished_cases(data)) if data else set()


def _shard_data(progress: Progress, final: dict[str, Any] | None) -> dict[str, Any] | None:
    """The shard's run: its sweep's own JSON when it wrote one, plus every case an earlier
    attempt streamed; without one, the streamed records alone."""
    from archbench.instrument.runfile import fold_in

    streamed = None
    if progress.records:
        path = progress.path.with_name("streamed.json")
        write_json_from_records(path, progress.session, progress.records)
        streamed = json.loads(path.read_text(encoding="utf-8"))
    if final is None:
        return streamed
    return fold_in(final, streamed) if streamed else final


def _had_no_cases(output: str) -> bool:
    """The shard's sweep said it collected nothing: fewer cases than shards."""
    return re.search(r"^collected 0 cases$", output, re.MULTILINE) is not None


def _one_line(text: str) -> str:
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _last_error_line(text: str) -> str | None:
    """The line that says what went wrong: the last one naming an error, else the last."""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"error|exception|refused|cannot|not found", line, re.IGNORECASE):
            return line[:300]
    return lines[-1][:300] if lines else None


def _cause(error: BaseException) -> str:
    """A failed task's cause in one line, without Ray's frame header or colour codes."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return f"{type(cause).__name__}: {_one_line(str(cause))}"
    return _last_error_line(str(error)) if "Traceback" in str(error) else _one_line(str(error))
