"""The measured figures per network size that every decision reads, from an archbench_reports.load
frame.

Per size: whole-iteration throughput, batch-1 p99, memory; per dataset: out-of-sample cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from archbench_reports.scores import Score, median_score, percentile_score
from ppo_core.sizing import CUDA_CONTEXT_BYTES

__all__ = [
    "KNOWN_BARS_PER_YEAR",
    "MEMORY_SAFETY_MARGIN",
    "Dataset",
    "OosCell",
    "device_groups",
    "device_label",
    "latest_per_suite",
    "oos_by_length",
    "oos_cells",
    "preset_summary",
    "suite_gaps",
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
# Throughput is the whole PPO iteration (rollout + GAE + update). Records written before the
# train suite named it carry `iteration_s` and the rollout-only `env_steps_per_s`.
_THROUGHPUT_METRIC = "train_env_steps_per_s"
_MIN_AGREEMENT = 0.99
MEMORY_SAFETY_MARGIN = 0.10
"""Share of the GPU's memory kept free when the budget is the GPU itself: allocator
fragmentation, cuBLAS workspaces beyond the context's, and the gap between the datasheet
capacity and what the driver exposes. `archbench pick` uses the same figure."""

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


def preset_summary(frame: pd.DataFrame, precision: str | None = None) -> pd.DataFrame:
    """One row per preset of ONE run (or device group) with its measured figures.

    Columns: preset, hidden_dims, params, oom (any case OOM), oom_suites (the suites with an
    OOM case), throughput (whole-iteration env steps/s of the size's fastest train case, +_score,
    _case; only `precision`'s cases when given and measured), latency_p99 (fastest agreeing
    batch-1 backend, +_score, _backend), memory_bytes
    (+_source: what must fit, with the CUDA context on a GPU run, or 'predicted'),
    memory_check_bytes (+_source, _predicted: the figure that checks the sizing model),
    val_sharpe (mean over seeds on the longest overfit setting, oos_by_length's choice).
    Absent columns: no data.
    """
    sized, note = _at_precision(frame[frame["preset"].notna()], precision)
    cells = oos_cells(frame)
    longest = oos_by_length(cells)[-1] if cells else None
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
        row.update(_throughput(rows_p, note))
        row.update(_latency(rows_p))
        row.update(_memory(rows_p))
        cell = cells[longest].get(preset) if longest is not None else None
        if cell is not None:  # the report's pareto chart: mean Sharpe on the longest data
            row["val_sharpe"] = sum(cell.val_sharpe) / len(cell.val_sharpe)
        rows.append(row)
    summary = pd.DataFrame(rows)
    if len(summary):
        summary = summary.sort_values("params", na_position="last").reset_index(drop=True)
    return summary


def _at_precision(rows: pd.DataFrame, precision: str | None) -> tuple[pd.DataFrame, str]:
    """Only the train cases trained in `precision`, if the run has any; else all, with a note.

    Runs made before training precision was recorded trained in fp32.
    """
    if precision is None:
        return rows, ""
    ran = rows["case_precision"] if "case_precision" in rows else pd.Series(None, rows.index)
    train = rows["suite"] == "train"
    ran = ran.where(ran.notna() | ~train, "fp32")
    if (train & (ran == precision)).any():
        return rows[~train | (ran == precision)], ""
    return rows, f" (no {precision} case measured)"


def suite_gaps(frame: pd.DataFrame) -> dict[str, str]:
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


def _throughput(rows: pd.DataFrame, note: str = "") -> dict:
    """Each size's best whole-iteration throughput over the train suite's cases."""
    per_case = {}
    named = _metric_rows(rows, "train", _THROUGHPUT_METRIC)
    for _, row in named.iterrows():
        per_case[row["case"]] = tuple(row["samples"]) or (float(row["value"]),)
    for _, row in _metric_rows(rows, "train", "iteration_s").iterrows():
        case = row["case_dict"] if isinstance(row["case_dict"], dict) else {}
        steps = (case.get("n_envs") or 0) * (case.get("n_steps") or 0)
        if row["case"] not in per_case and steps > 0:
            seconds = tuple(row["samples"]) or (float(row["value"]),)
            per_case[row["case"]] = tuple(steps / s for s in seconds if s > 0)
    scores = {case: median_score(v, "median iteration") for case, v in per_case.items() if v}
    if not scores:
        return {}
    case = max(scores, key=lambda c: scores[c].value)
    return {
        "throughput": scores[case].value,
        "throughput_score": scores[case],
        "throughput_case": case + note,
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
    raw = tuple(best["samples"])
    score = percentile_score(raw, 99.0) if raw else None
    if score is not None:
        score = Score(float(best["value"]), score.draws, score.how)
    return {
        "latency_p99": float(best["value"]),
        "latency_score": score,
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


@dataclass(frozen=True)
class Dataset:
    """One overfit setting: a dataset at one length and training budget (seeds pool in it)."""

    name: str
    """Dataset name ('synthetic', 'sp500', a file stem)."""
    bars: int
    """Bars in the whole dataset (train + embargo + validation)."""
    budget: int | None
    """Training budget in env steps; None when the records do not say."""
    bars_per_year: float | None
    """Bar frequency, for annualising and for 'years of data'; None when unknown."""
    volatility: float | None = field(default=None, compare=False)
    """Annualised volatility of the bar returns as recorded (the first seed's, where each seed
    draws its own series: not part of the identity); None when not recorded."""

    @property
    def years(self) -> float | None:
        return None if self.bars_per_year is None else self.bars / self.bars_per_year

    def text(self) -> str:
        length = "unknown bars per year" if self.years is None else f"{self.years:.3g} years"
        budget = "" if self.budget is None else f", {self.budget:,} env steps"
        return f"{self.name} {self.bars:,} bars ({length}{budget})"


@dataclass(frozen=True)
class OosCell:
    """One size's out-of-sample evidence on one Dataset: every seed's figures."""

    val_sharpe: tuple[float, ...]
    """Annualised validation Sharpe per seed, net of costs, as the suite computed it."""
    val_returns: tuple[tuple[float, ...], ...] | None
    """Per seed, the net log-return of each validation bar in time order; None if not recorded."""
    oracle_sharpe: tuple[float, ...]
    """The cost-aware oracle's validation Sharpe on the same bars (synthetic data only)."""


def oos_cells(frame: pd.DataFrame) -> dict[Dataset, dict[str, OosCell]]:
    """Overfit suite records -> per Dataset, per preset, the seeds' out-of-sample figures."""
    rows = _metric_rows(frame[frame["preset"].notna()], "overfit", "val_sharpe")
    oracle = frame[
        (frame["suite"] == "overfit")
        & frame["metric"].isin(("oracle_val_sharpe", "val_oracle_sharpe"))
        & frame["value"].notna()
    ]
    oracle_by_case = {(r.preset, r.case): float(r.value) for r in oracle.itertuples()}
    if "case_seed" in rows:  # seed k of every size side by side: scores pair them
        rows = rows.sort_values("case_seed", kind="stable")
    found: dict[Dataset, dict[str, list]] = {}
    for row in rows.itertuples():
        case = row.case_dict if isinstance(row.case_dict, dict) else {}
        if not isinstance(case.get("bars"), int | float):
            continue
        budget = case.get("train_env_steps", case.get("timesteps"))
        volatility = case.get("volatility")
        dataset = Dataset(
            name=str(case.get("dataset", "unnamed dataset")),
            bars=int(case["bars"]),
            budget=int(budget) if isinstance(budget, int | float) else None,
            bars_per_year=_bars_per_year(case),
            volatility=float(volatility) if isinstance(volatility, int | float) else None,
        )
        cell = found.setdefault(dataset, {}).setdefault(row.preset, [[], [], []])
        cell[0].append(float(row.value))
        series = row.series if isinstance(row.series, dict) else {}
        cell[1].append(series.get("val_net_returns"))
        if (row.preset, row.case) in oracle_by_case:
            cell[2].append(oracle_by_case[(row.preset, row.case)])
    return {
        dataset: {
            preset: OosCell(
                val_sharpe=tuple(values),
                val_returns=tuple(series) if all(s for s in series) else None,
                oracle_sharpe=tuple(oracles),
            )
            for preset, (values, series, oracles) in sizes.items()
        }
        for dataset, sizes in found.items()
    }


def oos_by_length(cells: dict[Dataset, dict[str, OosCell]]) -> list[Dataset]:
    """The overfit settings, shortest first: by years (unknown durations after every known
    one), then bars, then how many sizes were measured on it."""
    return sorted(cells, key=lambda d: (d.years is not None, d.years or 0.0, d.bars, len(cells[d])))


def device_label(rows: pd.DataFrame) -> str:
    """What a run measured on: the GPU's name for a CUDA run, else 'CPU <model>'."""
    on_gpu = rows["device"].astype(str).str.startswith("cuda")
    gpu = rows["gpu"].iloc[0] if len(rows) else None
    if on_gpu.any() and gpu not in (None, "no GPU"):
        return str(gpu)
    cpu = rows["cpu_model"].dropna()
    return f"CPU {cpu.iloc[0]}" if len(cpu) else "CPU (model unknown)"


def device_groups(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Runs grouped by the device they measured on, in first-seen order.

    A run made on a GPU machine with `--device cpu` belongs to the CPU group; a run merged
    from shards on several kinds of device (`archbench sweep --ray`) is split between them.
    """
    groups: dict[str, list[pd.DataFrame]] = {}
    for _, rows in df.groupby("run", sort=False):
        kinds = [rows["gpu"].astype(str), rows["cpu_model"].astype(str)]
        for _, part in rows.groupby(kinds, sort=False):
            groups.setdefault(device_label(part), []).append(part)
    return {label: pd.concat(frames) for label, frames in groups.items()}


def latest_per_suite(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """One device group's rows: for each suite, those of the newest run that has one ok case.

    Figures are never pooled across runs (two commits, two loads); a perf run and a later
    overfit run on one device still combine. Returns the rows and suite -> the run used.
    """
    chosen: dict[str, str] = {}
    order = (
        frame.drop_duplicates("run")
        .assign(_when=lambda f: f["datetime"].astype(str))
        .sort_values("_when", kind="stable")["run"]
        .tolist()
    )
    for run in order:  # oldest first: a newer run overrides
        rows = frame[frame["run"] == run]
        for suite in rows.loc[rows["status"] == "ok", "suite"].unique():
            chosen[suite] = run
        for suite in rows["suite"].unique():
            chosen.setdefault(suite, run)
    keep = pd.Series(False, index=frame.index)
    for suite, run in chosen.items():
        keep |= (frame["suite"] == suite) & (frame["run"] == run)
    return frame[keep], chosen
