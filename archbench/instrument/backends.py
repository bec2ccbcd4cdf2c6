"""Inference backends for a trained ActorCritic's live decision (obs -> action logits).

Eager, torch.compile, ONNX Runtime, dynamic int8 (CPU), bf16/fp16 weights (CUDA) and a CUDA
graph replay (CUDA); each is checked against eager fp32 on held-out observations before anyone
may time it, and each can make the whole decision: host observation in, action on the host out.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archbench.instrument.record import Metric
from ppo_core.atomic import atomic_path
from ppo_core.errors import ArchbenchError
from ppo_core.network import ActorCritic

__all__ = [
    "AGREEMENT_THRESHOLD",
    "BACKEND_NAMES",
    "DECISIVE_MARGIN",
    "LOGIT_TOLERANCE",
    "Agreement",
    "Backend",
    "Unavailable",
    "agreement",
    "build_backend",
    "build_backends",
    "compare_logits",
    "export_onnx",
    "onnx_agreement",
    "onnx_missing",
]

BACKEND_NAMES = ("eager", "compile", "onnx", "int8", "bf16", "fp16", "cuda_graph")
AGREEMENT_THRESHOLD = 0.99
"""A backend whose argmax actions match eager fp32 on fewer decisive observations (see
DECISIVE_MARGIN) than this is refused: reported as disagreeing, never timed."""
_ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")


@dataclass(frozen=True)
class Backend:
    """One way to run the actor: obs (B, obs_dim) float32 on `device` -> logits (B, n_actions)."""

    name: str
    """One of BACKEND_NAMES."""
    run: Callable[[torch.Tensor | np.ndarray], torch.Tensor]
    """The decision: observations in, fp32 logits out on the same device (copies included)."""
    device: str
    """Where the input lives and the logits come back: 'cpu' or 'cuda:N'."""
    detail: str = ""
    """How it runs, e.g. 'onnxruntime 1.32.0 CPUExecutionProvider'."""
    decide_fn: Callable[[torch.Tensor | np.ndarray], torch.Tensor] | None = None
    """The whole live decision where a backend has its own (cuda_graph captures the argmax);
    None: argmax of `run`, brought to the host."""
    precision: str = "fp32"
    """The arithmetic of its weights and activations: fp32, bf16, fp16 or int8."""

    def decide(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Host observations (B, obs_dim) in, argmax actions (B,) int64 on the host out: the
        end-to-end decision, every copy and the final device sync included."""
        if self.decide_fn is not None:
            return self.decide_fn(obs)
        return self.run(obs).argmax(-1).cpu()


@dataclass(frozen=True)
class Unavailable:
    """A backend that cannot run here, and why (never timed, never a 0)."""

    name: str
    """One of BACKEND_NAMES."""
    reason: str
    """One line a user can act on, e.g. 'onnxruntime not installed (pip install ...)'."""


DECISIVE_MARGIN = 0.25
"""An observation counts for action agreement only where eager's top-1 minus top-2 logit
exceeds this many standard deviations of eager's logits: untrained weights leave many decisions
near-tied, and those flip under any rounding (int8, bf16) without saying anything about it."""
LOGIT_TOLERANCE = 1.0
"""The largest |logit - eager logit| a backend may show, in standard deviations of eager's
logits: an error as wide as the logits' whole spread would reorder decisions that are not tied."""


@dataclass(frozen=True)
class Agreement:
    """How a backend's logits follow eager fp32's, judged where eager's decision is clear."""

    action_agreement: float | None
    """Fraction of decisive observations (see DECISIVE_MARGIN) whose argmax action equals
    eager's; None when no observation was decisive."""
    action_agreement_all: float
    """The same fraction over every observation, near-ties included (not gated)."""
    n_decisive: int
    """Observations whose eager top-1/top-2 margin exceeds DECISIVE_MARGIN logit stds."""
    n_obs: int
    """Observations compared."""
    max_abs_logit_diff: float
    """Largest |logit - eager logit| over the observations and actions."""
    logit_std: float
    """Standard deviation of eager's logits over the observations and actions: the scale."""
    threshold: float
    """Minimum action_agreement for the backend to be timed."""

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if not 0 <= self.n_decisive <= self.n_obs or self.n_obs < 1:
            raise ValueError(
                f"need 0 <= n_decisive <= n_obs >= 1, got {self.n_decisive}, {self.n_obs}"
            )

    @property
    def relative_logit_diff(self) -> float:
        """max_abs_logit_diff in standard deviations of eager's logits (inf if they are flat)."""
        if self.logit_std > 0:
            return self.max_abs_logit_diff / self.logit_std
        return 0.0 if self.max_abs_logit_diff == 0 else float("inf")

    def refusal(self) -> str | None:
        """Why this backend must not be timed ('disagrees with eager: ...'), or None."""
        actions = self.action_agreement
        if actions is not None and actions < self.threshold:
            why = f"{actions:.1%} of decisive actions (threshold {self.threshold:.0%})"
        elif self.relative_logit_diff > LOGIT_TOLERANCE:
            why = f"logit error beyond {LOGIT_TOLERANCE:g} std"
        else:
            return None
        return (
            f"disagrees with eager: {why}; {self.n_decisive:,} of {self.n_obs:,} observations "
            f"decisive (margin > {DECISIVE_MARGIN:g} std), max |dlogit| = "
            f"{self.max_abs_logit_diff:.2g} ({self.relative_logit_diff:.2f} std)"
        )

    @property
    def ok(self) -> bool:
        """True when the backend may be timed: it agrees with eager on decisive actions and
        its logits stay within LOGIT_TOLERANCE of their spread."""
        return self.refusal() is None

    def describe(self) -> str:
        """One line for a terminal: 'agrees with eager: ...' or 'disagrees with eager: ...'."""
        refusal = self.refusal()
        if refusal is not None:
            return refusal
        decisive = "-" if self.action_agreement is None else f"{self.action_agreement:.1%}"
        return (
            f"agrees with eager: {decisive} of {self.n_decisive:,} decisive actions "
            f"({self.action_agreement_all:.1%} of all {self.n_obs:,}), max |dlogit| = "
            f"{self.max_abs_logit_diff:.2g} ({self.relative_logit_diff:.2f} std)"
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ok"] = self.ok
        return out

    def metrics(self) -> dict[str, Metric]:
        """The agreement figures a record carries, whether the backend was timed or not."""
        if self.action_agreement is None:
            decisive = Metric.unavailable_because(
                f"no observation's eager margin exceeds {DECISIVE_MARGIN:g} logit std",
                "ratio",
                "higher",
            )
        else:
            decisive = Metric.measured(self.action_agreement, "ratio", "higher")
        return {
            "action_agreement": decisive,
            "action_agreement_all": Metric.measured(self.action_agreement_all, "ratio", "higher"),
            "decisive_obs": Metric.measured(self.n_decisive, "obs", None),
            "max_abs_logit_diff": Metric.measured(self.max_abs_logit_diff, "1", "lower"),
            "max_abs_logit_diff_std": Metric.measured(self.relative_logit_diff, "std", "lower"),
        }


def compare_logits(
    reference: torch.Tensor, logits: torch.Tensor, threshold: float = AGREEMENT_THRESHOLD
) -> Agreement:
    """Compare a backend's logits with eager fp32's, both (N, n_actions) torch tensors."""
    if (
        tuple(reference.shape) != tuple(logits.shape)
        or reference.ndim != 2
        or reference.shape[1] < 2
    ):
        raise ValueError(
            f"logits must both be (N, n_actions >= 2), got {tuple(reference.shape)} (eager) and "
            f"{tuple(logits.shape)}"
        )
    reference = reference.detach().float().cpu()
    logits = logits.detach().float().cpu()
    std = reference.std().item() if reference.numel() > 1 else 0.0
    top2 = reference.topk(2, dim=-1).values  # (N, 2)
    decisive = (top2[:, 0] - top2[:, 1]) > DECISIVE_MARGIN * std  # (N,)
    same = reference.argmax(-1) == logits.argmax(-1)  # (N,)
    n_decisive, n_obs = int(decisive.sum().item()), int(reference.shape[0])
    return Agreement(
        action_agreement=int(same[decisive].sum().item()) / n_decisive if n_decisive else None,
        action_agreement_all=int(same.sum().item()) / n_obs,
        n_decisive=n_decisive,
        n_obs=n_obs,
        max_abs_logit_diff=(logits - reference).abs().max().item(),
        logit_std=std,
        threshold=threshold,
    )


class _Actor(nn.Module):
    """The part of ActorCritic a live decision needs: obs (B, obs_dim) -> logits (B, A)."""

    def __init__(self, policy: ActorCritic) -> None:
        super().__init__()
        self.trunk = policy.actor_trunk
        self.head = policy.actor_head

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs))


def _tensor(obs: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    if isinstance(obs, np.ndarray):
        obs = torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))
    return obs.to(device)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else ''}"


def onnx_missing() -> list[str]:
    """The `onnx` extra's modules that are not importable here (empty when all are)."""
    return [name for name in _ONNX_MODULES if importlib.util.find_spec(name) is None]


def _missing_reason(missing: list[str]) -> str:
    return f"{', '.join(missing)} not installed (pip install 'ppo-archbench[onnx]')"


def export_onnx(
    policy: ActorCritic,
    path: str | os.PathLike[str],
    example_obs: torch.Tensor,
    *,
    actor_only: bool = False,
) -> Path:
    """Write `policy` as ONNX with a dynamic batch axis, atomically (temp file, then rename).

    Inputs "obs" (batch, obs_dim) float32; outputs "logits" (batch, n_actions) and, unless
    actor_only, "value" (batch,). Raises ArchbenchError naming the missing `onnx` extra.
    """
    missing = onnx_missing()
    if missing:
        raise ArchbenchError(f"cannot export {path}: {_missing_reason(missing)}")
    target = Path(path)
    module = _Actor(policy) if actor_only else policy
    module = copy.deepcopy(module).cpu().eval()
    outputs = ["logits"] if actor_only else ["logits", "value"]
    batch = torch.export.Dim("batch", min=1)
    # The exporter logs a warning per torchvision op it cannot register; none is used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch/onnxscript deprecation chatter
        torch.onnx.export(
            module,
            (example_obs[:1].detach().cpu().float(),),
            str(tmp),
            input_names=["obs"],
            output_names=outputs,
            dynamic_shapes={"obs": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return target


def onnx_agreement(
    path: str | os.PathLike[str],
    policy: ActorCritic,
    obs: torch.Tensor,
    threshold: float = AGREEMENT_THRESHOLD,
) -> Agreement:
    """Run the ONNX file at `path` with onnxruntime (CPU) on `obs`; compare with eager."""
    missing = onnx_missing()
    if missing:
        raise ArchbenchError(f"cannot check {path}: {_missing_reason(missing)}")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        host = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else batch
        logits = session.run(["logits"], {"obs": np.ascontiguousarray(host, dtype=np.float32)})
        return torch.from_numpy(logits[0])

    backend = Backend("onnx", run, "cpu", f"onnxruntime {ort.__version__} {path}")
    return agreement(backend, copy.deepcopy(policy).cpu().eval(), obs.cpu(), threshold)


def _eager(actor: _Actor, device: torch.device) -> Backend:
    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return actor(_tensor(obs, device))

    return Backend("eager", run, str(device), f"torch {torch.__version__} fp32")


def _compiled(actor: _Actor, device: torch.device, example: torch.Tensor) -> Backend | Unavailable:
    compiled = torch.compile(actor, dynamic=False)
    try:
        with torch.inference_mode():
            compiled(example[:1])  # compile now: a failure is reported here, never timed
    except Exception as error:  # inductor needs a C++ compiler (CPU) or Triton (CUDA)
        return Unavailable("compile", f"torch.compile failed: {_first_line(error)}")

    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(_tensor(obs, device))

    return Backend("compile", run, str(device), "torch.compile (inductor), static shapes")


def _onnxruntime(
    policy: ActorCritic, device: torch.device, example: torch.Tensor
) -> Backend | Unavailable:
    missing = onnx_missing()
    if missing:
        return Unavailable("onnx", _missing_reason(missing))
    import onnxruntime as ort

    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return Unavailable("onnx", "onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu)")
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    with tempfile.TemporaryDirectory(prefix="archbench-onnx-") as tmp:
        path = Path(tmp) / "actor.onnx"
        try:
            export_onnx(policy, path, example, actor_only=True)
        except Exception as error:
            return Unavailable("onnx", f"torch.onnx.export failed: {_first_line(error)}")
        session = ort.InferenceSession(str(path), providers=providers)

    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        # Host in, host out: what a deployed ONNX policy costs, copies included.
        host = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else obs
        logits = session.run(["logits"], {"obs": np.ascontiguousarray(host, dtype=np.float32)})
        return torch.from_numpy(logits[0]).to(device)

    detail = f"onnxruntime {ort.__version__} {session.get_providers()[0]}"
    return Backend("onnx", run, str(device), detail)


def _int8(actor: _Actor, device: torch.device) -> Backend | Unavailable:
    if device.type != "cpu":
        return Unavailable("int8", "dynamic int8 quantisation runs on the CPU only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantized-tensor deprecation notices
        from torch.ao.quantization import quantize_dynamic

        try:
            quantized = quantize_dynamic(copy.deepcopy(actor), {nn.Linear}, dtype=torch.qint8)
        except Exception as error:  # no quantized engine (fbgemm/qnnpack) in this build
            return Unavailable("int8", f"quantize_dynamic failed: {_first_line(error)}")

    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return quantized(_tensor(obs, device))

    engine = torch.backends.quantized.engine
    detail = f"quantize_dynamic qint8 Linear ({engine})"
    return Backend("int8", run, str(device), detail, None, "int8")


def _half(name: str, actor: _Actor, device: torch.device) -> Backend | Unavailable:
    if device.type != "cuda":
        return Unavailable(
            name, f"{name} weights are benchmarked on CUDA only (most CPUs emulate {name} matmuls)"
        )
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    half = copy.deepcopy(actor).to(dtype)

    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return half(_tensor(obs, device).to(dtype)).float()

    return Backend(name, run, str(device), f"all weights and activations in {dtype}", None, name)


def _cuda_graph(
    actor: _Actor, device: torch.device, example: torch.Tensor
) -> Backend | Unavailable:
    """The actor's forward and argmax captured once for the example's batch size and replayed:
    one launch per decision instead of one per layer. Other batch sizes are run in chunks of
    the captured size (the last one zero-padded)."""
    if device.type != "cuda":
        return Unavailable("cuda_graph", f"CUDA graphs need a CUDA device; device is {device}")
    static_in = torch.zeros_like(example, dtype=torch.float32)  # (B, obs_dim), fixed address
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cuBLAS handles and workspaces are made outside the capture
                actor(static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_logits = actor(static_in)  # (B, n_actions)
            static_actions = static_logits.argmax(-1)  # (B,)
    except Exception as error:
        return Unavailable("cuda_graph", f"CUDA graph capture failed: {_first_line(error)}")
    size = static_in.shape[0]

    @torch.inference_mode()  # the outputs are inference tensors, as every backend's are
    def replay(obs: torch.Tensor | np.ndarray, out: torch.Tensor) -> torch.Tensor:
        if isinstance(obs, np.ndarray):
            obs = torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))
        if obs.shape[0] == size:
            static_in.copy_(obs, non_blocking=True)  # pinned host memory: an async copy
            graph.replay()
            return out.clone()
        chunks = []
        for start in range(0, obs.shape[0], size):
            chunk = obs[start : start + size]
            static_in.zero_()
            static_in[: chunk.shape[0]].copy_(chunk, non_blocking=True)
            graph.replay()
            chunks.append(out[: chunk.shape[0]].clone())
        return torch.cat(chunks)

    def run(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        return replay(obs, static_logits)

    def decide(obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        return replay(obs, static_actions).cpu()

    detail = f"torch.cuda.CUDAGraph of forward + argmax at batch {size}, replayed"
    return Backend("cuda_graph", run, str(device), detail, decide)


def build_backend(
    name: str, policy: ActorCritic, device: str | torch.device, example_obs: torch.Tensor
) -> Backend | Unavailable:
    """`name` (one of BACKEND_NAMES) for `policy` on `device`, or why it cannot run here."""
    device = torch.device(device)
    policy = policy.to(device).eval()
    actor = _Actor(policy).eval()
    example = _tensor(example_obs, device)
    if name == "eager":
        return _eager(actor, device)
    if name == "compile":
        return _compiled(actor, device, example)
    if name == "onnx":
        return _onnxruntime(policy, device, example)
    if name == "int8":
        return _int8(actor, device)
    if name in ("bf16", "fp16"):
        return _half(name, actor, device)
    if name == "cuda_graph":
        return _cuda_graph(actor, device, example)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")


def build_backends(
    policy: ActorCritic,
    device: str | torch.device,
    example_obs: torch.Tensor,
    names: Sequence[str] = BACKEND_NAMES,
) -> list[Backend | Unavailable]:
    """Every backend in `names`, in order; those that cannot run here as Unavailable."""
    return [build_backend(name, policy, device, example_obs) for name in names]


def agreement(
    backend: Backend,
    policy: ActorCritic,
    obs: torch.Tensor | np.ndarray,
    threshold: float = AGREEMENT_THRESHOLD,
) -> Agreement:
    """Compare backend.run(obs) with eager fp32 logits of `policy` on held-out observations."""
    device = next(policy.parameters()).device
    obs = _tensor(obs, device)
    with torch.inference_mode():
        reference = policy(obs)[0].float()  # (B, n_actions)
    logits = backend.run(obs).float().to(device)
    if logits.shape != reference.shape:
        raise ValueError(
            f"backend {backend.name} returned logits of shape {tuple(logits.shape)}, "
            f"eager {tuple(reference.shape)}"
        )
    return compare_logits(reference, logits, threshold)
