"""The report's HTML tables: run header, missing suites, recommendations, use-case rules,
sizing (predicted vs measured), fastest agreeing backend and every figure not measured.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from archbench_reports.evidence import MEMORY_SAFETY_MARGIN, preset_summary
from archbench_reports.load import missing_suites, run_info
from archbench_reports.use_cases import USE_CASES, Decision, Limits

__all__ = [
    "AGREEMENT_THRESHOLD",
    "backend_table",
    "header_table",
    "missing_note",
    "recommendations_table",
    "record_predicted",
    "sizing_table",
    "unavailable_table",
    "use_case_table",
]


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "&ndash;"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric=()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = " class='num'" if i in numeric else ""
            text = cell if isinstance(cell, _Raw) else _e(cell)
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Cell content that is already HTML."""


def header_table(df: pd.DataFrame) -> str:
    """One column per run: its machine, GPU, CPU, torch, CUDA, driver, commit, date, profile."""
    info = run_info(df)
    # A merged multi-device run has these per record: show every value it holds.
    per_record = ("machine", "gpu", "gpu_memory_bytes", "cpu_model", "device")
    fields = [
        ("machine", "machine"),
        ("GPU", "gpu"),
        ("GPU memory", "gpu_memory_bytes"),
        ("CPU", "cpu_model"),
        ("device", "device"),
        ("torch", "torch_version"),
        ("CUDA", "cuda_version"),
        ("driver", "driver_version"),
        ("commit", "commit"),
        ("date", "datetime"),
        ("profile", "profile"),
    ]
    rows = []
    for label, column in fields:
        cells: list[object] = [label]
        for _, run in info.iterrows():
            value = run[column]
            if column in per_record:
                values = df.loc[df["run"] == run["run"], column].dropna().unique().tolist()
                if column == "gpu_memory_bytes":
                    values = [f"{v / 2**30:.1f} GiB" for v in values]
                value = ", ".join(str(v) for v in values) if values else None
            if column == "commit" and isinstance(value, str):
                value = value[:12] + (" (dirty)" if run["dirty"] else "")
            if column == "cuda_version" and value is None:
                value = "none (CPU run)" if run["gpu"] == "no GPU" else None
            cells.append(value)
        rows.append(cells)
    return _table(["", *info["run"]], rows)


def missing_note(df: pd.DataFrame) -> str:
    """Which runs lack which suites (their figures say 'no data'), or that none does."""
    missing = {run: suites for run, suites in missing_suites(df).items() if suites}
    if not missing:
        return "<p class='note'>Every suite recorded results.</p>"
    items = "".join(
        f"<li><b>{_e(run)}</b>: no {_e(', '.join(suites))} suite(s); the figures that need "
        "them say 'no data'.</li>"
        for run, suites in missing.items()
    )
    return f"<div class='warn'>Missing suites:<ul>{items}</ul></div>"


def recommendations_table(decisions: list[Decision], devices: list[str]) -> str:
    """One column per device (its runs combined per suite), one row per use case."""
    by_key = {(d.device, d.use_case.name): d for d in decisions}
    rows = []
    for use in USE_CASES:
        cells: list[object] = [use.name]
        for device in devices:
            decision = by_key[(device, use.name)]
            details = "".join(f"<li>{_e(line)}</li>" for line in decision.details)
            more = f"<details><summary>why</summary><ul>{details}</ul></details>"
            if decision.size is None:
                cells.append(_Raw(f"<span class='note'>{_e(decision.summary)}</span>{more}"))
                continue
            noise = {
                True: "<br><b>within noise</b>: the cheaper size wins the tie",
                False: "<br>beats every cheaper size beyond the measurement noise",
                None: "",
            }[decision.within_noise]
            cells.append(
                _Raw(
                    f"<b>{_e(decision.size.label)}</b> [{_e(decision.size.hidden_dims)}]<br>"
                    f"<span class='note'>{_e(decision.summary)}</span>{noise}{more}"
                )
            )
        rows.append(cells)
    return _table(["use case", *devices], rows)


def use_case_table(budgets: Limits) -> str:
    """Each use case's rule and the limits and statistics every decision uses."""
    rows = [(u.name, u.rule) for u in USE_CASES]
    memory = (
        "the run's GPU memory minus a "
        f"{MEMORY_SAFETY_MARGIN:.0%} safety margin, the CUDA context counted (none on a CPU run)"
        if budgets.memory_bytes is None
        else f"{budgets.memory_bytes / 2**30:.1f} GiB"
    )
    limited = (
        "less than one year of bars (bars / the dataset's bars per year)"
        if budgets.limited_data_bars is None
        else f"<= {budgets.limited_data_bars} bars"
    )
    stated = (
        f"Limits: batch-1 p99 latency {budgets.latency_p99_s * 1e3:g} ms; memory {memory}; "
        f"a usable rate is >= {budgets.min_throughput_fraction:.0%} of the fastest size's "
        f"whole-iteration throughput; limited data means {limited}. Every score carries a 95% "
        "interval: throughput by a bootstrap of the median iteration, p99 latency by a bootstrap "
        "of the p99, out-of-sample Sharpe by resampling seeds and (where the records carry "
        "per-bar returns) a circular block bootstrap over the validation bars, paired across "
        "sizes. The best size must beat a cheaper one beyond that interval (and for throughput "
        f"by at least {budgets.min_throughput_effect:.0%}), or the cheaper one wins. A size "
        "missing a figure its use case needs is 'not measured' and never chosen. Runs on one "
        "device combine per suite: each suite's figures come from the newest run that has it."
    )
    return (
        "<details><summary>How each use case is decided</summary>"
        + _table(["use case", "rule"], rows)
        + f"<p class='note'>{html.escape(stated)}</p></details>"
    )


def _pct_error(predicted: float | None, measured: float | None) -> str | None:
    if predicted is None or measured is None or not measured or pd.isna(predicted):
        return None
    return f"{(predicted - measured) / measured * 100:+.1f}%"


def sizing_table(df: pd.DataFrame) -> str:
    """Per run and preset: parameters, checkpoint and training memory, predicted vs measured."""
    rows = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame)
        for _, s in summary.iterrows():
            rows_p = frame[frame["preset"] == s["preset"]]
            predicted = record_predicted(rows_p)
            ckpt = rows_p[(rows_p["metric"] == "checkpoint_bytes") & rows_p["value"].notna()]
            ckpt_measured = float(ckpt["value"].iloc[0]) if len(ckpt) else None
            ckpt_predicted = predicted.get("checkpoint_bytes")
            check_predicted = s.get("memory_check_predicted")
            if check_predicted is None or pd.isna(check_predicted):
                check_predicted = predicted.get("train_bytes")
            check = s.get("memory_check_bytes")
            check = None if check is None or pd.isna(check) else check
            # The memory suite measures what any size costs the runtime (an 8-wide network's
            # peak minus its model); the model does not claim to count that part.
            overhead = rows_p[
                (rows_p["metric"] == "runtime_overhead_bytes") & rows_p["value"].notna()
            ]["value"]
            net = check - float(overhead.iloc[0]) if check is not None and len(overhead) else None
            rows.append(
                [
                    run,
                    s["preset"],
                    s["hidden_dims"],
                    _count(predicted.get("params")),
                    _count(s["params"]),
                    _mb(ckpt_predicted),
                    _mb(ckpt_measured),
                    _pct_error(ckpt_predicted, ckpt_measured),
                    _mb(check_predicted),
                    _mb(check),
                    s.get("memory_check_source") if check is not None else None,
                    _pct_error(check_predicted, check),
                    _mb(float(overhead.iloc[0])) if len(overhead) else None,
                    _pct_error(check_predicted, net) if net and net > 0 else None,
                    "OOM" if s["oom"] else "ok",
                ]
            )
    if not rows:
        return "<div class='nodata'>no data: no per-preset records in any run</div>"
    headers = [
        "run", "preset", "hidden_dims", "params predicted", "params counted",
        "checkpoint MB predicted", "checkpoint MB measured", "error",
        "train memory MB predicted", "train memory MB measured", "measured by", "error",
        "runtime MB", "error net of runtime", "status",
    ]  # fmt: skip
    return _table(headers, rows, numeric=range(3, 14)) + (
        "<p class='note'>error = (predicted - measured) / measured. runtime = the peak any size "
        "costs beyond the model (an 8-wide network's measured peak minus its prediction: "
        "interpreter, torch, BLAS buffers, allocator slack), which the model does not count. "
        "MB = 10<sup>6</sup> bytes.</p>"
    )


def record_predicted(rows: pd.DataFrame) -> dict:
    """The predicted figures the records of `rows` carry, merged (None values left out)."""
    merged: dict = {}
    for predicted in rows["record_predicted"]:
        if isinstance(predicted, dict):
            merged.update({k: v for k, v in predicted.items() if v is not None})
    return merged


def _count(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{int(value):,}"


def _mb(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{float(value) / 1e6:,.1f}"


AGREEMENT_THRESHOLD = 0.99
"""A backend whose greedy actions match eager's on fewer held-out observations than this is
not a candidate, however fast (the bench gates timing on the same figure)."""


def backend_table(df: pd.DataFrame) -> str:
    """Per run and preset: the backend with the lowest batch-1 p99 among those that agree with
    eager, its p99 next to eager's and to the weight-bytes/bandwidth floor."""
    infer = df[(df["suite"] == "infer") & (df["status"] == "ok")]
    if infer.empty or "case_batch" not in infer:
        return "<p class='note'>no data: the infer suite is missing from every run.</p>"
    infer = infer[infer["case_batch"] == 1]
    rows = []
    for (run, preset), group in infer.groupby(["run", "preset"], sort=False):
        wide = group.pivot_table(
            index="case_backend", columns="metric", values="value", aggfunc="first"
        )
        if "latency_p99_s" not in wide:
            continue
        timed = wide[wide["latency_p99_s"].notna()]
        if "action_agreement" in timed:
            timed = timed[timed["action_agreement"].fillna(1.0) >= AGREEMENT_THRESHOLD]
        if timed.empty:
            continue
        best = timed["latency_p99_s"].idxmin()
        # The floor is the prediction the suite puts beside the p50 (one forward's bytes).
        floor = group[group["metric"] == "latency_p50_s"]["predicted"].dropna()
        floor_s = float(floor.iloc[0]) if len(floor) else None
        p99 = float(timed.loc[best, "latency_p99_s"])
        eager = wide["latency_p99_s"].get("eager")
        rows.append(
            (
                run,
                preset,
                best,
                f"{p99 * 1e3:.3f}",
                "-" if eager is None or pd.isna(eager) else f"{eager * 1e3:.3f}",
                "-" if floor_s is None else f"{floor_s * 1e3:.3f}",
                "-" if not floor_s else f"{p99 / floor_s:.2f}x",
            )
        )
    if not rows:
        return "<p class='note'>no data: no backend was timed at batch 1.</p>"
    headers = ["run", "preset", "fastest agreeing backend", "p99 ms", "eager p99 ms",
               "floor ms", "p99 / floor"]  # fmt: skip
    return _table(headers, rows, numeric=(3, 4, 5, 6))


def unavailable_table(df: pd.DataFrame) -> str:
    """Every metric not measured and every case that did not pass, with the reason."""
    unavailable = df[df["unavailable"].notna()]
    failed = df[df["status"] != "ok"].drop_duplicates(["run", "suite", "preset", "case"])
    rows = [
        (r.run, r.suite, r.preset, r.case, r.metric, r.unavailable)
        for r in unavailable.itertuples()
    ] + [
        (r.run, r.suite, r.preset, r.case, r.status.upper(), r.reason) for r in failed.itertuples()
    ]
    if not rows:
        return "<p class='note'>Every figure was measured.</p>"
    return _table(["run", "suite", "preset", "case", "metric", "why"], rows)
