"""Everything that talks to NVML (through `pynvml`) or to CUDA directly lives here.

The rest of the package asks this module for facts and peaks and gets `None` plus a reason
when there is no driver, no GPU, MIG, or a process list it cannot see.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from ppo_core.device import Device, cuda_index, cuda_synchronize
from ppo_core.errors import ConfigError

__all__ = [
    "NvmlSampler",
    "allocator_peaks",
    "allocator_reset_peak",
    "cuda_available",
    "cuda_index",
    "cuda_synchronize",
    "gpu_facts",
    "nvml_available",
    "nvml_handle_for_torch_device",
    "nvml_session",
    "start_cuda_events",
    "stop_cuda_events",
    "with_memory",
]

_refcount_lock = threading.Lock()
_refcount = 0
_NO_DRIVER = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
# CUDA's pre-R470 MIG form: MIG-GPU-<gpu uuid>/<gpu instance id>/<compute instance id>
_OLD_MIG = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)$")


def _pynvml() -> Any:
    import pynvml  # tests put a fake module in sys.modules["pynvml"]

    return pynvml


def _is(nvml: Any, exc: BaseException, *names: str) -> bool:
    classes = tuple(getattr(nvml, n) for n in names if isinstance(getattr(nvml, n, None), type))
    return bool(classes) and isinstance(exc, classes)


@contextmanager
def nvml_session() -> Iterator[Any]:
    """Yield the initialised `pynvml` module; one process-wide nvmlInit/nvmlShutdown pair.

    Nested and concurrent sessions share one initialisation (a refcount), so a sampler that
    ends never shuts NVML down under another one that is still running.
    """
    global _refcount
    nvml = _pynvml()
    with _refcount_lock:
        if _refcount == 0:
            nvml.nvmlInit()
        _refcount += 1
    try:
        yield nvml
    finally:
        with _refcount_lock:
            _refcount -= 1
            if _refcount == 0:
                try:
                    nvml.nvmlShutdown()
                except nvml.NVMLError:
                    pass  # nothing useful to do: the session's figures are already taken


@contextmanager
def _checked_session() -> Iterator[tuple[Any, str | None]]:
    """Yield (initialised pynvml, None), or (None, why NVML cannot be used here)."""
    try:
        nvml = _pynvml()
    except ImportError:
        yield None, "nvidia-ml-py not installed"
        return
    session = nvml_session()
    try:
        session.__enter__()
    except nvml.NVMLError as exc:
        yield None, "no NVIDIA driver" if _is(nvml, exc, *_NO_DRIVER) else f"NVML failed: {exc}"
        return
    try:
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            yield None, f"NVML failed: {exc}"
            return
        yield (nvml, None) if count > 0 else (None, "no NVIDIA GPU")
    finally:
        session.__exit__(None, None, None)


def nvml_available() -> tuple[bool, str]:
    """(True, '') when NVML answers and sees a GPU; else (False, why)."""
    with _checked_session() as (nvml, why):
        return nvml is not None, why or ""


def cuda_available() -> bool:
    """torch sees a CUDA device (False on a CPU build or without a driver)."""
    import torch

    return torch.cuda.is_available()


def _torch_uuid(index: int) -> str | None:
    """The UUID CUDA reports for this ordinal (no 'GPU-'/'MIG-' prefix), if torch knows it."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except (ImportError, RuntimeError, AssertionError):
        return None
    return str(uuid) if uuid else None


def _uuid(nvml: Any, handle: Any) -> str:
    value = nvml.nvmlDeviceGetUUID(handle)
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_children(nvml: Any, parent: Any) -> Iterator[Any]:
    try:
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(parent)
    except nvml.NVMLError:
        return
    for slot in range(slots):
        try:
            yield nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except nvml.NVMLError:
            continue  # an empty slot


def _all_handles(nvml: Any) -> Iterator[Any]:
    for index in range(nvml.nvmlDeviceGetCount()):
        parent = nvml.nvmlDeviceGetHandleByIndex(index)
        yield parent
        yield from _mig_children(nvml, parent)


def _handle_for_entry(nvml: Any, entry: str) -> Any:
    """One CUDA_VISIBLE_DEVICES entry (index, GPU UUID or prefix, MIG id) -> NVML handle."""
    if entry.isdigit():
        # NVML numbers GPUs in PCI bus order; this matches CUDA's order only under
        # CUDA_DEVICE_ORDER=PCI_BUS_ID or on one GPU, which is why the UUID path comes first.
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    try:
        return nvml.nvmlDeviceGetHandleByUUID(entry)
    except nvml.NVMLError:
        pass
    old = _OLD_MIG.match(entry)
    if old:
        parent = nvml.nvmlDeviceGetHandleByUUID(old.group(1))
        for child in _mig_children(nvml, parent):
            ids = (
                nvml.nvmlDeviceGetGpuInstanceId(child),
                nvml.nvmlDeviceGetComputeInstanceId(child),
            )
            if ids == (int(old.group(2)), int(old.group(3))):
                return child
        raise ConfigError(f"CUDA_VISIBLE_DEVICES entry {entry!r}: no such MIG instance on NVML")
    # CUDA accepts any unique UUID prefix ("GPU-8932f937").
    matches = [h for h in _all_handles(nvml) if _uuid(nvml, h).startswith(entry)]
    if len(matches) != 1:
        found = "no device" if not matches else f"{len(matches)} devices"
        raise ConfigError(f"CUDA_VISIBLE_DEVICES entry {entry!r} matches {found} in NVML")
    return matches[0]


def _visible_entries(visible: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: the list ends at the first entry it rejects,
    and a repeated entry hides every device."""
    kind = next((k for k in ("GPU-", "MIG-") if visible.strip().startswith(k)), None)
    entries: list[str] = []
    for item in (item.strip() for item in visible.split(",")):
        index = re.match(r"\d+", item)
        if not (item.startswith(kind) if kind else index):
            break
        entry = item if kind else index.group()
        if entry in entries:
            return []
        entries.append(entry)
    return entries


def nvml_handle_for_torch_device(device: Any, torch_uuid: str | None = None) -> Any:
    """The NVML handle of torch's `device`, found by UUID; call inside `nvml_session()`.

    torch's own UUID for the ordinal is tried first (as 'GPU-...' then 'MIG-...'); without it
    the ordinal is looked up in CUDA_VISIBLE_DEVICES, whose entries may be indices, UUIDs
    (or unique prefixes) or MIG ids, old ('MIG-GPU-<uuid>/gi/ci') or new ('MIG-<uuid>').
    """
    nvml = _pynvml()
    index = cuda_index(device)
    uuid = torch_uuid if torch_uuid is not None else _torch_uuid(index)
    if uuid:
        bare = uuid.removeprefix("GPU-").removeprefix("MIG-")
        for candidate in (f"GPU-{bare}", f"MIG-{bare}"):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(candidate)
            except nvml.NVMLError:
                continue
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return _handle_for_entry(nvml, str(index))
    entries = _visible_entries(visible)
    if index >= len(entries):
        raise ConfigError(
            f"device cuda:{index} does not exist: CUDA_VISIBLE_DEVICES={visible!r} "
            f"makes {len(entries)} device(s) visible"
        )
    return _handle_for_entry(nvml, entries[index])


def _mig_state(nvml: Any, handle: Any) -> tuple[bool, bool]:
    """(handle is a MIG instance, handle is a whole GPU with MIG mode on)."""
    try:
        if int(getattr(nvml.nvmlDeviceIsMigDeviceHandle(handle), "value", 0) or 0):
            return True, False
    except nvml.NVMLError:
        pass
    try:
        current = nvml.nvmlDeviceGetMigMode(handle)[0]
    except nvml.NVMLError:
        return False, False  # pre-Ampere GPUs do not support MIG at all
    return False, current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)


def gpu_facts(device: Any = "cuda:0") -> dict[str, Any]:
    """Name, UUID, memory, driver and MIG state of `device` from NVML; 'reason' when not."""
    facts: dict[str, Any] = {
        "name": None,
        "uuid": None,
        "memory_bytes": None,
        "driver_version": None,
        "cuda_driver_version": None,
        "mig": None,
        "reason": None,
    }
    with _checked_session() as (nvml, why):
        if nvml is None:
            facts["reason"] = why
            return facts
        try:
            handle = nvml_handle_for_torch_device(device)
            facts["name"] = _text(nvml.nvmlDeviceGetName(handle))
            facts["uuid"] = _uuid(nvml, handle)
            facts["memory_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
            facts["driver_version"] = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
            facts["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
            instance, whole_gpu_mig = _mig_state(nvml, handle)
            facts["mig"] = instance or whole_gpu_mig
        except (nvml.NVMLError, ConfigError) as exc:
            facts["reason"] = f"NVML could not describe {device}: {exc}"
    return facts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Unavailable(Exception):
    """A view cannot be measured on this device (the message says why)."""


class NvmlSampler:
    """Peak device and per-process GPU memory over a `with` region, polled every 10 ms.

    After the region: `device_used_peak_bytes` / `process_used_peak_bytes` (None when the view
    is unavailable; `reasons[view]` says why), the values at the start, `memory_info_version`
    ('v2': used excludes driver-reserved memory; 'v1' on drivers without it), `n_samples`
    and `error` (a failure mid-region; the partial peak is then dropped, not reported).
    """

    def __init__(self, device: Any = "cuda:0", interval_s: float = 0.01) -> None:
        if not interval_s > 0:
            raise ConfigError(f"NvmlSampler.interval_s must be positive, got {interval_s!r}")
        self.device = device
        self.interval_s = float(interval_s)
        self.device_used_peak_bytes: int | None = None
        self.device_used_start_bytes: int | None = None
        self.process_used_peak_bytes: int | None = None
        self.process_used_start_bytes: int | None = None
        self.memory_info_version: str | None = None
        self.n_samples = 0
        self.error: str | None = None
        self.reasons: dict[str, str] = {}
        self._stack = ExitStack()
        self._nvml: Any = None
        self._handle: Any = None
        self._per_process = True
        self._process_seen = False
        self._process_none = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- region ------------------------------------------------------------------------------
    def __enter__(self) -> NvmlSampler:
        self._stack = ExitStack()
        nvml, why = self._stack.enter_context(_checked_session())
        if nvml is None:
            self._unavailable(why)
            self._stack.close()
            return self
        self._nvml = nvml
        try:
            self._handle = nvml_handle_for_torch_device(self.device)
            instance, whole_gpu_mig = _mig_state(nvml, self._handle)
            if whole_gpu_mig:
                raise _Unavailable(
                    "MIG is on for this GPU but the process's MIG instance was not identified; "
                    "whole-GPU memory would include other instances"
                )
            if instance:
                self._per_process = False
                self.reasons["process_used"] = (
                    "MIG instance: NVML does not report per-process memory under MIG"
                )
            self._sample()
        except (nvml.NVMLError, ConfigError) as exc:
            self._unavailable(f"NVML failed at the start of the region: {exc}")
        except _Unavailable as exc:
            self._unavailable(str(exc))
        else:
            self.device_used_start_bytes = self.device_used_peak_bytes
            self.process_used_start_bytes = self.process_used_peak_bytes
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
            return self
        self._stack.close()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                self.error = self.error or "NVML sampler thread did not stop within 10 s"
            self._thread = None
            if self.error is None:
                try:
                    self._sample()  # the region's last state, after the final kernels
                except self._nvml.NVMLError as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
            self._stack.close()
            if self.error is not None:
                self._unavailable(
                    f"NVML sampling failed mid-region ({self.error}); peak incomplete"
                )
            elif self._per_process and "process_used" not in self.reasons:
                if self._process_none:
                    self._drop_process("NVML reports usedGpuMemory=None for this process")
                elif not self._process_seen:
                    self._drop_process(
                        f"this process (pid {os.getpid()}) is not in NVML's process list "
                        "(a container's PID namespace, or no CUDA context yet)"
                    )

    # -- internals ---------------------------------------------------------------------------
    def _unavailable(self, why: str) -> None:
        self.device_used_peak_bytes = self.device_used_start_bytes = None
        self.reasons["device_used"] = why
        self._drop_process(why)

    def _drop_process(self, why: str) -> None:
        self.process_used_peak_bytes = self.process_used_start_bytes = None
        self.reasons.setdefault("process_used", why)

    def _memory_info(self) -> Any:
        """nvmlDeviceGetMemoryInfo, v2 struct where the driver has it (chosen on first use)."""
        nvml, version = self._nvml, getattr(self._nvml, "nvmlMemory_v2", None)
        if self.memory_info_version is None:
            if version is not None:
                try:
                    info = nvml.nvmlDeviceGetMemoryInfo(self._handle, version=version)
                    self.memory_info_version = "v2"
                    return info
                except (nvml.NVMLError, TypeError):
                    pass  # a driver or binding without the v2 struct
            self.memory_info_version = "v1"
        if self.memory_info_version == "v2":
            return nvml.nvmlDeviceGetMemoryInfo(self._handle, version=version)
        return nvml.nvmlDeviceGetMemoryInfo(self._handle)

    def _sample(self) -> None:
        nvml = self._nvml
        info = self._memory_info()
        used = int(info.used)
        self.device_used_peak_bytes = max(used, self.device_used_peak_bytes or 0)
        self.n_samples += 1
        if not self._per_process:
            return
        try:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except nvml.NVMLError as exc:
            self._per_process = False
            self._drop_process(f"NVML cannot list processes on this device: {exc}")
            return
        pid = os.getpid()
        for process in processes:
            if process.pid != pid:
                continue
            self._process_seen = True
            if process.usedGpuMemory is None:
                self._process_none = True
            else:
                mine = int(process.usedGpuMemory)
                self.process_used_peak_bytes = max(mine, self.process_used_peak_bytes or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as exc:  # the thread must end, and say why, on any failure
                self.error = f"{type(exc).__name__}: {exc}"
                return


# -- CUDA: events, synchronisation, allocator -------------------------------------------------
def start_cuda_events(device: Any) -> tuple[Any, Any]:
    """A (start, end) pair of timing events, start recorded now on `device`'s current stream."""
    import torch

    with torch.cuda.device(device):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
    return start, end


def stop_cuda_events(device: Any, events: tuple[Any, Any]) -> float:
    """Record the end event, wait for it, and return the seconds between the two."""
    import torch

    start, end = events
    with torch.cuda.device(device):
        end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def allocator_reset_peak(device: Any) -> tuple[int, int]:
    """Reset torch's peak counters on `device`; return (allocated, reserved) bytes now."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)


def allocator_peaks(device: Any) -> tuple[int, int]:
    """(max_memory_allocated, max_memory_reserved) bytes since the last reset."""
    import torch

    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def with_memory(device: Device) -> Device:
    """`device` with NVML's memory total where torch reported none (a GPU only)."""
    if not device.is_cuda or device.memory_gib:
        return device
    memory = gpu_facts(device.device)["memory_bytes"]
    return dataclasses.replace(device, memory_gib=memory / 2**30 if memory else None)
