"""The comparison in words: a row's verdict, ratio and figures as shown (the terminal table and the
report), and the HTML section of the report.
"""

from __future__ import annotations

import html

import pandas as pd

from archbench.reports.compare import devices_note, setup_note

__all__ = ["cell_text", "comparison_html", "number_text", "ratio_text", "verdict_text"]


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
