"""Choose hidden_dims, n_envs and minibatch for one device and use case, measured or not.

The choice itself is `reports.use_cases.decide`, the engine the report uses, over the
measurements of this device (or figures extrapolated to it); with no results at all, the GPU
tier table is the prior and the answer says so. Every figure says where it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import pandas as pd

from instrument.device.datasheets import GpuSpec, find_gpu
from instrument.device.tiers import GPU_TIERS, TierRow, gpu_tier
from ppo_core.config import NetworkConfig
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS, TRAINING_MODES, preset_name
from ppo_core.sizing import CUDA_CONTEXT_BYTES, SizingEstimate, estimate
from reports.evidence import MEMORY_SAFETY_MARGIN
from reports.scores import point_score
from reports.use_cases import (
    USE_CASES,
    Decision,
    Evidence,
    Limits,
    Size,
    decide,
    evidence_from_frame,
    find_use_case,
)

__all__ = [
    "ASSUMED_MATMUL_EFFICIENCY",
    "ASSUMED_OP_OVERHEAD_S",
    "BASES",
    "DEFAULT_SAFETY_MARGIN",
    "PARAMS_PER_BAR_HIGH",
    "PARAMS_PER_BAR_MEDIUM",
    "UPDATE_BYTES_PER_PARAM",
    "Candidate",
    "Figure",
    "PickResult",
    "pick",
    "resolve_use_case",
]

DEFAULT_SAFETY_MARGIN = MEMORY_SAFETY_MARGIN
"""Share of device memory kept free: allocator fragmentation, cuBLAS workspaces beyond the
context's, and the gap between the datasheet capacity and what the driver exposes. The same
figure as `archbench report`'s memory budget (reports.evidence.MEMORY_SAFETY_MARGIN)."""

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


@dataclass(frozen=True)
class Candidate:
    """One network size judged for the device: memory, speed, latency, overfitting."""

    label: str
    """Preset name, or the widths joined by 'x' for a custom size."""
    hidden_dims: tuple[int, ...]
    """Trunk widths."""
    params: int
    """Exact parameter count (sizing model)."""
    train_bytes: int
    """Peak training memory from the sizing model, without the CUDA context."""
    need_bytes: int
    """train_bytes plus the CUDA context (0 on a CPU)."""
    fits: bool
    """need_bytes is within the budget, and no results file saw this size run out of memory."""
    fit_note: str
    """The numbers behind `fits`."""
    env_steps_per_s: Figure
    """Rollout throughput (policy forward + env step), env steps per second."""
    update_samples_per_s: Figure
    """Update throughput (forward + backward + Adam), samples per second."""
    train_steps_per_s: Figure
    """Whole-iteration throughput: env steps per second of rollout plus n_epochs of update."""
    latency_p50_s: Figure
    """Batch-1 forward latency, median (measured) or the weights/bandwidth floor."""
    latency_p99_s: Figure
    """Batch-1 forward latency, 99th percentile (measured only)."""
    overfit: Figure
    """Measured train-minus-validation Sharpe gap, or params per bar of data (heuristic)."""
    overfit_risk: str | None
    """'low', 'medium', 'high', or None when not assessed."""
    excluded: tuple[str, ...]
    """Why this size cannot be recommended for the use case; empty when it is eligible."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in out.items():
            if isinstance(value, Figure):
                out[name] = value.to_dict()
        out["hidden_dims"] = list(self.hidden_dims)
        out["excluded"] = list(self.excluded)
        return out


@dataclass(frozen=True)
class PickResult:
    """The recommendation for one device and use case, with every candidate behind it."""

    device: GpuSpec
    """The device sized for (its figures' sources inside)."""
    use_case: str
    """A reports.recommend.USE_CASES name."""
    training_mode: str
    """presets.TRAINING_MODES key the use case trains with (sets n_steps and n_epochs)."""
    tier: TierRow
    """The hardware tier row for the device: the prior for sizes and batch sizes."""
    n_envs: int
    """Environments per rollout."""
    n_steps: int
    """Steps per environment per rollout."""
    minibatch: int
    """Samples per gradient step."""
    n_epochs: int
    """Update epochs per rollout."""
    precision: str
    """Matmul precision the rates are for: fp32, tf32 or bf16."""
    obs_buffer: str
    """Rollout layout the memory is sized for: 'indices' or 'observations'."""
    data_bars: int | None
    """Bars of training data (None: not given)."""
    latency_budget_s: float | None
    """Batch-1 p99 latency budget applied (None: none)."""
    safety_margin: float
    """Share of device memory kept free."""
    budget_bytes: int
    """Device memory times (1 - safety_margin): what a candidate's need must stay under."""
    recommended: Candidate | None
    """The chosen size; None when no candidate is eligible."""
    decision: Decision | None
    """The engine's answer (the same as `archbench report`'s for this device's runs); None when
    there were no results and the tier table's prior chose."""
    why: tuple[str, ...]
    """Short reasons for the choice, one line each."""
    candidates: tuple[Candidate, ...]
    """Every size judged, fewest parameters first."""
    notes: tuple[str, ...]
    """What was made of each results file (measured here, or used for extrapolation only)."""

    def to_dict(self) -> dict[str, Any]:
        rec = self.recommended
        return {
            "device": self.device.to_dict(),
            "use_case": self.use_case,
            "training_mode": self.training_mode,
            "tier": self.tier.to_dict(),
            "recommended": None
            if rec is None
            else {
                "label": rec.label,
                "hidden_dims": list(rec.hidden_dims),
                "n_envs": self.n_envs,
                "n_steps": self.n_steps,
                "minibatch": self.minibatch,
                "n_epochs": self.n_epochs,
            },
            "why": list(self.why),
            "decision": None
            if self.decision is None
            else {
                "summary": self.decision.summary,
                "details": list(self.decision.details),
                "within_noise": self.decision.within_noise,
                "best": self.decision.best,
                "runner_up": self.decision.runner_up,
            },
            "n_envs": self.n_envs,
            "n_steps": self.n_steps,
            "minibatch": self.minibatch,
            "n_epochs": self.n_epochs,
            "precision": self.precision,
            "obs_buffer": self.obs_buffer,
            "data_bars": self.data_bars,
            "latency_budget_s": self.latency_budget_s,
            "safety_margin": self.safety_margin,
            "budget_bytes": self.budget_bytes,
            "cuda_context_bytes": 0 if self.device.is_cpu else CUDA_CONTEXT_BYTES,
            "candidates": [c.to_dict() for c in self.candidates],
            "notes": list(self.notes),
        }


def _words(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def resolve_use_case(text: str | None) -> str:
    """A loosely spelled use case ('live-trading', 'limited data') -> its USE_CASES name."""
    try:
        return find_use_case(text).name
    except ValueError as error:
        raise ConfigError(str(error)) from None


# -- results files ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
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


def _runs(df: pd.DataFrame | None, device: GpuSpec, precision: str) -> list[_Run]:
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
        out.append(_Run(str(run), label, same, rates[0], rates[1], source, rows))
    return out


def _dims_rows(rows: pd.DataFrame, dims: tuple[int, ...], obs_dim: int) -> pd.DataFrame:
    key = ",".join(str(w) for w in dims)
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


def _throughput(
    metric: str,
    size: SizingEstimate,
    runs: list[_Run],
    device: GpuSpec,
    precision: str,
    sizes: dict[str, SizingEstimate],
) -> Figure:
    """Measured on this device; else scaled from the nearest measured run; else roofline."""
    update = metric == "update_samples_per_s"
    target_rate = device.matmul_flops_per_s(precision) if update else device.bandwidth_bytes_per_s
    config = size.config
    best: tuple[tuple[float, float], _Run, pd.Series, SizingEstimate] | None = None
    for run in runs:
        source_rate = run.matmul if update else run.bandwidth
        if not run.same and (target_rate is None or source_rate is None):
            continue
        hardware = 0.0 if run.same else abs(math.log(target_rate / source_rate))
        measured = pd.concat(
            [_measured_ok(run.rows, "train", name) for name in _METRIC_NAMES.get(metric, (metric,))]
        )
        for dims_key, hits in measured.groupby("hidden_dims"):
            dims = tuple(int(w) for w in str(dims_key).split(","))
            hits = _dims_rows(hits, dims, config.obs_dim)
            if hits.empty:
                continue
            source = sizes.get(dims_key) or estimate(
                NetworkConfig(**{**config.to_dict(), "hidden_dims": dims}),
                size.n_envs,
                size.n_steps,
                size.minibatch,
            )
            cost = _cost(source, update) / _cost(size, update)
            rank = (hardware, abs(math.log(cost)))
            if best is None or rank < best[0]:
                row = _nearest_case(hits, size.n_envs, size.minibatch)
                best = (rank, run, row, source)
    if best is not None:
        (hardware, size_gap), run, row, source = best
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
    return _roofline(update, size, device, precision)


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


def _combined(env: Figure, update: Figure, n_epochs: int) -> Figure:
    if env.value is None or update.value is None:
        return _unavailable("needs both the rollout and the update throughput")
    per_step_s = 1.0 / env.value + n_epochs / update.value
    basis = max(env.basis, update.basis, key=BASES.index)
    note = (
        f"1 / (1/rollout + {n_epochs} epochs / update); rollout {env.basis}, update {update.basis}"
    )
    return Figure(1.0 / per_step_s, basis, note)


def _latency(
    size: SizingEstimate, runs: list[_Run], device: GpuSpec, precision: str
) -> tuple[Figure, Figure]:
    for run in runs:
        if not run.same:
            continue
        figures = []
        for metric in ("latency_p50_s", "latency_p99_s"):
            hits = _dims_rows(_measured_ok(run.rows, "infer", metric), size.config.hidden_dims,
                              size.config.obs_dim)  # fmt: skip
            if "case_batch" in hits and "case_backend" in hits:
                hits = hits[(hits["case_batch"] == 1) & (hits["case_backend"] == "eager")]
            else:
                hits = hits.iloc[0:0]
            if not hits.empty:
                row = hits.iloc[0]
                figures.append(Figure(float(row["value"]), "measured", f"run {run.run}"))
        if len(figures) == 2:
            return figures[0], figures[1]
    bandwidth = device.bandwidth_bytes_per_s
    not_measured = _unavailable("not measured on this device (bench infer suite, batch=1)")
    if bandwidth is None:
        return _unavailable(f"no memory bandwidth for {device.name}"), not_measured
    dtype = "bf16" if precision == "bf16" else "fp32"
    floor = size.weight_bytes[dtype] / bandwidth
    note = f"{dtype} weight bytes / bandwidth: a lower bound (kernel launches come on top)"
    return Figure(floor, "floor", note), not_measured


def _overfit(
    size: SizingEstimate, runs: list[_Run], data_bars: int | None
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


def _measured_oom(size: SizingEstimate, runs: list[_Run]) -> str | None:
    for run in runs:
        if not run.same:
            continue
        rows = _dims_rows(run.rows, size.config.hidden_dims, size.config.obs_dim)
        oom = rows[rows["status"] == "oom"]
        if not oom.empty:
            return f"out of memory in run {run.run}: {oom['reason'].iloc[0]}"
    return None


# -- the decision -------------------------------------------------------------------------


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def pick(
    device: GpuSpec,
    *,
    use_case: str | None = None,
    runs: pd.DataFrame | None = None,
    data_bars: int | None = None,
    latency_budget_s: float | None = None,
    n_envs: int | None = None,
    n_steps: int | None = None,
    minibatch: int | None = None,
    extra_dims: Sequence[tuple[int, ...]] = (),
    precision: str = "auto",
    obs_buffer: str = "indices",
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
    network: NetworkConfig | None = None,
    tiers: Sequence[TierRow] = GPU_TIERS,
) -> PickResult:
    """Judge every preset (and `extra_dims`) on `device` and choose one for `use_case`.

    `runs` is a `reports.load.load_runs` frame: runs on this same device give measured figures;
    runs on other devices are scaled by the ratio of matmul rates (update) and bandwidths
    (rollout). With no runs, throughput is a roofline estimate and latency a bandwidth floor.
    """
    name = resolve_use_case(use_case)
    use = next(u for u in USE_CASES if u.name == name)
    precision, asked = _precisions(precision, device)
    mode = use.training_mode
    _check_numbers(safety_margin, data_bars, latency_budget_s)
    tier = gpu_tier(None if device.is_cpu else device.name,
                    None if device.is_cpu else device.memory_gib, tiers)  # fmt: skip
    n_envs = n_envs or tier.n_envs
    n_steps = n_steps or int(TRAINING_MODES[mode]["n_steps"])
    minibatch = minibatch or min(tier.minibatch_size, n_envs * n_steps)
    if minibatch > n_envs * n_steps:
        raise ConfigError(
            f"--minibatch {minibatch} exceeds the rollout n_envs x n_steps = {n_envs * n_steps}"
        )
    n_epochs = int(TRAINING_MODES[mode]["n_epochs"])
    if latency_budget_s is None and "latency" in use.constraints:
        latency_budget_s = Limits().latency_p99_s
    network = network or _network_of(runs)

    all_dims = list(dict.fromkeys([*PRESETS.values(), *(tuple(d) for d in extra_dims)]))
    sizes = {
        ",".join(map(str, dims)): estimate(
            NetworkConfig(**{**network.to_dict(), "hidden_dims": dims}),
            n_envs,
            n_steps,
            minibatch,
            n_bars=data_bars,
            obs_buffer=obs_buffer,
            device="cpu" if device.is_cpu else "cuda",
        )
        for dims in all_dims
    }
    context = 0 if device.is_cpu else CUDA_CONTEXT_BYTES
    budget = int(device.memory_bytes * (1.0 - safety_margin))
    run_list = _runs(runs, device, precision)

    candidates = [
        _candidate(size, run_list, device, precision, sizes, n_epochs, budget, context,
                   data_bars, latency_budget_s)
        for size in sorted(sizes.values(), key=lambda s: s.params)
    ]  # fmt: skip
    budgets = Limits(
        latency_p99_s=latency_budget_s or Limits().latency_p99_s, memory_bytes=float(budget)
    )
    decision = None
    if run_list:
        evidence = _evidence(runs, run_list, candidates, device, budgets, asked)
        decision = decide(use, evidence, budgets)
        by_dims = {",".join(map(str, c.hidden_dims)): c for c in candidates}
        chosen = None if decision.size is None else by_dims.get(decision.size.hidden_dims)
        reason = decision.summary
    else:
        tier_params = estimate(
            NetworkConfig(**{**network.to_dict(), "hidden_dims": tier.hidden_dims})
        )
        chosen, reason = _tier_choice(candidates, tier, tier_params.params)
        reason = f"no measurements: the tier table's prior; {reason}"

    why = [reason if decision is None else f"use case {name!r}: {reason}"]
    if decision is not None:
        why.extend(decision.details)
    notes = [
        f"results {r.run} ({r.device}): "
        + ("same device: its figures are measured here" if r.same else
           f"another device: used only to extrapolate, scaled by {r.rate_source}")
        for r in run_list
    ]  # fmt: skip
    if chosen is not None:
        size = sizes[",".join(map(str, chosen.hidden_dims))]
        why.extend(_fit_and_speed(chosen, size, device, tier, mode, context, budget, safety_margin))
    return PickResult(
        device=device,
        use_case=name,
        training_mode=mode,
        tier=tier,
        n_envs=n_envs,
        n_steps=n_steps,
        minibatch=minibatch,
        n_epochs=n_epochs,
        precision=precision,
        obs_buffer=obs_buffer,
        data_bars=data_bars,
        latency_budget_s=latency_budget_s,
        safety_margin=safety_margin,
        budget_bytes=budget,
        recommended=chosen,
        decision=decision,
        why=tuple(why),
        candidates=tuple(candidates),
        notes=tuple(notes),
    )


def _precisions(precision: str, device: GpuSpec) -> tuple[str, str | None]:
    """(the precision models and extrapolations use, the one measured cases must have).

    auto: measured figures at whatever precision ran fastest; models at what train's auto
    uses (tf32 where the card has it)."""
    if precision not in ("auto", "fp32", "tf32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32, tf32 or bf16, got {precision!r}")
    if precision == "auto":
        has_tf32 = not device.is_cpu and device.matmul_flops_per_s("tf32") is not None
        return ("tf32" if has_tf32 else "fp32"), None
    if device.is_cpu and precision != "fp32":
        raise ConfigError(f"--precision {precision} needs a GPU; a CPU trains in fp32")
    return precision, precision


def _check_numbers(
    safety_margin: float, data_bars: int | None, latency_budget_s: float | None
) -> None:
    if not 0.0 <= safety_margin < 1.0:
        raise ConfigError(f"safety margin must be in [0, 1), got {safety_margin!r}")
    for label, value in (("--data-bars", data_bars), ("--latency-budget-ms", latency_budget_s)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{label} must be a positive finite number, got {value!r}")


def _candidate(
    size: SizingEstimate,
    run_list: list[_Run],
    device: GpuSpec,
    precision: str,
    sizes: dict[str, SizingEstimate],
    n_epochs: int,
    budget: int,
    context: int,
    data_bars: int | None,
    latency_budget_s: float | None,
) -> Candidate:
    """One size's row of the candidates table: memory, throughput, latency, overfitting."""
    need = size.train_bytes + context
    fits = need <= budget
    fit_note = f"{_gb(need)} of {_gb(budget)}"
    oom = _measured_oom(size, run_list)
    if oom:
        fits, fit_note = False, f"{fit_note}; but {oom}"
    env = _throughput("env_steps_per_s", size, run_list, device, precision, sizes)
    update = _throughput("update_samples_per_s", size, run_list, device, precision, sizes)
    p50, p99 = _latency(size, run_list, device, precision)
    overfit, risk = _overfit(size, run_list, data_bars)
    excluded = []
    if not fits:
        excluded.append("does not fit")
    if latency_budget_s is not None:
        if p99.value is not None and p99.value > latency_budget_s:
            excluded.append(f"p99 latency over the {latency_budget_s * 1e3:g} ms budget")
        elif p99.value is None and p50.value is not None and p50.value > latency_budget_s:
            excluded.append(f"latency floor over the {latency_budget_s * 1e3:g} ms budget")
    return Candidate(
        label=preset_name(size.config.hidden_dims),
        hidden_dims=size.config.hidden_dims,
        params=size.params,
        train_bytes=size.train_bytes,
        need_bytes=need,
        fits=fits,
        fit_note=fit_note,
        env_steps_per_s=env,
        update_samples_per_s=update,
        train_steps_per_s=_combined(env, update, n_epochs),
        latency_p50_s=p50,
        latency_p99_s=p99,
        overfit=overfit,
        overfit_risk=risk,
        excluded=tuple(excluded),
    )


def _fit_and_speed(
    chosen: Candidate,
    size: SizingEstimate,
    device: GpuSpec,
    tier: TierRow,
    mode: str,
    context: int,
    budget: int,
    safety_margin: float,
) -> list[str]:
    """The lines under a recommendation: what fits how, which settings, how fast."""
    parts = ", ".join(f"{k} {_gb(v)}" for k, v in size.memory_components().items())
    context_text = f" + CUDA context {_gb(context)}" if context else ""
    n_envs, n_steps, minibatch = size.n_envs, size.n_steps, size.minibatch
    lines = [
        f"fits: {_gb(chosen.need_bytes)} ({parts}{context_text}) of {_gb(budget)} "
        f"= {device.memory_gib:.1f} GiB minus a {safety_margin:.0%} safety margin"
    ]
    given = n_envs != tier.n_envs or minibatch != min(tier.minibatch_size, n_envs * n_steps)
    lines.append(
        f"n_envs {n_envs}, minibatch {minibatch}: "
        + ("as given" if given else f"tier {tier.name!r} defaults")
        + f"; n_steps {n_steps}, {TRAINING_MODES[mode]['n_epochs']} epochs from the "
        f"{mode!r} training mode"
    )
    speed, update = chosen.train_steps_per_s, chosen.update_samples_per_s
    if speed.value is not None:
        lines.append(
            f"training ~{speed.value:,.0f} env steps/s ({speed.basis}; update: {update.note})"
        )
    if chosen.overfit_risk == "high":
        lines.append(
            "every eligible size has a high overfitting risk for this much data "
            f"({chosen.overfit.basis}); more bars, or a smaller network, would help"
        )
    return lines


def _tier_choice(
    candidates: list[Candidate], tier: TierRow, tier_params: int
) -> tuple[Candidate | None, str]:
    """The tier table's size for the device, or the nearest that fits (no measurements)."""
    eligible = [c for c in candidates if not c.excluded]
    if not eligible:
        return None, "no candidate fits and meets the constraints (see table)"
    for candidate in eligible:
        if candidate.hidden_dims == tier.hidden_dims:
            return candidate, f"the tier table's size for this device (row {tier.name!r})"
    smaller = [c for c in eligible if c.params <= tier_params]
    tier_text = f"the tier table's size ({preset_name(tier.hidden_dims)}, row {tier.name!r})"
    if smaller:
        return smaller[-1], f"{tier_text} is excluded here; this is the largest eligible below it"
    return eligible[0], f"{tier_text} is excluded here; this is the smallest eligible above it"


def _evidence(
    runs: pd.DataFrame,
    run_list: list[_Run],
    candidates: list[Candidate],
    device: GpuSpec,
    budgets: Limits,
    precision: str | None,
) -> Evidence:
    """What the engine decides on for this device.

    Runs made on this device: exactly the evidence `archbench report` builds from them (so both
    give one answer), plus every other candidate as 'not measured'. Otherwise: the candidates'
    throughput extrapolated from the other devices (a point figure, no interval), the sizing
    model's memory, no latency, and the out-of-sample figures (device-independent) of all runs.
    """
    same = [r.run for r in run_list if r.same]
    if same:
        frame = pd.concat([r.rows for r in run_list if r.same])
        evidence = evidence_from_frame(frame, budgets, device=device.name, precision=precision)
        measured = {s.hidden_dims for s in evidence.sizes}
        extra = [
            Size(c.label, ",".join(map(str, c.hidden_dims)), c.params)
            for c in candidates
            if ",".join(map(str, c.hidden_dims)) not in measured
        ]
        sizes = sorted((*evidence.sizes, *extra), key=lambda s: s.params)
        return replace(evidence, sizes=tuple(sizes))
    evidence = evidence_from_frame(runs, budgets, device=device.name)
    sizes = []
    for c in candidates:
        speed = c.train_steps_per_s
        usable = speed.value is not None and speed.basis in ("measured", "extrapolated")
        sizes.append(
            Size(
                label=c.label,
                hidden_dims=",".join(map(str, c.hidden_dims)),
                params=c.params,
                throughput=point_score(speed.value, speed.note) if usable else None,
                throughput_note=speed.note,
                memory_bytes=float(c.need_bytes),
                memory_note="sizing model" + ("" if device.is_cpu else " + CUDA context"),
            )
        )
    return replace(
        evidence,
        sizes=tuple(sizes),
        memory_budget=budgets.memory_bytes,
        memory_budget_note=f"{device.name}'s memory minus the safety margin",
        source=f"{evidence.source} (throughput extrapolated to {device.name})",
    )


def _network_of(runs: pd.DataFrame | None) -> NetworkConfig:
    """The default network, without the account state when every result was measured without
    it (runs made before it was part of the observation): sizes must match the records."""
    network = NetworkConfig()
    if runs is None or runs.empty:
        return network
    measured = {int(v) for v in runs["obs_dim"].dropna()}
    without = NetworkConfig(**{**network.to_dict(), "account_state": False})
    return without if measured == {without.obs_dim} else network
