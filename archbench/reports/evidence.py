"""The measured figures per network size that every decision reads, from an archbench.reports.load
frame.

Per size: whole-iteration throughput, batch-1 p99, memory; per dataset: out-of-sample cells.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from archbench.reports.scores import Score, percentile_score, rate_score
from ppo_core.sizing import CUDA_CONTEXT_BYTES

__all__ = [
    "MEMORY_SAFETY_MARGIN",
    "Dataset",
    "OosCell",
    "RunSummary",
    "SizeScores",
    "combine_per_case",
    "device_groups",
    "device_label",
    "frame_dims",
    "oos_by_length",
    "oos_cells",
    "preset_summary",
    "run_summaries",
    "run_to_run_drift",
    "suite_gaps",
    "summarise",
    "summary_of",
    "workload_text",
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


def frame_dims(text: object) -> tuple[int, ...]:
    """A run frame's hidden_dims cell ('1024,512,256', as load.py spells it) as the tuple the
    engine keys sizes by: the frame is the JSON's edge, the engine works on tuples."""
    return tuple(int(w) for w in str(text).split(","))


def preset_summary(frame: pd.DataFrame, precision: str | None = None) -> pd.DataFrame:
    """One row per preset of ONE run (or combined device group) with its measured figures.

    Columns: preset, hidden_dims, params, oom (any case OOM), oom_suites (the suites in which
    every case the size ran was OOM), oom_cases (the OOM cases, 'suite: case'), throughput
    (wall-clock env steps/s on the one train case every size is compared on, +_case, _run;
    only `precision`'s cases when given and measured), latency_p99 (fastest agreeing
    batch-1 backend, +_backend), memory_bytes (+_source: what must fit, with the CUDA
    context on a GPU run, or 'predicted'), memory_check_bytes (+_source, _predicted: the figure
    that checks the sizing model), val_sharpe (mean over seeds on the longest overfit setting,
    oos_by_length's choice). Absent columns: no data. The intervals: summarise(...).scores.
    """
    return summarise(frame, precision).table


def summarise(frame: pd.DataFrame, precision: str | None = None) -> RunSummary:
    """preset_summary's table, with each size's scores (the intervals) beside it, typed."""
    sized, note = _at_precision(frame[frame["preset"].notna()], precision)
    cells = oos_cells(frame)
    longest = oos_by_length(cells)[-1] if cells else None
    throughput = _throughput(sized, note)
    rows, scores = [], {}
    for preset, rows_p in sized.groupby("preset", sort=False):
        dims = rows_p["hidden_dims"].dropna()
        params = rows_p["params"].dropna()
        row = {
            "preset": preset,
            "hidden_dims": dims.iloc[0] if len(dims) else None,
            "params": int(params.iloc[0]) if len(params) else None,
            **_oom(rows_p),
        }
        row.update(throughput.get(preset, {}))
        row.update(_latency(rows_p))
        # The intervals go to typed scores; the table keeps the point figures.
        scores[preset] = SizeScores(
            row.pop("throughput_score", None), row.pop("latency_score", None)
        )
        row.update(_memory(rows_p))
        cell = cells[longest].get(preset) if longest is not None else None
        if cell is not None:  # the report's pareto chart: mean Sharpe on the longest data
            row["val_sharpe"] = sum(cell.val_sharpe) / len(cell.val_sharpe)
        rows.append(row)
    summary = pd.DataFrame(rows)
    if len(summary):
        summary = summary.sort_values("params", na_position="last").reset_index(drop=True)
    return RunSummary(summary, scores, len(frame))


@dataclass(frozen=True)
class SizeScores:
    """One size's ranked figures with their intervals: typed, never fished out of a table cell."""

    throughput: Score | None = None
    """Whole-iteration env steps/s on the train case sizes are compared on; None: not measured."""
    latency: Score | None = None
    """Batch-1 p99 seconds of the fastest agreeing backend; None: not measured."""


@dataclass(frozen=True)
class RunSummary:
    """The sizes of one run (or device group), computed once per report for every reader."""

    table: pd.DataFrame
    """preset_summary: one row per preset with its point figures, fewest parameters first."""
    scores: dict[str, SizeScores]
    """preset -> its scores (every bootstrap of the summary is in these)."""
    n_rows: int
    """How many rows it read: rows of this run that number as many are the same rows."""


def run_summaries(frame: pd.DataFrame) -> dict[str, RunSummary]:
    """run -> the summary of its rows: the engine, the sizing table and the charts share it."""
    return {run: summarise(rows) for run, rows in frame.groupby("run", sort=False)}


def summary_of(run: str, rows: pd.DataFrame, summaries: dict[str, RunSummary] | None) -> RunSummary:
    """The summary of `rows`, all of one run's: from `summaries` when they hold exactly those
    rows (a copy, as callers add columns), else computed. A run split per device kind for a
    chart ('run (device)') or thinned by per-case combining is computed."""
    known = None if summaries is None else summaries.get(run)
    if known is not None and known.n_rows == len(rows):
        return dataclasses.replace(known, table=known.table.copy())
    return summarise(rows)


def _oom(rows: pd.DataFrame) -> dict:
    """An OOM excludes the settings it happened at: the suites where nothing else ran, and the
    cases by name."""
    failed = rows[rows["status"] == "oom"].drop_duplicates(["suite", "case"])
    ok_suites = set(rows.loc[rows["status"] == "ok", "suite"])
    return {
        "oom": bool(len(failed)),
        "oom_suites": tuple(dict.fromkeys(s for s in failed["suite"] if s not in ok_suites)),
        "oom_cases": tuple(f"{r.suite}: {r.case}" for r in failed.itertuples()),
    }


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


def workload_text(row: pd.Series | dict) -> str:
    """What task a record measured, as text that only equal workloads share.

    From the record's `workload` when it has one; older records give their observation width
    and whatever the case states (gamma, cost), and say the rest is unknown.
    """
    work = row.get("workload")
    if isinstance(work, dict) and work:
        # Not the identity: the commit and threads (provenance), and the market's seed, since
        # seeds that draw their own series are repeats of one task.
        market = work.get("market")
        if isinstance(market, dict):
            work = {**work, "market": {k: v for k, v in market.items() if k != "seed"}}
        keys = ("observation", "obs_dim", "market", "gamma", "cost_bps", "budget")
        return "; ".join(f"{k} {_plain(work.get(k))}" for k in keys if work.get(k) is not None)
    case = row.get("case_dict") if isinstance(row.get("case_dict"), dict) else {}
    obs = row.get("obs_dim")
    parts = [f"obs_dim {int(obs)}" if isinstance(obs, int | float) and obs == obs else "obs_dim ?"]
    parts += [f"{k} {_plain(case[k])}" for k in ("gamma", "cost_bps") if k in case]
    return "; ".join(parts) + " (workload not recorded)"


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_plain(v)}" for k, v in sorted(value.items())) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _train_rates(rows: pd.DataFrame) -> dict[tuple[str, str], dict[str, tuple]]:
    """(case, workload) -> preset -> (per-iteration env steps/s, run) of every train case."""
    found: dict[tuple[str, str], dict[str, tuple]] = {}
    for _, row in _metric_rows(rows, "train", _THROUGHPUT_METRIC).iterrows():
        rates = tuple(row["samples"]) or (float(row["value"]),)
        key = (row["case"], workload_text(row))
        found.setdefault(key, {})[row["preset"]] = (rates, row["run"])
    for _, row in _metric_rows(rows, "train", "iteration_s").iterrows():
        case = row["case_dict"] if isinstance(row["case_dict"], dict) else {}
        steps = (case.get("n_envs") or 0) * (case.get("n_steps") or 0)
        key = (row["case"], workload_text(row))
        if steps > 0 and row["preset"] not in found.get(key, {}):
            seconds = tuple(row["samples"]) or (float(row["value"]),)
            rates = tuple(steps / s for s in seconds if s > 0)
            if rates:
                found.setdefault(key, {})[row["preset"]] = (rates, row["run"])
    return found


def _throughput(rows: pd.DataFrame, note: str = "") -> dict[str, dict]:
    """preset -> its wall-clock throughput on the ONE train case (and workload) that most sizes
    measured, the fastest such case on a tie: sizes are compared like for like, never each on
    its own best case."""
    table = _train_rates(rows)
    if not table:
        return {}
    key = max(table, key=lambda k: (len(table[k]), max(_wall(r) for r, _ in table[k].values())))
    case, workload = key
    out = {}
    for preset, (rates, run) in table[key].items():
        score = rate_score(rates, "env steps over total time")
        out[preset] = {
            "throughput": score.value,
            "throughput_score": score,
            "throughput_case": f"{case}{note}",
            "throughput_workload": workload,
            "throughput_run": run,
        }
    return out


def run_to_run_drift(frame: pd.DataFrame) -> float | None:
    """The largest relative change of one train case's wall-clock rate between two runs of it
    (1 - slower / faster); None when no case was measured twice."""
    per_case: dict[tuple, list[float]] = {}
    for _, rows in frame[frame["preset"].notna()].groupby("run", sort=False):
        for (case, workload), sizes in _train_rates(rows).items():
            for preset, (rates, _) in sizes.items():
                per_case.setdefault((preset, case, workload), []).append(_wall(rates))
    drifts = [1 - min(r) / max(r) for r in per_case.values() if len(r) > 1]
    return max(drifts) if drifts else None


def _wall(rates: tuple) -> float:
    return len(rates) / sum(1.0 / r for r in rates)


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
    # The fastest backend whose count supports an upper bound; the fastest at all otherwise.
    scored = [(r, percentile_score(tuple(r["samples"]), 99.0) if r["samples"] else None)
              for _, r in m.iterrows()]  # fmt: skip
    bounded = [(r, sc) for r, sc in scored if sc is not None and sc.upper is not None]
    best, score = min(bounded or scored, key=lambda x: x[1].upper if bounded else x[0]["value"])
    backend = best.get("case_backend")
    return {
        "latency_p99": float(best["value"]),
        "latency_score": score,
        "latency_backend": backend if isinstance(backend, str) else "eager",
        "latency_run": best["run"],
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
    # Older records get theirs from the dataset's name when the run file is read (runfile.py).
    recorded = case.get("bars_per_year")
    return float(recorded) if isinstance(recorded, int | float) and recorded > 0 else None


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
    workload: str = ""
    """workload_text of the records: sizes are only ranked against sizes of the same task."""
    split: str = "validation"
    """The split the figures are on: 'test' (the suite's walk-forward folds, the model chosen
    on validation judged once on test) or 'validation' (records written before the folds)."""

    @property
    def years(self) -> float | None:
        return None if self.bars_per_year is None else self.bars / self.bars_per_year

    def text(self) -> str:
        length = "unknown bars per year" if self.years is None else f"{self.years:.3g} years"
        budget = "" if self.budget is None else f", {self.budget:,} env steps"
        return f"{self.name} {self.bars:,} bars ({length}{budget}; {self.split}; {self.workload})"


@dataclass(frozen=True)
class OosCell:
    """One size's out-of-sample evidence on one Dataset: every seed's (and fold's) figures, on
    the Dataset's split (the test split of records with folds, else validation)."""

    val_sharpe: tuple[float, ...]
    """Annualised out-of-sample Sharpe per seed (and fold), net of costs, as the suite
    computed it."""
    val_returns: tuple[tuple[float, ...], ...] | None
    """Per seed, the net log-return of each out-of-sample bar in time order; None if not
    recorded."""
    oracle_sharpe: tuple[float, ...]
    """The cost-aware oracle's Sharpe on the same bars (synthetic data only)."""
    seeds: tuple[Any, ...] = ()
    """The seed, or (seed, fold), of each entry above (None: not recorded); sizes are paired on
    the ones they share."""
    buy_and_hold: tuple[float | None, ...] = ()
    """Buy-and-hold's Sharpe on each entry's bars (None: not recorded)."""
    runs: tuple[str, ...] = ()
    """The runs these figures came from."""
    trend: tuple[float | None, ...] = ()
    """The trend rule's Sharpe on each entry's bars (None: not recorded)."""

    def by_seed(self) -> dict[int | None, int]:
        """seed -> its position; positions stand in for seeds where none was recorded."""
        known = all(s is not None for s in self.seeds) and len(set(self.seeds)) == len(self.seeds)
        keys = self.seeds if known and self.seeds else range(len(self.val_sharpe))
        return {k: i for i, k in enumerate(keys)}


_SPLIT_METRICS = {
    # split -> (Sharpe, oracle's, buy-and-hold's, trend rule's, per-bar returns series)
    "test": ("test_sharpe", ("test_oracle_sharpe",), "test_buy_and_hold_sharpe",
             "test_trend_sharpe", "test_net_returns"),
    "validation": ("val_sharpe", ("oracle_val_sharpe", "val_oracle_sharpe"),
                   "val_buy_and_hold_sharpe", "val_trend_sharpe", "val_net_returns"),
}  # fmt: skip


def oos_cells(frame: pd.DataFrame) -> dict[Dataset, dict[str, OosCell]]:
    """Overfit suite records -> per Dataset (and workload), per preset, the seeds' figures: on
    the test split where a record has one (the model chosen on validation), else validation."""
    sized = frame[frame["preset"].notna()]
    side = frame[(frame["suite"] == "overfit") & frame["value"].notna()]
    tested = _metric_rows(sized, "overfit", "test_sharpe")
    keys = set(zip(tested["preset"], tested["case"], tested["run"], strict=True))
    validated = _metric_rows(sized, "overfit", "val_sharpe")
    untested = [k not in keys for k in zip(validated["preset"], validated["case"],
                                           validated["run"], strict=True)]  # fmt: skip
    found: dict[Dataset, dict[str, dict]] = {}
    for split, rows in (("test", tested), ("validation", validated[untested])):
        _, oracle_names, hold, trend, series_name = _SPLIT_METRICS[split]
        by_case = {
            name: {(r.preset, r.case, r.run): float(r.value)
                   for r in side[side["metric"].isin(names)].itertuples()}
            for name, names in (("oracle", oracle_names), ("hold", (hold,)), ("trend", (trend,)))
        }  # fmt: skip
        if "case_seed" in rows:
            rows = rows.sort_values("case_seed", kind="stable")
        for _, row in rows.iterrows():
            _add_oos_row(found, row, split, by_case, series_name)
    return {dataset: {p: _cell(c) for p, c in sizes.items()} for dataset, sizes in found.items()}


def _add_oos_row(found: dict, row: pd.Series, split: str, by_case: dict, series_name: str) -> None:
    case = row["case_dict"] if isinstance(row["case_dict"], dict) else {}
    if not isinstance(case.get("bars"), int | float):
        return
    dataset = dataclasses.replace(_dataset_of(row, case), split=split)
    cell = found.setdefault(dataset, {}).setdefault(row["preset"], _empty())
    key = (row["preset"], row["case"], row["run"])
    seed, fold = case.get("seed"), case.get("fold")
    seed = int(seed) if isinstance(seed, int | float) else None
    series = row["series"] if isinstance(row["series"], dict) else {}
    for name, value in (
        ("val_sharpe", float(row["value"])),
        ("val_returns", series.get(series_name)),
        ("seeds", (seed, int(fold)) if seed is not None and isinstance(fold, int) else seed),
        ("buy_and_hold", by_case["hold"].get(key)),
        ("trend", by_case["trend"].get(key)),
        ("runs", row["run"]),
    ):
        cell[name].append(value)
    if key in by_case["oracle"]:
        cell["oracle_sharpe"].append(by_case["oracle"][key])


def _empty() -> dict[str, list]:
    names = ("val_sharpe", "val_returns", "seeds", "buy_and_hold", "trend", "runs",
             "oracle_sharpe")  # fmt: skip
    return {name: [] for name in names}


def _cell(c: dict[str, list]) -> OosCell:
    returns = c["val_returns"]
    return OosCell(
        val_sharpe=tuple(c["val_sharpe"]),
        val_returns=tuple(returns) if all(r for r in returns) else None,
        oracle_sharpe=tuple(c["oracle_sharpe"]),
        seeds=tuple(c["seeds"]),
        buy_and_hold=tuple(c["buy_and_hold"]),
        runs=tuple(dict.fromkeys(c["runs"])),
        trend=tuple(c["trend"]),
    )


def _dataset_of(row: pd.Series, case: dict) -> Dataset:
    budget = case.get("train_env_steps", case.get("timesteps"))
    volatility = case.get("volatility")
    return Dataset(
        name=str(case.get("dataset", "unnamed dataset")),
        bars=int(case["bars"]),
        budget=int(budget) if isinstance(budget, int | float) else None,
        bars_per_year=_bars_per_year(case),
        volatility=float(volatility) if isinstance(volatility, int | float) else None,
        workload=workload_text(row),
    )


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


def combine_per_case(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple, str]]:
    """One device group's rows combined per (size, suite, case): each comes from the newest
    run that measured it (ok), else the newest that tried it (OOM, error).

    Every run contributes what it measured; a newer run replaces an older one only for the same
    case on this device. Returns the rows and (preset, suite, case) -> the run they came from.
    """
    if frame.empty:
        return frame, {}
    when = frame.groupby("run", sort=False)["datetime"].first().astype(str)
    keys = ["preset", "suite", "case"]
    tried = frame[[*keys, "run", "status"]].fillna({"preset": "", "case": ""})
    tried = tried.assign(ok=tried["status"] == "ok", when=tried["run"].map(when))
    per_run = tried.groupby([*keys, "run"], sort=False).agg(
        ok=("ok", "any"), when=("when", "first")
    )
    chosen = per_run.reset_index().sort_values(["ok", "when"], kind="stable")
    chosen = chosen.drop_duplicates(keys, keep="last")
    source = {
        (p or None, s, c or None): r
        for p, s, c, r in chosen[[*keys, "run"]].itertuples(index=False)
    }
    wanted = set(zip(chosen["preset"], chosen["suite"], chosen["case"], chosen["run"], strict=True))
    mine = list(zip(tried["preset"], tried["suite"], tried["case"], tried["run"], strict=True))
    return frame[[k in wanted for k in mine]], source
