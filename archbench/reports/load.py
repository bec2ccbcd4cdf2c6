"""Read pytest-benchmark JSON files written by the bench suites into one tidy DataFrame.

One row per (run, record, metric); every malformed file or entry raises `ReportError` naming both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from archbench.instrument.record import SUITES
from archbench.instrument.runfile import RUN_KEY, SCHEMA, RunFileError, read_run, run_records

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SUITES",
    "ReportError",
    "case_label",
    "load_run",
    "load_runs",
    "missing_suites",
    "run_info",
    "run_name",
    "suite_verdict",
]

# Run-level columns repeat on every row so that any filtered frame still says where it came from.
RUN_COLUMNS = (
    "run",
    "path",
    "machine",
    "gpu",
    "device",
    "profile",
    "cpu_model",
    "gpu_memory_bytes",
    "torch_version",
    "cuda_version",
    "driver_version",
    "commit",
    "dirty",
    "datetime",
    "run_state",
)
RECORD_COLUMNS = (
    "suite",
    "preset",
    "hidden_dims",
    "params",
    "trunk",
    "obs_dim",
    "status",
    "reason",
    "case",
    "case_dict",
    "record_predicted",
    "series",
    "workload",
)
METRIC_COLUMNS = ("metric", "value", "unit", "better", "samples", "predicted", "unavailable")
COLUMNS = RUN_COLUMNS + RECORD_COLUMNS + METRIC_COLUMNS


class ReportError(RunFileError):
    """A benchmark JSON file or one of its entries cannot be read as archbench results."""


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One or more pytest-benchmark JSON files -> one tidy frame (columns COLUMNS + case_*)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ReportError("no benchmark JSON given: pass at least one run.json")
    frames = [load_run(p) for p in paths]
    names = [run_name(p) for p in paths]
    if len(set(names)) != len(names):
        # Same file stem in two folders (e.g. a/run.json, b/run.json): keep them apart.
        folders = [f"{p.parent.name}/{run_name(p)}" for p in paths]
        if len(set(folders)) == len(folders):
            names = folders
        else:  # the same file twice
            names = [f"{name}#{i}" for i, name in enumerate(names, start=1)]
    for frame, name in zip(frames, names, strict=True):
        frame["run"] = name
    return pd.concat(frames, ignore_index=True)


def run_name(path: str | Path) -> str:
    """The run's name: its file name without .json or .json.gz (run-x.json.gz -> run-x)."""
    name = Path(path).name
    for suffix in (".json.gz", ".gz", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name


def load_run(path: str | Path) -> pd.DataFrame:
    """One pytest-benchmark JSON file (.json or gzip'd .json.gz) -> tidy frame; the run is
    named by run_name."""
    path = Path(path)
    try:
        data = read_run(path)  # the run file's owner: old records come back migrated
    except RunFileError as error:
        raise ReportError(str(error)) from None
    info = _run_fields(data, path)
    rows: list[dict[str, Any]] = []
    for where, record in run_records(data, path):
        rows.extend(_record_rows(record, where, info))
    if not rows:
        raise ReportError(
            f"{path}: no archbench records in {len(data['benchmarks'])} benchmark(s); "
            "was it written by `pytest bench/ --benchmark-json`?"
        )
    # object dtype first, so whole numbers stay ints where some rows lack the column
    frame = pd.DataFrame(rows, dtype=object)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    case_columns = sorted(c for c in frame.columns if c.startswith("case_") and c != "case_dict")
    for column in ["params", "obs_dim", *case_columns]:
        frame[column] = _integers_stay_integers(frame[column])
    for column in ("value", "predicted", "gpu_memory_bytes"):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame[list(COLUMNS) + case_columns]


def missing_suites(df: pd.DataFrame) -> dict[str, list[str]]:
    """Per run, the suites that recorded nothing (in SUITES order)."""
    present = df.groupby("run", sort=False)["suite"].agg(set)
    return {run: [s for s in SUITES if s not in have] for run, have in present.items()}


def run_info(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the header facts: machine, GPU, torch, CUDA, commit, date, profile."""
    return df.drop_duplicates("run")[list(RUN_COLUMNS)].reset_index(drop=True)


_SUMMARY_HEADS = (
    "overfitting: test mean net return per bar",  # the walk-forward suite's
    "overfitting: validation mean net return per bar",  # logs written before the folds
)


def suite_verdict(path: str | Path) -> list[str] | None:
    """The overfitting suite's own end-of-session summary (its intervals per size and the
    verdict, e.g. 'tiny vs small intervals OVERLAP'), from the pytest log the sweep writes
    beside the run (DIR/NAME.log); None when there is no such log or it has no summary."""
    path = Path(path)
    log = path.with_name(run_name(path) + ".log")
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(_SUMMARY_HEADS)), None)
    if start is None:
        return None
    body = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        body.append(line.strip())
    return body


def case_label(case: dict[str, Any]) -> str:
    """A stable, readable key for a benchmark case: 'batch=1, backend=eager'."""
    return ", ".join(f"{k}={case[k]}" for k in sorted(case))


def _run_fields(data: dict[str, Any], path: Path) -> dict[str, Any]:
    machine = data.get("machine_info") or {}
    if not isinstance(machine, dict):
        raise ReportError(f"{path}: machine_info is a {type(machine).__name__}, expected an object")
    device = machine.get("archbench") or {}
    if not isinstance(device, dict):
        raise ReportError(f"{path}: machine_info.archbench is not an object")
    commit = data.get("commit_info") or {}
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    cpu_model = device.get("cpu_model") or cpu.get("brand_raw") or machine.get("processor")
    return {
        "run": run_name(path),
        "path": str(path),
        "machine": machine.get("node") or "unknown machine",
        "gpu": device.get("gpu_name") or "no GPU",
        "device": machine.get("archbench_device"),
        "profile": machine.get("archbench_profile"),
        "cpu_model": cpu_model or None,
        "gpu_memory_bytes": _number(
            device.get("gpu_memory_bytes"), f"{path}: machine_info.archbench.gpu_memory_bytes"
        ),
        "torch_version": device.get("torch_version"),
        "cuda_version": device.get("cuda_version"),
        "driver_version": device.get("driver_version"),
        "commit": commit.get("id") if isinstance(commit, dict) else None,
        "dirty": commit.get("dirty") if isinstance(commit, dict) else None,
        "datetime": data.get("datetime"),
        "run_state": _run_state(data),
    }


def _run_state(data: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep's own account of the run (top-level "archbench_run", checked by the run file's
    reader): incomplete, lost cases, shards, mismatches; None when the file has none."""
    state = data.get(RUN_KEY)
    if state is None:
        return None
    lost = state.get("lost") or []
    return {
        "incomplete": bool(state.get("incomplete")) or bool(lost),
        "lost": [{"case": str(x.get("case")), "reason": str(x.get("reason"))} for x in lost],
        "shards": state.get("shards") or [],
        "mismatch": [str(m) for m in state.get("mismatch") or []],
    }


def _record_rows(record: dict[str, Any], where: str, info: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of a record (one row for a case that measured nothing)."""
    _check_suite_and_metrics(record, where)
    case, dims, predicted = _checked_parts(record, where)
    status = record["status"]
    if status not in ("ok", "oom", "error"):
        raise ReportError(f"{where}: status {status!r} is not one of ok, oom, error")
    base = dict(info)
    base.update(
        suite=record["suite"],
        preset=record.get("preset"),
        hidden_dims=",".join(str(w) for w in dims) if dims else None,
        params=record.get("params"),
        trunk=record.get("trunk"),
        obs_dim=record.get("obs_dim"),
        status=status,
        reason=record.get("reason"),
        case=case_label(case),
        case_dict=dict(case),
        record_predicted=dict(predicted),
        series=_series(record["series"], where),
        workload=dict(record["workload"]) if isinstance(record["workload"], dict) else None,
    )
    _add_where(base, record)
    base.update({f"case_{k}": v for k, v in case.items()})
    metrics = record["metrics"]
    if not metrics:
        # An OOM or error case measured nothing, but the report must still show that it ran.
        return [dict(base, metric=None, value=None, unit=None, better=None, samples=())]
    return [
        dict(base, metric=name, **_metric_fields(m, f"{where}: metric {name!r}"))
        for name, m in metrics.items()
    ]


def _check_suite_and_metrics(record: dict[str, Any], where: str) -> None:
    for key in ("suite", "metrics"):
        if key not in record:
            raise ReportError(f"{where}: record has no {key!r}")
    suite = record["suite"]
    if not isinstance(suite, str) or not suite:
        raise ReportError(f"{where}: record suite {suite!r} is not a name")
    metrics = record["metrics"]
    if not isinstance(metrics, dict):
        raise ReportError(f"{where}: record metrics is a {type(metrics).__name__}, not an object")


def _checked_parts(record: dict[str, Any], where: str) -> tuple[dict, list | None, dict]:
    """The record's case, hidden_dims and predicted figures, each checked for its shape."""
    case = record.get("case") or {}
    if not isinstance(case, dict):
        raise ReportError(f"{where}: record case is a {type(case).__name__}, not an object")
    dims = record.get("hidden_dims")
    if dims is not None and (
        not isinstance(dims, list) or not all(isinstance(w, int) and w > 0 for w in dims)
    ):
        raise ReportError(f"{where}: hidden_dims {dims!r} is not a list of positive widths")
    predicted = record.get("predicted") or {}
    if not isinstance(predicted, dict):
        raise ReportError(
            f"{where}: record predicted is a {type(predicted).__name__}, not an object"
        )
    return case, dims, predicted


def _add_where(base: dict[str, Any], record: dict[str, Any]) -> None:
    """The record's own device, profile and, in a merged multi-device run, GPU and node."""
    if record.get("device"):
        base["device"] = record["device"]
    # A merged multi-device run (archbench sweep --devices/--ray) names each record's GPU and node.
    for key, column in (
        ("gpu_name", "gpu"),
        ("gpu_memory_bytes", "gpu_memory_bytes"),
        ("node", "machine"),
        ("cpu_model", "cpu_model"),
    ):
        if record.get(key) is not None:
            base[column] = record[key]
    if record.get("profile"):
        base["profile"] = record["profile"]


def _metric_fields(metric: Any, where: str) -> dict[str, Any]:
    if not isinstance(metric, dict):
        raise ReportError(f"{where} is a {type(metric).__name__}, expected an object")
    value = metric.get("value")
    unavailable = metric.get("unavailable")
    if value is None and not unavailable:
        raise ReportError(f"{where} has no value and no 'unavailable' reason")
    value = _number(value, f"{where} value")
    samples = metric.get("samples") or []
    if not isinstance(samples, list):
        raise ReportError(f"{where} samples is a {type(samples).__name__}, expected a list")
    better = metric.get("better")
    if better not in ("higher", "lower", None):
        raise ReportError(f"{where} better={better!r}, expected 'higher', 'lower' or null")
    return {
        "value": value,
        "unit": metric.get("unit"),
        "better": better,
        "samples": tuple(_number(s, f"{where} sample") for s in samples),
        "predicted": _number(metric.get("predicted"), f"{where} predicted"),
        "unavailable": unavailable,
    }


def _series(series: Any, where: str) -> dict[str, tuple[float, ...]]:
    """Per-bar series a record carries (the overfit suite's validation returns)."""
    if series is None:
        return {}
    if not isinstance(series, dict):
        raise ReportError(f"{where}: record series is a {type(series).__name__}, not an object")
    out = {}
    for name, values in series.items():
        if not isinstance(values, list):
            raise ReportError(f"{where}: series {name!r} is a {type(values).__name__}, not a list")
        numbers = tuple(_number(v, f"{where}: series {name!r} value") for v in values)
        if any(v is None for v in numbers):
            raise ReportError(f"{where}: series {name!r} has a null value")
        out[str(name)] = numbers
    return out


def _integers_stay_integers(column: pd.Series) -> pd.Series:
    """Missing entries would turn whole-number columns (bars=2000) into floats (2000.0)."""
    present = column.dropna()
    if len(present) and all(
        isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in present
    ):
        return column.astype("Int64")
    return column.infer_objects()


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{where} {value!r} is not a finite number")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ReportError(f"{where} {value!r:.40} is not a finite number") from None
    if not math.isfinite(number):
        raise ReportError(f"{where} {value!r} is not a finite number")
    return number
