"""Choose hidden_dims, n_envs and minibatch for one device and use case, measured or not.

The choice itself is `archbench.reports.use_cases.decide`, the engine the report uses, over the
measurements of this device (or figures extrapolated to it); with no results at all, the GPU
tier table is the prior and the answer says so. Every figure says where it comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import pandas as pd

from archbench.instrument.device.datasheets import GpuSpec
from archbench.instrument.device.tiers import GPU_TIERS, TierRow, gpu_tier
from archbench.reports.decision_types import (
    USE_CASES,
    Decision,
    Evidence,
    Limits,
    Size,
    find_use_case,
)
from archbench.reports.estimates import (
    Figure,
    ResultsRun,
    combined_figure,
    latency_figures,
    measured_oom,
    overfit_figure,
    results_runs,
    throughput_figure,
)
from archbench.reports.evidence import MEMORY_SAFETY_MARGIN, combine_per_case, oos_cells
from archbench.reports.scores import point_score
from archbench.reports.use_cases import decide, evidence_from_frame
from ppo_core.config import NetworkConfig
from ppo_core.device import PRECISION_CHOICES, auto_precision
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS, TRAINING_MODES, preset_name
from ppo_core.sizing import CUDA_CONTEXT_BYTES, SizingEstimate, estimate

__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "Candidate",
    "PickResult",
    "pick",
    "resolve_use_case",
]

DEFAULT_SAFETY_MARGIN = MEMORY_SAFETY_MARGIN
"""Share of device memory kept free: allocator fragmentation, cuBLAS workspaces beyond the
context's, and the gap between the datasheet capacity and what the driver exposes. The same
figure as `archbench report`'s memory budget (archbench.reports.evidence.MEMORY_SAFETY_MARGIN)."""


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


def resolve_use_case(text: str | None) -> str:
    """A loosely spelled use case ('live-trading', 'limited data') -> its USE_CASES name."""
    try:
        return find_use_case(text).name
    except ValueError as error:
        raise ConfigError(str(error)) from None


# -- the decision -------------------------------------------------------------------------


def _gb(n: float) -> str:
    """Binary units throughout, as the device's memory is stated (GiB), never GB beside GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


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

    `runs` is an `archbench.reports.load.load_runs` frame: runs on this same device give
    measured figures; runs on other devices are scaled by the ratio of matmul rates (update)
    and bandwidths (rollout). With no runs, throughput is a roofline estimate and latency a
    bandwidth floor.
    """
    use = {u.name: u for u in USE_CASES}[resolve_use_case(use_case)]
    precision, asked = _precisions(precision, device)
    mode = use.training_mode
    _check_numbers(safety_margin, data_bars, latency_budget_s)
    tier = gpu_tier(*((None, None) if device.is_cpu else (device.name, device.memory_gib)), tiers)
    run_list = results_runs(runs, device, precision)
    n_envs, n_steps, minibatch, settings = _rollout(
        run_list, tier, mode, n_envs, n_steps, minibatch
    )
    n_epochs = int(TRAINING_MODES[mode]["n_epochs"])  # the mode's, never overridden
    if latency_budget_s is None and "latency" in use.constraints:
        latency_budget_s = Limits().latency_p99_s
    network = network or _network_of(runs)
    sizes = _estimates(
        network, extra_dims, device, (n_envs, n_steps, minibatch), data_bars, obs_buffer
    )
    context = 0 if device.is_cpu else CUDA_CONTEXT_BYTES
    budget = int(device.memory_bytes * (1.0 - safety_margin))

    candidates = [
        _candidate(size, run_list, device, precision, sizes, n_epochs, budget, context,
                   data_bars, latency_budget_s)
        for size in sorted(sizes.values(), key=lambda s: s.params)
    ]  # fmt: skip
    if run_list:
        budgets = Limits(latency_budget_s or Limits().latency_p99_s, memory_bytes=float(budget))
        evidence = _evidence(runs, run_list, candidates, device, budgets, asked)
        chosen, decision, why = _decided(use, evidence, budgets, candidates)
    else:
        (chosen, why), decision = _tier_prior(candidates, tier, network), None
    if chosen is not None:
        settings = settings or f"tier {tier.name!r} defaults"
        size = sizes[chosen.hidden_dims]
        lines = _fit_and_speed(chosen, size, device, settings, mode, context, budget, safety_margin)
        why.extend(_engine_speed(lines, decision))
    return PickResult(
        device=device,
        use_case=use.name,
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
        notes=tuple(_notes(run_list)),
    )


def _notes(run_list: list[ResultsRun]) -> list[str]:
    """What was made of each results file: measured here, or used to extrapolate."""
    return [
        f"results {r.run} ({r.device}): "
        + ("same device: its figures are measured here" if r.same else
           f"another device: used only to extrapolate, scaled by {r.rate_source}")
        for r in run_list
    ]  # fmt: skip


def _tier_prior(
    candidates: list[Candidate], tier: TierRow, network: NetworkConfig
) -> tuple[Candidate | None, list[str]]:
    """No measurements: the tier table's size (or the nearest that fits), and why."""
    tier_params = estimate(network.replace(hidden_dims=tier.hidden_dims))
    chosen, reason = _tier_choice(candidates, tier, tier_params.params)
    return chosen, [f"no measurements: the tier table's prior; {reason}"]


def _rollout(
    run_list: list[ResultsRun],
    tier: TierRow,
    mode: str,
    n_envs: int | None,
    n_steps: int | None,
    minibatch: int | None,
) -> tuple[int, int, int, str | None]:
    """n_envs, n_steps and minibatch (as given, else as measured on this device, else the
    tier's and the mode's), and where they came from (None: the tier's defaults)."""
    settings = "as given" if n_envs or minibatch else None
    if n_envs is None and minibatch is None:  # recommend the settings that were measured
        n_envs, minibatch = _measured_settings(run_list)
        settings = "the case measured on this device" if n_envs else None
    n_envs = n_envs or tier.n_envs
    n_steps = n_steps or int(TRAINING_MODES[mode]["n_steps"])
    minibatch = minibatch or min(tier.minibatch_size, n_envs * n_steps)
    if minibatch > n_envs * n_steps:
        raise ConfigError(
            f"--minibatch {minibatch} exceeds the rollout n_envs x n_steps = {n_envs * n_steps}"
        )
    return n_envs, n_steps, minibatch, settings


def _estimates(
    network: NetworkConfig,
    extra_dims: Sequence[tuple[int, ...]],
    device: GpuSpec,
    rollout: tuple[int, int, int],
    data_bars: int | None,
    obs_buffer: str,
) -> dict[tuple[int, ...], SizingEstimate]:
    """The sizing model of every preset and extra size, keyed by hidden_dims."""
    n_envs, n_steps, minibatch = rollout
    all_dims = list(dict.fromkeys([*PRESETS.values(), *(tuple(d) for d in extra_dims)]))
    return {
        tuple(dims): estimate(
            network.replace(hidden_dims=dims),
            n_envs,
            n_steps,
            minibatch,
            n_bars=data_bars,
            obs_buffer=obs_buffer,
            device="cpu" if device.is_cpu else "cuda",
        )
        for dims in all_dims
    }


def _decided(
    use, evidence: Evidence, budgets: Limits, candidates: list[Candidate]
) -> tuple[Candidate | None, Decision, list[str]]:
    """The engine's decision over the evidence, its candidate, and the reasons it gives."""
    decision = decide(use, evidence, budgets)
    by_dims = {c.hidden_dims: c for c in candidates}
    chosen = None if decision.size is None else by_dims.get(decision.size.dims)
    return chosen, decision, [f"use case {use.name!r}: {decision.summary}", *decision.details]


def _engine_speed(lines: list[str], decision: Decision | None) -> list[str]:
    """One figure per size: the engine's wall-clock rate on the case it names replaces the
    candidate table's estimate of the training rate."""
    measured = None if decision is None or decision.size is None else decision.size.throughput
    if measured is None:
        return lines
    text = (
        f"training {measured.value:,.0f} env steps/s "
        f"(measured, wall-clock, {decision.size.throughput_note})"
    )
    return [text if line.startswith("training ~") else line for line in lines]


def _precisions(precision: str, device: GpuSpec) -> tuple[str, str | None]:
    """(the precision models and extrapolations use, the one measured cases must have).

    auto: measured figures at whatever precision ran fastest; models at what train's auto
    uses (tf32 where the card has it)."""
    if precision not in PRECISION_CHOICES:
        choices = f"{', '.join(PRECISION_CHOICES[:-1])} or {PRECISION_CHOICES[-1]}"
        raise ConfigError(f"precision must be {choices}, got {precision!r}")
    if precision == "auto":
        # The datasheet says whether the card has TF32 tensor cores (no capability to read).
        has_tf32 = not device.is_cpu and device.matmul_flops_per_s("tf32") is not None
        return auto_precision(has_tf32), None
    if device.is_cpu and precision != "fp32":
        raise ConfigError(f"--precision {precision} needs a GPU; a CPU trains in fp32")
    return precision, precision


def _measured_settings(run_list: list[ResultsRun]) -> tuple[int | None, int | None]:
    """n_envs and minibatch of the train case most sizes measured on this device (the one the
    engine compares them on); (None, None) when none was."""
    rows = [r.rows for r in run_list if r.same]
    if not rows:
        return None, None
    train = pd.concat(rows)
    train = train[(train["suite"] == "train") & (train["status"] == "ok")]
    if train.empty or not {"case_n_envs", "case_minibatch"} <= set(train.columns):
        return None, None
    counts = (
        train.dropna(subset=["case_n_envs", "case_minibatch"])
        .groupby(["case_n_envs", "case_minibatch"])["preset"]
        .nunique()
    )
    if counts.empty:
        return None, None
    n_envs, minibatch = counts.idxmax()
    return int(n_envs), int(minibatch)


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
    run_list: list[ResultsRun],
    device: GpuSpec,
    precision: str,
    sizes: dict[tuple[int, ...], SizingEstimate],
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
    oom = measured_oom(size, run_list, precision)
    if oom:
        fits, fit_note = False, f"{fit_note}; but {oom}"
    env = throughput_figure("env_steps_per_s", size, run_list, device, precision, sizes)
    update = throughput_figure("update_samples_per_s", size, run_list, device, precision, sizes)
    p50, p99 = latency_figures(size, run_list, device, precision)
    overfit, risk = overfit_figure(size, run_list, data_bars)
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
        train_steps_per_s=combined_figure(env, update, n_epochs),
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
    settings: str,
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
    lines.append(
        f"n_envs {n_envs}, minibatch {minibatch}: {settings}"
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
    run_list: list[ResultsRun],
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
        measured = {s.dims for s in evidence.sizes}
        extra = [Size(c.label, c.hidden_dims, c.params) for c in candidates
                 if c.hidden_dims not in measured]  # fmt: skip
        sizes = sorted((*evidence.sizes, *extra), key=lambda s: s.params)
        note = f"{device.name}'s {device.memory_gib:.1f} GiB minus the safety margin"
        # Out-of-sample figures do not depend on the device: every run's count.
        oos = oos_cells(combine_per_case(runs)[0])
        return replace(evidence, sizes=tuple(sizes), memory_budget_note=note, oos=oos)
    evidence = evidence_from_frame(runs, budgets, device=device.name)
    sizes = []
    for c in candidates:
        speed = c.train_steps_per_s
        usable = speed.value is not None and speed.basis in ("measured", "extrapolated")
        sizes.append(
            Size(
                label=c.label,
                dims=c.hidden_dims,
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
    """The default network in the observation layout every result was measured with (runs made
    before the account state or the zero padding existed: 5,300 or 5,303 inputs), so that sizes
    match the records; the default when the records agree on none."""
    network = NetworkConfig()
    if runs is None or runs.empty:
        return network
    measured = {int(v) for v in runs["obs_dim"].dropna()}
    for account_state, input_multiple in ((True, 1), (False, 1)):
        older = network.replace(account_state=account_state, input_multiple=input_multiple)
        if measured == {older.obs_dim}:
            return older
    return network
