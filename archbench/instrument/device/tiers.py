"""Which network and batch sizes suit which device: the GPU tier table and auto config.

`GPU_TIERS` is plain data (first matching row wins) that `archbench pick` prints and can
replace; every function that reads it takes a `tiers` argument for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from archbench.instrument.device import gpu
from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.device import resolve_device
from ppo_core.errors import ConfigError
from ppo_core.presets import TRAINING_MODES

__all__ = [
    "GPU_TIERS",
    "TierRow",
    "config_for_gpu",
    "get_a100_config",
    "get_auto_config",
    "gpu_tier",
    "tiers_from_dicts",
]

_DEFAULT_TIMESTEPS = PPOConfig.__dataclass_fields__["total_timesteps"].default


@dataclass(frozen=True)
class TierRow:
    """One row of the tier table: which devices it matches and what it trains there."""

    name: str
    """Short label shown by `archbench pick` ('h100', '40gb+', 'cpu')."""
    match: tuple[str, ...]
    """Substrings of the GPU name (case-insensitive), any of which matches; () matches every
    GPU; ('cpu',) is the row for no GPU."""
    min_memory_gb: float | None
    """Smallest device memory (GiB, as the driver reports it) this row accepts; None: any."""
    max_memory_gb: float | None
    """Memory (GiB) from which this row no longer applies (exclusive); None: no limit."""
    hidden_dims: tuple[int, ...]
    """Trunk widths to train on these devices."""
    n_envs: int
    """Environments stepped together."""
    minibatch_size: int
    """Samples per gradient step."""
    note: str
    """Why these numbers."""

    def __post_init__(self) -> None:
        if isinstance(self.match, list | str):
            object.__setattr__(
                self, "match", (self.match,) if isinstance(self.match, str) else tuple(self.match)
            )
        if isinstance(self.hidden_dims, list):
            object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        try:
            NetworkConfig(hidden_dims=self.hidden_dims)  # validates the widths
        except ConfigError as exc:
            raise ConfigError(f"tier {self.name!r}: {exc}") from None
        for name in ("n_envs", "minibatch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"tier {self.name!r}: {name} must be a positive integer, got {value!r}"
                )

    def matches(self, name: str | None, memory_gb: float | None) -> bool:
        """Does a device called `name` (None: the CPU) with `memory_gb` GiB fall in this row?"""
        if name is None or self.match == ("cpu",):
            return name is None and self.match == ("cpu",)
        upper = name.upper()
        if self.match and not any(m.upper() in upper for m in self.match):
            return False
        if self.min_memory_gb is not None and memory_gb < self.min_memory_gb:
            return False
        return not (self.max_memory_gb is not None and memory_gb >= self.max_memory_gb)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["match"], out["hidden_dims"] = list(self.match), list(self.hidden_dims)
        return out


# Thresholds sit below the marketed sizes because drivers report less than the label
# (an "A100 40GB PCIe" reports 39.6 GiB, an "A10 24GB" 22.5 GiB, a "T4 16GB" 15.1 GiB).
# The H100 row needs 60 GiB so that a MIG slice of an H100 falls to the memory rows.
GPU_TIERS: tuple[TierRow, ...] = (
    TierRow("h100", ("H100", "H200", "GH200", "B200", "B100"), 60.0, None, (1024, 512, 256),
            128, 4096, "Hopper/Blackwell data-centre card: the medium preset with large batches"),
    TierRow("a100-80gb", ("A100",), 70.0, None, (1024, 512, 256), 128, 4096,
            "A100 80GB: the medium preset with large batches"),
    TierRow("40gb+", (), 36.0, None, (512, 256, 128), 64, 2048,
            "40 GB and up (A100 40GB, A6000, L40S): the small preset"),
    TierRow("20-40gb", (), 18.0, 36.0, (512, 256, 128), 32, 1024,
            "20-40 GB (A10, L4, RTX 4090, V100 32GB): the small preset, smaller batches"),
    TierRow("<20gb", (), None, 18.0, (256, 128, 64), 16, 512,
            "under 20 GB (T4, RTX 3080, MIG slices): the tiny preset"),
    TierRow("cpu", ("cpu",), None, None, (256, 128, 64), 8, 256,
            "no GPU: the tiny preset, 8 envs, minibatch 256, so a run fits a few cores"),
)  # fmt: skip


def tiers_from_dicts(rows: Sequence[dict[str, Any]]) -> tuple[TierRow, ...]:
    """A tier table from JSON rows (as `TierRow.to_dict` writes them), validated."""
    known = {f.name for f in fields(TierRow)}
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != known:
            raise ConfigError(f"tier row {i} must have exactly the keys {', '.join(sorted(known))}")
        out.append(TierRow(**row))
    return tuple(out)


def gpu_tier(
    name: str | None, memory_gb: float | None, tiers: Sequence[TierRow] = GPU_TIERS
) -> TierRow:
    """The first row of `tiers` matching a GPU `name` with `memory_gb` GiB (name None: CPU)."""
    if name is not None and (memory_gb is None or not memory_gb > 0):
        raise ConfigError(f"GPU {name!r}: memory_gb must be a positive number, got {memory_gb!r}")
    for row in tiers:
        if row.matches(name, memory_gb):
            return row
    what = "the CPU" if name is None else f"{name} ({memory_gb:g} GiB)"
    raise ConfigError(f"no tier row matches {what}; add a row for it to the tier table")


def config_for_gpu(
    name: str,
    memory_gb: float,
    total_timesteps: int = _DEFAULT_TIMESTEPS,
    training_mode: str = "production",
    tiers: Sequence[TierRow] = GPU_TIERS,
) -> PPOConfig:
    """The PPOConfig the tier table gives a named card, e.g. ('NVIDIA A100-SXM4-40GB', 40)."""
    return _config(gpu_tier(name, memory_gb, tiers), "cuda", total_timesteps, training_mode)


def get_a100_config(
    memory_gb: float,
    total_timesteps: int = _DEFAULT_TIMESTEPS,
    training_mode: str = "production",
) -> PPOConfig:
    """An A100's config: 80 GB -> (1024, 512, 256), 40 GB -> (512, 256, 128)."""
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, int | float) or memory_gb <= 0:
        raise ConfigError(f"get_a100_config: memory_gb must be positive, got {memory_gb!r}")
    name = f"NVIDIA A100-SXM4-{memory_gb:g}GB"
    return config_for_gpu(name, memory_gb, total_timesteps, training_mode)


def get_auto_config(
    total_timesteps: int,
    training_mode: str = "production",
    device: str | None = None,
    tiers: Sequence[TierRow] = GPU_TIERS,
) -> PPOConfig:
    """The PPOConfig for this machine's device (`device` None: detect it)."""
    found = gpu.with_memory(resolve_device(device or "auto"))
    row = gpu_tier(found.name, found.memory_gib, tiers)
    return _config(row, found.device, total_timesteps, training_mode)


def _config(row: TierRow, device: str, total_timesteps: int, training_mode: str) -> PPOConfig:
    if training_mode not in TRAINING_MODES:
        raise ConfigError(
            f"training_mode must be one of {', '.join(TRAINING_MODES)}; got {training_mode!r}"
        )
    return PPOConfig(
        total_timesteps=total_timesteps,
        n_envs=row.n_envs,
        minibatch_size=row.minibatch_size,
        device=device,
        network=NetworkConfig(hidden_dims=row.hidden_dims),
        **TRAINING_MODES[training_mode],
    )
