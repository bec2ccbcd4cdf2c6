"""Inference latency per size: batch 1 (a live trading decision) and batch n_envs (a rollout).

p50 and p99 of the actor's forward on the device (obs -> logits, latency_p50_s) and of the
whole decision (host observation in, action on the host out, e2e_latency_p50_s) per backend of
archbench.instrument.backends (eager; torch.compile; ONNX Runtime with the `onnx` extra; dynamic
int8 on a CPU; bf16/fp16 weights and a CUDA graph replay on a GPU), beside the floor of reading the
weights once: from the last-level cache where they fit in it (a CPU; the ceilings suite
measures its read rate), else at the memory bandwidth. A p50 below that floor is a measurement
problem, and the record says so. A backend that disagrees with eager fp32 is reported as such
and not timed; weights are the initial (untrained) ones, whose near-tied logits flip under any
rounding, so actions are compared only where eager's decision is clear
(backends.DECISIVE_MARGIN) and logits within backends.LOGIT_TOLERANCE of their spread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from _cases import (
    OPTIONS_KEY,
    is_oom,
    latency_metrics,
    observation_windows,
    oom_record,
    session_ceilings,
    size_record,
    timed_rounds,
)

from archbench.instrument.backends import (
    AGREEMENT_THRESHOLD,
    Agreement,
    Unavailable,
    build_backend,
    compare_logits,
)
from archbench.instrument.record import Metric, Record
from ppo_core.sizing import estimate

SUITE = "infer"
AGREEMENT_SAMPLES = 512
"""Observations on which a backend's actions and logits are compared with eager fp32."""


def pytest_generate_tests(metafunc):
    options = metafunc.config.stash[OPTIONS_KEY]
    if "batch" in metafunc.fixturenames:
        batches = sorted({1, options.budget.infer_batch})
        metafunc.parametrize("batch", batches, ids=[f"batch{b}" for b in batches])
    if "backend" in metafunc.fixturenames:
        # Half-precision weights are a GPU deployment, dynamic int8 a CPU one.
        skip = {"int8"} if options.cuda else {"bf16", "fp16"}
        backends = [b for b in options.budget.infer_backends if b not in skip]
        metafunc.parametrize("backend", backends)


def test_inference_latency(benchmark, emit, options, market, size, batch, backend):
    import torch

    from ppo_core.network import ActorCritic

    data = market(options.budget.data_bars)
    network = size.network(data.n_features, data.lookback)
    sizing = estimate(network)
    dtype = backend if backend in ("bf16", "fp16", "int8") else "fp32"  # bytes per weight
    base, floor_s, floor_basis = _base(options, size, network, sizing, batch, backend, dtype)
    device = torch.device(options.device)
    try:
        torch.manual_seed(0)
        policy = ActorCritic(network).to(device).eval()
        params = sum(p.numel() for p in policy.parameters())
        # Whole batches of the timed shape, so no backend recompiles for the comparison.
        n_agree = batch * -(-AGREEMENT_SAMPLES // batch)
        obs = observation_windows(data, n_agree, seed=1, device=device)
        x = observation_windows(data, batch, seed=2, device=device)
        started = time.perf_counter()
        built = build_backend(backend, policy, device, x)
        build_s = time.perf_counter() - started
        if isinstance(built, Unavailable):
            emit(_unavailable(base, params, built.reason, floor_s))
            return
        runner = built.run
        agreement = _agreement(runner, policy, obs, batch)
        refusal = agreement.refusal()
        if refusal is not None:
            emit(_unavailable(base, params, refusal, floor_s, agreement.metrics()))
            return
        budget = options.budget
        samples = timed_rounds(
            benchmark,
            lambda: runner(x),
            rounds=budget.infer_rounds,
            warmup=budget.infer_warmup,
            device=options.device,
        )
        metrics = latency_metrics(samples, predicted=floor_s)
        p50 = metrics["latency_p50_s"].value
        metrics["throughput_samples_per_s"] = Metric.measured(batch / p50, "1/s", "higher")
        metrics["floor_fraction"] = Metric.measured(floor_s / p50, "ratio", "higher")
        metrics.update(_end_to_end(built, x, options.cuda, budget))
        metrics.update(agreement.metrics())
        if backend in ("compile", "onnx"):
            # Compilation or export + session start: paid once per process, never timed above.
            metrics["build_s"] = Metric.measured(build_s, "s", "lower")
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, batch=batch, backend=backend))
        return
    problem = below_floor(metrics["latency_p50_s"].value, floor_s, floor_basis)
    case = {**base.case, "measurement_problem": problem} if problem else base.case
    emit(_with(base, params=params, metrics=metrics, case=case))


def _base(options, size, network, sizing, batch: int, backend: str, dtype: str):
    """The case's record before timing, with its predictions: (record, floor_s, floor_basis)."""
    ceilings = session_ceilings(options)
    floor_s, floor_basis = ceilings.read_floor_s(sizing.weight_bytes[dtype])
    base = size_record(
        SUITE,
        options,
        size.name,
        network,
        sizing,
        case={
            "batch": batch,
            "backend": backend,
            "weights": "initial (untrained)",
            "floor_basis": floor_basis,
        },
        precision=dtype,
        predicted={
            "params": sizing.params,
            "weight_bytes": sizing.weight_bytes[dtype],
            # The least time reading the weights once takes: cache or memory (floor_basis).
            "bandwidth_floor_s": floor_s,
            "compute_floor_s": batch
            * sizing.forward_flops_per_sample
            / ceilings.matmul_flops_per_s,
            "forward_flops": batch * sizing.forward_flops_per_sample,
        },
    )
    return base, floor_s, floor_basis


def below_floor(p50_s: float | None, floor_s: float, basis: str) -> str | None:
    """Why a p50 below its floor cannot be right (a timer, clock or caching artefact), or None."""
    if p50_s is None or p50_s >= floor_s:
        return None
    return (
        f"p50 {p50_s * 1e6:.1f} us is below its {basis} floor {floor_s * 1e6:.1f} us: "
        "reading the weights once cannot take less; check the timer and what else ran"
    )


def _end_to_end(built: Any, x: Any, cuda: bool, budget: Any) -> dict[str, Metric]:
    """p50/p99 of the whole decision: observations from (pinned) host memory to actions on the
    host, on the host clock, since the action's arrival on the host ends it."""
    from archbench.instrument.timing import Latency, time_callable

    host = x.cpu().pin_memory() if cuda else x.cpu()
    samples = time_callable(
        lambda: built.decide(host),
        repeats=budget.infer_rounds,
        warmup=budget.infer_warmup,
        device="cpu",
    )
    stats = Latency.from_samples(samples)
    return {
        "e2e_latency_p50_s": Metric.measured(stats.median, "s", "lower", samples),
        "e2e_latency_p99_s": Metric.measured(stats.p99, "s", "lower", samples),
    }


def _with(base: Record, **changes: Any) -> Record:

    return base.replace(**changes)


def _unavailable(
    base: Record, params: int, why: str, floor_s: float, extra: dict[str, Metric] | None = None
) -> Record:
    metrics = {
        "latency_p50_s": Metric.unavailable_because(why, "s", "lower", predicted=floor_s),
        "latency_p99_s": Metric.unavailable_because(why, "s", "lower"),
        **(extra or {}),
    }
    return _with(base, params=params, metrics=metrics)


def _agreement(runner: Callable, policy: Any, obs: Any, batch: int) -> Agreement:
    """Actions and logits against eager fp32 (backends.compare_logits), computed on whole
    batches of the timed shape so no backend recompiles for the comparison."""
    import torch

    with torch.inference_mode():
        reference = policy(obs)[0].float()  # (N, n_actions)
        logits = torch.cat([runner(chunk).float().clone() for chunk in obs.split(batch)])
    return compare_logits(reference, logits, AGREEMENT_THRESHOLD)
