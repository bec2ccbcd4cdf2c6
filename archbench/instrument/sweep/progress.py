"""The records stream a sweep's suites write (one JSON line per finished case), read as it
grows: the session it describes, the records, and a progress line per finished case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["HEADLINES", "Progress", "print_now"]

HEADLINES: dict[str, tuple[str, ...]] = {
    "ceiling": ("matmul_flops_per_s_fp32", "bandwidth_bytes_per_s", "padded_speedup_out256"),
    "env": ("env_steps_per_s", "forward_over_step"),
    "infer": ("latency_p50_s", "latency_p99_s"),
    "memory": ("torch_allocated_bytes", "peak_rss_bytes", "memory_error_pct"),
    "train": ("train_env_steps_per_s", "update_samples_per_s", "ceiling_fraction"),
    "overfit": ("train_sharpe", "val_sharpe", "oracle_edge_fraction"),
    "peer": ("speedup_ratio_vs_sb3",),
}
"""Metrics shown on a case's progress line, per suite (the first available ones)."""


def print_now(line: str) -> None:
    """The default echo: one line to stdout now, and never an error if stdout is gone."""
    try:
        print(line, flush=True)  # a line per case as it ends, even into a pipe or a file
    except OSError:  # the terminal hung up (SIGHUP) or the pipe closed: the sweep goes on
        pass


class Progress:
    """Reads the records stream as it grows and prints a line per finished case."""

    def __init__(self, path: Path, echo: Callable[[str], None], prefix: str = "") -> None:
        self.path = path
        self.echo = echo
        self.prefix = prefix
        self.offset = 0
        self.collected: int | None = None
        self.finished = 0
        self.records: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        """Every finished case's event, with a record or not (a failure says why)."""
        self.session: dict[str, Any] = {}
        """The 'collected' event: case count, device, profile, machine and commit."""
        self.plan: list[str] | None = None
        """The node ids this pytest runs (archbench.instrument.sweep.plugin's 'plan' event)."""
        self.collected_ids: list[str] | None = None
        """Every case this pytest collected before its shard's split (the plan event)."""
        self.running: tuple[str, float] | None = None
        """The case running now and when its start was read (time.monotonic)."""
        self._started = time.monotonic()

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "plan":
            self.plan = list(event["nodeids"])
            self.collected_ids = list(event.get("collected") or self.plan)
            return
        if event.get("event") == "start":
            self.running = (event["nodeid"], time.monotonic())
            return
        if event.get("event") == "collected":
            self.session = event
            self.collected = int(event["count"])
            self.echo(f"{self.prefix}collected {self.collected} cases")
            return
        if event.get("event") != "case":
            return
        self.running = None
        self.finished += 1
        self.cases.append(event)
        record = event.get("record")
        if record is not None:
            self.records.append(event)
        total = f"/{self.collected}" if self.collected is not None else ""
        case_id = event["nodeid"].split("::")[-1]
        elapsed = time.monotonic() - self._started
        detail = _headline(record) if record else (event.get("message") or "")
        self.echo(
            f"{self.prefix}[{self.finished}{total}] {event['outcome']:<7} {case_id:<52} "
            f"{event['duration_s']:6.1f} s  {detail}  (elapsed {elapsed / 60:.1f} min)"
        )


def _headline(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"{record['status'].upper()}: {record.get('reason')}"
    shown, unavailable = [], []
    for name in HEADLINES.get(record["suite"], ()):
        metric = record["metrics"].get(name)
        if metric and metric.get("value") is not None:
            shown.append(f"{name}={_fmt(metric['value'], metric.get('unit'))}")
        elif metric and metric.get("unavailable"):
            unavailable.append(str(metric["unavailable"]))
    if not shown and unavailable:  # e.g. an ONNX case without the onnx extra: say why
        return f"not measured: {unavailable[0]}"
    return "  ".join(shown)


def _fmt(value: float, unit: str | None) -> str:
    if unit == "B":
        return f"{value / 1e6:,.1f} MB"
    if unit == "s":
        return f"{value * 1e3:,.3f} ms"
    if unit in ("FLOP/s", "B/s"):
        return f"{value / 1e9:,.1f} G{unit}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
