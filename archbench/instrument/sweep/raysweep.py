"""`archbench sweep --ray`: each shard a Ray task spread over the nodes (one GPU, or one CPU on
a cluster without GPUs), streaming every finished case to the driver as it ends.

A collector actor on the driver's node receives each shard's records stream line by line, and
the driver keeps it on its own disk; so a stop (SIGINT, SIGTERM, SIGHUP), a lost worker or a
lost node keeps every finished case, a retried shard skips what it had finished, and the run
file names the cases it lacks and why.
"""

from __future__ import annotations

import platform
import signal
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archbench.instrument.runfile import finished_cases, run_section, write_merged
from archbench.instrument.sweep.multisweep import MultiSweepResult, stored_options
from archbench.instrument.sweep.options import SweepOptions
from archbench.instrument.sweep.progress import print_now
from archbench.instrument.sweep.ray_connect import _connect
from archbench.instrument.sweep.ray_driver import _Driver
from archbench.instrument.sweep.runner import out_folder, run_name
from archbench.instrument.sweep.signals import Stopper
from ppo_core.errors import ArchbenchError, ConfigError

__all__ = ["RAY_INSTALL_HINT", "run_on_ray"]

RAY_INSTALL_HINT = "--ray needs Ray: pip install 'ppo-archbench[ray]' (or pip install 'ray>=2.9')"


def run_on_ray(
    address: str,
    options: SweepOptions,
    *,
    accelerators: Sequence[str] = (),
    shards: int | None = None,
    cpu_only: bool = False,
    out_dir: str | Path = "runs",
    echo: Callable[[str], None] | None = None,
    ray_init: dict[str, Any] | None = None,
    case_timeout: float | None = None,
    previous: tuple[Path, dict[str, Any]] | None = None,
) -> MultiSweepResult:
    """Each shard a Ray task; with `accelerators`, the whole sweep once per accelerator type,
    one merged run each. `previous` (a run being resumed): its finished cases are not rerun."""
    echo = echo or print_now
    ray = _import_ray()
    out = out_folder(out_dir)
    stored = stored_options(options, previous)
    started_here = _connect(ray, address, ray_init or {})
    try:
        plan = _plan(ray, accelerators, shards, cpu_only)
        stamp = datetime.now(timezone.utc)
        shard_root = out / f"{run_name(platform.node(), 'ray', stamp)}.shards"
        echo(
            "archbench sweep on Ray: "
            + "; ".join(f"{acc or kind}: {n} shard(s)" for acc, kind, n in plan)
            + f"; streamed to {shard_root}"
        )
        if previous is not None:
            done = finished_cases(previous[1])
            echo(f"resuming {previous[0]}: {len(done)} finished cases are kept, not rerun")
            options = options.without(done)
        with Stopper() as stopper:
            outcome = _Driver(ray, plan, options, shard_root, echo, case_timeout).run(stopper)
    finally:
        if started_here:
            ray.shutdown()
    return _finish(outcome, plan, out, stamp, shard_root, stored, previous, stopper)


def _finish(outcome, plan, out, stamp, shard_root, stored, previous, stopper):
    """One merged run per accelerator type (every finished case, what was lost)."""
    runs, lost, entries, failed = outcome
    stopped = signal.Signals(stopper.signum).name if stopper.signum is not None else None
    paths = []
    for accelerator, kind, _n in plan:
        mine = [r for r in runs if r.accelerator == accelerator]
        my_lost = [e for key, e in lost if _accelerator_of(key) == accelerator]
        my_entries = [e for key, e in entries if _accelerator_of(key) == accelerator]
        if not mine and previous is None:
            continue
        section = run_section(
            lost=my_lost,
            shards=my_entries,
            options=stored,
            stopped_by=stopped,
            resumed_from=str(previous[0]) if previous else None,
        )
        label = f"ray-{accelerator or kind}"
        path = out / f"{run_name(platform.node(), label, stamp)}.json"
        paths.append(write_merged(path, mine, section, previous[1] if previous else None))
    return MultiSweepResult(
        json_paths=tuple(paths),
        shard_dir=shard_root,
        shards=sum(n for *_, n in plan),
        finished=sum(n for *_, n in plan) - len(failed),
        failed=tuple(failed),
        interrupted=stopper.signum is not None,
        lost=tuple(e for _key, e in lost),
        stopped_by=stopped,
    )


def _accelerator_of(key: str) -> str | None:
    return key.split("/")[0] if "/" in key else None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ArchbenchError(RAY_INSTALL_HINT) from None
    return ray


# --- connecting ------------------------------------------------------------------------------


# --- placement ---------------------------------------------------------------------------


def _plan(
    ray: Any, accelerators: Sequence[str], shards: int | None, cpu_only: bool = False
) -> list[tuple[str | None, str, int]]:
    """(accelerator type or None, 'gpu' or 'cpu', shard count) per whole sweep to run."""
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if cpu_only and accelerators:
        raise ConfigError("--accelerator picks GPU types; it cannot go with CPU shards")
    if accelerators:
        return [_typed_sweep(nodes, asked, shards) for asked in accelerators]
    gpus = 0 if cpu_only else _gpus(nodes)
    if gpus:
        return [(None, "gpu", shards or gpus)]
    return [(None, "cpu", shards or len(nodes))]


def _gpus(nodes: Sequence[dict[str, Any]], key: str | None = None) -> int:
    """GPUs on `nodes` (only those with the resource `key`, when given)."""
    chosen = [n for n in nodes if key is None or key in n["Resources"]]
    return int(sum(n["Resources"].get("GPU", 0) for n in chosen))


def _typed_sweep(
    nodes: Sequence[dict[str, Any]], asked: str, shards: int | None
) -> tuple[str, str, int]:
    """The whole sweep on one accelerator type, spelled as the cluster spells it."""
    have = sorted(
        {k.split(":", 1)[1] for n in nodes for k in n["Resources"] if k.startswith("accelerator")}
    )
    accelerator = next((h for h in have if h.lower() == asked.lower()), asked)
    gpus = _gpus(nodes, f"accelerator_type:{accelerator}")
    if not gpus:
        raise ConfigError(
            f"--accelerator {asked}: the Ray cluster has no GPU of that type "
            f"(it has: {', '.join(have) or 'no typed GPUs'})"
        )
    return accelerator, "gpu", shards or gpus


# --- on the worker -----------------------------------------------------------------------


# --- on the driver -----------------------------------------------------------------------
