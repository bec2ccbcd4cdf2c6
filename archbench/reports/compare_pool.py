"""Each side of `archbench compare` as rows to compare: records keyed by (suite, preset, case,
metric) with the seed left out, seeds pooled into samples, a status per case, the run's setup.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from archbench.reports.compare_verdicts import _FAILED
from archbench.reports.host_load import HOST_LOAD_METRIC
from archbench.reports.load import ReportError, case_label, load_runs

_MACHINE = "(machine)"


_STATUS = "(status)"


def _setup(frame: pd.DataFrame) -> dict[str, str]:
    """What each run ran with that moves timings without being the code: the profile (warm-up
    and repeats), torch threads, and the machines (shards) its records came from."""
    threads = set()
    for work in frame.get("workload", pd.Series(dtype=object)).dropna():
        if isinstance(work, dict) and work.get("torch_threads") is not None:
            threads.add(str(work["torch_threads"]))
    machines = sorted({str(m) for m in frame["machine"].dropna()})
    return {
        "profile": ", ".join(sorted({str(p) for p in frame["profile"].dropna()})) or "unknown",
        "torch threads": ", ".join(sorted(threads)) or "not recorded",
        "machines (shards)": f"{len(machines)}: {', '.join(machines)}",
    }


def _frame(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    frame = source if isinstance(source, pd.DataFrame) else load_runs([source])
    if frame["run"].nunique() != 1:
        raise ReportError("compare takes one run on each side; got a frame with several runs")
    return frame


def _name(frame: pd.DataFrame) -> str:
    return str(frame["run"].iloc[0])


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the comparison keys: machine-level preset named, seed left out of case."""
    rows = frame.copy()
    rows["record_case"] = rows["case"]
    rows["preset"] = rows["preset"].fillna(_MACHINE)
    # CPU threads do not change what a GPU measures (the ceiling case records them): two GPU
    # hosts with different core counts still compare.
    on_gpu = rows["device"].astype(str).str.startswith("cuda")
    rows["case"] = [
        case_label({k: v for k, v in c.items() if k != "seed" and not (gpu and k == "threads")})
        for c, gpu in zip(rows["case_dict"], on_gpu, strict=True)
    ]
    return rows


def _statuses(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (suite, preset, case): 'ok' when every seed ran, else the first failure and why."""
    out = []
    for (suite, preset, case), group in _keyed(frame).groupby(
        ["suite", "preset", "case"], sort=False
    ):
        failed = group[group["status"].isin(_FAILED)]
        if failed.empty:
            out.append({"suite": suite, "preset": preset, "case": case, "status": "ok",
                        "reason": None})  # fmt: skip
            continue
        oom = failed[failed["status"] == "oom"]
        first = (oom if len(oom) else failed).iloc[0]
        reason = first["reason"] if isinstance(first["reason"], str) else first["status"]
        n_records = group.drop_duplicates("record_case")["record_case"].size
        n_failed = failed.drop_duplicates("record_case")["record_case"].size
        if n_records > 1:
            reason = f"{n_failed} of {n_records} seeds: {reason}"
        out.append({"suite": suite, "preset": preset, "case": case,
                    "status": first["status"], "reason": reason})  # fmt: skip
    return pd.DataFrame(out, columns=["suite", "preset", "case", "status", "reason"])


def _pooled(frame: pd.DataFrame) -> pd.DataFrame:
    keyed = _keyed(frame)
    rows = keyed[keyed["metric"].notna() & (keyed["metric"] != HOST_LOAD_METRIC)]
    # A case that measured nothing (OOM/error) still needs a row, or the run would not show it.
    silent = keyed[keyed["metric"].isna()].drop_duplicates(["suite", "preset", "case"])
    silent = silent.merge(rows[["suite", "preset", "case"]].drop_duplicates(), how="left",
                          indicator=True)  # fmt: skip
    silent = silent[silent["_merge"] == "left_only"].drop(columns="_merge")
    out = []
    for row in silent.to_dict("records"):
        out.append({"suite": row["suite"], "preset": row["preset"], "case": row["case"],
                    "metric": _STATUS, "value": np.nan, "samples": (), "better": None,
                    "unit": None, "unavailable": None})  # fmt: skip
    for (suite, preset, case, metric), group in rows.groupby(
        ["suite", "preset", "case", "metric"], sort=False
    ):
        measured = group[group["value"].notna()]
        if len(group) > 1:  # several seeds: one figure per seed
            samples = tuple(measured["value"])
        elif len(measured):
            # A single-shot figure (a byte count, one seed) is one sample of itself.
            samples = tuple(measured["samples"].iloc[0]) or (float(measured["value"].iloc[0]),)
        else:
            samples = ()
        out.append(
            {
                "suite": suite,
                "preset": preset,
                "case": case,
                "metric": metric,
                "value": float(measured["value"].mean()) if len(measured) else np.nan,
                "samples": samples,
                "better": group["better"].iloc[0],
                "unit": group["unit"].iloc[0],
                "unavailable": None if len(measured) else group["unavailable"].iloc[0],
            }
        )
    return pd.DataFrame(
        out,
        columns=["suite", "preset", "case", "metric", "value", "samples", "better", "unit",
                 "unavailable"],
    )  # fmt: skip
