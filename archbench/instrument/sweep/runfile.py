"""The run file's `archbench_run` section, written by every sweep: is the run complete, which
cases it lacks and why, where each shard ran and whether the shards agree; and resume's reading.

Format history: `archbench_run` appeared in 2026-12 (issue 24); a run without it is read as
complete. {"incomplete", "lost": [{"case", "reason"}], "shards": [{"index", "node", "device",
"torch_threads", "commit", "python", "torch", "cuda", "driver", "cases_done", "cases_total"}],
"mismatch": [line], "options": the sweep's options (for --resume), "resumed_from", "stopped_by"}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError

__all__ = [
    "RUN_KEY",
    "attach_run",
    "finished_cases",
    "fold_in",
    "lost_cases",
    "mismatches",
    "previous_run",
    "run_section",
    "shard_entry",
]

RUN_KEY = "archbench_run"
_VERSION_KEYS = ("commit", "python", "torch", "cuda", "driver", "collected")
"""What every shard of one run should share (`collected`: cases its node collected)."""


def shard_entry(
    index: int,
    session: Mapping[str, Any],
    *,
    cases_done: int,
    cases_total: int | None,
    node: str | None = None,
    device: str | None = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """One shard's line: where it ran and with what, from its records stream's session event."""
    machine = session.get("machine_info") or {}
    info = machine.get("archbench") or {}
    return {
        "index": index,
        "node": node or machine.get("node"),
        "device": device or session.get("device"),
        "torch_threads": torch_threads if torch_threads is not None else info.get("torch_threads"),
        "commit": (session.get("commit_info") or {}).get("id"),
        "python": machine.get("python_version"),
        "torch": info.get("torch_version"),
        "cuda": info.get("cuda_version"),
        "driver": info.get("driver_version"),
        "cases_done": cases_done,
        "cases_total": cases_total,
    }


def lost_cases(
    plan: Sequence[str] | None, events: Iterable[Mapping[str, Any]], not_run: str
) -> list[dict[str, str]]:
    """Cases of `plan` without a record: failed ones with their reason, the rest `not_run`."""
    seen: dict[str, Mapping[str, Any]] = {}
    for event in events:
        seen[event["nodeid"]] = event
    lost = []
    for nodeid in plan or ():
        event = seen.get(nodeid)
        if event is None:
            lost.append({"case": nodeid, "reason": not_run})
        elif event.get("record") is None and event.get("outcome") == "failed":
            lost.append({"case": nodeid, "reason": str(event.get("message") or "failed")})
    return lost


def mismatches(shards: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per version that differs between shards (a run should be one environment)."""
    lines = []
    for key in _VERSION_KEYS:
        values = {s["index"]: s.get(key) for s in shards if s.get(key) is not None}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"shard {i} {v}" for i, v in values.items())
            lines.append(f"{key} differs: {shown}")
    return lines


def run_section(
    *,
    lost: Sequence[Mapping[str, str]],
    shards: Sequence[Mapping[str, Any]],
    options: Mapping[str, Any],
    stopped_by: str | None = None,
    resumed_from: str | None = None,
) -> dict[str, Any]:
    """The `archbench_run` object: incomplete when a case was lost or the sweep was stopped."""
    return {
        "incomplete": bool(lost) or stopped_by is not None,
        "lost": [dict(entry) for entry in lost],
        "shards": [dict(entry) for entry in shards],
        "mismatch": mismatches(shards),
        "options": dict(options),
        "stopped_by": stopped_by,
        "resumed_from": resumed_from,
    }


def attach_run(
    json_path: Path, section: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> None:
    """Write `section` into the run at json_path (and a resumed run's earlier cases before its
    own), through a temporary file: the run on disk is whole at every moment."""
    data = json.loads(json_path.read_text(encoding="utf-8"))
    if previous is not None:
        data = fold_in(data, previous)
    data[RUN_KEY] = dict(section)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")


def finished_cases(data: Mapping[str, Any]) -> list[str]:
    """Node ids of the run's cases that hold a record (what a resume does not redo)."""
    return [
        bench["fullname"]
        for bench in data.get("benchmarks") or []
        if isinstance((bench.get("extra_info") or {}).get("archbench"), dict)
    ]


def fold_in(new: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """`new` with the earlier run's cases before its own (a case in both: the new one)."""
    mine = {bench["fullname"] for bench in new.get("benchmarks") or []}
    earlier = [b for b in previous.get("benchmarks") or [] if b.get("fullname") not in mine]
    return {**new, "benchmarks": earlier + list(new.get("benchmarks") or [])}


def previous_run(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """--resume PATH: a run JSON, or a folder holding exactly one (the sweep's --out of that
    run) -> (its path, its contents); ArchbenchError naming the problem otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        runs = sorted(p for p in path.glob("run-*.json") if p.is_file())
        if len(runs) != 1:
            found = ", ".join(p.name for p in runs[:4]) or "none"
            raise ArchbenchError(
                f"--resume {path}: give the run's JSON; this folder holds {len(runs)} runs "
                f"({found})"
            )
        path = runs[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchbenchError(f"--resume {path}: no such file") from None
    except (OSError, ValueError) as error:
        raise ArchbenchError(f"--resume {path}: not a readable run JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ArchbenchError(f"--resume {path}: not a pytest-benchmark run (no 'benchmarks' list)")
    return path, data
