"""The report's HTML tables: run header, missing suites, recommendations, use-case rules,
sizing (predicted vs measured), fastest agreeing backend and every figure not measured.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from archbench.instrument.aggregates import MIN_RUNS_PER_FOLD, Estimate
from archbench.reports.aggregates import Improvement, Selection, overfit_aggregates
from archbench.reports.decision_types import USE_CASES, Decision, Limits
from archbench.reports.evidence import MEMORY_SAFETY_MARGIN, RunSummary, summary_of
from archbench.reports.host_load import timing_rows
from archbench.reports.load import missing_suites, run_info

__all__ = [
    "AGREEMENT_THRESHOLD",
    "aggregates_table",
    "backend_table",
    "env_table",
    "header_table",
    "loaded_mark",
    "missing_note",
    "oos_table",
    "peer_table",
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


_SUITE_SHOWS = {
    "train": "the training throughput chart and the throughput decisions",
    "infer": "the latency chart, the backend table and the latency decisions",
    "memory": "the measured memory in the sizing table and chart",
    "overfit": "the overfitting chart, the out-of-sample table and Sharpe decisions",
    "ceiling": None,  # only `archbench pick` reads it, to scale to unmeasured GPUs
    "env": "the env-step section",
    "peer": "the SB3 peer section",
}


def missing_note(df: pd.DataFrame) -> str:
    """Which runs lack which suites and what on the page is empty for it, or that none does."""
    missing = {run: suites for run, suites in missing_suites(df).items() if suites}
    if not missing:
        return "<p class='note'>Every suite recorded results.</p>"
    items = []
    for run, suites in missing.items():
        shown = [f"{_e(s)} suite (empty without it: {_e(_SUITE_SHOWS[s])})" for s in suites
                 if _SUITE_SHOWS.get(s)]  # fmt: skip
        silent = [s for s in suites if not _SUITE_SHOWS.get(s)]
        parts = []
        if shown:
            parts.append("no " + "; no ".join(shown))
        if silent:
            parts.append(f"no {_e(', '.join(silent))} suite (nothing on this page needs it)")
        items.append(f"<li><b>{_e(run)}</b>: {'; '.join(parts)}.</li>")
    return f"<div class='warn'>Missing suites:<ul>{''.join(items)}</ul></div>"


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


def sizing_table(df: pd.DataFrame, summaries: dict[str, RunSummary] | None = None) -> str:
    """Per run and preset: parameters, checkpoint and training memory, predicted vs measured.

    summaries: evidence.run_summaries(df), when the caller has them already."""
    rows = []
    for run, frame in df.groupby("run", sort=False):
        summary = summary_of(run, frame, summaries).table
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
    eager, its p99 next to eager's and to its own weight-bytes/bandwidth floor, and any problem
    the suite found with the measurement."""
    infer = df[(df["suite"] == "infer") & (df["status"] == "ok")]
    if infer.empty or "case_batch" not in infer:
        return "<p class='note'>no data: the infer suite is missing from every run.</p>"
    infer = infer[infer["case_batch"] == 1]
    rows = [row for key, group in infer.groupby(["run", "preset"], sort=False)
            if (row := _backend_row(key, group)) is not None]  # fmt: skip
    if not rows:
        return "<p class='note'>no data: no backend was timed at batch 1.</p>"
    headers = ["run", "preset", "fastest agreeing backend", "p99 ms", "eager p99 ms",
               "floor ms", "p99 / floor", "measurement"]  # fmt: skip
    return _table(headers, rows, numeric=(3, 4, 5, 6)) + (
        "<p class='note'>floor = the chosen backend's own weight bytes over the memory "
        "bandwidth (the prediction its record puts beside the p50). A p99 below the floor is "
        "a measurement problem, not a fast backend; the suite's own account is shown.</p>"
    )


def _backend_row(key: tuple, group: pd.DataFrame) -> list | None:
    wide = group.pivot_table(
        index="case_backend", columns="metric", values="value", aggfunc="first"
    )
    if "latency_p99_s" not in wide:
        return None
    timed = wide[wide["latency_p99_s"].notna()]
    if "action_agreement" in timed:
        timed = timed[timed["action_agreement"].fillna(1.0) >= AGREEMENT_THRESHOLD]
    if timed.empty:
        return None
    best = timed["latency_p99_s"].idxmin()
    own = group[group["case_backend"] == best]
    # The floor is the prediction the suite puts beside this backend's p50 (its forward's bytes).
    floor = own[own["metric"] == "latency_p50_s"]["predicted"].dropna()
    floor_s = float(floor.iloc[0]) if len(floor) else None
    p99 = float(timed.loc[best, "latency_p99_s"])
    eager = wide["latency_p99_s"].get("eager")
    problems = own["case_measurement_problem"].dropna() if "case_measurement_problem" in own else []
    problem = str(problems.iloc[0]) if len(problems) else None
    if problem is None and floor_s and p99 < floor_s:
        problem = "p99 below the floor: the timing or the floor is wrong, not the backend fast"
    return [
        key[0],
        key[1],
        best,
        _Raw(_e(f"{p99 * 1e3:.3f}") + loaded_mark(own, "latency_p99_s")),
        "-" if eager is None or pd.isna(eager) else f"{eager * 1e3:.3f}",
        "-" if floor_s is None else f"{floor_s * 1e3:.3f}",
        "-" if not floor_s else f"{p99 / floor_s:.2f}x",
        problem or "ok",
    ]


def loaded_mark(rows: pd.DataFrame, metric: str | None = None) -> str:
    """HTML to put beside a timing taken on a loaded host (see host_load): the load per core;
    empty when the rows carry no mark or were not loaded."""
    if "loaded_host" not in rows:
        return ""
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    loaded = rows[rows["loaded_host"].astype(bool) & timing_rows(rows)]
    if loaded.empty:
        return ""
    load = float(loaded["host_load"].max())
    return (
        f" <span class='bad' title='host load per core {load:.2f}'>(loaded host {load:.1f})</span>"
    )


def unavailable_table(df: pd.DataFrame) -> str:
    """Every metric not measured and every case that did not pass: one line per run, suite and
    reason, naming the presets and metrics it covers (the cases differ only in their knobs)."""
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
    frame = pd.DataFrame(rows, columns=["run", "suite", "preset", "case", "metric", "why"])
    lines = []
    for (run, suite, why), group in frame.groupby(
        ["run", "suite", "why"], sort=False, dropna=False
    ):
        lines.append(
            (
                run,
                suite,
                _some(group["preset"]),
                _some(group["metric"]),
                group["case"].nunique(),
                why,
            )
        )
    return _table(["run", "suite", "presets", "metrics", "cases", "why"], lines, numeric=(4,))


def _some(values: pd.Series, most: int = 6) -> str:
    """Distinct values in order, the first `most` of them and how many more."""
    distinct = [str(v) for v in dict.fromkeys(values.dropna())]
    more = len(distinct) - most
    return ", ".join(distinct[:most]) + (f" and {more} more" if more > 0 else "")


_PEER_METRICS = (
    ("speedup_ratio_vs_sb3", "speedup vs SB3", "{:.2f}x"),
    ("env_steps_per_s_ppo_core", "ppo_core steps/s", "{:,.0f}"),
    ("env_steps_per_s_sb3", "SB3 steps/s", "{:,.0f}"),
    ("validation_sharpe_ppo_core", "ppo_core val Sharpe", "{:.2f}"),
    ("validation_sharpe_sb3", "SB3 val Sharpe", "{:.2f}"),
)
_ENV_METRICS = (
    ("env_steps_per_s", "env steps/s", "{:,.0f}"),
    ("env_step_s", "env step, all envs ms", "{:.3f}", 1e3),
    ("policy_forward_s", "policy forward, all envs ms", "{:.3f}", 1e3),
    ("forward_over_step", "forward / env step", "{:.2f}x"),
)
_OOS_METRICS = (
    # The test split decides (records with walk-forward folds); validation chose the model.
    ("test_sharpe", "test Sharpe", "{:.2f}"),
    ("test_buy_and_hold_sharpe", "buy-and-hold (test)", "{:.2f}"),
    ("test_trend_sharpe", "trend rule (test)", "{:.2f}"),
    ("test_oracle_sharpe", "oracle (test)", "{:.2f}"),
    ("val_sharpe", "validation Sharpe", "{:.2f}"),
    ("val_buy_and_hold_sharpe", "buy-and-hold (val)", "{:.2f}"),
    ("val_oracle_sharpe", "oracle (val)", "{:.2f}"),
    ("train_sharpe", "train Sharpe", "{:.2f}"),
    ("sharpe_gap", "gap (train - val)", "{:+.2f}"),
)


def peer_table(df: pd.DataFrame) -> str:
    """The peer suite: ppo_core against Stable-Baselines3 on the same PPO (steps/s, Sharpe)."""
    note = (
        "<p class='note'>speedup = the median over rounds of ppo_core's whole-learn() rate "
        "over SB3's in the same round (both run back to back, so a busy spell hits both); it "
        "can differ from the ratio of the two median rates beside it. Same environment, sizes "
        "and PPO settings (the kind says which); Sharpe on the validation bars.</p>"
    )
    if not (df["suite"] == "peer").any():
        return "<p class='note'>no data: no run has the SB3 peer suite (the [peers] extra).</p>"
    return _metric_section(df, "peer", ["case_kind"], _PEER_METRICS, "SB3 peer") + note


def env_table(df: pd.DataFrame) -> str:
    """The env-step suite: environment steps per second and the policy forward beside them."""
    return _metric_section(df, "env", ["case_forward_preset", "case_n_envs"], _ENV_METRICS, "env")


def oos_table(df: pd.DataFrame) -> str:
    """Each size's test Sharpe (the validation-chosen model; records with folds) and validation
    Sharpe beside buy-and-hold's, the trend rule's and the oracle's on the same bars (mean over
    seeds and folds), and its train Sharpe and gap: what the out-of-sample picks stand on."""
    return _metric_section(
        df, "overfit", ["case_dataset", "case_length"], _OOS_METRICS, "overfitting", mean=True
    )


def _metric_section(
    df: pd.DataFrame, suite: str, keys: list[str], metrics: tuple, name: str, *, mean=False
) -> str:
    rows_in = df[df["suite"] == suite]
    if rows_in.empty:
        return f"<p class='note'>no data: no run has the {name} suite.</p>"
    # The env suite names the network it times in its case (forward_preset), not as a preset.
    keys = ["run", *(["preset"] if rows_in["preset"].notna().any() else []), *keys]
    keys = [k for k in keys if k in rows_in]
    rows = []
    for key, group in rows_in.groupby(keys, sort=False, dropna=False):
        cells: list[object] = list(key)
        for metric, _label, fmt, *scale in metrics:
            cells.append(_metric_cell(group[group["metric"] == metric], fmt, scale, mean))
        rows.append(cells)
    headers = [k.removeprefix("case_") for k in keys]
    headers += [label for _, label, *_ in metrics]
    width = len(headers) - len(metrics)
    return _table(headers, rows, numeric=range(width, len(headers)))


def _metric_cell(rows: pd.DataFrame, fmt: str, scale: list, mean: bool) -> object:
    """One figure (the mean over seeds when `mean`), marked when taken on a loaded host, or
    why it is missing."""
    values = rows["value"].dropna()
    if values.empty:
        why = rows["unavailable"].dropna()
        return _Raw(f"<span class='note'>{_e(why.iloc[0])}</span>") if len(why) else None
    value = float(values.mean() if mean else values.iloc[0]) * (scale[0] if scale else 1.0)
    seeds = f" ({len(values)} seeds)" if mean and len(values) > 1 else ""
    return _Raw(_e(fmt.format(value) + seeds) + loaded_mark(rows))


def aggregates_table(df: pd.DataFrame) -> str:
    """Per size, over its runs (seed x fold): the IQM of its Sharpe with a stratified bootstrap
    interval, P(it beats the next smaller size) with its interval, and on the size with the
    highest mean Sharpe the deflated Sharpe ratio for having picked it from the N tried."""
    found = overfit_aggregates(df)
    if not found:
        return ""
    rows = []
    for sweep in found:
        beats = {i.bigger: i for i in sweep.improvements}
        for size in sweep.sizes:
            rows.append(
                [
                    sweep.run,
                    sweep.dataset,
                    sweep.length,
                    _AGGREGATE_METRICS.get(sweep.metric, sweep.metric),
                    size.preset,
                    f"{size.runs} ({size.folds} folds)",
                    _interval_cell(size.value, size.interval, "{:.2f}"),
                    _improvement_cell(beats.get(size.preset)),
                    _selection_cell(sweep.selection, size.preset),
                ]
            )
    headers = ["run", "dataset", "length", "metric", "preset", "runs", "IQM [95%]",
               "P(beats next smaller) [95%]", "selected: deflated Sharpe, PBO"]  # fmt: skip
    note = (
        "<p class='note'>IQM: the mean of the middle half of the runs; intervals resample "
        f"seeds within each fold and need {MIN_RUNS_PER_FOLD} seeds per fold "
        "('insufficient' below). Deflated Sharpe (Bailey and Lopez de Prado 2014): the "
        "probability that the selected size's Sharpe is real after picking the best of the "
        "sizes tried; PBO: how often the size best on half the runs falls in the bottom half on "
        "the other half (CSCV).</p>"
    )
    return _table(headers, rows, numeric=range(5, 9)) + note


_AGGREGATE_METRICS = {"test_sharpe": "test Sharpe", "val_sharpe": "validation Sharpe"}


def _interval_cell(value: float, interval: Estimate | None, fmt: str) -> str:
    """'1.23 [0.45, 2.01]', or the point and 'insufficient' when the runs are too few."""
    if interval is None:
        return f"{fmt.format(value)} [insufficient]"
    return f"{fmt.format(value)} [{fmt.format(interval.low)}, {fmt.format(interval.high)}]"


def _improvement_cell(improvement: Improvement | None) -> str | None:
    if improvement is None:
        return None
    if improvement.value != improvement.value:
        return f"no shared folds with {improvement.smaller}"
    cell = _interval_cell(improvement.value, improvement.interval, "{:.2f}")
    return f"P({improvement.bigger} > {improvement.smaller}) {cell}"


def _selection_cell(selection: Selection, preset: str) -> object:
    if selection.preset != preset:
        return None
    if selection.dsr is None:
        return selection.why
    pbo = "" if selection.pbo is None else f"; PBO {selection.pbo:.2f}"
    return _Raw(
        f"{selection.dsr:.2f} (best of {selection.n_trials}){pbo} "
        f"<span class='note'>{_e(selection.why)}</span>"
    )
