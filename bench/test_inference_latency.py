"""Inference latency per size: batch 1 (a live trading decision) and batch n_envs (a rollout).

p50 and p99 per backend (eager; torch.compile where it works; ONNX Runtime with the `onnx`
extra; pure bf16 weights on a GPU), each beside the weight-bytes / bandwidth floor.
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _cases import (
    OPTIONS_KEY,
    is_oom,
    latency_metrics,
    observation_windows,
    oom_record,
    session_ceilings,
    timed_rounds,
)

from ppo_core.record import Metric, Record
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
        # bf16 weights are a GPU deployment; a CPU without bf16 units only emulates them.
        backends = [b for b in options.budget.infer_backends if b != "bf16" or options.cuda]
        metafunc.parametrize("backend", backends)


def test_inference_latency(benchmark, emit, options, market, size, batch, backend):
    import torch

    from ppo_core.network import ActorCritic

    data = market(options.budget.data_bars)
    network = size.network(data.n_features, data.lookback)
    sizing = estimate(network)
    ceilings = session_ceilings(options)
    dtype = "bf16" if backend == "bf16" else "fp32"
    floor_s = sizing.weight_bytes[dtype] / ceilings.bandwidth_bytes_per_s
    base = Record(
        suite=SUITE,
        device=options.device,
        profile=options.profile,
        preset=size.name,
        hidden_dims=network.hidden_dims,
        trunk=network.trunk,
        obs_dim=network.obs_dim,
        params=sizing.params,
        case={"batch": batch, "backend": backend, "weights": "initial (untrained)"},
        predicted={
            "params": sizing.params,
            "weight_bytes": sizing.weight_bytes[dtype],
            "bandwidth_floor_s": floor_s,
            "compute_floor_s": batch
            * sizing.forward_flops_per_sample
            / ceilings.matmul_flops_per_s,
            "forward_flops": batch * sizing.forward_flops_per_sample,
        },
    )
    device = torch.device(options.device)
    try:
        torch.manual_seed(0)
        policy = ActorCritic(network).to(device).eval()
        params = sum(p.numel() for p in policy.parameters())
        # Whole batches of the timed shape, so no backend recompiles for the comparison.
        n_agree = batch * -(-AGREEMENT_SAMPLES // batch)
        obs = torch.from_numpy(observation_windows(data, n_agree, seed=1)).to(device)
        x = torch.from_numpy(observation_windows(data, batch, seed=2)).to(device)
        started = time.perf_counter()
        runner, why = _build(backend, policy, x, device)
        build_s = time.perf_counter() - started
        if runner is None:
            emit(_unavailable(base, params, why, floor_s))
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
        metrics.update(_agreement(runner, policy, obs, batch))
        if backend in ("compile", "onnx"):
            # Compilation or export + session start: paid once per process, never timed above.
            metrics["build_s"] = Metric.measured(build_s, "s", "lower")
    except Exception as error:
        if not is_oom(error):
            raise
        emit(oom_record(base, batch=batch, backend=backend))
        return
    emit(_with(base, params=params, metrics=metrics))


def _with(base: Record, **changes: Any) -> Record:
    import dataclasses

    return dataclasses.replace(base, **changes)


def _unavailable(base: Record, params: int, why: str, floor_s: float) -> Record:
    metrics = {
        "latency_p50_s": Metric.unavailable_because(why, "s", "lower", predicted=floor_s),
        "latency_p99_s": Metric.unavailable_because(why, "s", "lower"),
    }
    return _with(base, params=params, metrics=metrics)


def _agreement(runner: Callable, policy: Any, obs: Any, batch: int) -> dict[str, Metric]:
    """Argmax-action agreement and max |logit difference| against eager fp32."""
    import torch

    with torch.inference_mode():
        reference = policy(obs)[0].float()
        logits = torch.cat([runner(chunk).float().clone() for chunk in obs.split(batch)])
    agree = (reference.argmax(-1) == logits.argmax(-1)).float().mean().item()
    diff = (reference - logits).abs().max().item()
    return {
        "action_agreement": Metric.measured(agree, "ratio", "higher"),
        "max_abs_logit_diff": Metric.measured(diff, "1", "lower"),
    }


def _build(
    backend: str, policy: Any, x: Any, device: Any
) -> tuple[Callable[[Any], Any] | None, str]:
    """A callable obs -> logits for `backend`, or (None, why it cannot run here)."""
    import torch

    if backend == "eager":

        def eager(obs):
            with torch.inference_mode():
                return policy(obs)[0]

        return eager, ""
    if backend == "bf16":
        half = copy.deepcopy(policy).to(torch.bfloat16)

        def bf16(obs):
            with torch.inference_mode():
                return half(obs.to(torch.bfloat16))[0]

        return bf16, ""
    if backend == "compile":
        return _compiled(policy, x)
    if backend == "onnx":
        return _onnx(policy, x, device)
    raise ValueError(f"unknown inference backend {backend!r}")


def _compiled(policy: Any, x: Any) -> tuple[Callable[[Any], Any] | None, str]:
    import torch

    # CUDA graphs remove the per-kernel launch cost that dominates batch-1 latency on a GPU.
    mode = "reduce-overhead" if x.device.type == "cuda" else "default"
    compiled = torch.compile(policy, mode=mode, dynamic=False)
    try:
        with torch.inference_mode():
            compiled(x)  # compile now, so the failure is reported here and never timed
    except Exception as error:  # inductor needs a C++ compiler / Triton; say which failed
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, f"torch.compile failed: {type(error).__name__}: {first[:200]}"

    def run(obs):
        with torch.inference_mode():
            return compiled(obs)[0]

    return run, ""


def _onnx(policy: Any, x: Any, device: Any) -> tuple[Callable[[Any], Any] | None, str]:
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime", "onnxscript") if not importlib.util.find_spec(m)]
    if missing:
        return None, f"{', '.join(missing)} not installed (pip install 'ppo-archbench[onnx]')"
    import onnxruntime as ort
    import torch

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return None, "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    with tempfile.TemporaryDirectory(prefix="archbench-onnx-") as tmp:
        path = Path(tmp) / "policy.onnx"
        cpu_policy = copy.deepcopy(policy).cpu()
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            torch.onnx.export(
                cpu_policy,
                (x[:1].cpu(),),
                str(path),
                input_names=["obs"],
                output_names=["logits", "value"],
                dynamic_shapes={"obs": {0: batch}},
                dynamo=True,
                verbose=False,
            )
        session = ort.InferenceSession(str(path), providers=providers)

    def run(obs):
        # Host in, host out: what a deployed ONNX policy costs, copies included.
        logits = session.run(["logits"], {"obs": obs.detach().cpu().numpy()})[0]
        return torch.from_numpy(logits).to(obs.device)

    return run, ""
