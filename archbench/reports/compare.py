"""Run A vs run B (two GPUs, two commits): per preset, case and metric, the ratio and a verdict.

Each metric is judged on the statistic it reports (p99 by a bootstrap, median by Mann-Whitney U,
mean by Welch t), corrected for the number of rows (Benjamini-Hochberg), with a minimum effect.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from archbench.reports.compare_pool import _STATUS, _frame, _name, _pooled, _setup, _statuses
from archbench.reports.compare_verdicts import (
    DEFAULT_DRIFT,
    DEFAULT_MIN_EFFECT,
    DEFAULT_TOLERANCE,
    _compare_row,
    judge_rows,
)
from archbench.reports.evidence import device_groups
from archbench.reports.host_load import HostLoad, median_load, own_load
from ppo_core.errors import ConfigError

__all__ = [
    "HostLoad",
    "compare_runs",
    "devices_note",
    "has_regression",
    "setup_note",
    "unjudged_timing_rows",
]


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


_COLUMNS = [
    "suite", "preset", "case", "metric", "unit", "better", "statistic", "test", "timing", "a",
    "b", "ratio", "gain", "ci_low", "ci_high", "p_value", "q_value", "n_a", "n_b", "status_a",
    "status_b", "verdict", "decided_by", "tolerance", "why",
]  # fmt: skip
