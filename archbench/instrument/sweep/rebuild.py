"""A run rebuilt from its streamed records (DIR/run-X.records.jsonl -> DIR/run-X.json) when
pytest-benchmark wrote no JSON: the sweep was killed, or benchmarks were disabled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archbench.instrument.runfile import run_from_records, write_run
from archbench.instrument.sweep.progress import Progress
from ppo_core.errors import ArchbenchError

__all__ = ["is_complete_json", "rebuild_run", "resolve_run", "write_json_from_records"]


def is_complete_json(path: Path) -> bool:
    """pytest-benchmark's file, if it was written whole (a killed pytest can leave half)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def write_json_from_records(
    path: Path, session: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """A pytest-benchmark-shaped JSON holding every streamed record (no timing stats), with
    the machine and commit the suites streamed when the session started."""
    write_run(path, run_from_records(session, events))


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
    progress = Progress(records_path, lambda _line: None)
    try:
        progress.poll()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArchbenchError(f"{records_path}: not an archbench records stream ({error})") from None
    if not progress.records:
        raise ArchbenchError(
            f"{records_path}: no finished case with a record in it, so there is no run to rebuild"
        )
    write_json_from_records(Path(json_path), progress.session, progress.records)
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
    if is_complete_json(target):
        return target, f"read {target} (the sweep wrote it) rather than {records.name}"
    rebuild_run(records, target)
    return target, f"rebuilt {target} from the streamed records {records}"
