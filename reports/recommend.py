"""Pick `hidden_dims` per use case from measured figures, with the figures that decided it.

Use cases are data (an objective and constraints); budgets have stated defaults and can be changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from ppo_core.sizing import CUDA_CONTEXT_BYTES
from reports.stats import bootstrap_percentile_ci, bootstrap_ratio_ci, mann_whitney_u, mean_ci

__all__ = [
    "KNOWN_BARS_PER_YEAR",
    "MEMORY_SAFETY_MARGIN",
    "USE_CASES",
    "Budgets",
    "Recommendation",
    "UseCase",
    "preset_summary",
    "recommend",
    "within_noise",
]

# Does a size fit? Trust what the driver charged the process first, then what the allocator
# holds, then host RSS; the device-wide NVML figure (other processes included) last.
_FIT_METRICS = (
    "nvml_process_used_bytes",
    "torch_reserved_bytes",
    "torch_allocated_bytes",
    "peak_rss_bytes",
    "nvml_device_used_bytes",
)
# Is the sizing model right? Compare what it models (tensors, no CUDA context) with the
# allocator's peak on a GPU or RSS on a CPU.
_CHECK_METRICS = ("torch_allocated_bytes", "peak_rss_bytes")
# Byte metrics of the memory suite that are not a training footprint.
_NOT_FOOTPRINT = ("checkpoint", "cuda_context")
_THROUGHPUT_METRIC = "env_steps_per_s"
_MIN_AGREEMENT = 0.99
# A p99 from fewer raw samples is one or two extreme values; its bootstrap CI says nothing.
# With 20-100 samples the CI is wide (the top few samples), which is the honest answer.
_MIN_P99_SAMPLES = 20

MEMORY_SAFETY_MARGIN = 0.10
"""Share of the GPU's memory kept free when the budget is the GPU itself: allocator
fragmentation, cuBLAS workspaces beyond the context's, and the gap between the datasheet
capacity and what the driver exposes. `ppo_core.pick` uses the same figure."""

KNOWN_BARS_PER_YEAR = {
    "synthetic": 8766.0,
    "sp500": 252.0,
    "nasdaq": 252.0,
    "googl": 252.0,
    "eurusd-1h": 6280.0,
}
"""Bars per year of the datasets bench/ runs, for records written before the overfit suite
put `bars_per_year` (MarketData.periods_per_year) into its case: synthetic is hourly 24/7
(365.25 x 24), equities trade ~252 days a year, hourly EUR/USD ~6,280 bars (weekends absent)."""


@dataclass(frozen=True)
class Budgets:
    """The limits the use cases are decided under; every default is stated in the report."""

    latency_p99_s: float = 1e-3
    """Live trading: batch-1 p99 latency budget. 1 ms leaves a bar-close decision room for
    feature computation and order routing."""
    memory_bytes: float | None = None
    """Training memory budget; None means the run's GPU memory (no limit known on a CPU run)."""
    max_sharpe_gap: float = 0.5
    """Complex symbols: largest allowed mean train-minus-validation Sharpe gap."""
    min_throughput_fraction: float = 0.25
    """Extended training: the least throughput, as a fraction of the fastest size, worth using."""
    limited_data_bars: int | None = None
    """Limited data: the most bars counted as limited; None means less than one year of bars
    (bars / bars per year of the dataset < 1)."""
    alpha: float = 0.05
    """Significance level for 'inside the measurement noise'."""

    def __post_init__(self) -> None:
        for name in ("latency_p99_s", "max_sharpe_gap", "min_throughput_fraction", "alpha"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"Budgets.{name} must be a positive number, got {value!r}")
        if self.memory_bytes is not None and not self.memory_bytes > 0:
            raise ValueError(f"Budgets.memory_bytes must be positive, got {self.memory_bytes!r}")


@dataclass(frozen=True)
class UseCase:
    """One way people use a PPO trading net: an objective under constraints, as data."""

    name: str
    """Short label shown in the report."""
    objective: str
    """What is maximised or minimised, in words."""
    constraints: str
    """What a size must satisfy to be considered, in words."""
    metric: str
    """The preset_summary column a size must have measured; the noise check compares it."""
    rank_by: str
    """The preset_summary column the candidates are ranked on ('params' = most capable)."""
    highest_first: bool
    """Rank descending (True) or ascending (False)."""
    limits: tuple[str, ...] = ()
    """Constraints applied in order: 'memory', 'latency', 'sharpe_gap', 'throughput',
    'short_data' (each reads its threshold from Budgets)."""


USE_CASES: tuple[UseCase, ...] = (
    UseCase(
        "quick iteration",
        "highest training throughput (env steps/s)",
        "none",
        metric="throughput",
        rank_by="throughput",
        highest_first=True,
    ),
    UseCase(
        "standard production",
        "best mean out-of-sample Sharpe on the longest dataset",
        "fits the memory budget; batch-1 p99 latency within the budget",
        metric="val_sharpe",
        rank_by="val_sharpe",
        highest_first=True,
        limits=("memory", "latency"),
    ),
    UseCase(
        "live trading",
        "most parameters",
        "batch-1 p99 latency within the budget",
        metric="latency_p99",
        rank_by="params",
        highest_first=True,
        limits=("latency",),
    ),
    UseCase(
        "complex / volatile symbols",
        "most parameters",
        "fits the memory budget; mean Sharpe gap on the longest dataset under the threshold",
        metric="sharpe_gap",
        rank_by="params",
        highest_first=True,
        limits=("memory", "sharpe_gap"),
    ),
    UseCase(
        "limited data (< 1 year of bars)",
        "smallest mean Sharpe gap (train - validation) on the short datasets",
        "a dataset counted as < 1 year was measured",
        metric="short_sharpe_gap",
        rank_by="short_sharpe_gap",
        highest_first=False,
        limits=("short_data",),
    ),
    UseCase(
        "extended training (500M+ steps)",
        "most parameters",
        "fits the memory budget; throughput at least the set fraction of the fastest size",
        metric="throughput",
        rank_by="params",
        highest_first=True,
        limits=("memory", "throughput"),
    ),
)

# What each deciding column is, and which suite measures it, for 'no recommendation' reasons.
_MEASURES = {
    "throughput": ("training throughput", "train"),
    "val_sharpe": ("out-of-sample Sharpe", "overfit"),
    "latency_p99": ("batch-1 p99 latency", "infer"),
    "sharpe_gap": ("Sharpe gap", "overfit"),
    "short_sharpe_gap": ("Sharpe gap on short datasets", "overfit"),
}


@dataclass(frozen=True)
class Recommendation:
    """The size chosen for one use case on one run, and why."""

    run: str
    """The benchmark run (file stem) the figures come from."""
    use_case: str
    """UseCase.name."""
    hidden_dims: str | None
    """Chosen widths, '1024,512,256'; None when there is no recommendation."""
    preset: str | None
    """Chosen preset name (or widths joined by 'x' for a custom size)."""
    reason: str
    """The figures that decided it, or 'no recommendation: <why>'."""
    runner_up: str | None = None
    """The next best preset, if any."""
    within_noise: bool | None = None
    """True when the deciding figure is within the measurement noise of `noise_against`: of
    the runner-up's (use cases ranked on a figure), or of the budget or threshold that admitted
    the winner (use cases ranked by params: it may not really meet it); None when the samples
    are too few to tell."""
    noise_against: str | None = None
    """What `within_noise` compared the winner's figure with: 'runner-up', or the constraint
    (e.g. 'batch-1 p99 <= 1 ms'); None when nothing was compared."""


def recommend(df: pd.DataFrame, budgets: Budgets | None = None) -> list[Recommendation]:
    """Every use case for every run in `df` (a reports.load frame)."""
    budgets = budgets or Budgets()
    out = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame, budgets)
        run_budgets, memory_note = budgets, "given budget"
        if budgets.memory_bytes is None:
            gpu_memory = frame["gpu_memory_bytes"].dropna()
            if len(gpu_memory):
                # The same usable share of the card as `archbench pick`.
                usable = float(gpu_memory.iloc[0]) * (1 - MEMORY_SAFETY_MARGIN)
                run_budgets = replace(budgets, memory_bytes=usable)
                memory_note = f"GPU memory minus a {MEMORY_SAFETY_MARGIN:.0%} safety margin"
        gaps = _suite_gaps(frame)
        for use_case in USE_CASES:
            rec = _decide(str(run), use_case, summary, run_budgets, memory_note)
            for suite, why in gaps.items():
                rec = replace(
                    rec, reason=rec.reason.replace(f"({suite} suite missing)", f"({why})")
                )
            out.append(rec)
    return out


def preset_summary(frame: pd.DataFrame, budgets: Budgets | None = None) -> pd.DataFrame:
    """One row per preset of ONE run with the figures the use cases decide on.

    Columns: preset, hidden_dims, params, oom (any case OOM), oom_suites (the suites with an
    OOM case), throughput (+_samples, _case), latency_p99 (+_raw: the batch-1 latency samples
    its p99 was taken from, _backend), memory_bytes (+_source: what must fit, with the CUDA
    context on a GPU run, or 'predicted'), memory_check_bytes (+_source, _predicted: the figure
    that checks the sizing model), val_sharpe (+_samples), sharpe_gap (+_samples),
    short_sharpe_gap (+_samples), bars, long_data, short_bars, short_data (the datasets the
    overfit figures come from, with their length in years). Absent columns: no data.
    """
    budgets = budgets or Budgets()
    sized = frame[frame["preset"].notna()]
    datasets = _overfit_datasets(frame, budgets)
    rows = []
    for preset, rows_p in sized.groupby("preset", sort=False):
        dims = rows_p["hidden_dims"].dropna()
        params = rows_p["params"].dropna()
        oom_suites = tuple(dict.fromkeys(rows_p.loc[rows_p["status"] == "oom", "suite"]))
        row = {
            "preset": preset,
            "hidden_dims": dims.iloc[0] if len(dims) else None,
            "params": int(params.iloc[0]) if len(params) else None,
            "oom": bool(oom_suites),
            "oom_suites": oom_suites,
        }
        row.update(_throughput(rows_p))
        row.update(_latency(rows_p))
        row.update(_memory(rows_p))
        row.update(_overfit(rows_p, datasets))
        rows.append(row)
    summary = pd.DataFrame(rows)
    if len(summary):
        summary = summary.sort_values("params", na_position="last").reset_index(drop=True)
    return summary


def within_noise(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> bool | None:
    """Are samples a and b indistinguishable? None when too few samples to tell.

    Mann-Whitney U when the sample sizes can reach significance at all (n >= 4 each for
    alpha 0.05); otherwise overlap of the 95% t intervals of the means (n >= 2 each).
    """
    a, b = list(a), list(b)
    if not a or not b:
        return None
    separated = mann_whitney_u(range(len(a)), range(len(a), len(a) + len(b)))  # no ties
    if separated.p_value <= alpha:
        return mann_whitney_u(a, b).p_value > alpha
    if len(a) >= 2 and len(b) >= 2:
        _, lo_a, hi_a = mean_ci(a)
        _, lo_b, hi_b = mean_ci(b)
        return bool(lo_a <= hi_b and lo_b <= hi_a)
    return None


def _suite_gaps(frame: pd.DataFrame) -> dict[str, str]:
    """Why a suite gave no figures: absent from the run, or every case OOM/error."""
    gaps = {}
    for suite in ("train", "infer", "memory", "overfit"):
        rows = frame[frame["suite"] == suite]
        if rows.empty:
            gaps[suite] = f"{suite} suite missing from the run"
        elif not (rows["status"] == "ok").any():
            gaps[suite] = f"every {suite} case was OOM or failed"
    return gaps


def _metric_rows(rows: pd.DataFrame, suite: str, metric: str) -> pd.DataFrame:
    return rows[
        (rows["suite"] == suite)
        & (rows["metric"] == metric)
        & (rows["status"] == "ok")
        & rows["value"].notna()
    ]


def _throughput(rows: pd.DataFrame) -> dict:
    m = _metric_rows(rows, "train", _THROUGHPUT_METRIC)
    if m.empty:
        return {}
    best = m.loc[m["value"].astype(float).idxmax()]
    samples = tuple(best["samples"]) or (best["value"],)
    return {
        "throughput": float(best["value"]),
        "throughput_samples": samples,
        "throughput_case": best["case"],
    }


def _latency(rows: pd.DataFrame) -> dict:
    m = _metric_rows(rows, "infer", "latency_p99_s")
    if "case_batch" not in m:
        return {}
    m = m[m["case_batch"] == 1]
    agreement = _metric_rows(rows, "infer", "action_agreement")
    low_agreement = set(agreement.loc[agreement["value"] < _MIN_AGREEMENT, "case"])
    m = m[~m["case"].isin(low_agreement)]
    if m.empty:
        return {}
    best = m.loc[m["value"].astype(float).idxmin()]
    backend = best.get("case_backend")
    return {
        "latency_p99": float(best["value"]),
        "latency_p99_raw": tuple(best["samples"]),
        "latency_backend": backend if isinstance(backend, str) else "eager",
    }


def _memory(rows: pd.DataFrame) -> dict:
    m = rows[(rows["suite"] == "memory") & (rows["status"] == "ok") & rows["value"].notna()]
    footprint = m[(m["unit"] == "B") & ~m["metric"].astype(str).str.startswith(_NOT_FOOTPRINT)]
    on_gpu = rows["device"].astype(str).str.startswith("cuda").any()
    context = _cuda_context(rows) if on_gpu else 0.0
    out: dict = {}
    for names, prefix in ((_FIT_METRICS, "memory"), (_CHECK_METRICS, "memory_check")):
        ordered = [footprint[footprint["metric"] == n] for n in names] + [footprint]
        hit = next((h for h in ordered if len(h)), None)
        if hit is not None:
            row = hit.loc[hit["value"].astype(float).idxmax()]
            out[f"{prefix}_bytes"] = float(row["value"])
            out[f"{prefix}_source"] = row["metric"]
            out[f"{prefix}_predicted"] = row["predicted"]
    if "memory_bytes" in out and out["memory_source"].startswith("torch_") and context:
        # The allocator does not see the CUDA context, but the card has to hold it.
        out["memory_bytes"] += context
        out["memory_source"] += " + CUDA context"
    if "memory_bytes" not in out:
        for predicted in rows["record_predicted"]:
            if isinstance(predicted, dict) and predicted.get("train_bytes"):
                out["memory_bytes"] = float(predicted["train_bytes"]) + context
                out["memory_source"] = "predicted" + (" + CUDA context" if context else "")
                break
    return out


def _cuda_context(rows: pd.DataFrame) -> float:
    """The CUDA context the sizing model states in the records, else its constant."""
    for predicted in rows["record_predicted"]:
        if isinstance(predicted, dict) and predicted.get("cuda_context_bytes"):
            return float(predicted["cuda_context_bytes"])
    return float(CUDA_CONTEXT_BYTES)


def _bars_per_year(case: dict) -> float | None:
    recorded = case.get("bars_per_year")
    if isinstance(recorded, int | float) and recorded > 0:
        return float(recorded)
    name = case.get("dataset")
    return KNOWN_BARS_PER_YEAR.get(name.strip().lower()) if isinstance(name, str) else None


def _overfit_datasets(frame: pd.DataFrame, budgets: Budgets) -> dict:
    """Which overfit cases are 'the longest dataset' and which are 'limited data'.

    A case is (dataset, bars): only cases of the same dataset and length are pooled. Length
    compares in years (bars / bars per year), so 5,000 daily bars are 20 years, not 'short'.
    Limited data: under one year (or <= Budgets.limited_data_bars bars when that is set).
    """
    rows = frame[(frame["suite"] == "overfit") & (frame["status"] == "ok")]
    cases: dict[tuple[str, int], float | None] = {}
    for case in rows["case_dict"]:
        if not isinstance(case, dict) or not isinstance(case.get("bars"), int | float):
            continue
        dataset = str(case.get("dataset", "unnamed dataset"))
        per_year = _bars_per_year(case)
        cases[(dataset, int(case["bars"]))] = (
            None if per_year is None else int(case["bars"]) / per_year
        )
    if not cases:
        return {}
    # Unknown durations rank by bars after every known one; never mixed into 'limited data'.
    longest = max(cases, key=lambda k: (cases[k] is not None, cases[k] or 0.0, k[1]))
    if budgets.limited_data_bars is not None:
        short = [k for k in cases if k[1] <= budgets.limited_data_bars]
    else:
        short = [k for k in cases if cases[k] is not None and cases[k] < 1.0]
    known = [k for k in cases if cases[k] is not None]
    shortest = min(known, key=lambda k: cases[k]) if known else min(cases, key=lambda k: k[1])
    return {"cases": cases, "longest": longest, "short": short, "shortest": shortest}


def _data_text(key: tuple[str, int], years: float | None) -> str:
    dataset, bars = key
    length = "unknown bars per year" if years is None else f"{years:.2g} years"
    return f"{dataset} {bars:,} bars ({length})"


def _overfit(rows: pd.DataFrame, datasets: dict) -> dict:
    if not datasets:
        return {}
    cases = datasets["cases"]
    longest, short = datasets["longest"], datasets["short"]
    out: dict = {
        "bars": longest[1],
        "long_data": _data_text(longest, cases[longest]),
        "short_bars": max((k[1] for k in short), default=None),
        "short_data": "; ".join(_data_text(k, cases[k]) for k in short) or None,
        "shortest_data": _data_text(datasets["shortest"], cases[datasets["shortest"]]),
    }
    for column, metric, keys in (
        ("val_sharpe", "val_sharpe", [longest]),
        ("sharpe_gap", "sharpe_gap", [longest]),
        ("short_sharpe_gap", "sharpe_gap", short),
    ):
        m = _metric_rows(rows, "overfit", metric)
        if m.empty or not keys:
            continue
        in_keys = [
            (str(c.get("dataset", "unnamed dataset")), int(c.get("bars", -1))) in keys
            for c in m["case_dict"]
        ]
        m = m[in_keys]
        if len(m):
            out[column] = float(m["value"].astype(float).mean())
            out[f"{column}_samples"] = tuple(float(v) for v in m["value"])
    return out


def _has(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    if column not in summary:
        return summary.iloc[0:0]
    return summary[summary[column].notna()]


def _not_oom_in(pool: pd.DataFrame, suite: str) -> pd.DataFrame:
    if "oom_suites" not in pool:
        return pool
    return pool[[suite not in suites for suites in pool["oom_suites"]]]


def _limit(
    kind: str, pool: pd.DataFrame, summary: pd.DataFrame, budgets: Budgets, memory_note: str
) -> tuple[pd.DataFrame, str, str]:
    """Apply one constraint: (remaining sizes, the constraint stated, the closest miss)."""
    if kind == "memory":
        fits = _not_oom_in(pool, "memory")  # went out of memory measuring it: does not fit
        gone = [p for p in pool["preset"] if p not in set(fits["preset"])]
        oom = f"; {', '.join(gone)} went OOM in the memory suite" if gone else ""
        if budgets.memory_bytes is None:
            return fits, f"no memory limit known (CPU run, no budget given){oom}", ""
        limit = budgets.memory_bytes
        note = f"memory <= {limit / 2**30:.3g} GiB ({memory_note}){oom}"
        known = _has(fits, "memory_bytes")
        closest = known.nsmallest(1, "memory_bytes")
        miss = "".join(
            f"; smallest need is {r.preset} at {r.memory_bytes / 2**30:.3g} GiB"
            for r in closest.itertuples()
        )
        return known[known["memory_bytes"] <= limit], note, miss
    if kind == "latency":
        if _has(summary, "latency_p99").empty:
            return pool, "latency not checked: no batch-1 latency measured", ""
        limit = budgets.latency_p99_s
        known = _has(pool, "latency_p99")
        miss = "".join(
            f"; fastest is {r.preset} at {r.latency_p99 * 1e3:.3f} ms"
            for r in _has(summary, "latency_p99").nsmallest(1, "latency_p99").itertuples()
        )
        return known[known["latency_p99"] <= limit], f"batch-1 p99 <= {limit * 1e3:g} ms", miss
    if kind == "sharpe_gap":
        limit = budgets.max_sharpe_gap
        known = _has(pool, "sharpe_gap")
        miss = "".join(
            f"; smallest gap is {r.preset} at {r.sharpe_gap:.2f}"
            for r in known.nsmallest(1, "sharpe_gap").itertuples()
        )
        return known[known["sharpe_gap"] <= limit], f"mean Sharpe gap <= {limit:g}", miss
    if kind == "throughput":
        fraction = budgets.min_throughput_fraction
        floor = fraction * float(_has(summary, "throughput")["throughput"].max())
        known = _has(pool, "throughput")
        note = f"throughput >= {fraction:.0%} of the fastest ({floor:,.0f} env steps/s)"
        return known[known["throughput"] >= floor], note, ""
    if kind == "short_data":
        limit = budgets.limited_data_bars
        wanted = "< 1 year of bars" if limit is None else f"<= {limit:,} bars"
        short = _has(pool, "short_data")
        if short.empty:
            shortest = _has(summary, "shortest_data")
            miss = "".join(f"; shortest was {r}" for r in shortest["shortest_data"].iloc[:1])
            return short, f"a dataset of {wanted}", miss
        return short, f"{wanted}: {short['short_data'].iloc[0]}", ""
    raise ValueError(f"UseCase.limits has unknown constraint {kind!r}")


def _fmt(column: str, value: float) -> str:
    if column == "throughput":
        return f"{value:,.0f} env steps/s"
    if column == "latency_p99":
        return f"batch-1 p99 {value * 1e3:.3f} ms"
    if column in ("val_sharpe",):
        return f"mean val Sharpe {value:.2f}"
    return f"mean Sharpe gap {value:.2f}"


def _samples(row: pd.Series, key: str) -> tuple[float, ...]:
    samples = row.get(f"{key}_samples")
    return tuple(samples) if isinstance(samples, tuple) else ()


def _p99_ci(raw: Sequence[float], alpha: float) -> tuple[float, float] | None:
    """Bootstrap CI of a p99 from its raw latency samples; None when too few for one."""
    if len(raw) < _MIN_P99_SAMPLES:
        return None
    return bootstrap_percentile_ci(raw, 99.0, confidence=1 - alpha)


def _p99_within_noise(a: Sequence[float], b: Sequence[float], alpha: float) -> bool | None:
    """Are two p99s within noise? The bootstrap CI of their ratio contains 1."""
    if len(a) < _MIN_P99_SAMPLES or len(b) < _MIN_P99_SAMPLES:
        return None
    low, high = bootstrap_ratio_ci(a, b, percentile=99.0, confidence=1 - alpha)
    return bool(low <= 1.0 <= high)


def _near_threshold(row: pd.Series, kind: str, limit: float, alpha: float) -> bool | None:
    """Is the winner's constrained figure within noise of the threshold that admitted it?"""
    if kind == "latency":
        interval = _p99_ci(_raw(row, "latency_p99_raw"), alpha)
    else:
        column = {"sharpe_gap": "sharpe_gap", "throughput": "throughput"}[kind]
        samples = _samples(row, column)
        interval = mean_ci(samples)[1:] if len(samples) >= 2 else None
    if interval is None or any(math.isnan(v) for v in interval):
        return None
    return bool(interval[0] <= limit <= interval[1])


def _raw(row: pd.Series, column: str) -> tuple[float, ...]:
    value = row.get(column)
    return tuple(value) if isinstance(value, tuple) else ()


def _threshold(kind: str, summary: pd.DataFrame, budgets: Budgets) -> float | None:
    if kind == "latency":
        return None if _has(summary, "latency_p99").empty else budgets.latency_p99_s
    if kind == "sharpe_gap":
        return budgets.max_sharpe_gap
    if kind == "throughput":
        return budgets.min_throughput_fraction * float(
            _has(summary, "throughput")["throughput"].max()
        )
    return None


def _decide(
    run: str, use: UseCase, summary: pd.DataFrame, budgets: Budgets, memory_note: str
) -> Recommendation:
    def none(why: str) -> Recommendation:
        return Recommendation(run, use.name, None, None, f"no recommendation: {why}")

    if summary.empty:
        return none("the run has no per-preset records")
    key = use.metric
    what, suite = _MEASURES[key]
    measured = _has(summary, key)
    if measured.empty:
        if "short_data" in use.limits and not _has(summary, "shortest_data").empty:
            _, note, miss = _limit("short_data", measured, summary, budgets, memory_note)
            return none(f"no size meets {note}{miss}")
        return none(f"no {what} measured ({suite} suite missing)")
    # Only an OOM in the suite that measures the deciding figure rules a size out here.
    pool = _not_oom_in(measured, suite)
    if pool.empty:
        return none(f"every size with a {what} went OOM in the {suite} suite")
    notes = []
    applied = []
    for kind in use.limits:
        pool, note, miss = _limit(kind, pool, summary, budgets, memory_note)
        notes.append(note)
        applied.append((kind, note))
        if pool.empty:
            earlier = f" (after {'; '.join(notes[:-1])})" if len(notes) > 1 else ""
            return none(f"no size meets {note}{miss}{earlier}")
    ranked = pool.sort_values(use.rank_by, ascending=not use.highest_first)
    best = ranked.iloc[0]
    runner = ranked.iloc[1] if len(ranked) > 1 else None
    reason = f"{best['preset']}: {_fmt(key, best[key])}, {best['params']:,} params"
    if key == "latency_p99":
        reason += f" ({best['latency_backend']})"
    if runner is not None:
        reason += f"; runner-up {runner['preset']}: {_fmt(key, runner[key])}"
    noise, against = None, None
    if use.rank_by == "params":
        # Ranked by size: the question is whether the winner really meets its constraint.
        deciding = [(k, n) for k, n in applied if k not in ("memory", "short_data")]
        if deciding:
            kind, against = deciding[-1]
            limit = _threshold(kind, summary, budgets)
            if limit is not None:
                noise = _near_threshold(best, kind, limit, budgets.alpha)
            else:
                against = None
    elif runner is not None and key == "latency_p99":
        against = "runner-up"
        raw = _raw(best, "latency_p99_raw"), _raw(runner, "latency_p99_raw")
        noise = _p99_within_noise(*raw, budgets.alpha)
    elif runner is not None:
        against = "runner-up"
        noise = within_noise(_samples(best, key), _samples(runner, key), budgets.alpha)
    if notes:
        reason += f" [{'; '.join(notes)}]"
    return Recommendation(
        run=run,
        use_case=use.name,
        hidden_dims=best["hidden_dims"],
        preset=best["preset"],
        reason=reason,
        runner_up=runner["preset"] if runner is not None else None,
        within_noise=noise,
        noise_against=against,
    )
