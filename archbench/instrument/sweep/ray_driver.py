"""`archbench sweep --ray`, on the driver: starts the shards, keeps what they stream on its own
disk, stops them on a signal and settles each one into a shard run, its lost cases and its entry.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archbench.instrument.runfile import ShardRun, finished_cases, lost_cases, shard_entry
from archbench.instrument.sweep.multisweep import shard_command
from archbench.instrument.sweep.progress import Progress
from archbench.instrument.sweep.ray_connect import _ANSI, _one_line, _preflight
from archbench.instrument.sweep.ray_worker import (
    _POLL_S,
    _Collector,
    _remove_temp_folders,
    _shard_task,
    _temp_prefix,
)
from archbench.instrument.sweep.rebuild import write_json_from_records
from archbench.instrument.sweep.signals import Stopper

_RAY_RETRIES = 2
"""Times Ray reruns a shard whose node or worker died; a shard that fails as a test does not."""


_STOP_GRACE_S = 15.0
"""After a stop, how long the shards get to stream their last cases before they are killed."""


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
