"""`archbench sweep --ray`, joining the cluster: an address checked in seconds, ray.init within a
deadline, and every node probed for the driver's interpreter and torch before any shard starts.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from typing import Any

from ppo_core.errors import ArchbenchError, ConfigError

CONNECT_TIMEOUT_S = 20.0
"""How long --ray ADDRESS may take to answer and let this driver join, all told."""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _connect(ray: Any, address: str, init: dict[str, Any]) -> bool:
    """ray.init; True when this call started a local cluster (which it then shuts down)."""
    if address != "local":
        _check_reachable(address)
    if ray.is_initialized():  # a cluster this process already joined (tests, notebooks)
        return False
    if address == "local":
        # Ray's own "local" always starts a new cluster: a bare ray.init() would join the one
        # /tmp/ray/ray_current_cluster names, and hang there if that cluster was killed.
        ray.init(address="local", include_dashboard=False, log_to_driver=False, **init)
        return True
    _init_within(ray, address, init)
    return False


def _init_within(ray: Any, address: str, init: dict[str, Any]) -> None:
    """ray.init(address), refused in one line if it fails or has not joined in time (an
    address that accepts TCP but never speaks Ray would otherwise hang for minutes)."""
    outcome: dict[str, BaseException | None] = {}

    def join() -> None:
        try:
            ray.init(address=address, log_to_driver=False, **init)
            outcome["error"] = None
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=join, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if "error" not in outcome:
        raise ArchbenchError(
            f"--ray {address}: no Ray cluster answered within {CONNECT_TIMEOUT_S:.0f} s "
            "(is it the cluster's GCS port, 6379 by default, as `ray status` shows?)"
        )
    error = outcome["error"]
    if error is not None:
        raise ArchbenchError(
            f"--ray {address}: cannot connect to a Ray cluster ({_one_line(str(error))})"
        ) from None


def _check_reachable(address: str) -> None:
    """A host:port that nothing answers, or a web server, fails in seconds with one line."""
    if address == "auto":
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not match:
        raise ConfigError(
            f"--ray {address!r} is not an address: use local, auto, HOST:PORT or ray://HOST:PORT"
        )
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=5.0) as probe:
            probe.settimeout(5.0)
            probe.sendall(b"GET / HTTP/1.0\r\nHost: archbench\r\n\r\n")
            reply = probe.recv(16)
    except TimeoutError:
        return  # silent to HTTP: perhaps Ray; ray.init's own deadline decides
    except OSError as error:
        if isinstance(error, ConnectionResetError):
            return
        raise ArchbenchError(
            f"--ray {address}: no Ray cluster answers at {host}:{port} ({error.strerror or error})"
        ) from None
    if reply.startswith(b"HTTP/"):
        raise ArchbenchError(
            f"--ray {address}: a web server answers there, not a Ray cluster (the dashboard is "
            "on 8265; give the GCS port, 6379 by default, as `ray status` shows)"
        )


def _probe_node(executable: str) -> dict[str, Any]:
    """Runs on each node before any shard: can it run the shards' command?"""
    from importlib import metadata

    found = {}
    for package in ("ppo-archbench", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return {"python": os.access(executable, os.X_OK), **found}


def _preflight(ray: Any, gpu_only: bool = False) -> None:
    """Refuse in one line, before any work, a node that lacks the driver's interpreter path or
    the project (each shard runs `sys.executable -m archbench.instrument.sweep.runner` there).
    With GPU shards only, nodes without a GPU (a head that only coordinates) are not asked."""
    import sys
    from importlib import metadata

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if gpu_only:
        nodes = [n for n in nodes if n["Resources"].get("GPU", 0) > 0]
    probe = ray.remote(_probe_node)
    refs = [
        probe.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(sys.executable)
        for n in nodes
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=CONNECT_TIMEOUT_S * 3)
    mine = {p: metadata.version(p) for p in ("ppo-archbench", "torch")}
    problems = []
    for node, ref in zip(nodes, refs, strict=True):
        where = node.get("NodeManagerAddress") or node["NodeID"][:8]
        if ref not in ready:
            problems.append(f"node {where} did not answer")
            continue
        found = ray.get(ref)
        if not found["python"]:
            problems.append(f"node {where} has no {sys.executable}")
        elif found["ppo-archbench"] is None:
            problems.append(f"node {where} lacks ppo-archbench")
        elif found["torch"] != mine["torch"]:
            problems.append(f"node {where} has torch {found['torch']}, this one {mine['torch']}")
    if problems:
        raise ArchbenchError(
            f"--ray: {'; '.join(problems[:3])}: every node needs this checkout installed at the "
            f"same path with the same torch (the shards run {sys.executable} there)"
        )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[0] if lines else "no message"
