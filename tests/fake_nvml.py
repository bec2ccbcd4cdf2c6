"""A small fake of the pynvml functions archbench.instrument.device.gpu calls, for GPU-less tests.

`make_fake_nvml([FakeGpu(...), ...])` returns a module object to put in sys.modules["pynvml"].
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

GiB = 2**30


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA A100-SXM4-80GB"
    total: int = 80 * GiB
    used: list[int] = field(default_factory=lambda: [GiB])
    """Device used bytes, one per memory-info call; the last value repeats."""
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    mig_mode: int = 0
    mig_children: list[FakeGpu] = field(default_factory=list)
    is_mig: bool = False
    instance_ids: tuple[int, int] = (0, 0)
    calls: int = 0


def make_fake_nvml(gpus, init_error=None, fail_after=None, no_v2=False):
    """A module with pynvml's names; `fail_after` memory-info calls, the next raises."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    for name in ("LibraryNotFound", "DriverNotLoaded", "NotFound", "NotSupported"):
        setattr(nvml, f"NVMLError_{name}", type(f"NVMLError_{name}", (NVMLError,), {}))
    nvml.NVMLError_FunctionNotFound = type("NVMLError_FunctionNotFound", (NVMLError,), {})
    nvml.NVMLError = NVMLError
    nvml.NVML_DEVICE_MIG_ENABLE = 1
    nvml.nvmlMemory_v2 = 0x02000028
    nvml.counts = {"init": 0, "shutdown": 0}
    every = [g for top in gpus for g in (top, *top.mig_children)]

    def init():
        if init_error is not None:
            raise init_error(nvml)
        nvml.counts["init"] += 1

    def shutdown():
        nvml.counts["shutdown"] += 1

    def by_uuid(uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for g in every:
            if g.uuid == uuid:
                return g
        raise nvml.NVMLError_NotFound()

    def by_index(index):
        if not 0 <= index < len(gpus):
            raise nvml.NVMLError_NotFound()
        return gpus[index]

    def memory_info(handle, version=None):
        if version is not None and no_v2:
            raise nvml.NVMLError_FunctionNotFound()
        handle.calls += 1
        if fail_after is not None and handle.calls > fail_after:
            raise nvml.NVMLError_NotSupported("GPU is lost")
        used = handle.used[min(handle.calls - 1, len(handle.used) - 1)]
        return types.SimpleNamespace(total=handle.total, used=used, free=handle.total - used)

    def processes(handle):
        return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in handle.processes]

    def mig_mode(handle):
        if handle.is_mig:
            raise nvml.NVMLError_NotSupported()
        return [handle.mig_mode, handle.mig_mode]

    def mig_child(handle, slot):
        if slot >= len(handle.mig_children):
            raise nvml.NVMLError_NotFound()
        return handle.mig_children[slot]

    nvml.nvmlInit, nvml.nvmlShutdown = init, shutdown
    nvml.nvmlDeviceGetCount = lambda: len(gpus)
    nvml.nvmlDeviceGetHandleByIndex = by_index
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetUUID = lambda h: h.uuid
    nvml.nvmlDeviceGetName = lambda h: h.name
    nvml.nvmlDeviceGetMemoryInfo = memory_info
    nvml.nvmlDeviceGetComputeRunningProcesses = processes
    nvml.nvmlDeviceGetMigMode = mig_mode
    nvml.nvmlDeviceIsMigDeviceHandle = lambda h: types.SimpleNamespace(value=int(h.is_mig))
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7 if h.mig_mode else 0
    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_child
    nvml.nvmlDeviceGetGpuInstanceId = lambda h: h.instance_ids[0]
    nvml.nvmlDeviceGetComputeInstanceId = lambda h: h.instance_ids[1]
    nvml.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    nvml.nvmlSystemGetCudaDriverVersion = lambda: 12040
    return nvml


UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"
UUID_MIG = "MIG-cccccccc-1111-2222-3333-444444444444"
