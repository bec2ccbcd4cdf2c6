"""Split a sweep's cases into shards, one per device (archbench.instrument.runfile merges the
shards' JSON back into one run whose records name the device, node and GPU UUID they ran on).

Pure functions only: the multi-device and Ray runners (archbench.instrument.sweep.multisweep) do
the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ppo_core.errors import ConfigError

__all__ = [
    "Case",
    "case_of",
    "case_weight",
    "parse_devices",
    "parse_shard",
    "select_shard",
    "shard_items",
    "split_cases",
    "visible_device",
]

# Training-type cases run for seconds to minutes; an inference or memory case for far less.
# The weights only balance the shards; a wrong guess costs wall time, never a result.
_SUITE_WEIGHTS = {
    "test_train_throughput": 8.0,
    "test_update_large_minibatch": 8.0,
    "test_overfitting": 8.0,
    "test_peer_throughput": 8.0,
}


@dataclass(frozen=True)
class Case:
    """One collected benchmark case, as the splitter sees it."""

    nodeid: str
    """pytest's id: 'bench/test_memory.py::test_memory[tiny]'."""
    group: str
    """Cases of one group run on one device (the sweep gives every case its own group)."""
    weight: float = 1.0
    """Rough relative cost, used only to balance the shards."""


def case_weight(function: str) -> float:
    """Relative cost of a case of test function `function` (training-type cases weigh more)."""
    return _SUITE_WEIGHTS.get(function, 1.0)


def split_cases(cases: Sequence[Case], n_shards: int) -> list[list[str]]:
    """Node ids per shard: whole groups, heaviest first onto the lightest shard (LPT).

    Deterministic for a given list, so every shard computes the same split on its own. Each
    shard keeps the collection order of its cases.
    """
    if n_shards < 1:
        raise ConfigError(f"the number of shards must be at least 1, got {n_shards}")
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    order = sorted(groups, key=lambda g: (-sum(c.weight for c in groups[g]), g))
    loads = [0.0] * n_shards
    owner: dict[str, int] = {}
    for group in order:
        shard = min(range(n_shards), key=lambda i: (loads[i], i))
        owner[group] = shard
        loads[shard] += sum(c.weight for c in groups[group])
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    for case in cases:
        shards[owner[case.group]].append(case.nodeid)
    return shards


def select_shard(cases: Sequence[Case], index: int, n_shards: int) -> list[str]:
    """The node ids shard `index` of `n_shards` runs."""
    return split_cases(cases, n_shards)[index]


def shard_items(items: Sequence[Any], shard: str) -> list[Any]:
    """The collected pytest items of shard 'I/N' (bench/conftest.py's --archbench-shard)."""
    index, n_shards = parse_shard(shard)
    cases = [_item_case(item) for item in items]
    keep = set(select_shard(cases, index, n_shards))
    return [item for item in items if item.nodeid in keep]


def _item_case(item: Any) -> Case:
    # Each case is its own group: a shard holding a whole size is bounded by the largest size
    # (4 GPUs were at most 2.57x faster than one on the full profile); by case, N approach Nx.
    function = getattr(item, "originalname", None) or item.name
    return Case(item.nodeid, item.nodeid, case_weight(function))


def case_of(nodeid: str) -> Case:
    """The splitter's Case for a node id alone ('bench/test_x.py::test_fn[tiny-...]')."""
    function = nodeid.split("::")[-1].split("[")[0]
    return Case(nodeid, nodeid, case_weight(function))


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (shard I of N, 0-based) -> (I, N); anything else is a ConfigError naming it."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise ConfigError(
            f"--archbench-shard must be I/N with 0 <= I < N (shard I of N), got {text!r}"
        )
    return int(match.group(1)), int(match.group(2))


def parse_devices(spec: str, cuda_count: int) -> list[str]:
    """--devices 'cuda:0,cuda:1', 'all' or 'cpu,cpu' -> one device per shard.

    `cuda_count` is how many CUDA devices this machine has; an index beyond it, CUDA asked
    for without any, or a device named twice is a ConfigError naming the value.
    """
    text = spec.strip().lower()
    if text == "all":
        if cuda_count == 0:
            raise ConfigError("--devices all: torch sees no CUDA device here; use --devices cpu")
        return [f"cuda:{i}" for i in range(cuda_count)]
    devices = [part.strip() for part in text.split(",")]
    for device in devices:
        if device == "cpu":
            continue
        match = re.fullmatch(r"cuda:(\d+)", device)
        if not match:
            raise ConfigError(
                f"--devices: {device!r} is not cpu or cuda:N (in {spec!r}); "
                "e.g. --devices cuda:0,cuda:1 or --devices all"
            )
        if cuda_count == 0:
            raise ConfigError(f"--devices: {device} asked for, but torch sees no CUDA device")
        if int(match.group(1)) >= cuda_count:
            raise ConfigError(
                f"--devices: {device} does not exist: torch sees {cuda_count} CUDA device(s) "
                f"(cuda:0 to cuda:{cuda_count - 1})"
            )
    gpus = [d for d in devices if d != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--devices names a GPU twice ({spec!r}); each shard needs its own")
    return devices


def visible_device(device: str, parent_visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES that pins a shard to the driver's `device` ('cuda:N').

    The driver's cuda:N is the N-th entry of its own CUDA_VISIBLE_DEVICES when one is set
    (cuda:0 under '2,3' is GPU 2), else GPU N in the same CUDA_DEVICE_ORDER, which the shard
    inherits.
    """
    index = int(device.split(":")[1])
    if parent_visible is None or not parent_visible.strip():
        return str(index)
    entries = [e.strip() for e in parent_visible.split(",") if e.strip()]
    if index >= len(entries):
        raise ConfigError(
            f"--devices: {device} is not among CUDA_VISIBLE_DEVICES={parent_visible!r}"
        )
    return entries[index]
