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

# Memory figures in the order they are trusted: what the driver charged the process, then
# what the allocator holds, then host RSS. Other byte metrics of the memory suite come after.
_MEMORY_METRICS = (
    "nvml_process_used_bytes",
    "torch_reserved_bytes",
    "nvml_device_used_bytes",
    "torch_allocated_bytes",
    "peak_rss_bytes",
)
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
    """One way people use a PPO trading net, as an objective under constraints."""

    name: str
    """Short label shown in the report."""
    objective: str
    """What is maximised or minimised."""
    constraints: str
    """What a size must satisfy to be considered."""
    metric: str
    """The preset_summary column that decides, and that the noise check compares."""


USE_CASES: tuple[UseCase, ...] = (
    UseCase("quick iteration", "highest training throughput (env steps/s)", "none", "throughput"),
    UseCase(
        "standard production",
        "best mean out-of-sample Sharpe on the longest dataset",
        "fits the memory budget; batch-1 p99 latency within the budget",
        "val_sharpe",
    ),
    UseCase(
        "live trading",
        "most parameters",
        "batch-1 p99 latency within the budget",
        "latency_p99",
    ),
    UseCase(
        "complex / volatile symbols",
        "most parameters",
        "fits the memory budget; mean Sharpe gap on the longest dataset under the threshold",
        "sharpe_gap",
    ),
    UseCase(
        "limited data (< 1 year of bars)",
        "smallest mean Sharpe gap (train - validation) on the short datasets",
        "none",
        "short_sharpe_gap",
    ),
    UseCase(
        "extended training (500M+ steps)",
        "most parameters",
        "fits the memory budget; throughput at least the set fraction of the fastest size",
        "throughput",
    ),
)


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
    (+_samples, _backend), memory_bytes (+_source), val_sharpe (+_samples), sharpe_gap
    (+_samples), short_sharpe_gap (+_samples), bars, short_bars.
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
    for name in _MEMORY_METRICS:
        hit = m[m["metric"] == name]
        if len(hit):
            return {"memory_bytes": float(hit["value"].max()), "memory_source": name}
    other = m[(m["unit"] == "B") & (m["metric"] != "checkpoint_bytes")]
    if len(other):
        return {
            "memory_bytes": float(other["value"].max()),
            "memory_source": other["metric"].iloc[0],
        }
    for predicted in rows["record_predicted"]:
        if isinstance(predicted, dict) and predicted.get("train_bytes"):
            return {"memory_bytes": float(predicted["train_bytes"]), "memory_source": "predicted"}
    return {}


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


def _fits_memory(summary: pd.DataFrame, budgets: Budgets) -> tuple[pd.DataFrame, str]:
    fits = summary[~summary["oom"]]
    if budgets.memory_bytes is None:
        return fits, "no memory limit known (CPU run, no budget given); OOM cases excluded"
    measured = _has(fits, "memory_bytes")
    fits = measured[measured["memory_bytes"] <= budgets.memory_bytes]
    return fits, f"memory <= {budgets.memory_bytes / 2**30:.1f} GiB"


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
    name = use.name
    key = use.metric
    notes: list[str] = []
    if name == "quick iteration":
        pool = _has(summary[~summary["oom"]], key)
        if pool.empty:
            return none("no training throughput measured (train suite missing)")
        ranked = pool.sort_values(key, ascending=False)
    elif name == "standard production":
        pool, mem_note = _fits_memory(_has(summary, key), budgets)
        notes.append(mem_note)
        if _has(summary, "latency_p99").empty:
            notes.append("latency not checked: no batch-1 latency measured")
        else:
            pool = _has(pool, "latency_p99")
            pool = pool[pool["latency_p99"] <= budgets.latency_p99_s]
            notes.append(f"p99 <= {budgets.latency_p99_s * 1e3:g} ms")
        if _has(summary, key).empty:
            return none("no out-of-sample Sharpe measured (overfit suite missing)")
        if pool.empty:
            return none(f"no size with a measured Sharpe fits the budgets ({'; '.join(notes)})")
        ranked = pool.sort_values(key, ascending=False)
    elif name == "live trading":
        pool = _has(summary, key)
        if pool.empty:
            return none("no batch-1 p99 latency measured (infer suite missing)")
        fitting = pool[pool[key] <= budgets.latency_p99_s]
        if fitting.empty:
            fastest = pool.loc[pool[key].idxmin()]
            return none(
                f"no size meets the {budgets.latency_p99_s * 1e3:g} ms batch-1 p99 budget; "
                f"fastest is {fastest['preset']} at {fastest[key] * 1e3:.3f} ms"
            )
        notes.append(f"budget p99 <= {budgets.latency_p99_s * 1e3:g} ms")
        ranked = fitting.sort_values("params", ascending=False)
    elif name == "complex / volatile symbols":
        if _has(summary, key).empty:
            return none("no Sharpe gap measured (overfit suite missing)")
        pool, mem_note = _fits_memory(_has(summary, key), budgets)
        notes.append(mem_note)
        pool = pool[pool[key] <= budgets.max_sharpe_gap]
        notes.append(f"gap <= {budgets.max_sharpe_gap:g}")
        if pool.empty:
            return none(f"no size keeps the Sharpe gap under the threshold ({'; '.join(notes)})")
        ranked = pool.sort_values("params", ascending=False)
    elif name.startswith("limited data"):
        pool = _has(summary, key)
        if pool.empty:
            return none("no Sharpe gap on short datasets (overfit suite missing)")
        limit = budgets.limited_data_bars
        if limit is not None and int(pool["short_bars"].iloc[0]) > limit:
            return none(f"no dataset of <= {limit} bars was measured")
        notes.append(f"dataset of {int(pool['short_bars'].iloc[0])} bars")
        ranked = pool.sort_values(key, ascending=True)
    else:  # extended training
        pool, mem_note = _fits_memory(_has(summary, key), budgets)
        notes.append(mem_note)
        if _has(summary, key).empty:
            return none("no training throughput measured (train suite missing)")
        floor = budgets.min_throughput_fraction * float(_has(summary, key)[key].max())
        pool = pool[pool[key] >= floor]
        notes.append(f"throughput >= {budgets.min_throughput_fraction:.0%} of the fastest")
        if pool.empty:
            return none(f"no size fits ({'; '.join(notes)})")
        ranked = pool.sort_values("params", ascending=False)

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
        use_case=name,
        hidden_dims=best["hidden_dims"],
        preset=best["preset"],
        reason=reason,
        runner_up=runner["preset"] if runner is not None else None,
        within_noise=noise,
    )
