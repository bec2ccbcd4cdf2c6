"""How `archbench compare` judges one row: the statistic its record reports, the test that allows
(bootstrap, Mann-Whitney U, Welch t) or a stated tolerance, a run-level shift, Benjamini-Hochberg.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from archbench.reports.host_load import is_timing
from archbench.reports.stats import (
    benjamini_hochberg,
    bootstrap_ratio_ci,
    bootstrap_ratio_test,
    mann_whitney_u,
    welch_t_test,
)

__all__ = [
    "DEFAULT_DRIFT",
    "DEFAULT_MIN_EFFECT",
    "DEFAULT_TOLERANCE",
    "VERDICTS",
    "RunShift",
    "judge_rows",
    "judge_samples",
    "min_samples",
]


VERDICTS = ("improved", "regressed", "same", "insufficient samples", "not comparable")


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
