"""The NVML code against a small fake of the pynvml functions it calls (no GPU needed)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from fake_nvml import UUID_A, UUID_B, UUID_MIG, FakeGpu, GiB, make_fake_nvml

from archbench.instrument.device import gpu
from ppo_core.errors import ConfigError


@pytest.fixture
def install(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu, "_torch_uuid", lambda index: None)  # the fake is the only truth

    def _install(*gpus, **options):
        fake = make_fake_nvml(list(gpus), **options)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return _install


def two_gpus():
    return FakeGpu(UUID_A, name="GPU A"), FakeGpu(UUID_B, name="GPU B")


def mig_gpu():
    child = FakeGpu(UUID_MIG, name="A100 MIG 3g.40gb", total=40 * GiB, is_mig=True)
    child.instance_ids = (1, 0)
    return FakeGpu(UUID_A, mig_mode=1, mig_children=[child]), child


# -- availability -------------------------------------------------------------------------------
def test_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert gpu.nvml_available() == (False, "nvidia-ml-py not installed")


@pytest.mark.parametrize("error", ["NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded"])
def test_without_a_driver(install, error):
    install(FakeGpu(UUID_A), init_error=lambda nvml: getattr(nvml, error)())
    assert gpu.nvml_available() == (False, "no NVIDIA driver")
    with gpu.NvmlSampler("cuda:0") as sampler:
        pass
    assert sampler.device_used_peak_bytes is None
    assert sampler.process_used_peak_bytes is None
    assert sampler.reasons == {
        "device_used": "no NVIDIA driver",
        "process_used": "no NVIDIA driver",
    }


def test_without_a_gpu(install):
    fake = install()
    assert gpu.nvml_available() == (False, "no NVIDIA GPU")
    assert fake.counts == {"init": 1, "shutdown": 1}
    assert gpu.gpu_facts("cuda:0")["reason"] == "no NVIDIA GPU"


def test_available_with_a_gpu(install):
    install(FakeGpu(UUID_A))
    assert gpu.nvml_available() == (True, "")


# -- torch device -> NVML handle ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("visible", "device", "expected"),
    [
        (None, "cuda:1", UUID_B),
        ("1,0", "cuda:0", UUID_B),
        ("1", "cuda:0", UUID_B),
        (f"{UUID_B},{UUID_A}", "cuda:1", UUID_A),
        ("GPU-bbbb", "cuda:0", UUID_B),  # CUDA accepts a unique UUID prefix
    ],
)
def test_handle_follows_cuda_visible_devices(install, monkeypatch, visible, device, expected):
    install(*two_gpus())
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with gpu.nvml_session() as nvml:
        handle = gpu.nvml_handle_for_torch_device(device)
        assert nvml.nvmlDeviceGetUUID(handle) == expected


@pytest.mark.parametrize("visible", [UUID_MIG, f"MIG-{UUID_A}/1/0"], ids=["new", "old-form"])
def test_handle_for_mig_ids(install, monkeypatch, visible):
    parent, child = mig_gpu()
    install(parent)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with gpu.nvml_session():
        assert gpu.nvml_handle_for_torch_device("cuda:0") is child


def test_handle_prefers_torch_uuid(install, monkeypatch):
    install(*two_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # ignored: torch's UUID is exact
    with gpu.nvml_session():
        handle = gpu.nvml_handle_for_torch_device("cuda:0", torch_uuid=UUID_B[4:])
    assert handle.uuid == UUID_B


@pytest.mark.parametrize(
    ("visible", "device", "message"),
    [
        ("0", "cuda:1", "makes 1 device"),
        ("1,-1,0", "cuda:1", "makes 1 device"),  # CUDA stops reading at an invalid entry
        ("0,0", "cuda:0", "makes 0 device"),  # a repeated entry hides every device
        ("GPU-", "cuda:0", "matches 2 devices"),
        ("GPU-zz", "cuda:0", "matches no device"),
    ],
)
def test_handle_errors_name_the_problem(install, monkeypatch, visible, device, message):
    install(*two_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with gpu.nvml_session(), pytest.raises(ConfigError, match=message):
        gpu.nvml_handle_for_torch_device(device)


# -- sampler ------------------------------------------------------------------------------------
def run_region(seconds=0.1, device="cuda:0"):
    with gpu.NvmlSampler(device, interval_s=0.002) as sampler:
        time.sleep(seconds)
    return sampler


def test_sampler_records_peaks_and_start(install):
    me = os.getpid()
    card = FakeGpu(UUID_A, used=[2 * GiB, 5 * GiB, 3 * GiB], processes=[(me, GiB), (1, 9 * GiB)])
    fake = install(card)
    sampler = run_region()
    assert sampler.device_used_start_bytes == 2 * GiB
    assert sampler.device_used_peak_bytes == 5 * GiB
    assert sampler.process_used_peak_bytes == GiB  # only this pid's entry counts
    assert sampler.memory_info_version == "v2"
    assert sampler.n_samples >= 3
    assert sampler.reasons == {}
    assert sampler.error is None
    assert fake.counts["init"] == fake.counts["shutdown"]


def test_sampler_falls_back_to_memory_info_v1(install):
    install(FakeGpu(UUID_A, processes=[(os.getpid(), GiB)]), no_v2=True)
    assert run_region(0.01).memory_info_version == "v1"


def test_per_process_memory_none(install):
    install(FakeGpu(UUID_A, processes=[(os.getpid(), None)]))
    sampler = run_region(0.02)
    assert sampler.device_used_peak_bytes == GiB
    assert sampler.process_used_peak_bytes is None
    assert "usedGpuMemory=None" in sampler.reasons["process_used"]


def test_process_list_without_this_process(install):
    install(FakeGpu(UUID_A, processes=[(1, GiB)]))
    sampler = run_region(0.02)
    assert sampler.process_used_peak_bytes is None
    assert "not in NVML's process list" in sampler.reasons["process_used"]


def test_mig_instance_has_no_per_process_view(install, monkeypatch):
    parent, child = mig_gpu()
    child.processes = [(os.getpid(), GiB)]
    install(parent)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUID_MIG)
    sampler = run_region(0.02)
    assert sampler.device_used_peak_bytes == GiB  # the instance's own memory
    assert sampler.process_used_peak_bytes is None
    assert "MIG" in sampler.reasons["process_used"]


def test_mig_gpu_without_an_instance_is_unavailable(install):
    parent, _ = mig_gpu()
    install(parent)
    sampler = run_region(0.01)
    assert sampler.device_used_peak_bytes is None
    assert "MIG" in sampler.reasons["device_used"]


def test_sampler_error_mid_region_stops_the_thread(install):
    fake = install(FakeGpu(UUID_A, processes=[(os.getpid(), GiB)]), fail_after=4)
    sampler = run_region(0.1)
    assert "GPU is lost" in sampler.error
    assert sampler.device_used_peak_bytes is None  # a partial peak is not reported
    assert "failed mid-region" in sampler.reasons["device_used"]
    assert not [t for t in threading.enumerate() if t.name == "nvml-sampler"]
    assert fake.counts["init"] == fake.counts["shutdown"] == 1


def test_sampler_stops_when_the_region_raises(install):
    fake = install(FakeGpu(UUID_A))
    with pytest.raises(RuntimeError), gpu.NvmlSampler("cuda:0", interval_s=0.002):
        raise RuntimeError("region failed")
    assert not [t for t in threading.enumerate() if t.name == "nvml-sampler"]
    assert fake.counts["shutdown"] == 1


def test_nested_samplers_share_one_nvml_init(install):
    fake = install(FakeGpu(UUID_A, processes=[(os.getpid(), GiB)]))
    with gpu.NvmlSampler("cuda:0", interval_s=0.002):
        with gpu.NvmlSampler("cuda:0", interval_s=0.002):
            time.sleep(0.01)
        assert fake.counts["shutdown"] == 0  # the outer region still holds NVML
    assert fake.counts == {"init": 1, "shutdown": 1}


# -- facts --------------------------------------------------------------------------------------
def test_gpu_facts(install):
    install(FakeGpu(UUID_A, name="NVIDIA H100 80GB HBM3"))
    facts = gpu.gpu_facts("cuda:0")
    assert facts == {
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": UUID_A,
        "memory_bytes": 80 * GiB,
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "mig": False,
        "reason": None,
    }
