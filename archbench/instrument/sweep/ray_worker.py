"""`archbench sweep --ray`, on the worker: one shard's sweep run as a Ray task, its records stream
followed and pushed line by line to the collector actor on the driver's node.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from archbench.instrument.sweep.signals import parent_death_signal

_POLL_S = 0.5


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
