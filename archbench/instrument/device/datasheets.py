"""The known-GPU table as data: memory, dense matmul rates and bandwidth, each with its source.

`archbench pick` reads it to size networks for cards nobody measured; `find_gpu` matches the
loose names people and drivers use ("a100-80gb", "NVIDIA A100-SXM4-80GB", "Tesla T4").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from ppo_core.device import TRAINING_PRECISIONS
from ppo_core.errors import ConfigError

__all__ = [
    "GPUS",
    "PRECISIONS",
    "GpuSpec",
    "cpu_spec",
    "custom_spec",
    "find_gpu",
    "known_names",
]

PRECISIONS = TRAINING_PRECISIONS
"""Matmul precisions the table gives rates for. fp32 is what `archbench train` runs (torch's
default float32 matmul precision 'highest': no TF32); bf16 is `train --bf16`."""


@dataclass(frozen=True)
class GpuSpec:
    """One device's capacity and peak rates, and where each figure comes from."""

    name: str
    """Canonical name shown and accepted by `--gpu` ('H100-80GB', 'RTX 4090', 'cpu')."""
    variant: str
    """Which board the figures are for ('SXM5', 'PCIe'); for 'cpu', the CPU model measured."""
    model: str
    """The model token a device name must contain to match ('h100', 'rtx4090', 't4')."""
    aliases: tuple[str, ...]
    """Other spellings, matched after normalising (lower case, no spaces or dashes)."""
    memory_gib: float
    """Device memory in GiB: the datasheet capacity (GDDR/HBM sizes are binary), or what the
    driver or OS reports for a detected device. The driver exposes a little less than the
    datasheet (ECC and reserved memory: a T4 shows ~14.7 GiB to PyTorch); `pick`'s safety
    margin covers that."""
    fp32_tflops: float | None
    """Dense FP32 matmul peak on CUDA cores (non-tensor), TFLOP/s; None: unknown."""
    tf32_tflops: float | None
    """Dense TF32 tensor-core peak (the datasheet's 'with sparsity' figure halved); None: none."""
    bf16_tflops: float | None
    """Dense BF16 tensor-core peak with FP32 accumulate; None: the device has none."""
    bandwidth_gbs: float | None
    """Peak memory bandwidth, GB/s (10^9 bytes per second, read plus write)."""
    source: str
    """Where the figures come from: the vendor datasheet or whitepaper, or 'measured ...'."""
    measured: bool = False
    """True when the rates were measured on this machine rather than taken from a datasheet."""

    def __post_init__(self) -> None:
        if not self.memory_gib > 0:
            raise ConfigError(f"GpuSpec {self.name!r}: memory_gib must be positive")
        for name in ("fp32_tflops", "tf32_tflops", "bf16_tflops", "bandwidth_gbs"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"GpuSpec {self.name!r}: {name} must be positive or None")

    @property
    def memory_bytes(self) -> int:
        """memory_gib in bytes."""
        return int(self.memory_gib * 2**30)

    @property
    def is_cpu(self) -> bool:
        """The 'cpu' entry (host memory, no CUDA context)."""
        return self.model == "cpu"

    def matmul_flops_per_s(self, precision: str = "fp32") -> float | None:
        """Dense matmul peak in FLOP/s at `precision` (fp32, tf32, bf16); None when unknown."""
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}"
            )
        tflops = getattr(self, f"{precision}_tflops")
        return None if tflops is None else tflops * 1e12

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        """bandwidth_gbs in bytes per second."""
        return None if self.bandwidth_gbs is None else self.bandwidth_gbs * 1e9

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["aliases"] = list(self.aliases)
        return out


_AMPERE_DC = "NVIDIA A100 Tensor Core GPU datasheet (2021), SXM column"
_HOPPER = "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 SXM column"

# Dense rates only: NVIDIA's datasheets print tensor-core figures "with sparsity" (marked *),
# twice the dense rate a PPO update can use, so those are halved here.
GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("T4", "PCIe 70 W", "t4", ("tesla t4",), 16.0, 8.1, None, None, 320.0,
            "NVIDIA T4 Tensor Core GPU datasheet: FP32 8.1 TFLOPS, 16 GB GDDR6, 320+ GB/s; "
            "Turing has no TF32 or BF16 tensor cores (FP16 only)"),
    GpuSpec("L4", "PCIe 72 W", "l4", (), 24.0, 30.3, 60.0, 121.0, 300.0,
            "NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3, TF32 120*, BF16 242* TFLOPS "
            "(* sparsity, halved), 24 GB GDDR6, 300 GB/s"),
    GpuSpec("A10G", "AWS G5", "a10g", (), 24.0, 35.0, 35.0, 70.0, 600.0,
            "NVIDIA publishes no A10G datasheet (AWS-only board); AWS G5 figures as tabulated "
            "in Baseten, 'NVIDIA A10 vs A10G for ML model inference': FP32 35, TF32 35, "
            "BF16 70 TFLOPS dense, 24 GB GDDR6, 600 GB/s"),
    GpuSpec("RTX 3090", "GeForce", "rtx3090", ("3090",), 24.0, 35.6, 35.6, 71.0, 936.0,
            "NVIDIA Ampere GA102 GPU Architecture whitepaper, RTX 3090 column: FP32 35.6, "
            "TF32 35.6, BF16 (FP32 accumulate) 71 TFLOPS dense, 24 GB GDDR6X, 936 GB/s"),
    GpuSpec("RTX 4090", "GeForce", "rtx4090", ("4090",), 24.0, 82.6, 82.6, 165.2, 1008.0,
            "NVIDIA Ada GPU Architecture whitepaper, RTX 4090 column: FP32 82.6, TF32 82.6, "
            "BF16 (FP32 accumulate) 165.2 TFLOPS dense, 24 GB GDDR6X, 1008 GB/s"),
    GpuSpec("A100-40GB", "SXM4", "a100", ("a100 40gb",), 40.0, 19.5, 156.0, 312.0, 1555.0,
            _AMPERE_DC + ": FP32 19.5, TF32 156, BF16 312 TFLOPS dense, 40 GB HBM2, 1,555 GB/s"),
    GpuSpec("A100-80GB", "SXM4", "a100", ("a100 80gb",), 80.0, 19.5, 156.0, 312.0, 2039.0,
            _AMPERE_DC + ": FP32 19.5, TF32 156, BF16 312 TFLOPS dense, 80 GB HBM2e, "
            "2,039 GB/s (the PCIe board: 1,935 GB/s)"),
    GpuSpec("H100-80GB", "SXM5", "h100", ("h100 sxm", "h100 80gb hbm3"), 80.0, 67.0, 494.5,
            989.5, 3350.0,
            _HOPPER + ": FP32 67, TF32 989*, BF16 1,979* TFLOPS (* sparsity, halved), "
            "80 GB HBM3, 3.35 TB/s"),
    GpuSpec("H100-PCIe", "PCIe", "h100", ("h100 pcie",), 80.0, 51.0, 378.0, 756.0, 2000.0,
            "NVIDIA H100 Tensor Core GPU datasheet (2023), H100 PCIe column: FP32 51, TF32 756*, "
            "BF16 1,513* TFLOPS (* sparsity, halved), 80 GB HBM2e, 2 TB/s"),
    GpuSpec("H200", "SXM", "h200", ("h200 sxm",), 141.0, 67.0, 494.5, 989.5, 4800.0,
            "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column: FP32 67, TF32 989*, "
            "BF16 1,979* TFLOPS (* sparsity, halved), 141 GB HBM3e, 4.8 TB/s"),
)  # fmt: skip

_VENDOR_WORDS = {"nvidia", "tesla", "geforce"}


def _tokens(name: str) -> list[str]:
    """'NVIDIA GeForce RTX 4090' -> ['rtx4090']; 'NVIDIA A100-SXM4-80GB' -> [a100, sxm4, 80gb]."""
    text = re.sub(r"rtx[\s_-]*(\d)", r"rtx\1", name.lower())
    return [t for t in re.findall(r"[a-z0-9]+", text) if t not in _VENDOR_WORDS]


def _memory_hint(tokens: list[str]) -> float | None:
    for token in tokens:
        match = re.fullmatch(r"(\d+)(gb|g|gib)", token)
        if match:
            return float(match.group(1))
    return None


def known_names(table: tuple[GpuSpec, ...] = GPUS) -> list[str]:
    """Canonical names `--gpu` accepts, plus 'cpu' and 'auto'."""
    return [spec.name for spec in table] + ["cpu", "auto"]


def find_gpu(
    name: str, memory_gib: float | None = None, table: tuple[GpuSpec, ...] = GPUS
) -> GpuSpec | None:
    """The table entry for a loosely spelled GPU name, or None when no entry matches.

    The name must contain an entry's model token ('a100', 'rtx4090', 't4'). Among entries of one
    model, a memory size in the name ('80GB') or `memory_gib` (a detected device's) picks the
    closest capacity, and 'pcie' picks the PCIe board; otherwise the first (SXM) entry wins.
    A MIG slice ('... MIG 3g.40gb') matches nothing: it has a share of the card's SMs and
    bandwidth, so the full card's datasheet rates would be wrong for it.
    Raises ConfigError when the name names a model of two capacities and gives no size.
    """
    tokens = _tokens(name)
    if "mig" in tokens:
        return None
    exact = _spelled_entry("".join(tokens), table)
    if exact is not None:
        return exact
    candidates = _boards(tokens, table)
    if not candidates:
        return None
    return _by_capacity(name, candidates, _memory_hint(tokens) or memory_gib)


def _spelled_entry(joined: str, table: tuple[GpuSpec, ...]) -> GpuSpec | None:
    """The entry whose name or an alias spells exactly `joined` (tokens run together)."""
    for spec in table:
        spellings = [spec.name, *spec.aliases]
        if joined in {"".join(_tokens(s)) for s in spellings}:
            return spec
    return None


def _boards(tokens: list[str], table: tuple[GpuSpec, ...]) -> list[GpuSpec]:
    """The entries of the named model: the PCIe boards when 'pcie' is named and one exists,
    else the SXM ones (all, when the model has only PCIe boards)."""
    candidates = [spec for spec in table if spec.model in tokens]
    if "pcie" in tokens and any("pcie" in s.variant.lower() for s in candidates):
        return [s for s in candidates if "pcie" in s.variant.lower()]
    if len(candidates) > 1:
        return [s for s in candidates if "pcie" not in s.variant.lower()] or candidates
    return candidates


def _by_capacity(name: str, candidates: list[GpuSpec], memory: float | None) -> GpuSpec:
    """The candidate closest to `memory` GiB; with no size known, the only capacity there is."""
    if memory is not None:
        # The detected figure sits a little under the datasheet's (reserved, ECC memory).
        return min(candidates, key=lambda s: abs(s.memory_gib - memory))
    capacities = {s.memory_gib for s in candidates}
    if len(capacities) > 1:
        options = " or ".join(s.name for s in candidates)
        raise ConfigError(
            f"GPU {name!r} is ambiguous: {options}; name the size (e.g. {candidates[-1].name!r}) "
            "or add --vram-gb"
        )
    return candidates[0]


def custom_spec(name: str, memory_gib: float, source: str) -> GpuSpec:
    """An entry for a device the table does not know: its memory only, no rates."""
    if isinstance(memory_gib, bool) or not isinstance(memory_gib, int | float) or memory_gib <= 0:
        raise ConfigError(f"GPU memory must be a positive number of GiB, got {memory_gib!r}")
    return GpuSpec(name, "", "custom", (), float(memory_gib), None, None, None, None, source)


def cpu_spec(ceilings: Any, cpu_model: str, memory_bytes: int) -> GpuSpec:
    """The 'cpu' entry from this machine's measured ceilings (`machine.measure_ceilings`).

    `memory_bytes` is the host RAM training may use; rates are the measured GEMM medians.
    """
    by_dtype = ceilings.matmul_flops_per_s_by_dtype

    def tflops(dtype: str) -> float | None:
        value = by_dtype.get(dtype)
        return None if value is None else value / 1e12

    return GpuSpec(
        name="cpu",
        variant=cpu_model,
        model="cpu",
        aliases=(),
        memory_gib=memory_bytes / 2**30,
        fp32_tflops=tflops("fp32"),
        tf32_tflops=None,
        bf16_tflops=tflops("bf16"),
        bandwidth_gbs=ceilings.bandwidth_bytes_per_s / 1e9,
        source=(
            f"measured on the spot on {cpu_model} ({ceilings.threads} threads): median of "
            f"{ceilings.matmul_n}x{ceilings.matmul_n} GEMMs and {ceilings.copy_bytes >> 20} MiB "
            "copies; memory: host RAM"
        ),
        measured=True,
    )
