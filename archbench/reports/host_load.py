"""The loaded-host rule that report, pick and compare share: when a timing shared the machine's
cores with other work, it measures that work as much as the code, and decisions leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = [
    "HOST_LOAD_METRIC",
    "LOADED_EXCESS",
    "HostLoad",
    "RunLoad",
    "decision_rows",
    "is_timing",
    "mark_loaded",
    "median_load",
    "own_load",
    "run_loads",
    "timing_rows",
]

HOST_LOAD_METRIC = "host_load_per_core"
"""The record metric that carries the host's 1-minute load average per core during the case."""

# A CPU run's own threads keep every core busy (load 1 per core); a GPU run's host work is one
# thread of many cores (taken as 0). Above LOADED_EXCESS beyond that, other work shared the cores.
_OWN_LOAD_CPU = 1.0
LOADED_EXCESS = 0.5
_LOADED_RATIO = 2.0
# Dimensionless figures derived from timings: they move with the host load like the timings do.
_TIMING_RATIOS = frozenset(
    {"ceiling_fraction", "update_ceiling_fraction", "floor_fraction", "forward_over_step",
     "speedup_ratio_vs_sb3"}
)  # fmt: skip
_RECORD_KEY = ["run", "suite", "preset", "hidden_dims", "case"]


def is_timing(metric: str, unit: str | None) -> bool:
    """Seconds, rates (1/s, FLOP/s, B/s) and ratios of them; not bytes, counts or scores."""
    return (
        unit == "s" or (isinstance(unit, str) and unit.endswith("/s")) or (metric in _TIMING_RATIOS)
    )


def timing_rows(frame: pd.DataFrame) -> pd.Series:
    """True on the rows of a load_runs frame whose figure is a timing (is_timing)."""
    flags = [
        isinstance(metric, str) and metric != HOST_LOAD_METRIC and is_timing(metric, unit)
        for metric, unit in zip(frame["metric"], frame["unit"], strict=True)
    ]
    return pd.Series(flags, index=frame.index, dtype=bool)


def own_load(devices: pd.Series) -> float:
    """Load per core the benchmark's own threads account for: 0 on a GPU run, 1 on a CPU run."""
    on_gpu = devices.dropna().astype(str).str.startswith("cuda").any()
    return 0.0 if on_gpu else _OWN_LOAD_CPU


def median_load(frame: pd.DataFrame) -> float | None:
    """The median host_load_per_core over a frame's records; None when none carries one."""
    values = frame.loc[frame["metric"] == HOST_LOAD_METRIC, "value"].dropna()
    return float(values.median()) if len(values) else None


def _excess(load: float | None, own: float) -> float:
    return 0.0 if load is None or pd.isna(load) else max(0.0, float(load) - own)


@dataclass(frozen=True)
class HostLoad:
    """Each of two runs' host load per core (median over its records) and whether one is loaded.

    Rule: a run's excess load is its median load per core minus what the benchmark itself puts
    there (1 on a CPU run, whose threads use every core; 0 on a GPU run). A run is loaded when
    its excess is above 0.5 per core and more than 2x the other run's: its timings shared the
    cores with other work the other run did not see, so a timing difference is not the code's.
    """

    a: float | None
    """Run A's median host_load_per_core; None when its records do not carry one."""
    b: float | None
    """Run B's median host_load_per_core; None when its records do not carry one."""
    own_a: float
    """Load per core run A's own benchmark threads account for (1 on a CPU run, 0 on a GPU)."""
    own_b: float
    """The same for run B."""

    @property
    def loaded(self) -> str | None:
        """'A' or 'B' when that run is loaded by the rule above, else None."""
        if self.a is None or self.b is None:
            return None
        excess_a, excess_b = _excess(self.a, self.own_a), _excess(self.b, self.own_b)
        if excess_a > LOADED_EXCESS and excess_a > _LOADED_RATIO * excess_b:
            return "A"
        if excess_b > LOADED_EXCESS and excess_b > _LOADED_RATIO * excess_a:
            return "B"
        return None

    def describe(self) -> str:
        """One line: both loads and, when one run is loaded, which and by what rule."""
        loads = f"host load per core (median): A {_number(self.a)}, B {_number(self.b)}"
        if self.a is None or self.b is None:
            return f"{loads}; not recorded in both runs, so not checked"
        side = self.loaded
        if side is None:
            return f"{loads}; not materially different"
        own = self.own_a if side == "A" else self.own_b
        return (
            f"{loads}: run {side} is LOADED (its load beyond its own {own:g} per core is above "
            f"{LOADED_EXCESS:g} and over {_LOADED_RATIO:g}x the other run's), so its timing "
            "rows (seconds, rates, FLOP/s) measure the other work as much as the code"
        )


@dataclass(frozen=True)
class RunLoad:
    """One run's host load against the single-run rule: loaded when the median load per core
    beyond the benchmark's own threads is above LOADED_EXCESS."""

    run: str
    """The run's name (load.run_name)."""
    median: float | None
    """Median host_load_per_core over the run's records; None when none carries one."""
    peak: float | None
    """Highest host_load_per_core of any record in the run."""
    own: float
    """Load per core the run's own threads account for (1 on a CPU run, 0 on a GPU run)."""
    loaded_records: int
    """How many of the run's records were taken above the rule's load."""
    records: int
    """How many of the run's records carry a host load."""

    @property
    def loaded(self) -> bool:
        """True when the run as a whole (its median) was taken on a loaded host."""
        return _excess(self.median, self.own) > LOADED_EXCESS

    def describe(self) -> str:
        """One line for the page and for pick's answer."""
        if self.median is None:
            return f"{self.run}: host load not recorded, so not checked"
        loads = (
            f"{self.run}: host load per core median {self.median:.2f} (max {self.peak:.2f}); "
            f"its own threads account for {self.own:g}"
        )
        if self.loaded:
            return (
                f"{loads}: LOADED (more than {LOADED_EXCESS:g} per core beyond its own), so its "
                "timings measure the other work on the machine as much as the network"
            )
        if self.loaded_records:
            return f"{loads}; {self.loaded_records} of {self.records} records taken above it"
        return f"{loads}; not loaded"


def run_loads(df: pd.DataFrame) -> list[RunLoad]:
    """The single-run rule for each run in a load_runs frame, in the frame's order."""
    marked = mark_loaded(df)
    out = []
    for run, frame in marked.groupby("run", sort=False):
        loads = frame.loc[frame["metric"] == HOST_LOAD_METRIC, "value"].dropna()
        records = frame.loc[frame["metric"] == HOST_LOAD_METRIC]
        out.append(
            RunLoad(
                run=str(run),
                median=float(loads.median()) if len(loads) else None,
                peak=float(loads.max()) if len(loads) else None,
                own=own_load(frame["device"]),
                loaded_records=int(records["loaded_host"].sum()),
                records=len(loads),
            )
        )
    return out


def mark_loaded(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a load_runs frame with `host_load` (the record's load per core, or the run's
    median where the record has none) and `loaded_host` (True when that load is beyond the
    record's own threads by more than LOADED_EXCESS) on every row."""
    out = df.copy()
    key = [out[column].map(str) for column in _RECORD_KEY]
    loads = out["value"].where(out["metric"] == HOST_LOAD_METRIC)
    per_record = loads.groupby(key).transform("max")
    per_run = loads.groupby(out["run"]).transform("median")
    out["host_load"] = per_record.fillna(per_run).astype(float)
    own = out.groupby("run", sort=False)["device"].transform(lambda d: own_load(d)).astype(float)
    out["loaded_host"] = (out["host_load"] - own).fillna(0.0) > LOADED_EXCESS
    return out


def decision_rows(df: pd.DataFrame, *, allow_loaded: bool = False) -> pd.DataFrame:
    """The frame the decisions read: timings taken on a loaded host left out unless allowed.

    A left-out timing becomes unavailable with the reason, so the engine treats it as missing
    evidence (which never wins) and the page can say why."""
    marked = mark_loaded(df)
    if allow_loaded:
        return marked
    drop = marked["loaded_host"] & timing_rows(marked) & marked["value"].notna()
    out = marked.copy()
    out.loc[drop, "unavailable"] = [
        f"taken on a loaded host (load {load:.2f} per core); --allow-loaded uses it"
        for load in out.loc[drop, "host_load"]
    ]
    out.loc[drop, "value"] = float("nan")
    out.loc[drop, "samples"] = [() for _ in range(int(drop.sum()))]
    return out


def _number(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.4g}"
