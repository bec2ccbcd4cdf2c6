"""Pick `hidden_dims` per use case from measured figures, with the figures that decided it.

Use cases are data (an objective and constraints); budgets have stated defaults and can be changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from reports.stats import mann_whitney_u, mean_ci

__all__ = [
    "USE_CASES",
    "Budgets",
    "Recommendation",
    "UseCase",
    "preset_summary",
    "recommend",
    "within_noise",
]

# Does a size fit? Trust what the driver charged the process first, then what the allocator
# holds, then host RSS; other byte metrics of the memory suite after those.
_FIT_METRICS = (
    "nvml_process_used_bytes",
    "torch_reserved_bytes",
    "nvml_device_used_bytes",
    "torch_allocated_bytes",
    "peak_rss_bytes",
)
# Is the sizing model right? Compare what it models (tensors, no CUDA context) with the
# allocator's peak on a GPU or RSS on a CPU.
_CHECK_METRICS = ("torch_allocated_bytes", "peak_rss_bytes")
# Byte metrics of the memory suite that are not a training footprint.
_NOT_FOOTPRINT = ("checkpoint", "cuda_context")
_THROUGHPUT_METRIC = "env_steps_per_s"
_MIN_AGREEMENT = 0.99


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
    """Limited data: dataset lengths counted as < 1 year; None means the shortest one measured."""
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
    """True when the deciding figure of winner and runner-up differ by less than the noise;
    None when the samples are too few to tell."""


def recommend(df: pd.DataFrame, budgets: Budgets | None = None) -> list[Recommendation]:
    """Every use case for every run in `df` (a reports.load frame)."""
    budgets = budgets or Budgets()
    out = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame)
        run_budgets = budgets
        if budgets.memory_bytes is None:
            gpu_memory = frame["gpu_memory_bytes"].dropna()
            if len(gpu_memory):
                run_budgets = replace(budgets, memory_bytes=float(gpu_memory.iloc[0]))
        gaps = _suite_gaps(frame)
        for use_case in USE_CASES:
            rec = _decide(str(run), use_case, summary, run_budgets)
            for suite, why in gaps.items():
                rec = replace(
                    rec, reason=rec.reason.replace(f"({suite} suite missing)", f"({why})")
                )
            out.append(rec)
    return out


def preset_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per preset of ONE run with the figures the use cases decide on.

    Columns: preset, hidden_dims, params, oom, throughput (+_samples, _case), latency_p99
    (+_samples, _backend), memory_bytes (+_source: what must fit, or 'predicted'),
    memory_check_bytes (+_source, _predicted: the figure that checks the sizing model),
    val_sharpe (+_samples), sharpe_gap (+_samples), short_sharpe_gap (+_samples), bars,
    short_bars. Columns a run has no data for are absent.
    """
    sized = frame[frame["preset"].notna()]
    rows = []
    for preset, rows_p in sized.groupby("preset", sort=False):
        dims = rows_p["hidden_dims"].dropna()
        params = rows_p["params"].dropna()
        row = {
            "preset": preset,
            "hidden_dims": dims.iloc[0] if len(dims) else None,
            "params": int(params.iloc[0]) if len(params) else None,
            "oom": bool((rows_p["status"] == "oom").any()),
        }
        row.update(_throughput(rows_p))
        row.update(_latency(rows_p))
        row.update(_memory(rows_p))
        row.update(_overfit(rows_p, frame))
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
    return rows[(rows["suite"] == suite) & (rows["metric"] == metric) & rows["value"].notna()]


def _throughput(rows: pd.DataFrame) -> dict:
    m = _metric_rows(rows, "train", _THROUGHPUT_METRIC)
    if m.empty:
        return {}
    best = m.loc[m["value"].idxmax()]
    samples = best["samples"] or (best["value"],)
    return {
        "throughput": best["value"],
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
    best = m.loc[m["value"].idxmin()]
    backend = best.get("case_backend")
    return {
        "latency_p99": best["value"],
        "latency_p99_samples": _p99_samples(best["samples"]),
        "latency_backend": backend if isinstance(backend, str) else "eager",
    }


def _p99_samples(samples: tuple[float, ...]) -> tuple[float, ...]:
    """Raw latency samples say nothing about the p99's own noise; resampled p99s do."""
    if len(samples) < 10:
        return ()
    rng = np.random.default_rng(0)
    draws = rng.choice(np.asarray(samples), size=(20, len(samples)))
    return tuple(float(v) for v in np.percentile(draws, 99, axis=1))


def _memory(rows: pd.DataFrame) -> dict:
    m = rows[(rows["suite"] == "memory") & rows["value"].notna()]
    footprint = m[(m["unit"] == "B") & ~m["metric"].str.startswith(_NOT_FOOTPRINT)]
    out: dict = {}
    for names, prefix in ((_FIT_METRICS, "memory"), (_CHECK_METRICS, "memory_check")):
        ordered = [footprint[footprint["metric"] == n] for n in names] + [footprint]
        hit = next((h for h in ordered if len(h)), None)
        if hit is not None:
            row = hit.loc[hit["value"].idxmax()]
            out[f"{prefix}_bytes"] = float(row["value"])
            out[f"{prefix}_source"] = row["metric"]
            out[f"{prefix}_predicted"] = row["predicted"]
    if "memory_bytes" not in out:
        for predicted in rows["record_predicted"]:
            if isinstance(predicted, dict) and predicted.get("train_bytes"):
                out["memory_bytes"] = float(predicted["train_bytes"])
                out["memory_source"] = "predicted"
                break
    return out


def _overfit(rows: pd.DataFrame, frame: pd.DataFrame) -> dict:
    if "case_bars" not in frame:
        return {}
    all_bars = frame.loc[frame["suite"] == "overfit", "case_bars"].dropna()
    if all_bars.empty:
        return {}
    longest, shortest = int(all_bars.max()), int(all_bars.min())
    out: dict = {"bars": longest, "short_bars": shortest}
    for column, metric, bars in (
        ("val_sharpe", "val_sharpe", longest),
        ("sharpe_gap", "sharpe_gap", longest),
        ("short_sharpe_gap", "sharpe_gap", shortest),
    ):
        m = _metric_rows(rows, "overfit", metric)
        m = m[m["case_bars"] == bars]
        if len(m):
            out[column] = float(m["value"].mean())
            out[f"{column}_samples"] = tuple(m["value"])
    return out


def _has(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    if column not in summary:
        return summary.iloc[0:0]
    return summary[summary[column].notna()]


def _limit(
    kind: str, pool: pd.DataFrame, summary: pd.DataFrame, budgets: Budgets
) -> tuple[pd.DataFrame, str, str]:
    """Apply one constraint: (remaining sizes, the constraint stated, the closest miss)."""
    if kind == "memory":
        if budgets.memory_bytes is None:
            return pool, "no memory limit known (CPU run, no budget given)", ""
        limit = budgets.memory_bytes
        note = f"memory <= {limit / 2**30:.3g} GiB"
        known = _has(pool, "memory_bytes")
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
        bars = int(pool["short_bars"].iloc[0])
        limit = budgets.limited_data_bars
        if limit is not None and bars > limit:
            return pool.iloc[0:0], f"a dataset of <= {limit} bars", f"; shortest was {bars} bars"
        return pool, f"dataset of {bars} bars", ""
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


def _decide(run: str, use: UseCase, summary: pd.DataFrame, budgets: Budgets) -> Recommendation:
    def none(why: str) -> Recommendation:
        return Recommendation(run, use.name, None, None, f"no recommendation: {why}")

    if summary.empty:
        return none("the run has no per-preset records")
    key = use.metric
    pool = _has(summary[~summary["oom"]], key)
    if pool.empty:
        what, suite = _MEASURES[key]
        return none(f"no {what} measured ({suite} suite missing)")
    notes = []
    for kind in use.limits:
        pool, note, miss = _limit(kind, pool, summary, budgets)
        notes.append(note)
        if pool.empty:
            earlier = f" (after {'; '.join(notes[:-1])})" if len(notes) > 1 else ""
            return none(f"no size meets {note}{miss}{earlier}")
    ranked = pool.sort_values(use.rank_by, ascending=not use.highest_first)
    best = ranked.iloc[0]
    runner = ranked.iloc[1] if len(ranked) > 1 else None
    reason = f"{best['preset']}: {_fmt(key, best[key])}, {best['params']:,} params"
    if key == "latency_p99":
        reason += f" ({best['latency_backend']})"
    noise = None
    if runner is not None:
        reason += f"; runner-up {runner['preset']}: {_fmt(key, runner[key])}"
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
    )
