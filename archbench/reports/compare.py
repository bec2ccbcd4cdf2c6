"""Run A vs run B (two GPUs, two commits): per preset, case and metric, the ratio and a verdict.

Each metric is judged on the statistic it reports (p99 by a bootstrap, median by Mann-Whitney U,
mean by Welch t), corrected for the number of rows (Benjamini-Hochberg), with a minimum effect.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from archbench.reports.evidence import device_groups
from archbench.reports.host_load import HOST_LOAD_METRIC, HostLoad, is_timing, median_load, own_load
from archbench.reports.load import ReportError, case_label, load_runs
from archbench.reports.stats import (
    benjamini_hochberg,
    bootstrap_ratio_ci,
    bootstrap_ratio_test,
    mann_whitney_u,
    welch_t_test,
)
from ppo_core.errors import ConfigError

__all__ = [
    "DEFAULT_DRIFT",
    "DEFAULT_MIN_EFFECT",
    "DEFAULT_TOLERANCE",
    "HOST_LOAD_METRIC",
    "VERDICTS",
    "HostLoad",
    "RunShift",
    "cell_text",
    "compare_runs",
    "comparison_html",
    "devices_note",
    "has_regression",
    "judge_rows",
    "judge_samples",
    "min_samples",
    "number_text",
    "ratio_text",
    "setup_note",
    "unjudged_timing_rows",
    "verdict_text",
]

VERDICTS = ("improved", "regressed", "same", "insufficient samples", "not comparable")
_MACHINE = "(machine)"
_STATUS = "(status)"
_FAILED = ("oom", "error")
DEFAULT_MIN_EFFECT = 0.05
"""Smallest relative change of a tested statistic that is a verdict: a significant change whose
B/A gain lies between 1 - 0.05 and 1 / (1 - 0.05) is 'same' (too small to act on)."""

# Resamples per bootstrap test (seed 0): cheap on a laptop for 200-sample p99s; beyond the
# 2 / 1001 a count of resamples can show, the p-value is a normal fit of their log ratios.
_BOOTSTRAP_RESAMPLES = 1000
_PERCENTILE_NAME = re.compile(r"(?:^|_)p(\d{1,2}(?:\.\d+)?)(?:_|$)")

DEFAULT_DRIFT = 0.15
"""Run-to-run drift allowed for timings: two runs of one commit on one H200, 4.5 minutes apart at
equal host load, differed by up to 15% on every train case (README, H200 runs). Two runs that
were not interleaved share no clock: a common shift of every timing row no larger than this is
taken as drift, and each row is judged relative to it; a larger one is judged as it stands."""
# A common shift is the median over at least this many tested timing rows, or none is taken.
_MIN_SHIFT_ROWS = 8

DEFAULT_TOLERANCE = 0.10
"""Relative change that counts as improved or regressed for a figure with too few samples for
Mann-Whitney (single-shot bytes, 3 quick-profile repeats, one seed): a stated threshold, not a
test, and every verdict it decides says so."""


@dataclass(frozen=True)
class RunShift:
    """The common change of every tested timing row between two runs: drift or a real change."""

    gain: float
    """Median over the tested timing rows of how many times better B is (< 1: B slower)."""
    rows: int
    """How many rows the median is over."""
    drift: float
    """The run-to-run drift allowed (relative)."""

    @property
    def within_drift(self) -> bool:
        """True: the shift is no larger than the drift, so rows are judged relative to it."""
        return 1 - self.drift <= self.gain <= 1 / (1 - self.drift)

    def describe(self) -> str:
        change = f"B is {abs(self.gain - 1):.1%} {'faster' if self.gain > 1 else 'slower'}"
        where = f"on the median of {self.rows} tested timing rows"
        if self.within_drift:
            return (
                f"run-level shift: {change} {where}, within the {self.drift:.0%} run-to-run drift "
                "of two runs of one commit: not a verdict; each timing row is judged relative to it"
            )
        return (
            f"run-level shift: {change} {where}, beyond the {self.drift:.0%} run-to-run drift: "
            "rows are judged as they stand"
        )


def min_samples(alpha: float = 0.05) -> int:
    """Smallest n (each side) with which a two-sided Mann-Whitney U can reach p <= alpha."""
    for n in range(2, 50):
        if mann_whitney_u(range(n), range(n, 2 * n)).p_value <= alpha:  # fully separated, no ties
            return n
    raise ValueError(f"alpha {alpha} is too small for any practical sample size")


def compare_runs(
    a: str | Path | pd.DataFrame,
    b: str | Path | pd.DataFrame,
    *,
    alpha: float = 0.05,
    tolerance: float = DEFAULT_TOLERANCE,
    min_effect: float = DEFAULT_MIN_EFFECT,
    drift: float = DEFAULT_DRIFT,
) -> pd.DataFrame:
    """One row per (suite, preset, case, metric) present in either run.

    ratio = B / A. gain = how many times better B is (B/A when higher is better, A/B when lower
    is better), so gain > 1 is always an improvement. Seeds are pooled: a case that differs
    only by `seed` is one comparison whose samples are the per-seed figures. A case that ran
    in A and went out of memory (or failed) in B is 'regressed'; the reverse is 'improved'.

    Each metric is judged on the statistic its record reports (`statistic`): a percentile such
    as the p99 by a bootstrap of the ratio of that percentile of the raw samples, a median by
    Mann-Whitney U, a mean by Welch's t (decided_by 'test'). Their p-values are corrected for
    the number of rows tested by Benjamini-Hochberg (`q_value`), and a change significant at
    q <= alpha but smaller than `min_effect` is 'same'. Figures with too few samples for a test
    are judged by `tolerance` (decided_by 'tolerance'), except timings, which are 'insufficient
    samples': run-to-run noise is larger than a tolerance can tell. A common shift of every
    tested timing row within `drift` is taken as run-to-run drift (`table.attrs["run_shift"]`,
    a RunShift) and each timing row is tested relative to it. host_load_per_core is not a row:
    it is `table.attrs["host_load"]` (a HostLoad), and `timing` marks the rows a loaded host
    moves.
    """
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ConfigError(f"compare alpha must be between 0 and 1, got {alpha!r}")
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise ConfigError(f"compare tolerance must be between 0 and 1, got {tolerance!r}")
    if not (isinstance(min_effect, int | float) and math.isfinite(min_effect)
            and 0 <= min_effect < 1):  # fmt: skip
        raise ConfigError(
            f"compare min_effect must be a finite fraction in [0, 1), e.g. 0.05 for 5%; "
            f"got {min_effect!r}"
        )
    if not (isinstance(drift, int | float) and 0 <= drift < 1):
        raise ConfigError(f"compare drift must be a fraction in [0, 1), e.g. 0.15; got {drift!r}")
    frame_a, frame_b = _frame(a), _frame(b)
    table_a, table_b = _pooled(frame_a), _pooled(frame_b)
    keys = ["suite", "preset", "case", "metric"]
    merged = table_a.merge(table_b, on=keys, how="outer", suffixes=("_a", "_b"), sort=False)
    measured = merged.loc[merged["metric"] != _STATUS, keys[:3]].drop_duplicates()
    placeholder = merged[merged["metric"] == _STATUS].merge(measured, how="left", indicator=True)
    keep = placeholder.loc[placeholder["_merge"] == "left_only"].drop(columns="_merge")
    merged = pd.concat([merged[merged["metric"] != _STATUS], keep], ignore_index=True)
    # A case's status holds for all of its metrics, including those the other run lacks.
    status_a, status_b = _statuses(frame_a), _statuses(frame_b)
    merged = merged.drop(columns=[c for c in merged if c.startswith(("status_", "reason_"))])
    merged = merged.merge(status_a, on=keys[:3], how="left").merge(
        status_b, on=keys[:3], how="left", suffixes=("_a", "_b")
    )
    rows = [_compare_row(row, alpha, tolerance) for row in merged.to_dict("records")]
    shift = judge_rows(rows, alpha, min_effect, drift)
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out.attrs["run_shift"] = shift
    out.attrs["setup"] = (_setup(frame_a), _setup(frame_b))
    out.attrs["runs"] = (_name(frame_a), _name(frame_b))
    out.attrs["host_load"] = HostLoad(
        median_load(frame_a),
        median_load(frame_b),
        own_load(frame_a["device"]),
        own_load(frame_b["device"]),
    )
    out.attrs["alpha"] = alpha
    out.attrs["devices"] = (", ".join(device_groups(frame_a)), ", ".join(device_groups(frame_b)))
    return out


def judge_rows(
    rows: list[dict],
    alpha: float,
    min_effect: float,
    drift: float = DEFAULT_DRIFT,
    *,
    intervals: bool = True,
) -> RunShift | None:
    """Sets every tested row's verdict (rows from _compare_row): the run-level shift first,
    then each row's test relative to it where it is within the drift. Returns the shift.
    intervals=False skips the medians' ratio intervals, which are shown, never decide."""
    shift = _run_shift(rows, drift)
    if shift is not None and shift.within_drift:
        for row in rows:
            if row["decided_by"] == "test" and row["timing"] and row["better"] is not None:
                a, b = row["_samples"]
                factor = shift.gain if row["better"] == "lower" else 1 / shift.gain
                row["_samples"] = (a, tuple(v * factor for v in b))
                row["_gain"] = row["gain"] / shift.gain
    _test_rows(rows, alpha, min_effect, intervals)
    return shift


def judge_samples(
    cases: list[dict],
    *,
    alpha: float = 0.05,
    tolerance: float = DEFAULT_TOLERANCE,
    min_effect: float = DEFAULT_MIN_EFFECT,
    drift: float = DEFAULT_DRIFT,
) -> list[dict]:
    """compare_runs' verdicts on bare samples, for simulations: each case is {"metric",
    "unit", "better", "samples_a", "samples_b"} (the value is the statistic the metric's name
    says: a pNN, else the median). Returns the judged rows (keys as compare_runs' columns)."""
    rows = []
    for i, case in enumerate(cases):
        match = _PERCENTILE_NAME.search(case["metric"])
        q = float(match.group(1)) if match else 50.0
        merged = {"suite": "sim", "preset": str(i), "case": "", "metric": case["metric"]}
        for side in ("a", "b"):
            samples = tuple(float(v) for v in case[f"samples_{side}"])
            merged.update({
                f"value_{side}": float(np.percentile(samples, q)), f"samples_{side}": samples,
                f"better_{side}": case["better"], f"unit_{side}": case["unit"],
                f"status_{side}": "ok", f"reason_{side}": None, f"unavailable_{side}": None,
            })  # fmt: skip
        rows.append(_compare_row(merged, alpha, tolerance))
    judge_rows(rows, alpha, min_effect, drift, intervals=False)
    return rows


def _run_shift(rows: list[dict], drift: float) -> RunShift | None:
    gains = [
        row["gain"]
        for row in rows
        if row["decided_by"] == "test" and row["timing"] and row["gain"] > 0
    ]
    if len(gains) < _MIN_SHIFT_ROWS:
        return None
    return RunShift(float(np.exp(np.median(np.log(gains)))), len(gains), drift)


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


def setup_note(table: pd.DataFrame) -> str | None:
    """A line naming what differs between the runs' setups (profile, torch threads, shards)."""
    setup_a, setup_b = table.attrs.get("setup", ({}, {}))
    differ = [k for k in setup_a if setup_a.get(k) != setup_b.get(k)]
    if not differ:
        return None
    return "setups differ: " + "; ".join(f"{k}: A {setup_a[k]}, B {setup_b.get(k)}" for k in differ)


def devices_note(table: pd.DataFrame) -> str | None:
    """A line saying that A and B measured different devices (None when they match)."""
    device_a, device_b = table.attrs.get("devices", (None, None))
    if device_a == device_b:
        return None
    return (
        f"A and B ran on different devices (A: {device_a}; B: {device_b}): the changes below "
        "are differences between the devices, not regressions of the code"
    )


def unjudged_timing_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The timing rows `has_regression` leaves out without allow_loaded: when one run is loaded
    (HostLoad), those in which the loaded run is the slower one; none otherwise. A loaded run
    that is still faster is judged: the load cannot have made it so."""
    load = table.attrs.get("host_load")
    if load is None or load.loaded is None:
        return table.iloc[0:0]
    gain = table["gain"]
    loaded_slower = (gain < 1) if load.loaded == "B" else (gain > 1)
    return table[table["timing"] & (loaded_slower | gain.isna())]


def has_regression(table: pd.DataFrame, *, allow_loaded: bool = False) -> bool:
    """True when any judged metric got worse from A to B (by the test, the tolerance, or an OOM).

    When one run is loaded (see HostLoad) its timing rows are not judged unless allow_loaded:
    a slower figure from a busy host is not evidence against the code.
    """
    judged = table if allow_loaded else table.drop(unjudged_timing_rows(table).index)
    return bool((judged["verdict"] == "regressed").any())


def verdict_text(row: dict) -> str:
    """The verdict as shown: which statistic and test decided it, or that a tolerance or a
    failed run did."""
    verdict = row["verdict"]
    decided_by = row.get("decided_by")
    if decided_by == "tolerance":
        sign = {"regressed": ">", "improved": ">", "same": "<="}.get(verdict, "")
        return f"{verdict} ({sign}{row['tolerance']:.0%}, too few samples for a test)"
    if decided_by == "status":
        return f"{verdict} ({row['why']})"
    if decided_by == "test":
        return f"{verdict} ({row['statistic']} by {row['test']}, q={row['q_value']:.3g})"
    return verdict


def comparison_html(table: pd.DataFrame) -> str:
    """The comparison as an HTML section for the report."""
    run_a, run_b = table.attrs.get("runs", ("A", "B"))
    load = table.attrs.get("host_load")
    colours = {"improved": "good", "regressed": "bad"}
    head = "".join(
        f"<th>{h}</th>"
        for h in ("suite", "preset", "case", "metric", "statistic", "A", "B", "B/A",
                  f"{1 - table.attrs.get('alpha', 0.05):.0%} CI", "p", "q", "verdict")
    )  # fmt: skip
    body = []
    for row in table.to_dict("records"):
        ci = "" if pd.isna(row["ci_low"]) else f"{row['ci_low']:.3f} &ndash; {row['ci_high']:.3f}"
        loaded_timing = (
            load is not None
            and load.loaded is not None
            and row["timing"]
            and row["verdict"] in ("improved", "regressed", "same")
        )
        cells = [html.escape(str(row[k])) for k in ("suite", "preset", "case", "metric")] + [
            html.escape(cell_text(row["statistic"])),
            number_text(row["a"]),
            number_text(row["b"]),
            html.escape(ratio_text(row)),
            ci,
            "" if pd.isna(row["p_value"]) else f"{row['p_value']:.3g}",
            "" if pd.isna(row["q_value"]) else f"{row['q_value']:.3g}",
            f"<span class='{colours.get(row['verdict'], '')}'>"
            f"{html.escape(verdict_text(row))}</span>"
            + (f" <span class='note'>({html.escape(row['why'])})</span>" if row["why"] else "")
            + (" <span class='bad'>(loaded host)</span>" if loaded_timing else ""),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    load_note = ""
    if load is not None:
        css = "warn" if load.loaded else "note"
        load_note = f"<p class='{css}'>{html.escape(load.describe())}.</p>"
    if devices_note(table):
        load_note += f"<p class='warn'>{html.escape(devices_note(table))}.</p>"
    shift = table.attrs.get("run_shift")
    if shift is not None:
        css = "note" if shift.within_drift else "warn"
        load_note += f"<p class='{css}'>{html.escape(shift.describe())}.</p>"
    if setup_note(table):
        load_note += f"<p class='warn'>{html.escape(setup_note(table))}.</p>"
    return (
        f"<p class='note'>A = {html.escape(str(run_a))}, B = {html.escape(str(run_b))}. "
        "Each metric is judged on the statistic it reports: a p99 (any percentile) by a "
        "bootstrap of the ratio of that percentile of the raw samples, a median by a two-sided "
        "Mann-Whitney U, a mean by Welch's t. p is each row's own test; q corrects it for the "
        "number of rows tested (Benjamini-Hochberg: the expected share of false alarms among the "
        "flagged rows stays below alpha). A change with q above alpha, or smaller than the "
        f"minimum effect, is 'same'. Figures with too few samples for a test (single-shot "
        "bytes, a few repeats, one seed) are judged by a stated relative tolerance instead, and "
        "say so; with two or more samples each, overlapping samples are 'same'. A case that ran "
        "in A and was out of memory or failed in B is 'regressed'. CI: bootstrap of the ratio of "
        "the row's statistic. The samples are repeats within each run, so a systematic "
        "difference between the runs (another job on the machine, a different clock) is "
        "reported as a real change: the host load line says when that is likely.</p>"
        f"{load_note}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


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


_COLUMNS = [
    "suite", "preset", "case", "metric", "unit", "better", "statistic", "test", "timing", "a",
    "b", "ratio", "gain", "ci_low", "ci_high", "p_value", "q_value", "n_a", "n_b", "status_a",
    "status_b", "verdict", "decided_by", "tolerance", "why",
]  # fmt: skip


def _statistic(metric: str, value: float, samples: tuple) -> str:
    """What the record's value is of its samples: 'p99' (any pNN in the name but p50),
    'median', 'mean', or 'value' (one sample, or another statistic such as a max)."""
    match = _PERCENTILE_NAME.search(metric)
    if match and float(match.group(1)) != 50:
        return f"p{match.group(1)}"
    if match or len(samples) < 2:
        return "median" if match else "value"
    if math.isclose(value, float(np.median(samples)), rel_tol=1e-9, abs_tol=1e-300):
        return "median"
    if math.isclose(value, float(np.mean(samples)), rel_tol=1e-9, abs_tol=1e-300):
        return "mean"
    return "value"


def _compare_row(row: dict, alpha: float, tolerance: float) -> dict:
    out = _blank_row(row, tolerance)
    a, b = row["value_a"], row["value_b"]
    if _judged_by_status(out, row) or _judged_missing(out, row, a, b):
        return out
    if a == 0:
        out["why"] = "A is 0; a ratio is undefined"
        return out
    out["ratio"] = b / a
    if out["better"] == "higher":
        out["gain"] = b / a
    elif out["better"] == "lower" and b != 0:
        out["gain"] = a / b
    return _choose_test(out, row, alpha)


def _blank_row(row: dict, tolerance: float) -> dict:
    """One merged row's identity and figures, not yet judged ('not comparable')."""
    better = row["better_a"] if isinstance(row["better_a"], str) else row["better_b"]
    unit = row["unit_a"] if isinstance(row["unit_a"], str) else row["unit_b"]
    return {
        "suite": row["suite"],
        "preset": row["preset"],
        "case": row["case"],
        "metric": row["metric"],
        "unit": unit,
        "better": better if isinstance(better, str) else None,
        "statistic": None,
        "test": None,
        "timing": is_timing(row["metric"], unit),
        "a": row["value_a"],
        "b": row["value_b"],
        "ratio": np.nan,
        "gain": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
        "q_value": np.nan,
        "n_a": len(row["samples_a"]) if isinstance(row["samples_a"], tuple) else 0,
        "n_b": len(row["samples_b"]) if isinstance(row["samples_b"], tuple) else 0,
        "status_a": row["status_a"] if isinstance(row["status_a"], str) else None,
        "status_b": row["status_b"] if isinstance(row["status_b"], str) else None,
        "verdict": "not comparable",
        "decided_by": None,
        "tolerance": tolerance,
        "why": "",
    }


def _judged_by_status(out: dict, row: dict) -> bool:
    """A case that failed (OOM, error) in A or B: judged here, figures unread; True if so."""
    failed_a, failed_b = out["status_a"] in _FAILED, out["status_b"] in _FAILED
    if failed_a and failed_b:
        out["why"] = f"{out['status_a']} in A and {out['status_b']} in B"
        return True
    if not (failed_a or failed_b):
        return False
    side, other = ("b", "a") if failed_b else ("a", "b")
    failure = f"{out[f'status_{side}']} in {side.upper()}: {row[f'reason_{side}']}"
    if out[f"status_{other}"] != "ok":
        out["why"] = f"{failure}; case not run in {other.upper()}"
        return True
    # Ran in one run and not in the other: that is the result, whatever the figures say.
    out["verdict"] = "regressed" if failed_b else "improved"
    out["decided_by"] = "status"
    out["why"] = failure
    return True


def _judged_missing(out: dict, row: dict, a: float, b: float) -> bool:
    """A figure absent from A or B: 'not comparable', with the run's reason; True if so."""
    if not (pd.isna(a) or pd.isna(b)):
        return False
    missing = "A" if pd.isna(a) else "B"
    reason = row.get(f"unavailable_{missing.lower()}")
    out["why"] = (
        f"unavailable in {missing}: {reason}"
        if isinstance(reason, str)
        else f"not measured in {missing}"
    )
    return True


def _choose_test(out: dict, row: dict, alpha: float) -> dict:
    """The test the statistic and the sample counts allow; too few samples: the tolerance."""
    samples_a, samples_b = row["samples_a"], row["samples_b"]
    statistic = _statistic(row["metric"], out["a"], samples_a)
    out["statistic"] = statistic
    need = min_samples(alpha)
    if statistic == "mean" and min(out["n_a"], out["n_b"]) >= 2:
        out["test"] = "Welch t"
    elif statistic not in ("mean", "value") and min(out["n_a"], out["n_b"]) >= need:
        out["test"] = "Mann-Whitney U" if statistic == "median" else "bootstrap"
    else:
        few = f"{out['n_a']} vs {out['n_b']} samples; a test needs " + (
            "2 each" if statistic == "mean" else f"{need} each at alpha {alpha}"
        )
        if statistic == "value" and min(out["n_a"], out["n_b"]) >= 2:
            few = "the value is no median, mean or percentile of its samples: no test"
        return _by_tolerance(out, few, samples_a, samples_b)
    out["decided_by"] = "test"
    out["_samples"] = (samples_a, samples_b)
    return out


def _test_rows(rows: list[dict], alpha: float, min_effect: float, intervals: bool = True) -> None:
    """Runs each row's test, corrects the p-values for their number, and sets the verdicts.

    Benjamini-Hochberg rather than Holm: a quick run tests ~35 rows, and the smallest p a
    5-vs-5 Mann-Whitney can give is 0.012, which Holm's thresholds (alpha/35, alpha/34, ...)
    reach only after all but three rows were flagged: a 5-sample figure would almost never be
    judged, however large its change. BH bounds the expected share of false alarms among the
    flagged rows, which is what a reader of the table acts on.
    """
    tested = [row for row in rows if row["decided_by"] == "test"]
    for row in tested:
        samples_a, samples_b = row.pop("_samples")
        if row["test"] == "Welch t":
            row["p_value"] = welch_t_test(samples_a, samples_b).p_value
        elif row["test"] == "Mann-Whitney U":
            row["p_value"] = mann_whitney_u(samples_b, samples_a).p_value
            if intervals and np.median(samples_a) != 0:
                row["ci_low"], row["ci_high"] = bootstrap_ratio_ci(
                    samples_a, samples_b, n_boot=_BOOTSTRAP_RESAMPLES, confidence=1 - alpha
                )
        else:
            test = bootstrap_ratio_test(
                samples_a, samples_b, percentile=float(row["statistic"][1:]),
                n_boot=_BOOTSTRAP_RESAMPLES, confidence=1 - alpha,
            )  # fmt: skip
            row["p_value"], row["ci_low"], row["ci_high"] = test.p_value, test.ci_low, test.ci_high
    directed = [row for row in tested if row["better"] is not None]
    for row, q in zip(directed, benjamini_hochberg([r["p_value"] for r in directed]), strict=True):
        row["q_value"] = float(q)
        gain = row.pop("_gain", row["gain"])
        if q > alpha:
            row["verdict"] = "same"
        elif pd.isna(gain) or 1 - min_effect <= gain <= 1 / (1 - min_effect):
            row["verdict"] = "same"
            change = "no ratio" if pd.isna(gain) else f"a {abs(gain - 1):.1%} change"
            row["why"] = f"significant, but {change} is inside the {min_effect:.0%} minimum effect"
        else:
            row["verdict"] = "improved" if gain > 1 else "regressed"
    for row in tested:
        if row["better"] is None:
            row["verdict"] = "not comparable"
            row["why"] = "the metric has no better direction"
            if row["p_value"] <= alpha:
                row["why"] = "differs, but " + row["why"]


def _by_tolerance(out: dict, few: str, samples_a: tuple, samples_b: tuple) -> dict:
    """Too few samples for the test: a change beyond the stated tolerance decides, and says so;
    with two or more samples a side, a change inside their overlap is 'same'."""
    a, b, tolerance = out["a"], out["b"], out["tolerance"]
    out["verdict"] = "insufficient samples"
    out["why"] = few
    if out["timing"]:  # two runs of one commit drift 5-15%: a tolerance would only guess
        out["why"] += "; a timing is not judged by a tolerance"
        return out
    if out["better"] is None:
        out["why"] += "; the metric has no better direction for a tolerance to judge"
        return out
    if not (a > 0 and b > 0):  # e.g. a Sharpe ratio changing sign: no relative change exists
        out["why"] += "; the values are not both positive, so a relative tolerance is undefined"
        return out
    gain = out["gain"]
    if gain < 1 - tolerance:
        out["verdict"] = "regressed"
    elif gain > 1 / (1 - tolerance):
        out["verdict"] = "improved"
    else:
        out["verdict"] = "same"
    out["decided_by"] = "tolerance"
    out["why"] = f"{few}; judged by the {tolerance:.0%} tolerance"
    overlap = (
        min(len(samples_a), len(samples_b)) >= 2
        and max(samples_a) >= min(samples_b)
        and max(samples_b) >= min(samples_a)
    )
    if out["verdict"] != "same" and overlap:
        out["verdict"] = "same"
        out["why"] += ", but the samples of A and B overlap (the change is inside their spread)"
    return out


def cell_text(value) -> str:
    return value if isinstance(value, str) else ""


def number_text(value: float) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.4g}"


def ratio_text(row: dict) -> str:
    if pd.isna(row["ratio"]):
        return "-"
    text = f"{row['ratio']:.3f}"
    if not pd.isna(row["gain"]):
        gain = row["gain"]
        text += f" ({gain:.2f}x better)" if gain >= 1 else f" ({1 / gain:.2f}x worse)"
    return text
