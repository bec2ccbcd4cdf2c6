"""Memory probes for a region of code: peak RSS, torch allocator peaks, NVML device memory.

`measure_isolated` runs a function in a fresh Python process, so one preset's memory never
leaks into the next one's figure.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from archbench.instrument.device import gpu
from ppo_core.atomic import atomic_path
from ppo_core.errors import ConfigError, is_out_of_memory

__all__ = [
    "VIEWS",
    "MemoryReport",
    "PeakMemory",
    "current_rss_bytes",
    "max_rss_bytes",
    "measure_isolated",
    "reset_peak_rss",
]

VIEWS = ("device_used", "process_used", "allocated", "reserved", "rss")
"""The memory views a report can hold, each `<view>_bytes` (peak) and `<view>_start_bytes`."""


@dataclass(frozen=True)
class MemoryReport:
    """Peak memory of one region, one labelled figure per view; None + reason where unknown."""

    device: str
    """The torch device the region ran on ('cpu', 'cuda:0')."""
    device_used_bytes: int | None = None
    """NVML: peak memory in use on the whole GPU (every process), sampled every interval."""
    device_used_start_bytes: int | None = None
    """NVML: device memory in use when the region began."""
    process_used_bytes: int | None = None
    """NVML: peak GPU memory charged to this process (CUDA context included)."""
    process_used_start_bytes: int | None = None
    """NVML: this process's GPU memory when the region began."""
    allocated_bytes: int | None = None
    """torch allocator: max_memory_allocated over the region (live tensors)."""
    allocated_start_bytes: int | None = None
    """torch allocator: memory_allocated when the region began."""
    reserved_bytes: int | None = None
    """torch allocator: max_memory_reserved over the region (allocated plus cached blocks)."""
    reserved_start_bytes: int | None = None
    """torch allocator: memory_reserved when the region began."""
    rss_bytes: int | None = None
    """Peak resident set size of this process over the region (host memory)."""
    rss_start_bytes: int | None = None
    """Resident set size when the region began."""
    rss_method: str | None = None
    """How the RSS peak was found: 'sampled' every interval, or 'hwm' (the kernel's exact
    high-water mark, usable when the region set a new lifetime peak)."""
    nvml_memory_info: str | None = None
    """'v2' (used excludes driver-reserved memory) or 'v1'; None without NVML."""
    reasons: dict[str, str] = field(default_factory=dict)
    """View name -> why that view is unavailable."""

    def delta_bytes(self, view: str) -> int | None:
        """Peak minus start of one view: what the region added at its worst moment."""
        if view not in VIEWS:
            raise ValueError(f"unknown memory view {view!r}; views: {', '.join(VIEWS)}")
        peak, start = getattr(self, f"{view}_bytes"), getattr(self, f"{view}_start_bytes")
        return None if peak is None or start is None else peak - start

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["reasons"] = dict(self.reasons)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryReport:
        return cls(
            **{f.name: data.get(f.name) for f in fields(cls) if f.name != "reasons"},
            reasons=dict(data.get("reasons") or {}),
        )


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def max_rss_bytes() -> int:
    """Peak RSS of this process's address space, in bytes.

    On Linux this is VmHWM from /proc/self/status, not getrusage's ru_maxrss: a child started
    by subprocess (vfork + exec) inherits its parent's peak into ru_maxrss, so a fresh child
    of a 1 GB pytest process would report at least 1 GB whatever it did. VmHWM belongs to the
    new address space and `reset_peak_rss` can restart it. Elsewhere: ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def reset_peak_rss() -> bool:
    """Restart the peak-RSS mark at the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class _RssSampler:
    """Background thread: the max of RSS read every `interval_s` until stopped."""

    def __init__(self, interval_s: float) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak = self.start = int(self._process.memory_info().rss)
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.peak = max(self.peak, int(self._process.memory_info().rss))
            except Exception as exc:  # end the thread, and say why, on any failure
                self.error = f"{type(exc).__name__}: {exc}"
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
        if self._thread.is_alive():
            self.error = self.error or "RSS sampler thread did not stop within 10 s"
        elif self.error is None:
            self.peak = max(self.peak, int(self._process.memory_info().rss))


class PeakMemory:
    """Measure a region's peak memory: `with PeakMemory(device) as m: ...; m.report`.

    Always: peak RSS (a psutil sampling thread every `interval_s`, improved to the kernel's
    exact high-water mark when the region sets a new lifetime peak). On CUDA also the torch
    allocator's peaks (reset at the start) and NVML's device and per-process peaks.
    """

    def __init__(self, device: Any = "cpu", interval_s: float = 0.01) -> None:
        if not interval_s > 0:
            raise ConfigError(f"PeakMemory.interval_s must be positive, got {interval_s!r}")
        self.device = str(device)
        self.interval_s = float(interval_s)
        self.report: MemoryReport | None = None
        """The region's figures, set when the region ends."""
        self._cuda = self.device.startswith("cuda")
        self._rss: _RssSampler | None = None
        self._nvml: gpu.NvmlSampler | None = None
        self._hwm_start = 0
        self._alloc_start: tuple[int, int] | None = None

    def __enter__(self) -> PeakMemory:
        if self._cuda:
            self._alloc_start = gpu.allocator_reset_peak(self.device)
            self._nvml = gpu.NvmlSampler(self.device, self.interval_s).__enter__()
        self._hwm_start = max_rss_bytes()
        self._rss = _RssSampler(self.interval_s)
        return self

    def __exit__(self, *exc_info: object) -> None:
        values: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        if self._cuda:
            peaks = gpu.allocator_peaks(self.device)
            values["allocated_bytes"], values["reserved_bytes"] = peaks
            values["allocated_start_bytes"], values["reserved_start_bytes"] = self._alloc_start
        else:
            for view in ("device_used", "process_used", "allocated", "reserved"):
                reasons[view] = "device is cpu"
        rss = self._rss
        rss.stop()
        if self._nvml is not None:
            self._nvml.__exit__(*exc_info)
            values["device_used_bytes"] = self._nvml.device_used_peak_bytes
            values["device_used_start_bytes"] = self._nvml.device_used_start_bytes
            values["process_used_bytes"] = self._nvml.process_used_peak_bytes
            values["process_used_start_bytes"] = self._nvml.process_used_start_bytes
            values["nvml_memory_info"] = self._nvml.memory_info_version
            reasons.update(self._nvml.reasons)
        hwm_end = max_rss_bytes()
        if rss.error is not None:
            reasons["rss"] = f"RSS sampling failed mid-region ({rss.error}); peak incomplete"
        elif hwm_end > self._hwm_start and hwm_end >= rss.peak:
            # A new lifetime high-water mark was set inside the region: it is the exact peak.
            values.update(rss_bytes=hwm_end, rss_start_bytes=rss.start, rss_method="hwm")
        else:
            values.update(rss_bytes=rss.peak, rss_start_bytes=rss.start, rss_method="sampled")
        self.report = MemoryReport(device=self.device, reasons=reasons, **values)


# -- isolated measurement in a fresh interpreter ----------------------------------------------
_BOOTSTRAP = (
    "import json, sys; spec = json.load(open(sys.argv[1])); sys.path[:] = spec['sys_path']; "
    "from archbench.instrument.memory import _child_main; _child_main(spec)"
)


def measure_isolated(
    fn_path: str,
    kwargs: dict[str, Any] | None = None,
    timeout_s: float = 600,
    device: str | None = None,
    import_torch: bool = True,
) -> dict[str, Any]:
    """Run `package.module:function(**kwargs)` in a fresh subprocess and measure its memory.

    Returns {"status": "ok" | "oom" | "error", "reason": None | why, "result": the function's
    JSON-able return value, "ru_maxrss_bytes": the child's peak RSS (`max_rss_bytes`, restarted
    after the imports where the kernel allows),
    "baseline_rss_bytes": its RSS after Python, torch and the function's module were imported
    and before the call, "baseline_maxrss_bytes": the peak at that moment, "rss_delta_bytes":
    the call's peak RSS above the baseline, "memory": the call's MemoryReport dict, "wall_s"}.
    `device` (default: kwargs["device"], else 'cpu') selects the MemoryReport's views. A child
    killed by a signal, raising, or outliving `timeout_s` gives status oom/error with the reason;
    the child is always gone when this returns.
    """
    if not isinstance(fn_path, str) or fn_path.count(":") != 1:
        raise ConfigError(f"fn_path must look like 'package.module:function', got {fn_path!r}")
    kwargs = dict(kwargs or {})
    device = device or str(kwargs.get("device", "cpu"))
    with tempfile.TemporaryDirectory(prefix="archbench-isolated-") as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        try:
            spec_text = json.dumps(
                {
                    "fn_path": fn_path,
                    "kwargs": kwargs,
                    "device": device,
                    "import_torch": import_torch,
                    "out": str(out_path),
                    "sys_path": [str(p) for p in sys.path],
                }
            )
        except TypeError as exc:
            raise ConfigError(f"measure_isolated kwargs must be JSON-able: {exc}") from exc
        spec_path.write_text(spec_text)
        child = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(spec_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            child.communicate()
            return _failed("error", f"timed out after {timeout_s:g} s (child killed)")
        if out_path.exists():
            return json.loads(out_path.read_text())
        return _failed(*_why_child_died(child.returncode, stderr.decode(errors="replace")))


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _failed(status: str, reason: str) -> dict[str, Any]:
    return {
        "status": status,
        "reason": reason,
        "result": None,
        "ru_maxrss_bytes": None,
        "baseline_rss_bytes": None,
        "baseline_maxrss_bytes": None,
        "rss_delta_bytes": None,
        "memory": None,
        "wall_s": None,
    }


def _why_child_died(returncode: int, stderr: str) -> tuple[str, str]:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else "?"
        if -returncode == signal.SIGKILL:
            return "oom", f"killed by signal {-returncode} ({name}; out of memory?)"
        return "error", f"killed by signal {-returncode} ({name})"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    status = "oom" if "MemoryError" in last or "OutOfMemoryError" in last else "error"
    return status, f"child exited with code {returncode}: {last}"


def _child_main(spec: dict[str, Any]) -> None:
    """The fresh interpreter's side of `measure_isolated`; writes the result JSON atomically."""
    import importlib
    import time

    module_name, fn_name = spec["fn_path"].split(":")
    fn = getattr(importlib.import_module(module_name), fn_name)
    if spec["import_torch"]:
        import torch  # noqa: F401  (so the baseline includes torch for every child alike)

    reset_peak_rss()  # so the peak below is the call's, not the imports'
    baseline_rss, baseline_maxrss = current_rss_bytes(), max_rss_bytes()
    out: dict[str, Any] = {"status": "ok", "reason": None, "result": None}
    probe = PeakMemory(spec["device"])
    started = time.perf_counter()
    try:
        with probe:
            out["result"] = fn(**spec["kwargs"])
    except BaseException as exc:
        out.update(
            status="oom" if is_out_of_memory(exc) else "error",
            reason=f"{type(exc).__name__}: {_last_line(exc)}",
        )
    out["wall_s"] = time.perf_counter() - started
    report = probe.report
    out.update(
        ru_maxrss_bytes=max_rss_bytes(),
        baseline_rss_bytes=baseline_rss,
        baseline_maxrss_bytes=baseline_maxrss,
        rss_delta_bytes=None
        if report is None or report.rss_bytes is None
        else report.rss_bytes - baseline_rss,
        memory=None if report is None else report.to_dict(),
    )
    try:
        text = json.dumps(out)
    except TypeError:
        out.update(status="error", reason="the function's result is not JSON-able", result=None)
        text = json.dumps(out)
    with atomic_path(spec["out"]) as tmp:
        tmp.write_text(text)


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
