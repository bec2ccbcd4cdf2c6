"""The run file: pytest-benchmark JSON whose cases carry archbench records, plus the sweep's
`archbench_run` section. This module alone writes, merges, reads and migrates it (torch-free).

Format history (the label stays `archbench/1`: every change below only added fields, and the
migrations at the end of this module give a record read from an older file the same fields):

- 2026-11, archbench/1: a pytest-benchmark JSON (`benchmarks[].extra_info.archbench` is one
  record per case, the shape in archbench.instrument.record); cases that measured nothing
  (OOM, a backend not installed) are entries with `stats: null`.
- a run rebuilt from its records stream (a killed sweep) has `version: "archbench-records"`
  and no timing stats.
- a merged sharded run (`archbench sweep --devices/--ray`): each record names its `device`,
  `device_uuid`, `gpu_name`, `gpu_memory_bytes`, `node`, `cpu_model` and `shard`;
  machine_info gains `archbench_shards`.
- records gained `status`/`reason` (OOM and errors recorded), `precision`, `series` (the
  overfit suite's per-bar figures) and `workload` (issue 23: which task was measured); overfit
  cases gained `bars_per_year` (before it, the dataset's name implied it).
- train records written before the suite timed the whole iteration (`train_env_steps_per_s`)
  carry their rollout-only rate as `env_steps_per_s`, today's `rollout_env_steps_per_s`. Not
  renamed here: the report's throughput chart plots the old name, so renaming would change the
  pages of old runs; archbench.reports.estimates reads both names.
- 2026-12, issue 24: the top-level `archbench_run` section: {"incomplete", "lost": [{"case",
  "reason"}], "shards": [{"index", "node", "device", "torch_threads", "commit", "python",
  "torch", "cuda", "driver", "cases_done", "cases_total"}], "mismatch": [line], "options":
  the sweep's options (for --resume), "resumed_from", "stopped_by"}; a run without it is
  read as complete.
"""

from __future__ import annotations

import copy
import gzip
import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archbench.instrument.record import SCHEMA
from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = [
    "RUN_KEY",
    "SCHEMA",
    "RunFileError",
    "ShardRun",
    "attach_run",
    "finished_cases",
    "fold_in",
    "lost_cases",
    "merge_shards",
    "mismatches",
    "previous_run",
    "read_run",
    "record_entry",
    "run_from_records",
    "run_records",
    "run_section",
    "shard_entry",
    "write_merged",
    "write_run",
]

RUN_KEY = "archbench_run"
_VERSION_KEYS = ("commit", "python", "torch", "cuda", "driver", "collected")
"""What every shard of one run should share (`collected`: cases its node collected)."""


class RunFileError(ArchbenchError):
    """A run file, or one of its records, cannot be read as an archbench run."""


# -- writing ------------------------------------------------------------------------------


def write_run(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write the run at `path` through a temporary file: the run on disk is whole at every
    moment, and an earlier file at `path` stays until the new one is complete."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")


def record_entry(
    nodeid: str, record: Mapping[str, Any], *, name: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """A `benchmarks` entry for a case known only by its record (no timing stats: it measured
    nothing, or the run was rebuilt from its records stream)."""
    return {
        "group": None,
        "name": name if name is not None else nodeid.split("::")[-1],
        "fullname": nodeid,
        "params": None,
        "param": param,
        "extra_info": {"archbench": record},
        "options": {},
        "stats": None,
    }


def run_from_records(
    session: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """A run holding every streamed record (no timing stats), with the machine and commit the
    suites streamed when the session started (a sweep killed before pytest-benchmark wrote)."""
    machine = dict(session.get("machine_info") or {})
    machine.setdefault("archbench_profile", session.get("profile"))
    machine.setdefault("archbench_device", session.get("device"))
    return {
        "machine_info": machine,
        "commit_info": session.get("commit_info")
        or {"id": None, "error": "the records stream did not say"},
        "benchmarks": [record_entry(e["nodeid"], e["record"]) for e in events],
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": "archbench-records",
    }


# -- the archbench_run section ------------------------------------------------------------


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
    write_run(json_path, data)


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


# -- merging shards -----------------------------------------------------------------------


@dataclass(frozen=True)
class ShardRun:
    """What one shard left: its device and its pytest-benchmark JSON, as read."""

    index: int
    """Shard number, 0-based."""
    device: str
    """The device as the driver names it: 'cpu', or the physical 'cuda:N' on its node (the
    shard itself saw it as cuda:0, being pinned with CUDA_VISIBLE_DEVICES)."""
    data: Mapping[str, Any]
    """The shard's pytest-benchmark JSON."""
    node: str | None = None
    """The host the shard ran on (Ray: the worker node); None: the JSON's machine_info.node."""
    accelerator: str | None = None
    """The Ray accelerator type the shard asked for, if any."""
    complete: bool = True
    """The shard ran every case it was given (False: stopped, lost, or cases failed)."""


def merge_shards(shards: Sequence[ShardRun]) -> dict[str, Any]:
    """One pytest-benchmark JSON from the shards' (machine_info and commit of the first).

    Each archbench record gains where it ran: `device` (the physical device), `device_uuid`,
    `gpu_name`, `gpu_memory_bytes`, `node`, `cpu_model` and `shard`; machine_info gains
    `archbench_shards`, one entry per shard, and `archbench_device` lists every device.
    """
    if not shards:
        raise ConfigError("no shard finished, so there is nothing to merge")
    first = shards[0].data
    machine = copy.deepcopy(dict(first.get("machine_info") or {}))
    benchmarks: list[dict[str, Any]] = []
    entries = []
    for shard in shards:
        shard_benchmarks, entry = _merged_shard(shard)
        benchmarks.extend(shard_benchmarks)
        entries.append(entry)
    machine["archbench_device"] = ",".join(dict.fromkeys(s.device for s in shards))
    machine["archbench_shards"] = entries
    return {
        **{k: copy.deepcopy(v) for k, v in first.items() if k not in ("benchmarks",)},
        "machine_info": machine,
        "benchmarks": benchmarks,
    }


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
    write_run(path, merged)
    return path


def _merged_shard(shard: ShardRun) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One shard's cases, each record naming where it ran, and its `archbench_shards` entry."""
    info = shard.data.get("machine_info") or {}
    device_info = info.get("archbench") or {}
    node = shard.node or info.get("node")
    identity = {
        "device_uuid": device_info.get("gpu_uuid"),
        "gpu_name": device_info.get("gpu_name"),
        "gpu_memory_bytes": device_info.get("gpu_memory_bytes"),
        "node": node,
        "shard": shard.index,
    }
    benchmarks, cases = [], 0
    for bench in shard.data.get("benchmarks") or []:
        bench = copy.deepcopy(bench)
        record = (bench.get("extra_info") or {}).get("archbench")
        if isinstance(record, dict):
            cases += 1
            if str(record.get("device", shard.device)).startswith("cuda"):
                record["device"] = shard.device
                record.update(identity)
            else:  # a CPU case on a GPU node: that node's CPU, not its GPU
                record.update(node=node, shard=shard.index)
            record["cpu_model"] = device_info.get("cpu_model")
        benchmarks.append(bench)
    entry = {
        "index": shard.index,
        "device": shard.device,
        "accelerator": shard.accelerator,
        "cases": cases,
        "archbench": device_info,
        **{k: v for k, v in identity.items() if k not in ("shard", "gpu_memory_bytes")},
    }
    return benchmarks, entry


# -- reading ------------------------------------------------------------------------------


def read_run(path: str | Path) -> dict[str, Any]:
    """The run at `path` (.json, or gzip'd whatever its name) as a dict whose records are
    migrated to the current fields; RunFileError naming the file and the problem otherwise."""
    path = Path(path)
    data = _parse(_read_text(path), path)
    _check_run_section(data.get(RUN_KEY), path)
    for where, bench in _archbench_cases(data, path):
        bench["extra_info"]["archbench"] = _migrate(bench["extra_info"]["archbench"], where)
    return data


def run_records(data: Mapping[str, Any], path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) for each case of a run read by read_run that holds a record, `where`
    naming the file and the case for an error message; plain pytest-benchmark cases of other
    suites are not ours and are left out."""
    return [
        (where, bench["extra_info"]["archbench"])
        for where, bench in _archbench_cases(data, Path(path))
    ]


def _read_text(path: Path) -> str:
    """The file's text; gzip'd files (by their magic bytes, whatever the name) are unpacked."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except OSError as error:
        raise RunFileError(f"{path}: cannot read ({error})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise RunFileError(f"{path}: a damaged or cut gzip file ({error})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunFileError(f"{path}: not a text JSON file ({error})") from None


def _parse(text: str, path: Path) -> dict[str, Any]:
    if not text.strip():
        raise RunFileError(f"{path}: file is empty (did the benchmark run finish?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunFileError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except RecursionError:
        raise RunFileError(f"{path}: not a benchmark file (JSON nested too deeply)") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise RunFileError(
            f"{path}: not a pytest-benchmark file (no 'benchmarks' list); "
            "write one with `pytest bench/ --benchmark-json run.json`"
        )
    return data


def _check_run_section(state: Any, path: Path) -> None:
    """The sweep's `archbench_run`, if the run has one (a run without it is read as complete),
    must hold its lost cases and mismatches as lists."""
    if state is None:
        return
    if not isinstance(state, dict):
        raise RunFileError(f"{path}: {RUN_KEY} is a {type(state).__name__}, expected an object")
    lost = state.get("lost") or []
    if not isinstance(lost, list) or not all(isinstance(x, dict) for x in lost):
        raise RunFileError(f"{path}: {RUN_KEY}.lost is not a list of objects")
    if not isinstance(state.get("mismatch") or [], list):
        raise RunFileError(f"{path}: {RUN_KEY}.mismatch is not a list")


def _archbench_cases(data: Mapping[str, Any], path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) for each case holding an archbench record; a case that is not an object
    is refused, one with no record (another suite's) skipped."""
    cases = []
    for index, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise RunFileError(
                f"{path}: benchmarks[{index}] is a {type(bench).__name__}, expected an object"
            )
        extra = bench.get("extra_info") or {}
        if isinstance(extra, dict) and "archbench" in extra:
            name = bench.get("fullname") or bench.get("name") or index
            cases.append((f"{path}: benchmark {name!r}", bench))
    return cases


# -- migrating old records ------------------------------------------------------------------


@dataclass(frozen=True)
class _Migration:
    """One upgrade of records written before a field existed."""

    name: str
    """What it upgrades, for a reader of this list."""
    applies: Callable[[Mapping[str, Any]], bool]
    """True for a record in the format this step upgrades."""
    upgrade: Callable[[dict[str, Any]], None]
    """Adds the missing field(s) in place, with the value the older format meant."""


_KNOWN_BARS_PER_YEAR = {
    "synthetic": 8766.0,
    "sp500": 252.0,
    "nasdaq": 252.0,
    "googl": 252.0,
    "eurusd-1h": 6280.0,
}
"""Bars per year of the datasets bench/ runs, for overfit records written before the suite put
`bars_per_year` (MarketData.periods_per_year) into its case: synthetic is hourly 24/7
(365.25 x 24), equities trade ~252 days a year, hourly EUR/USD ~6,280 bars (weekends absent)."""


def _known_bars_per_year(record: Mapping[str, Any]) -> float | None:
    """The bars per year an overfit record's dataset name implies, when its case does not
    carry a positive `bars_per_year` of its own; None otherwise (nothing to upgrade)."""
    case = record.get("case")
    if record.get("suite") != "overfit" or not isinstance(case, dict):
        return None
    recorded = case.get("bars_per_year")
    if isinstance(recorded, int | float) and recorded > 0:
        return None
    name = case.get("dataset")
    return _KNOWN_BARS_PER_YEAR.get(name.strip().lower()) if isinstance(name, str) else None


def _add_bars_per_year(record: dict[str, Any]) -> None:
    # A new case dict: the record was copied shallowly, and the file's own case stays as read.
    record["case"] = {**record["case"], "bars_per_year": _known_bars_per_year(record)}


_MIGRATIONS = (
    # archbench/1 before OOMs and errors were recorded: every record was a finished measurement.
    _Migration(
        "status and reason",
        lambda r: "status" not in r,
        lambda r: r.update(status="ok", reason=r.get("reason")),
    ),
    # Before records named their arithmetic (fp32/tf32/bf16), the case said it where it
    # mattered; None means "not recorded", not a guess.
    _Migration("precision", lambda r: "precision" not in r, lambda r: r.update(precision=None)),
    # The writer leaves `series` out where a suite has no per-bar figures (all but overfit,
    # and overfit before its curves): read as none, one shape for every record.
    _Migration("series", lambda r: "series" not in r, lambda r: r.update(series={})),
    # Before issue 23 a record did not say which task it measured: the task is unknown (None),
    # and the engine never pools an unknown task with a known one.
    _Migration("workload", lambda r: "workload" not in r, lambda r: r.update(workload=None)),
    # Before the overfit suite recorded `bars_per_year` in its case (to annualise Sharpe and
    # date a dataset's length), the dataset's name said it for the datasets bench/ runs; a
    # name not in _KNOWN_BARS_PER_YEAR stays without one (its duration is unknown, not guessed).
    _Migration(
        "overfit case bars_per_year",
        lambda r: _known_bars_per_year(r) is not None,
        _add_bars_per_year,
    ),
)
"""The format history, oldest first; each step makes an older record look like a new one."""


def _migrate(record: Any, where: str) -> dict[str, Any]:
    """`record` (as read from a run file) in the current format, a copy; RunFileError for a
    record that is not an object or carries a schema this version does not know."""
    if not isinstance(record, dict):
        raise RunFileError(
            f"{where}: extra_info.archbench is a {type(record).__name__}, not a record"
        )
    schema = record.get("schema")
    if schema != SCHEMA:
        raise RunFileError(
            f"{where}: record schema is {schema!r}, this version of archbench reads {SCHEMA!r}"
        )
    record = dict(record)
    for step in _MIGRATIONS:
        if step.applies(record):
            step.upgrade(record)
    return record
