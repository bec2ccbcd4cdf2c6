"""What machine a benchmark ran on, and what that machine can do at best.

`measure_ceilings` times a large GEMM and a large copy on the spot, so every throughput can be
shown as a fraction of this machine's peak and every latency against its bandwidth floor.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from archbench.instrument.device import gpu
from archbench.instrument.device.tiers import gpu_tier
from archbench.instrument.record import Metric
from archbench.instrument.timing import time_callable
from ppo_core.device import has_tensor_float_cores

__all__ = [
    "MATMUL_DTYPES",
    "Ceilings",
    "DeviceInfo",
    "device_info",
    "last_level_cache_bytes",
    "measure_ceilings",
]

MATMUL_DTYPES = ("fp32", "tf32", "bf16", "fp16")
"""Matmul precisions a ceiling is reported for; unavailable ones carry a reason."""


@dataclass(frozen=True)
class DeviceInfo:
    """The machine behind a measurement: CPU, GPU, driver and library versions, tier."""

    cpu_model: str
    """CPU model name from /proc/cpuinfo (or platform.processor())."""
    cpu_cores: int
    """Logical CPUs this process may run on (its affinity mask), not the host's total."""
    torch_threads: int
    """Threads torch uses for CPU ops."""
    gpu_name: str | None
    """GPU name (a MIG slice's own name under MIG); None on CPU."""
    gpu_uuid: str | None
    """GPU or MIG instance UUID; None on CPU or when neither NVML nor torch gives it."""
    gpu_memory_bytes: int | None
    """Total memory of the GPU (or MIG slice)."""
    driver_version: str | None
    """NVIDIA driver version (NVML)."""
    cuda_version: str | None
    """CUDA runtime torch was built with (torch.version.cuda); None on a CPU build."""
    cuda_driver_version: str | None
    """Newest CUDA version the driver supports (NVML)."""
    torch_version: str
    """torch.__version__."""
    mig: bool | None
    """MIG mode on; None when unknown (CPU, or no NVML)."""
    tier: str
    """Row of the GPU tier table this device falls in ('cpu', 'h100', '<20gb', ...)."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Field name -> why it is None."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["reasons"] = dict(self.reasons)
        return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def device_info(device: Any = "cpu") -> DeviceInfo:
    """Describe `device` ('cpu', 'cuda', 'cuda:N') and the host around it."""
    import torch

    common = {
        "cpu_model": _cpu_model(),
        "cpu_cores": _cpu_cores(),
        "torch_threads": torch.get_num_threads(),
        "cuda_version": torch.version.cuda,
        "torch_version": torch.__version__,
    }
    if not str(device).startswith("cuda"):
        why = "device is cpu"
        gpu_fields = ("gpu_name", "gpu_uuid", "gpu_memory_bytes", "driver_version")
        reasons = dict.fromkeys((*gpu_fields, "cuda_driver_version", "mig"), why)
        return DeviceInfo(
            **common,
            gpu_name=None,
            gpu_uuid=None,
            gpu_memory_bytes=None,
            driver_version=None,
            cuda_driver_version=None,
            mig=None,
            tier=gpu_tier(None, None).name,
            reasons=reasons,
        )
    facts = gpu.gpu_facts(device)
    if facts["name"] is None and torch.cuda.is_available():  # no NVML: torch knows the basics
        props = torch.cuda.get_device_properties(gpu.cuda_index(device))
        uuid = getattr(props, "uuid", None)
        facts.update(name=props.name, memory_bytes=props.total_memory)
        facts["uuid"] = f"GPU-{uuid}" if uuid else None
    name, memory = facts["name"], facts["memory_bytes"]
    values = {
        "gpu_name": name,
        "gpu_uuid": facts["uuid"],
        "gpu_memory_bytes": memory,
        "driver_version": facts["driver_version"],
        "cuda_driver_version": facts["cuda_driver_version"],
        "mig": facts["mig"],
    }
    why = facts["reason"] or "unknown"
    return DeviceInfo(
        **common,
        **values,
        tier=gpu_tier(name, memory / 2**30).name if name and memory else "unknown",
        reasons={key: why for key, value in values.items() if value is None},
    )


@dataclass(frozen=True)
class Ceilings:
    """This machine's measured peaks: dense matmul FLOP/s per precision and copy bandwidth."""

    device: str
    """Where they were measured ('cpu', 'cuda:0')."""
    matmul_flops_per_s: float
    """Median fp32 GEMM rate (2 n^3 FLOP per n x n matmul), TF32 off."""
    matmul_flops_per_s_by_dtype: dict[str, float | None]
    """Median GEMM rate per precision (MATMUL_DTYPES); None where `unavailable` says why."""
    bandwidth_bytes_per_s: float
    """Median rate of a large device-to-same-device copy, bytes read plus bytes written."""
    samples: dict[str, tuple[float, ...]]
    """Per-repeat rates behind each median: 'matmul_<dtype>' and 'bandwidth'."""
    unavailable: dict[str, str]
    """Precision (or 'cache_read') -> why that ceiling was not measured."""
    matmul_n: int
    """Side of the square matrices multiplied."""
    copy_bytes: int
    """Size of the copied buffer (bytes moved per copy: twice this)."""
    threads: int
    """torch CPU threads during the measurement."""
    cache_bytes: int | None = None
    """Size of the CPU's last-level cache (sysfs, cpu0); None on a GPU or where unknown."""
    cache_read_bytes_per_s: float | None = None
    """Median read rate of a buffer half the last-level cache's size, already resident in it
    (a reduction over it): the rate a batch-1 forward can stream weights that fit in cache.
    None on a GPU, where `unavailable["cache_read"]` says why."""

    def read_floor_s(self, n_bytes: int) -> tuple[float, str]:
        """The least time reading `n_bytes` once can take here, and what bounds it.

        Bytes that fit in a CPU's last-level cache may be served from it between calls, so
        they are bounded by the cache's read rate ('last-level cache'); anything else by the
        copy bandwidth ('memory bandwidth'). A measurement below this is a measurement problem.
        """
        cached = (
            self.cache_bytes is not None
            and self.cache_read_bytes_per_s is not None
            and n_bytes <= self.cache_bytes
        )
        if cached:
            rate = max(self.cache_read_bytes_per_s, self.bandwidth_bytes_per_s)
            return n_bytes / rate, "last-level cache"
        return n_bytes / self.bandwidth_bytes_per_s, "memory bandwidth"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["matmul_flops_per_s_by_dtype"] = dict(self.matmul_flops_per_s_by_dtype)
        out["samples"] = {k: list(v) for k, v in self.samples.items()}
        out["unavailable"] = dict(self.unavailable)
        return out

    def to_metrics(self) -> dict[str, Metric]:
        """The figures as `Metric`s for a 'ceiling' benchmark record."""
        metrics = {}
        for dtype, value in self.matmul_flops_per_s_by_dtype.items():
            name = f"matmul_flops_per_s_{dtype}"
            if value is None:
                metrics[name] = Metric.unavailable_because(self.unavailable[dtype], "FLOP/s")
            else:
                samples = self.samples[f"matmul_{dtype}"]
                metrics[name] = Metric.measured(value, "FLOP/s", "higher", samples)
        metrics["bandwidth_bytes_per_s"] = Metric.measured(
            self.bandwidth_bytes_per_s, "B/s", "higher", self.samples["bandwidth"]
        )
        if self.cache_read_bytes_per_s is None:
            why = self.unavailable.get("cache_read", "not measured")
            metrics["cache_read_bytes_per_s"] = Metric.unavailable_because(why, "B/s")
            metrics["cache_bytes"] = Metric.unavailable_because(why, "B")
        else:
            metrics["cache_read_bytes_per_s"] = Metric.measured(
                self.cache_read_bytes_per_s, "B/s", "higher", self.samples["cache_read"]
            )
            metrics["cache_bytes"] = Metric.measured(self.cache_bytes, "B", None)
        return metrics


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """Size of the highest-level data or unified cache of cpu0 from sysfs; None if unknown."""
    best: tuple[int, int] | None = None
    try:
        for index in root.glob("index*"):
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = _cache_size((index / "size").read_text().strip())
            if best is None or level > best[0]:
                best = (level, size)
    except (OSError, ValueError):
        return None
    return None if best is None else best[1]


def _cache_size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def _cache_read_rates(n_bytes: int, warmup: int, repeats: int) -> list[float]:
    import torch

    buffer = torch.ones(n_bytes // 4, dtype=torch.float32)  # written once: resident in cache
    seconds = time_callable(buffer.sum, repeats=repeats, warmup=warmup, device="cpu")
    return [buffer.nbytes / s for s in seconds]


_ONEDNN_BF16_ISAS = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")
"""oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that keep its native bf16 kernels: AVX512_CORE_BF16
and every ISA above it (oneDNN's names), or no cap."""


def _onednn_bf16_cap() -> str | None:
    """ONEDNN_MAX_CPU_ISA when it caps oneDNN below its bf16 kernels, else None: torch then
    emulates a bf16 matmul, whatever the CPU's flags say, and that is no ceiling."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and not any(isa in cap for isa in _ONEDNN_BF16_ISAS):
        return cap
    return None


def _cpu_has_native_bf16() -> bool:
    if _onednn_bf16_cap() is not None:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _dtype_plan(device: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Precision -> (torch dtype, float32 matmul precision), and reasons for the rest."""
    import torch

    plan: dict[str, Any] = {"fp32": (torch.float32, "highest")}
    skipped: dict[str, str] = {}
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        if has_tensor_float_cores((major, minor)):
            plan["tf32"] = (torch.float32, "high")
            plan["bf16"] = (torch.bfloat16, "highest")
        else:
            why = f"needs compute capability 8.0+ (this GPU: {major}.{minor})"
            skipped["tf32"], skipped["bf16"] = f"tf32 {why}", f"bf16 {why}"
        plan["fp16"] = (torch.float16, "highest")
    else:
        skipped["tf32"] = "tf32 is a GPU tensor-core format; CPUs have none"
        skipped["fp16"] = "CPU fp16 matmul is emulated by torch, not a hardware ceiling"
        if _cpu_has_native_bf16():
            plan["bf16"] = (torch.bfloat16, "highest")
        else:
            cap = _onednn_bf16_cap()
            skipped["bf16"] = (
                f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below its native bf16 kernels; "
                "torch would emulate a bf16 matmul, which is no ceiling"
                if cap is not None
                else "this CPU has no native bf16 matmul (no avx512_bf16/amx_bf16); "
                "torch would emulate it, which is no ceiling"
            )
    return plan, skipped


def _matmul_rates(device: str, n: int, dtype: Any, precision: str, warmup: int, repeats: int):
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
        c = torch.empty(n, n, device=device, dtype=dtype)
        seconds = time_callable(
            lambda: torch.mm(a, b, out=c), repeats=repeats, warmup=warmup, device=device
        )
    finally:
        torch.set_float32_matmul_precision(previous)
    return [2.0 * n**3 / s for s in seconds]


def _copy_rates(device: str, n_bytes: int, warmup: int, repeats: int) -> list[float]:
    import torch

    src = torch.ones(n_bytes // 4, device=device, dtype=torch.float32)
    dst = torch.zeros_like(src)  # written once here, so the copies never page-fault
    seconds = time_callable(lambda: dst.copy_(src), repeats=repeats, warmup=warmup, device=device)
    return [2.0 * src.nbytes / s for s in seconds]


def measure_ceilings(device: Any = "cpu", quick: bool = True) -> Ceilings:
    """Time a large GEMM per precision and a large copy on `device`; medians of repeats.

    quick on CPU: 2048 x 2048 GEMMs and a 256 MiB copy, 1 warm-up and 5 timed repeats each
    (a few seconds on 2 cores). On CUDA: 8192 x 8192 and 1 GiB (quick) or 16384 and 4 GiB.
    """
    import torch

    device = str(device)
    cuda = device.startswith("cuda")
    if cuda:
        n, n_bytes = (8192, 2**30) if quick else (16384, 4 * 2**30)
        warmup, repeats = (3, 10) if quick else (5, 30)
    else:
        n, n_bytes = (2048, 256 * 2**20) if quick else (4096, 2**30)
        warmup, repeats = (1, 5) if quick else (2, 15)
    plan, unavailable = _dtype_plan(device)
    by_dtype: dict[str, float | None] = dict.fromkeys(MATMUL_DTYPES)
    samples: dict[str, tuple[float, ...]] = {}
    for name, (dtype, precision) in plan.items():
        rates = _matmul_rates(device, n, dtype, precision, warmup, repeats)
        samples[f"matmul_{name}"] = tuple(rates)
        by_dtype[name] = statistics.median(rates)
    samples["bandwidth"] = tuple(_copy_rates(device, n_bytes, warmup, repeats))
    cache_bytes, cache_rate = None, None
    if cuda:
        torch.cuda.empty_cache()  # give the probe's buffers back before the benchmarks run
        unavailable["cache_read"] = (
            "GPU latency floors use device memory bandwidth (L2-sized reads are launch-bound)"
        )
    else:
        cache_bytes = last_level_cache_bytes()
        if cache_bytes is None:
            unavailable["cache_read"] = "the CPU's last-level cache size is not in sysfs"
        else:
            samples["cache_read"] = tuple(_cache_read_rates(cache_bytes // 2, 3, 4 * repeats))
            cache_rate = statistics.median(samples["cache_read"])
    return Ceilings(
        device=device,
        matmul_flops_per_s=by_dtype["fp32"],
        matmul_flops_per_s_by_dtype=by_dtype,
        bandwidth_bytes_per_s=statistics.median(samples["bandwidth"]),
        samples=samples,
        unavailable=unavailable,
        matmul_n=n,
        copy_bytes=n_bytes,
        threads=torch.get_num_threads(),
        cache_bytes=cache_bytes,
        cache_read_bytes_per_s=cache_rate,
    )
