"""Peak memory of a PPO training setup per size, each in a fresh interpreter.

A child process prepares the data, then builds env, policy, Adam and the rollout buffer and
runs full iterations; the RSS peak of that training region above the RSS it started at on a CPU
(data preparation's temporaries excluded), NVML and allocator peaks on a GPU, each beside the
sizing model's prediction for that device kind. The CUDA context is measured (NVML per-process
used minus allocator reserved, in the calibration child) and the NVML prediction uses it.
Checkpoint size is measured from a file.

Every memory error here has one sign: (measured - predicted) / predicted in %, so a positive
error means the process needed MORE than the model said (the model under-predicts).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from _cases import oom_record, size_record

from archbench.instrument.record import Metric
from ppo_core.config import NetworkConfig
from ppo_core.loaders import is_generated
from ppo_core.sizing import CUDA_CONTEXT_BYTES, estimate

SUITE = "memory"
WORKLOAD = "archbench.instrument.workloads:training_setup"


CALIBRATION_DIMS = (8,)
"""An 8-wide network: the same setup with next to no model, to measure what the runtime itself
adds (allocator arenas, thread pools, lazily loaded kernels) beyond any size's prediction."""


def _workload_kwargs(options, hidden_dims) -> dict:
    budget = options.budget
    return {
        "hidden_dims": list(hidden_dims),
        "n_envs": budget.memory_n_envs,
        "n_steps": budget.memory_n_steps,
        "minibatch": budget.memory_minibatch,
        "iterations": budget.memory_iterations,
        "device": options.device,
        "data": options.data,
        "bars": budget.data_bars if is_generated(options.data) else None,
    }


def _headline_bytes(result, cuda) -> int | None:
    """The view the prediction is judged on: allocator peak on a GPU, the training region's
    RSS growth on a CPU."""
    if cuda:
        return result["memory"]["allocated_bytes"]
    return result["result"]["train_rss_delta_bytes"]


def error_pct(measured: float, predicted: float) -> float:
    """The one memory-error convention: (measured - predicted) / predicted in %; positive when
    the process needed more than the model said."""
    return 100.0 * (measured - predicted) / predicted


def cuda_context_of(result) -> int | None:
    """The CUDA context a measured child held: NVML per-process used minus torch reserved."""
    report = (result or {}).get("memory") or {}
    process, reserved = report.get("process_used_bytes"), report.get("reserved_bytes")
    return None if process is None or reserved is None else process - reserved


@pytest.fixture(scope="module")
def calibration(options, market):
    """The 8-wide calibration setup, measured once per module: (measured headline bytes minus
    the model's size-dependent part, or None and why; the CUDA context it held, or None)."""
    from archbench.instrument.memory import measure_isolated

    data = market(options.budget.data_bars)
    budget = options.budget
    network = NetworkConfig(data.n_features, data.lookback, hidden_dims=CALIBRATION_DIMS)
    sizing = estimate(
        network,
        budget.memory_n_envs,
        budget.memory_n_steps,
        budget.memory_minibatch,
        n_bars=data.features.shape[0],
        device=options.device,
    )
    result = measure_isolated(WORKLOAD, _workload_kwargs(options, CALIBRATION_DIMS))
    context = cuda_context_of(result) if options.cuda and result["status"] == "ok" else None
    measured = _headline_bytes(result, options.cuda) if result["status"] == "ok" else None
    if measured is None:
        why = f"calibration run failed: {result['reason'] or 'view not measured'}"
        return (None, why), context
    # What the runtime adds beyond the tensors: the measurement net of everything the model
    # ties to a size, i.e. comparable with its size-independent part (workspace_bytes).
    size_part = sizing.train_bytes - sizing.workspace_bytes
    return (measured - size_part, None), context


@pytest.fixture(scope="module")
def runtime_overhead(calibration):
    return calibration[0]


def test_memory(benchmark, emit, options, market, size, calibration):
    from archbench.instrument.memory import measure_isolated
    from ppo_core.device import resolve_precision

    runtime_overhead, measured_context = calibration
    context = CUDA_CONTEXT_BYTES if measured_context is None else measured_context
    budget = options.budget
    data = market(budget.data_bars)  # prepared here too, so its bar count is known up front
    network = size.network(data.n_features, data.lookback)
    n_envs, n_steps = budget.memory_n_envs, budget.memory_n_steps
    minibatch = budget.memory_minibatch
    sizing = estimate(
        network, n_envs, n_steps, minibatch, n_bars=data.features.shape[0], device=options.device
    )
    case = {
        "n_envs": n_envs,
        "n_steps": n_steps,
        "minibatch": minibatch,
        "peak_phase": sizing.peak_phase,
        "error_sign": "(measured - predicted) / predicted: positive = model under-predicts",
        "cuda_context": (
            None
            if not options.cuda
            else "measured (calibration child)"
            if measured_context is not None
            else "assumed (sizing.CUDA_CONTEXT_BYTES)"
        ),
    }
    base = size_record(
        SUITE,
        options,
        size.name,
        network,
        sizing,
        case=case,
        predicted={
            **sizing.memory_components(),
            "params": sizing.params,
            "train_bytes": sizing.train_bytes,
            "train_bytes_on_gpu": sizing.train_bytes + context,
            "cuda_context_bytes": context,
            "checkpoint_bytes": sizing.checkpoint_bytes,
            "checkpoint_bytes_no_optimizer": sizing.checkpoint_bytes_no_optimizer,
        },
        precision=resolve_precision("auto", options.device),  # the workload's default
    )
    kwargs = _workload_kwargs(options, network.hidden_dims)
    # One round: the child's whole life (import excluded from the figure, not from the time).
    result = benchmark.pedantic(lambda: measure_isolated(WORKLOAD, kwargs), rounds=1)
    if result["status"] == "oom":
        emit(oom_record(base, n_envs=n_envs, minibatch=minibatch))
        return
    if result["status"] != "ok":
        raise AssertionError(f"memory workload for {size.name} failed: {result['reason']}")
    metrics = _memory_metrics(result, sizing, options.cuda, context)
    metrics.update(_net_of_overhead(result, sizing, options.cuda, runtime_overhead))
    metrics.update(_checkpoint_metrics(network, sizing))
    emit(base.replace(params=result["result"]["params"], metrics=metrics))


def _memory_metrics(result, sizing, cuda, context) -> dict[str, Metric]:
    report = result["memory"]
    reasons = report["reasons"]
    train, on_gpu = sizing.train_bytes, sizing.train_bytes + context

    def view(value, reason, predicted=None):
        if value is None:
            return Metric.unavailable_because(reason or "not measured", "B", "lower", predicted)
        return Metric.measured(value, "B", "lower", (), predicted)

    def delta(name):
        peak, start = report[f"{name}_bytes"], report[f"{name}_start_bytes"]
        return None if peak is None or start is None else peak - start

    # Host RSS is the training footprint on a CPU; on a GPU it is only the host side. The
    # training region starts once the data is prepared (its pandas temporaries are not modelled).
    rss_predicted = None if cuda else train
    workload = result["result"]
    metrics = {
        "peak_rss_bytes": view(
            workload["train_rss_delta_bytes"], workload["train_rss_reason"], rss_predicted
        ),
        "peak_rss_with_data_bytes": view(result["rss_delta_bytes"], reasons.get("rss")),
        "nvml_process_used_bytes": view(
            report["process_used_bytes"], reasons.get("process_used"), on_gpu
        ),
        "torch_allocated_bytes": view(report["allocated_bytes"], reasons.get("allocated"), train),
        "torch_reserved_bytes": view(report["reserved_bytes"], reasons.get("reserved")),
        # Device-wide: other processes' memory too, so no prediction is set beside it.
        "nvml_device_used_bytes": view(delta("device_used"), reasons.get("device_used")),
    }
    headline = metrics["torch_allocated_bytes"] if cuda else metrics["peak_rss_bytes"]
    if headline.value is None:
        metrics["memory_error_pct"] = Metric.unavailable_because(
            headline.unavailable or "not measured", "%", None
        )
    else:
        error = error_pct(headline.value, train)
        metrics["memory_error_pct"] = Metric.measured(error, "%", None)
    own_context = cuda_context_of(result)
    if cuda and own_context is not None:
        # What the process holds beyond the allocator's pool: the CUDA context and libraries,
        # beside the calibration child's (the prediction every case here uses).
        metrics["cuda_context_bytes"] = Metric.measured(own_context, "B", "lower", (), context)
    return metrics


def _net_of_overhead(result, sizing, cuda, runtime_overhead) -> dict[str, Metric]:
    """The prediction error once the size-independent runtime overhead is taken out."""
    overhead, why = runtime_overhead
    measured = _headline_bytes(result, cuda)
    if overhead is None or measured is None:
        reason = why or "headline memory view not measured"
        return {
            "runtime_overhead_bytes": Metric.unavailable_because(reason, "B", None),
            "memory_error_pct_net": Metric.unavailable_because(reason, "%", None),
        }
    # Net: the measured size-independent part replaces the model's constant ones.
    size_part = sizing.train_bytes - sizing.workspace_bytes
    return {
        "runtime_overhead_bytes": Metric.measured(overhead, "B", None, (), sizing.workspace_bytes),
        "memory_error_pct_net": Metric.measured(
            error_pct(measured - overhead, size_part), "%", None
        ),
    }


def _checkpoint_metrics(network, sizing) -> dict[str, Metric]:
    """Save a real checkpoint (with and without Adam state) and measure the files."""
    import torch

    from ppo_core import checkpoint
    from ppo_core.network import ActorCritic

    policy = ActorCritic(network)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4, eps=1e-5)
    for param in policy.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()  # Adam creates its moments on the first step
    with tempfile.TemporaryDirectory(prefix="archbench-ckpt-") as tmp:
        full = checkpoint.save(Path(tmp, "full.pt"), network, policy, optimizer=optimizer)
        bare = checkpoint.save(Path(tmp, "bare.pt"), network, policy)
        full_bytes, bare_bytes = full.stat().st_size, bare.stat().st_size
    return {
        "checkpoint_bytes": Metric.measured(full_bytes, "B", "lower", (), sizing.checkpoint_bytes),
        "checkpoint_bytes_no_optimizer": Metric.measured(
            bare_bytes, "B", "lower", (), sizing.checkpoint_bytes_no_optimizer
        ),
    }
