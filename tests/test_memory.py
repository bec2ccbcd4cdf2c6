"""Memory probes see a known allocation; isolated runs report deaths, never hang."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import psutil
import pytest

from archbench.instrument.memory import VIEWS, MemoryReport, PeakMemory, measure_isolated
from ppo_core.errors import ConfigError

MiB = 2**20
GiB = 2**30
KNOWN = 512 * MiB


# Module-level functions the isolated child imports by "module:function"; this module
# imports torch only inside the GPU test, so the children start quickly.
def touch_bytes(n_bytes: int) -> int:
    block = np.ones(n_bytes // 8, dtype=np.float64)  # np.ones writes every page
    return int(block.nbytes)


def raise_planted() -> None:
    raise ValueError("planted failure\nthe last line says what went wrong")


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_long(pid_file: str) -> None:
    with open(pid_file, "w") as f:  # noqa: PTH123
        f.write(str(os.getpid()))
    time.sleep(60)


def not_json() -> object:
    return object()


def test_peak_memory_sees_a_512_mib_allocation():
    with PeakMemory("cpu") as probe:
        block = np.ones(KNOWN // 8)
        time.sleep(0.05)  # the sampler's interval is 10 ms
    del block
    report = probe.report
    assert report.delta_bytes("rss") == pytest.approx(KNOWN, rel=0.10)
    assert report.rss_method in ("hwm", "sampled")


def test_peak_memory_on_cpu_labels_the_gpu_views_unavailable():
    with PeakMemory("cpu") as probe:
        pass
    report = probe.report
    for view in ("device_used", "process_used", "allocated", "reserved"):
        assert getattr(report, f"{view}_bytes") is None
        assert report.reasons[view] == "device is cpu"
    assert report.rss_bytes > 0
    assert "rss" not in report.reasons


def test_sampler_thread_is_gone_after_the_region():
    with pytest.raises(KeyError), PeakMemory("cpu"):
        raise KeyError("inside")
    import threading

    assert not [t for t in threading.enumerate() if t.name == "rss-sampler"]


def test_memory_report_round_trips_and_rejects_unknown_views():
    report = MemoryReport(device="cpu", rss_bytes=300, rss_start_bytes=100, reasons={"x": "y"})
    data = json.loads(json.dumps(report.to_dict()))
    assert MemoryReport.from_dict(data) == report
    assert report.delta_bytes("rss") == 200
    assert report.delta_bytes("allocated") is None
    assert set(VIEWS) == {"device_used", "process_used", "allocated", "reserved", "rss"}
    with pytest.raises(ValueError, match="unknown memory view"):
        report.delta_bytes("vram")


def test_isolated_peak_does_not_inherit_a_large_parents_peak():
    """subprocess starts the child by vfork + exec, which carries the parent's peak into
    ru_maxrss; the child's own high-water mark must not see this 1 GiB."""
    parent_block = np.ones(GiB // 8)
    out = measure_isolated(f"{__name__}:touch_bytes", {"n_bytes": 64 * MiB}, timeout_s=120)
    assert out["status"] == "ok", out["reason"]
    peak = out["ru_maxrss_bytes"] - out["baseline_rss_bytes"]
    assert peak == pytest.approx(64 * MiB, rel=0.25)
    del parent_block


def test_isolated_run_reports_the_allocation_above_its_baseline():
    out = measure_isolated(f"{__name__}:touch_bytes", {"n_bytes": KNOWN}, timeout_s=120)
    assert out["status"] == "ok", out["reason"]
    assert out["result"] == KNOWN
    assert out["ru_maxrss_bytes"] - out["baseline_rss_bytes"] == pytest.approx(KNOWN, rel=0.10)
    assert out["rss_delta_bytes"] == pytest.approx(KNOWN, rel=0.10)
    # the baseline is a fresh interpreter with torch imported, not this process
    assert 50 * MiB < out["baseline_rss_bytes"] < 2048 * MiB
    assert out["memory"]["reasons"]["allocated"] == "device is cpu"


def test_isolated_run_gives_the_exception_last_line():
    out = measure_isolated(f"{__name__}:raise_planted", {}, import_torch=False)
    assert out["status"] == "error"
    assert out["reason"] == "ValueError: the last line says what went wrong"
    assert out["result"] is None


def test_isolated_child_killed_by_sigkill_is_reported_as_oom():
    out = measure_isolated(f"{__name__}:kill_self", {}, import_torch=False)
    assert out["status"] == "oom"
    assert out["reason"] == "killed by signal 9 (SIGKILL; out of memory?)"
    assert out["ru_maxrss_bytes"] is None


def test_isolated_timeout_kills_the_child(tmp_path):
    pid_file = tmp_path / "pid"
    out = measure_isolated(
        f"{__name__}:sleep_long", {"pid_file": str(pid_file)}, timeout_s=3, import_torch=False
    )
    assert out["status"] == "error"
    assert out["reason"].startswith("timed out after 3 s")
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid)


def test_isolated_missing_module_and_bad_results_are_errors():
    out = measure_isolated("no_such_module_xyz:fn", {}, import_torch=False)
    assert out["status"] == "error"
    assert "ModuleNotFoundError" in out["reason"]
    out = measure_isolated(f"{__name__}:not_json", {}, import_torch=False)
    assert out["status"] == "error"
    assert out["reason"] == "the function's result is not JSON-able"


def test_isolated_rejects_bad_arguments():
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        measure_isolated("no_colon", {})
    with pytest.raises(ConfigError, match="JSON-able"):
        measure_isolated(f"{__name__}:touch_bytes", {"n_bytes": object()})


@pytest.mark.gpu
def test_allocator_and_nvml_see_a_256_mib_cuda_tensor():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.zeros(1, device="cuda")  # the CUDA context exists before the region
    with PeakMemory("cuda:0") as probe:
        block = torch.ones(256 * MiB // 4, device="cuda")
        torch.cuda.synchronize()
        time.sleep(0.1)
    del block
    report = probe.report
    assert report.delta_bytes("allocated") == pytest.approx(256 * MiB, rel=0.02)
    assert report.reserved_bytes >= report.allocated_bytes
    if report.device_used_bytes is not None:
        assert report.delta_bytes("device_used") >= 0.9 * 256 * MiB
    else:
        assert report.reasons["device_used"]
    if report.process_used_bytes is not None:
        assert report.delta_bytes("process_used") >= 0.9 * 256 * MiB
    else:
        assert report.reasons["process_used"]


def test_peak_memory_on_cuda_combines_allocator_and_nvml_views(monkeypatch):
    """The CUDA wiring, with torch's allocator calls and NVML faked (runs without a GPU)."""
    from fake_nvml import UUID_A, FakeGpu, GiB, make_fake_nvml

    from archbench.instrument.device import gpu

    card = FakeGpu(UUID_A, used=[GiB, 3 * GiB], processes=[(os.getpid(), 2 * GiB)])
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml([card]))
    monkeypatch.setattr(gpu, "_torch_uuid", lambda index: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "allocator_reset_peak", lambda device: (100 * MiB, 200 * MiB))
    monkeypatch.setattr(gpu, "allocator_peaks", lambda device: (612 * MiB, 800 * MiB))
    with PeakMemory("cuda:0", interval_s=0.002) as probe:
        time.sleep(0.02)
    report = probe.report
    assert report.delta_bytes("allocated") == 512 * MiB
    assert (report.reserved_start_bytes, report.reserved_bytes) == (200 * MiB, 800 * MiB)
    assert (report.device_used_start_bytes, report.device_used_bytes) == (GiB, 3 * GiB)
    assert report.process_used_bytes == 2 * GiB
    assert report.nvml_memory_info == "v2"
    assert report.reasons == {}


def test_training_workload_peak_leaves_out_data_preparation():
    """The memory suite's workload: its training figure starts after the data is prepared."""
    kwargs = {
        "hidden_dims": [16],
        "n_envs": 2,
        "n_steps": 8,
        "minibatch": 8,
        "iterations": 1,
        "device": "cpu",
        "bars": 1500,
    }
    out = measure_isolated("archbench.instrument.workloads:training_setup", kwargs, timeout_s=300)
    assert out["status"] == "ok", out["reason"]
    result = out["result"]
    assert result["train_rss_reason"] is None
    assert result["train_rss_method"] in ("hwm", "sampled")
    # A CPU env reads the prepared (n_bars, n_features) float32 array in place.
    assert result["train_rss_data_bytes"] > 0
    assert result["train_rss_data_bytes"] % (result["n_bars"] * 4) == 0
    assert (
        0
        < result["train_rss_delta_bytes"]
        <= out["rss_delta_bytes"] + result["train_rss_data_bytes"]
    )
