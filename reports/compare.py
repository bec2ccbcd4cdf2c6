"""Run A vs run B (two GPUs, two commits): per preset, case and metric, the ratio and a verdict.

Verdicts come from the raw samples (Mann-Whitney U); a stated tolerance only where too few.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ppo_core.errors import ConfigError
from reports.load import ReportError, case_label, load_runs
from reports.stats import bootstrap_ratio_ci, mann_whitney_u

__all__ = [
    "DEFAULT_TOLERANCE",
    "VERDICTS",
    "compare_runs",
    "comparison_html",
    "has_regression",
    "min_samples",
    "print_comparison",
    "verdict_text",
]

VERDICTS = ("improved", "regressed", "same", "insufficient samples", "not comparable")
_MACHINE = "(machine)"
_STATUS = "(status)"
_FAILED = ("oom", "error")

DEFAULT_TOLERANCE = 0.10
"""Relative change that counts as improved or regressed for a figure with too few samples for
Mann-Whitney (single-shot bytes, 3 quick-profile repeats, one seed): a stated threshold, not a
test, and every verdict it decides says so."""


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
) -> pd.DataFrame:
    """One row per (suite, preset, case, metric) present in either run.

    ratio = B / A. gain = how many times better B is (B/A when higher is better, A/B when lower
    is better), so gain > 1 is always an improvement. Seeds are pooled: a case that differs
    only by `seed` is one comparison whose samples are the per-seed figures. A case that ran
    in A and went out of memory (or failed) in B is 'regressed'; the reverse is 'improved'.
    With enough samples Mann-Whitney decides (decided_by 'test'); with fewer, a relative change
    beyond `tolerance` does (decided_by 'tolerance').
    """
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise ConfigError(f"compare tolerance must be between 0 and 1, got {tolerance!r}")
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
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out.attrs["runs"] = (_name(frame_a), _name(frame_b))
    return out


def has_regression(table: pd.DataFrame) -> bool:
    """True when any metric got worse from A to B (by the test, the tolerance, or an OOM)."""
    return bool((table["verdict"] == "regressed").any())


def verdict_text(row: dict) -> str:
    """The verdict as shown: says when a tolerance or a failed run, not a test, decided it."""
    verdict = row["verdict"]
    decided_by = row.get("decided_by")
    if decided_by == "tolerance":
        sign = {"regressed": ">", "improved": ">", "same": "<="}.get(verdict, "")
        return f"{verdict} ({sign}{row['tolerance']:.0%}, too few samples for a test)"
    if decided_by == "status":
        return f"{verdict} ({row['why']})"
    return verdict


def print_comparison(table: pd.DataFrame, console=None, *, show_all: bool = False) -> None:
    """The comparison as a rich table on the terminal: the changed rows, or all of them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    run_a, run_b = table.attrs.get("runs", ("A", "B"))
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    by_tolerance = int((table["decided_by"] == "tolerance").sum())
    if by_tolerance:
        summary += f" ({by_tolerance} decided by the tolerance, too few samples for a test)"
    if not show_all:
        table = table[table["verdict"].isin(["improved", "regressed"])]
        if table.empty:
            console.print(f"A={run_a}  B={run_b}: no significant change. {summary}")
            return
    out = Table(title=f"archbench compare: A={run_a}  B={run_b}", show_lines=False)
    for column in ("suite", "preset", "case", "metric", "A", "B", "B/A", "p", "verdict"):
        out.add_column(column, justify="right" if column in ("A", "B", "B/A", "p") else "left")
    styles = {"improved": "green", "regressed": "bold red", "same": "dim"}
    for row in table.to_dict("records"):
        verdict = row["verdict"]
        out.add_row(
            row["suite"],
            row["preset"],
            row["case"],
            row["metric"],
            _num(row["a"]),
            _num(row["b"]),
            _ratio(row),
            "" if pd.isna(row["p_value"]) else f"{row['p_value']:.3f}",
            f"[{styles.get(verdict, 'yellow')}]{escape(verdict_text(row))}[/]",
        )
    console.print(out)
    console.print(summary + ("" if show_all else " (only changed rows shown; --all shows all)"))


def comparison_html(table: pd.DataFrame) -> str:
    """The comparison as an HTML section for the report."""
    run_a, run_b = table.attrs.get("runs", ("A", "B"))
    colours = {"improved": "good", "regressed": "bad"}
    head = "".join(
        f"<th>{h}</th>"
        for h in ("suite", "preset", "case", "metric", "A", "B", "B/A", "95% CI", "p", "verdict")
    )
    body = []
    for row in table.to_dict("records"):
        ci = "" if pd.isna(row["ci_low"]) else f"{row['ci_low']:.3f} &ndash; {row['ci_high']:.3f}"
        cells = [html.escape(str(row[k])) for k in ("suite", "preset", "case", "metric")] + [
            _num(row["a"]),
            _num(row["b"]),
            html.escape(_ratio(row)),
            ci,
            "" if pd.isna(row["p_value"]) else f"{row['p_value']:.3f}",
            f"<span class='{colours.get(row['verdict'], '')}'>"
            f"{html.escape(verdict_text(row))}</span>"
            + (f" <span class='note'>({html.escape(row['why'])})</span>" if row["why"] else ""),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<p class='note'>A = {html.escape(str(run_a))}, B = {html.escape(str(run_b))}. "
        "Verdicts: two-sided Mann-Whitney U on the raw samples; 'same' means the difference is "
        "inside the measurement noise. Figures with too few samples for the test (single-shot "
        "bytes, a few repeats, one seed) are judged by a stated relative tolerance instead, and "
        "say so. A case that ran in A and was out of memory or failed in B is 'regressed'. "
        "CI: bootstrap of the ratio of medians. The samples are "
        "repeats within each run, so a systematic difference between the runs (another job "
        "on the machine, a different clock) is reported as a real change.</p>"
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
    rows["case"] = [
        case_label({k: v for k, v in c.items() if k != "seed"}) for c in rows["case_dict"]
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
    rows = keyed[keyed["metric"].notna()]
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
    "suite", "preset", "case", "metric", "unit", "better", "a", "b", "ratio", "gain", "ci_low",
    "ci_high", "p_value", "n_a", "n_b", "status_a", "status_b", "verdict", "decided_by",
    "tolerance", "why",
]  # fmt: skip


def _compare_row(row: dict, alpha: float, tolerance: float) -> dict:
    a, b = row["value_a"], row["value_b"]
    better = row["better_a"] if isinstance(row["better_a"], str) else row["better_b"]
    out = {
        "suite": row["suite"],
        "preset": row["preset"],
        "case": row["case"],
        "metric": row["metric"],
        "unit": row["unit_a"] if isinstance(row["unit_a"], str) else row["unit_b"],
        "better": better if isinstance(better, str) else None,
        "a": a,
        "b": b,
        "ratio": np.nan,
        "gain": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
        "n_a": len(row["samples_a"]) if isinstance(row["samples_a"], tuple) else 0,
        "n_b": len(row["samples_b"]) if isinstance(row["samples_b"], tuple) else 0,
        "status_a": row["status_a"] if isinstance(row["status_a"], str) else None,
        "status_b": row["status_b"] if isinstance(row["status_b"], str) else None,
        "verdict": "not comparable",
        "decided_by": None,
        "tolerance": tolerance,
        "why": "",
    }
    failed_a, failed_b = out["status_a"] in _FAILED, out["status_b"] in _FAILED
    if failed_a and failed_b:
        out["why"] = f"{out['status_a']} in A and {out['status_b']} in B"
        return out
    if failed_a or failed_b:
        side, other = ("b", "a") if failed_b else ("a", "b")
        failure = f"{out[f'status_{side}']} in {side.upper()}: {row[f'reason_{side}']}"
        if out[f"status_{other}"] != "ok":
            out["why"] = f"{failure}; case not run in {other.upper()}"
            return out
        # Ran in one run and not in the other: that is the result, whatever the figures say.
        out["verdict"] = "regressed" if failed_b else "improved"
        out["decided_by"] = "status"
        out["why"] = failure
        return out
    if pd.isna(a) or pd.isna(b):
        missing = "A" if pd.isna(a) else "B"
        reason = row.get(f"unavailable_{missing.lower()}")
        out["why"] = (
            f"unavailable in {missing}: {reason}"
            if isinstance(reason, str)
            else (f"not measured in {missing}")
        )
        return out
    if a == 0:
        out["why"] = "A is 0; a ratio is undefined"
        return out
    out["ratio"] = b / a
    if out["better"] == "higher":
        out["gain"] = b / a
    elif out["better"] == "lower" and b != 0:
        out["gain"] = a / b
    samples_a, samples_b = row["samples_a"], row["samples_b"]
    need = min_samples(alpha)
    if out["n_a"] < need or out["n_b"] < need:
        few = f"{out['n_a']} vs {out['n_b']} samples; a test at alpha {alpha} needs {need}"
        return _by_tolerance(out, few)
    out["decided_by"] = "test"
    test = mann_whitney_u(samples_b, samples_a)
    out["p_value"] = test.p_value
    if np.median(samples_a) != 0:
        out["ci_low"], out["ci_high"] = bootstrap_ratio_ci(samples_a, samples_b)
    if test.p_value > alpha:
        out["verdict"] = "same"
    elif out["better"] is None:
        out["verdict"] = "not comparable"
        out["why"] = "differs, but the metric has no better direction"
    else:
        b_higher = np.median(samples_b) > np.median(samples_a)
        improved = b_higher == (out["better"] == "higher")
        out["verdict"] = "improved" if improved else "regressed"
    return out


def _by_tolerance(out: dict, few: str) -> dict:
    """Too few samples for the test: a change beyond the stated tolerance decides, and says so."""
    a, b, tolerance = out["a"], out["b"], out["tolerance"]
    out["verdict"] = "insufficient samples"
    out["why"] = few
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
    return out


def _num(value: float) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.4g}"


def _ratio(row: dict) -> str:
    if pd.isna(row["ratio"]):
        return "-"
    text = f"{row['ratio']:.3f}"
    if not pd.isna(row["gain"]):
        gain = row["gain"]
        text += f" ({gain:.2f}x better)" if gain >= 1 else f" ({1 / gain:.2f}x worse)"
    return text
