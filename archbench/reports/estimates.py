"""The figures `archbench pick` shows per size on one device, and where each comes from.

Measured on this device (a results file), extrapolated from another device's run by matmul-rate
and bandwidth ratios, a roofline estimate, a bandwidth floor, or a rule of thumb: a Figure each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from archbench.instrument.device.datasheets import GpuSpec, find_gpu
from archbench.reports.evidence import frame_dims
from ppo_core.errors import ConfigError
from ppo_core.presets import hidden_dims_text, preset_name
from ppo_core.sizing import SizingEstimate, estimate

__all__ = [
    "ASSUMED_MATMUL_EFFICIENCY",
    "ASSUMED_OP_OVERHEAD_S",
    "BASES",
    "PARAMS_PER_BAR_HIGH",
    "PARAMS_PER_BAR_MEDIUM",
    "UPDATE_BYTES_PER_PARAM",
    "Figure",
    "ResultsRun",
    "combined_figure",
    "latency_figures",
    "measured_oom",
    "overfit_figure",
    "results_runs",
    "throughput_figure",
]

ASSUMED_MATMUL_EFFICIENCY = 0.5
"""Roofline estimates assume the update's matmuls run at half the device's peak (dense, the
chosen precision): an assumption, not a measurement; a results file replaces it."""

ASSUMED_OP_OVERHEAD_S = 5e-6
"""Roofline estimates add this per kernel launch (CUDA) or op dispatch (CPU) in eager PyTorch:
an assumption of the usual few-microsecond cost, which bounds small-batch steps."""

UPDATE_BYTES_PER_PARAM = 40
"""Bytes moved per parameter in one update step: fp32 weights read three times (forward and
two backward matmuls) and Adam reading weight, grad and two moments and writing three back."""

PARAMS_PER_BAR_MEDIUM = 100
"""Heuristic overfitting risk: above this many parameters per bar of data the risk is 'medium'."""
PARAMS_PER_BAR_HIGH = 1_000
"""... and above this many, 'high'. A rule of thumb, labelled as such wherever it is shown."""

# Rollout-only env steps/s were named `env_steps_per_s` before the train suite measured the
# whole iteration as `train_env_steps_per_s`; older runs still carry the old name.
_METRIC_NAMES = {"env_steps_per_s": ("rollout_env_steps_per_s", "env_steps_per_s")}

BASES = (
    "measured",
    "measured (other settings)",
    "extrapolated",
    "roofline estimate",
    "floor",
    "heuristic",
    "unavailable",
)
"""Where a figure comes from, from most to least trustworthy."""


@dataclass(frozen=True)
class Figure:
    """One number in the candidates table and how much to trust it."""

    value: float | None
    """The figure; None when `basis` is 'unavailable'."""
    basis: str
    """One of BASES."""
    note: str
    """Where it came from (run, case, scale factors, assumptions) or why it is missing."""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "basis": self.basis, "note": self.note}


def _unavailable(why: str) -> Figure:
    return Figure(None, "unavailable", why)


def _words(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


# -- results files ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultsRun:
    """One results file as `pick` uses it: where it ran and that device's rates."""

    run: str
    device: str
    same: bool
    matmul: float | None
    bandwidth: float | None
    rate_source: str
    rows: pd.DataFrame


def _ceiling(rows: pd.DataFrame, metric: str) -> float | None:
    hit = rows[(rows["suite"] == "ceiling") & (rows["metric"] == metric) & rows["value"].notna()]
    return float(hit["value"].iloc[0]) if len(hit) else None


def results_runs(df: pd.DataFrame | None, device: GpuSpec, precision: str) -> list[ResultsRun]:
    if df is None or df.empty:
        return []
    out = []
    for run, rows in df.groupby("run", sort=False):
        first = rows.iloc[0]
        gpu_name = first["gpu"]
        # A run on a GPU machine can still have measured on the CPU (bench --device cpu).
        on_gpu = rows["device"].astype(str).str.startswith("cuda")
        on_cpu = gpu_name in (None, "no GPU") or not on_gpu.any()
        rows = rows[~on_gpu] if on_cpu else rows[on_gpu]
        measured = (
            _ceiling(rows, f"matmul_flops_per_s_{precision}"),
            _ceiling(rows, "bandwidth_bytes_per_s"),
        )
        if on_cpu:
            label = f"CPU {first['cpu_model'] or 'unknown'}"
            same = device.is_cpu and first["cpu_model"] == device.variant
            rates, source = measured, "its measured ceilings"
        else:
            memory = first["gpu_memory_bytes"]
            memory_gib = float(memory) / 2**30 if memory and not pd.isna(memory) else None
            try:
                spec = find_gpu(str(gpu_name), memory_gib)
            except ConfigError:
                spec = None
            label = str(gpu_name)
            if device.model == "custom":
                same = _words(str(gpu_name)) == _words(device.name)
            else:
                same = spec is not None and spec.name == device.name
            if spec is not None and spec.fp32_tflops is not None:
                rates = (spec.matmul_flops_per_s(precision), spec.bandwidth_bytes_per_s)
                source = f"the {spec.name} datasheet"
            else:
                rates, source = measured, "its measured ceilings"
        out.append(ResultsRun(str(run), label, same, rates[0], rates[1], source, rows))
    return out


def _dims_rows(rows: pd.DataFrame, dims: tuple[int, ...], obs_dim: int) -> pd.DataFrame:
    key = hidden_dims_text(dims)
    same_obs = rows["obs_dim"].isna() | (rows["obs_dim"] == obs_dim)
    return rows[(rows["hidden_dims"] == key) & same_obs]


def _case_distance(row: pd.Series, n_envs: int, minibatch: int) -> float:
    distance = 0.0
    for column, wanted in (("case_n_envs", n_envs), ("case_minibatch", minibatch)):
        value = row.get(column)
        if value is not None and not pd.isna(value) and value > 0:
            distance += abs(math.log(float(value) / wanted))
    return distance


def _nearest_case(hits: pd.DataFrame, n_envs: int, minibatch: int) -> pd.Series:
    distances = [_case_distance(row, n_envs, minibatch) for _, row in hits.iterrows()]
    return hits.iloc[min(range(len(distances)), key=distances.__getitem__)]


def _setting(row: pd.Series, column: str) -> int | None:
    value = row.get(column)
    return None if value is None or pd.isna(value) else int(value)


def _same_settings(row: pd.Series, n_envs: int, minibatch: int) -> bool:
    """The case ran exactly these n_envs and minibatch (a case that does not say: no)."""
    return _setting(row, "case_n_envs") == n_envs and _setting(row, "case_minibatch") == minibatch


def _case_text(row: pd.Series) -> str:
    case = row.get("case_dict")
    return ", ".join(f"{k}={v}" for k, v in case.items()) if isinstance(case, dict) else ""


def _measured_ok(rows: pd.DataFrame, suite: str, metric: str) -> pd.DataFrame:
    return rows[
        (rows["suite"] == suite)
        & (rows["metric"] == metric)
        & (rows["status"] == "ok")
        & rows["value"].notna()
    ]


# -- figures ------------------------------------------------------------------------------


# (rank: hardware gap, size gap), the run, its nearest case's row, the measured size's estimate
_Nearest = tuple[tuple[float, float], ResultsRun, pd.Series, SizingEstimate]


def throughput_figure(
    metric: str,
    size: SizingEstimate,
    runs: list[ResultsRun],
    device: GpuSpec,
    precision: str,
    sizes: dict[tuple[int, ...], SizingEstimate],
) -> Figure:
    """Measured on this device; else scaled from the nearest measured run; else roofline."""
    update = metric == "update_samples_per_s"
    target_rate = device.matmul_flops_per_s(precision) if update else device.bandwidth_bytes_per_s
    best = _nearest_measured(metric, size, runs, target_rate, sizes)
    if best is None:
        return _roofline(update, size, device, precision)
    return _scaled(best, size, device, precision, target_rate, update)


def _nearest_measured(
    metric: str,
    size: SizingEstimate,
    runs: list[ResultsRun],
    target_rate: float | None,
    sizes: dict[tuple[int, ...], SizingEstimate],
) -> _Nearest | None:
    """The measured case nearest to `size`: the closest hardware (this device first), then the
    closest cost (train FLOPs or weight bytes); None when no run can be scaled from."""
    update = metric == "update_samples_per_s"
    best: _Nearest | None = None
    for run in runs:
        source_rate = run.matmul if update else run.bandwidth
        if not run.same and (target_rate is None or source_rate is None):
            continue
        hardware = 0.0 if run.same else abs(math.log(target_rate / source_rate))
        for hits, source in _measured_sizes(metric, run, size, sizes):
            cost = _cost(source, update) / _cost(size, update)
            rank = (hardware, abs(math.log(cost)))
            if best is None or rank < best[0]:
                row = _nearest_case(hits, size.n_envs, size.minibatch)
                best = (rank, run, row, source)
    return best


def _measured_sizes(
    metric: str,
    run: ResultsRun,
    size: SizingEstimate,
    sizes: dict[tuple[int, ...], SizingEstimate],
) -> Iterator[tuple[pd.DataFrame, SizingEstimate]]:
    """(rows, sizing estimate) of each size `run` measured `metric` for, at `size`'s input."""
    config = size.config
    measured = pd.concat(
        [_measured_ok(run.rows, "train", name) for name in _METRIC_NAMES.get(metric, (metric,))]
    )
    for dims_key, hits in measured.groupby("hidden_dims"):
        dims = frame_dims(dims_key)
        hits = _dims_rows(hits, dims, config.obs_dim)
        if hits.empty:
            continue
        source = sizes.get(dims) or estimate(
            config.replace(hidden_dims=dims),
            size.n_envs,
            size.n_steps,
            size.minibatch,
        )
        yield hits, source


def _scaled(
    best: _Nearest,
    size: SizingEstimate,
    device: GpuSpec,
    precision: str,
    target_rate: float | None,
    update: bool,
) -> Figure:
    """The nearest measured figure as it stands (same device and size), or scaled to `size`
    by cost and to `device` by its matmul rate or bandwidth."""
    (_hardware, size_gap), run, row, source = best
    value = float(row["value"])
    where = f"run {run.run} ({run.device}), {_case_text(row)}"
    if run.same and size_gap == 0:
        if _same_settings(row, size.n_envs, size.minibatch):
            return Figure(value, "measured", where)
        # Same device and size, but n_envs/minibatch differ: the figure is real, yet it is
        # not the throughput of the settings asked about.
        return Figure(
            value,
            "measured (other settings)",
            f"{where}; measured at n_envs={_setting(row, 'case_n_envs')}, "
            f"minibatch={_setting(row, 'case_minibatch')}, asked for n_envs={size.n_envs}, "
            f"minibatch={size.minibatch}",
        )
    factor = _cost(source, update) / _cost(size, update)
    parts = []
    if size_gap:
        kind = "train FLOPs" if update else "weight bytes"
        parts.append(f"x{factor:.3g} for {kind} ({preset_name(source.config.hidden_dims)})")
    if not run.same:
        ratio = target_rate / (run.matmul if update else run.bandwidth)
        rate = f"{precision} matmul rate" if update else "memory bandwidth"
        parts.append(f"x{ratio:.3g} {rate} ({device.name} vs {run.rate_source})")
        factor *= ratio
    return Figure(value * factor, "extrapolated", f"{where}, " + ", ".join(parts))


def _cost(size: SizingEstimate, update: bool) -> float:
    """What the figure scales inversely with: train FLOPs (update) or weight bytes (rollout)."""
    return float(size.train_flops_per_sample if update else size.weight_bytes["fp32"])


def _roofline(update: bool, size: SizingEstimate, device: GpuSpec, precision: str) -> Figure:
    peak = device.matmul_flops_per_s(precision)
    bandwidth = device.bandwidth_bytes_per_s
    if peak is None or bandwidth is None:
        missing = f"{precision} matmul rate" if peak is None else "memory bandwidth"
        hint = (
            "name a known card with --gpu, or pass --results"
            if device.model == "custom"
            else "try another --precision, or pass --results"
        )
        return _unavailable(
            f"no results file to measure or scale from, and no {missing} for {device.name} ({hint})"
        )
    achievable = ASSUMED_MATMUL_EFFICIENCY * peak
    # Eager PyTorch runs one kernel per Linear and one per activation: trunk(s) and both heads.
    n_trunks = 1 if size.config.trunk == "shared" else 2
    ops = 2 * len(size.config.hidden_dims) * n_trunks + 6
    assumed = (
        f"assumed: {ASSUMED_MATMUL_EFFICIENCY:.0%} of the {precision} peak, "
        f"{ASSUMED_OP_OVERHEAD_S * 1e6:g} us per kernel launch / op dispatch"
    )
    if update:
        # Per minibatch: forward + backward matmuls, or the weight traffic, whichever is longer,
        # plus forward and backward launches (3x the forward's). Adam's own kernels not counted.
        step_s = max(
            size.minibatch * size.train_flops_per_sample / achievable,
            UPDATE_BYTES_PER_PARAM * size.params / bandwidth,
        )
        step_s += 3 * ops * ASSUMED_OP_OVERHEAD_S
        note = (
            f"minibatch / (max(train FLOPs, {UPDATE_BYTES_PER_PARAM} B/param of weight and "
            f"Adam traffic) + {3 * ops} launches); {assumed}"
        )
        return Figure(size.minibatch / step_s, "roofline estimate", note)
    # One rollout step: a forward over n_envs rows, reading every weight once.
    step_s = max(
        size.weight_bytes["fp32"] / bandwidth,
        size.n_envs * size.forward_flops_per_sample / achievable,
    )
    step_s += ops * ASSUMED_OP_OVERHEAD_S
    note = (
        f"n_envs / (max(forward FLOPs, weights / bandwidth) + {ops} launches); {assumed}; "
        "action sampling and env stepping not counted, so an upper bound"
    )
    return Figure(size.n_envs / step_s, "roofline estimate", note)


def combined_figure(env: Figure, update: Figure, n_epochs: int) -> Figure:
    if env.value is None or update.value is None:
        return _unavailable("needs both the rollout and the update throughput")
    per_step_s = 1.0 / env.value + n_epochs / update.value
    basis = max(env.basis, update.basis, key=BASES.index)
    note = (
        f"1 / (1/rollout + {n_epochs} epochs / update); rollout {env.basis}, update {update.basis}"
    )
    return Figure(1.0 / per_step_s, basis, note)


def latency_figures(
    size: SizingEstimate, runs: list[ResultsRun], device: GpuSpec, precision: str
) -> tuple[Figure, Figure]:
    for run in runs:
        if run.same:
            figures = _measured_latency(size, run)
            if figures is not None:
                return figures
    bandwidth = device.bandwidth_bytes_per_s
    not_measured = _unavailable("not measured on this device (bench infer suite, batch=1)")
    if bandwidth is None:
        return _unavailable(f"no memory bandwidth for {device.name}"), not_measured
    dtype = "bf16" if precision == "bf16" else "fp32"
    floor = size.weight_bytes[dtype] / bandwidth
    note = f"{dtype} weight bytes / bandwidth: a lower bound (kernel launches come on top)"
    return Figure(floor, "floor", note), not_measured


def _measured_latency(size: SizingEstimate, run: ResultsRun) -> tuple[Figure, Figure] | None:
    """Batch-1 p50 and p99 of the backend the decision engine reads: the fastest p99 among the
    backends whose actions agree with eager (>= 99%)."""

    def rows(metric: str) -> pd.DataFrame:
        hits = _dims_rows(_measured_ok(run.rows, "infer", metric), size.config.hidden_dims,
                          size.config.obs_dim)  # fmt: skip
        if "case_batch" not in hits or "case_backend" not in hits:
            return hits.iloc[0:0]
        return hits[hits["case_batch"] == 1]

    p99 = rows("latency_p99_s")
    agreement = rows("action_agreement")
    p99 = p99[~p99["case"].isin(set(agreement.loc[agreement["value"] < 0.99, "case"]))]
    if p99.empty:
        return None
    best = p99.loc[p99["value"].astype(float).idxmin()]
    p50 = rows("latency_p50_s")
    p50 = p50[p50["case"] == best["case"]]
    if p50.empty:
        return None
    note = f"run {run.run}, {best['case_backend']} backend (the fastest agreeing)"
    return (Figure(float(p50["value"].iloc[0]), "measured", note),
            Figure(float(best["value"]), "measured", note))  # fmt: skip


def overfit_figure(
    size: SizingEstimate, runs: list[ResultsRun], data_bars: int | None
) -> tuple[Figure, str | None]:
    """The measured train - validation Sharpe gap (shown, never decisive: the engine ranks on
    out-of-sample Sharpe), or the params-per-bar rule of thumb when nothing was measured."""
    gaps = []
    for run in runs:
        hits = _dims_rows(
            _measured_ok(run.rows, "overfit", "sharpe_gap"),
            size.config.hidden_dims,
            size.config.obs_dim,
        )
        if "case_bars" in hits and not hits.empty:
            gaps.append((run.run, hits.dropna(subset=["case_bars"])))
    gaps = [(r, h) for r, h in gaps if not h.empty]
    if gaps:
        frame = pd.concat([h for _, h in gaps])
        # Seeds pool only within one dataset at one length: 5,000 daily bars and 5,000
        # hourly bars are different amounts of history.
        if "case_dataset" not in frame:
            frame = frame.assign(case_dataset="")
        frame = frame.assign(case_dataset=frame["case_dataset"].fillna(""))
        measured = sorted(
            {
                (int(b), str(d))
                for b, d in zip(frame["case_bars"], frame["case_dataset"], strict=True)
            }
        )
        if data_bars is None:
            bars, dataset = measured[-1]
        else:
            bars, dataset = min(measured, key=lambda bd: (abs(math.log(bd[0] / data_bars)), bd[1]))
        chosen = (frame["case_bars"] == bars) & (frame["case_dataset"] == dataset)
        values = frame.loc[chosen, "value"].astype(float)
        gap = float(values.mean())
        runs_used = ", ".join(sorted({r for r, _ in gaps}))
        note = (
            f"measured: mean Sharpe gap (train - validation) of {len(values)} seed(s) at "
            f"{bars:,} bars{f' of {dataset}' if dataset else ''}, run {runs_used}"
        )
        return Figure(gap, "measured", note), None
    if data_bars is None:
        return _unavailable("give --data-bars, or a results file with the overfit suite"), None
    per_bar = size.params / data_bars
    risk = (
        "high"
        if per_bar > PARAMS_PER_BAR_HIGH
        else "medium"
        if per_bar > PARAMS_PER_BAR_MEDIUM
        else "low"
    )
    note = (
        f"heuristic: params per bar of data; medium above {PARAMS_PER_BAR_MEDIUM:,}, high above "
        f"{PARAMS_PER_BAR_HIGH:,} (a rule of thumb, not a measurement)"
    )
    return Figure(per_bar, "heuristic", note), risk


def measured_oom(
    size: SizingEstimate, runs: list[ResultsRun], precision: str | None = None
) -> str | None:
    """Why this size ran out of memory on this device at settings no larger than the size's
    (n_envs, minibatch) in `precision`; None when no such case did. An OOM excludes the
    settings it happened at, not the size: a bf16 OOM says nothing of a tf32 pick."""
    for run in runs:
        if not run.same:
            continue
        rows = _dims_rows(run.rows, size.config.hidden_dims, size.config.obs_dim)
        oom = rows[rows["status"] == "oom"]
        for reason, case in zip(oom["reason"], oom["case_dict"], strict=True):
            if _covers(case if isinstance(case, dict) else {}, size, precision):
                return f"out of memory in run {run.run}: {reason}"
    return None


def _covers(case: dict, size: SizingEstimate, precision: str | None) -> bool:
    """Did the OOM case use no more than the size's settings (unknown settings count)?"""
    n_envs, minibatch, ran = case.get("n_envs"), case.get("minibatch"), case.get("precision")
    return (
        (not isinstance(n_envs, int | float) or n_envs <= size.n_envs)
        and (not isinstance(minibatch, int | float) or minibatch <= size.minibatch)
        and (precision is None or ran is None or ran == precision)
    )
