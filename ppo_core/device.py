"""The one device layer the subject needs: validate a device string, resolve it once, and run
in the precision asked for. NVML, datasheets, tiers and ceilings live in
`archbench.instrument.device`.

`resolve_device` is memoised: a `train` resolves its device once, and every later caller in
the process (trainer, sweep label, pick) reads the same frozen `Device`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ppo_core.errors import ConfigError

__all__ = [
    "PRECISION_CHOICES",
    "TENSOR_FLOAT_PRECISIONS",
    "TRAINING_PRECISIONS",
    "Device",
    "auto_precision",
    "check_device",
    "cuda_index",
    "cuda_synchronize",
    "has_tensor_float_cores",
    "matmul_precision",
    "resolve_device",
    "resolve_precision",
]

TRAINING_PRECISIONS = ("fp32", "tf32", "bf16")
"""Matmul precisions training runs in: fp32 (TF32 off), tf32 (fp32 storage, TF32 tensor-core
matmuls) and bf16 (autocast: bf16 matmuls, fp32 weights, Adam and loss)."""
PRECISION_CHOICES = ("auto", *TRAINING_PRECISIONS)
"""What a user may ask for: a training precision, or auto (see `auto_precision`)."""
TENSOR_FLOAT_PRECISIONS = ("tf32", "bf16")
"""The training precisions that need TF32/BF16 tensor cores (no CPU or pre-Ampere GPU has them)."""
TENSOR_FLOAT_CAPABILITY = (8, 0)
"""The CUDA compute capability from which a GPU has TF32 and BF16 tensor cores (Ampere on)."""

_DEVICE_FORM = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: Any, owner: str = "device") -> str:
    """`device` if it is 'auto', 'cpu', 'cuda' or 'cuda:N' (form only; no torch), else one
    ConfigError naming `owner` (e.g. 'PPOConfig.device', '--device') and the bad value."""
    if not isinstance(device, str) or not _DEVICE_FORM.fullmatch(device):
        raise ConfigError(f"{owner} must be auto, cpu, cuda or cuda:N; got {device!r}")
    return device


@dataclass(frozen=True)
class Device:
    """A resolved torch device and what torch knows of it."""

    device: str
    """The torch device string: 'cpu' or 'cuda:N'."""
    name: str | None = None
    """The GPU's name as torch reports it; None on a CPU."""
    memory_gib: float | None = None
    """The GPU's memory in GiB (a MIG slice's own); None on a CPU or when unknown."""
    capability: tuple[int, int] | None = None
    """CUDA compute capability (major, minor); None on a CPU."""

    @property
    def is_cuda(self) -> bool:
        """The device is a CUDA GPU."""
        return self.device.startswith("cuda")


@functools.cache
def resolve_device(prefer: str = "auto") -> Device:
    """The `Device` for `prefer`: 'auto' (the current CUDA device if torch sees one, else the
    CPU), 'cpu', 'cuda' or 'cuda:N'. Name and memory come from torch, which reports the
    visible device (a MIG slice's own memory, too); `archbench.instrument.device.gpu.with_memory`
    fills in NVML's total where torch reports none.
    """
    check_device(prefer)
    if prefer == "cpu":
        return Device("cpu")
    import torch

    if not torch.cuda.is_available():
        if prefer == "auto":
            return Device("cpu")
        raise ConfigError(
            f"device {prefer!r} asked for, but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
        )
    index = cuda_index("cuda" if prefer == "auto" else prefer)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device cuda:{index} does not exist: torch sees "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    props = torch.cuda.get_device_properties(index)
    memory = props.total_memory
    return Device(
        f"cuda:{index}",
        props.name,
        memory / 2**30 if memory else None,
        (props.major, props.minor),
    )


def cuda_index(device: Any) -> int:
    """The torch CUDA ordinal of 'cuda', 'cuda:N' or a torch.device of type cuda."""
    text = str(device)
    if text == "cuda":
        return _torch_current_device()
    match = re.fullmatch(r"cuda:(\d+)", text)
    if not match:
        raise ConfigError(f"device must be 'cuda' or 'cuda:N' for a GPU view, got {text!r}")
    return int(match.group(1))


def _torch_current_device() -> int:
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def cuda_synchronize(device: Any) -> None:
    """Wait for all queued work on `device` (no-op for CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _capability(device: Any) -> tuple[int, int]:
    import torch

    return torch.cuda.get_device_capability(device)


def has_tensor_float_cores(capability: tuple[int, int] | None) -> bool:
    """A GPU of compute `capability` has TF32 and BF16 tensor cores; None (a CPU) has none."""
    return capability is not None and tuple(capability) >= TENSOR_FLOAT_CAPABILITY


def auto_precision(has_tf32: bool) -> str:
    """What precision 'auto' trains in: tf32 where the card has TF32 tensor cores, else fp32."""
    return "tf32" if has_tf32 else "fp32"


def resolve_precision(
    requested: str, device: Any, capability: tuple[int, int] | None = None
) -> str:
    """'auto', 'fp32', 'tf32' or 'bf16' on `device` -> the precision training will run in.

    auto: tf32 on a CUDA device of compute capability 8.0+ (Ampere on: TF32 tensor cores),
    fp32 elsewhere. tf32 and bf16 are refused on a CPU and on older GPUs, with one line.
    `capability` overrides the device's (tests).
    """
    if requested not in PRECISION_CHOICES:
        raise ConfigError(
            f"precision must be auto, {', '.join(TRAINING_PRECISIONS)}; got {requested!r}"
        )
    if not str(device).startswith("cuda"):
        if requested in TENSOR_FLOAT_PRECISIONS:
            raise ConfigError(
                f"precision {requested} needs a CUDA GPU (compute capability 8.0+); "
                f"device is {device}: use --precision fp32"
            )
        return "fp32"
    major, minor = capability if capability is not None else _capability(device)
    tensor_cores = has_tensor_float_cores((major, minor))
    if requested == "auto":
        return auto_precision(tensor_cores)
    if requested in TENSOR_FLOAT_PRECISIONS and not tensor_cores:
        raise ConfigError(
            f"precision {requested} needs compute capability 8.0+; {device} is {major}.{minor}: "
            "use --precision fp32"
        )
    return requested


@contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Run the block with fp32 matmuls at `precision` ('tf32' lets cuBLAS use TF32 tensor
    cores; anything else keeps full fp32), then restore the process's setting, so one
    trainer's choice never leaks into another measurement in the same process."""
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
