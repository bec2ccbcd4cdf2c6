"""DeviceInfo and measured ceilings: honest figures, unavailable ones with reasons."""

from __future__ import annotations

import json
import math
import sys

import pytest
from fake_nvml import UUID_A, FakeGpu, make_fake_nvml

from archbench.instrument.device import gpu, machine
from archbench.instrument.device.machine import MATMUL_DTYPES, device_info, measure_ceilings

GiB = 2**30


@pytest.mark.parametrize(
    ("cap", "native"),
    [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True)],
)
def test_a_onednn_cap_below_bf16_skips_the_bf16_ceiling_and_says_so(monkeypatch, cap, native):
    """Capped below its bf16 kernels, oneDNN emulates a bf16 matmul hundreds of times slower:
    the ceiling is skipped with the cap named, whatever the CPU's flags say."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert (machine._onednn_bf16_cap() is None) is native
    if native:
        return
    assert machine._cpu_has_native_bf16() is False
    _plan, skipped = machine._dtype_plan("cpu")
    assert skipped["bf16"].startswith(f"ONEDNN_MAX_CPU_ISA={cap.upper()} caps oneDNN below")


def test_ceiling_arithmetic_with_planted_timings(monkeypatch):
    """2 n^3 FLOP per GEMM and 2 x buffer bytes per copy, divided by the timed seconds."""
    calls = []

    def fake_time_callable(fn, *, repeats, warmup, device="cpu", disable_gc=True):
        fn()  # the probe's callable must run
        calls.append((repeats, warmup))
        return [0.5, 0.25, 1.0, 0.5, 0.5][:repeats]

    monkeypatch.setattr(machine, "time_callable", fake_time_callable)
    monkeypatch.setattr(machine, "_cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(machine, "last_level_cache_bytes", lambda: 32 * 2**20)
    c = measure_ceilings("cpu", quick=True)
    assert (c.matmul_n, c.copy_bytes) == (2048, 256 * 2**20)
    assert calls == [(5, 1), (5, 1), (20, 3)]  # fp32 GEMM, the copy, the cache read
    assert c.cache_bytes == 32 * 2**20
    assert c.cache_read_bytes_per_s == 16 * 2**20 / 0.5  # half the cache, read once
    assert c.matmul_flops_per_s == 2 * 2048**3 / 0.5  # median of the five rates
    assert c.samples["matmul_fp32"][1] == 2 * 2048**3 / 0.25
    assert c.bandwidth_bytes_per_s == 2 * 256 * 2**20 / 0.5
    assert c.matmul_flops_per_s_by_dtype == {
        "fp32": c.matmul_flops_per_s,
        "tf32": None,
        "bf16": None,
        "fp16": None,
    }
    assert set(c.unavailable) == {"tf32", "bf16", "fp16"}
    assert "no native bf16" in c.unavailable["bf16"]


def test_read_floor_is_the_cache_rate_for_bytes_that_fit_in_cache():
    c = machine.Ceilings(
        device="cpu",
        matmul_flops_per_s=1e11,
        matmul_flops_per_s_by_dtype={"fp32": 1e11},
        bandwidth_bytes_per_s=2e10,
        samples={},
        unavailable={},
        matmul_n=2048,
        copy_bytes=2**28,
        threads=2,
        cache_bytes=32 * 2**20,
        cache_read_bytes_per_s=1e11,
    )
    assert c.read_floor_s(16 * 2**20) == (16 * 2**20 / 1e11, "last-level cache")
    assert c.read_floor_s(64 * 2**20) == (64 * 2**20 / 2e10, "memory bandwidth")
    unknown = machine.Ceilings(**{**c.__dict__, "cache_bytes": None})
    assert unknown.read_floor_s(16 * 2**20)[1] == "memory bandwidth"


def test_last_level_cache_is_the_highest_data_level(tmp_path):
    for index, (level, kind, size) in enumerate(
        [
            (1, "Data", "32K"),
            (1, "Instruction", "32K"),
            (2, "Unified", "1024K"),
            (3, "Unified", "32M"),
        ]
    ):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    assert machine.last_level_cache_bytes(tmp_path) == 32 * 2**20
    assert machine.last_level_cache_bytes(tmp_path / "missing") is None


def test_measure_ceilings_on_this_cpu():
    c = measure_ceilings("cpu", quick=True)
    assert c.device == "cpu"
    assert math.isfinite(c.matmul_flops_per_s)
    assert c.matmul_flops_per_s > 0
    assert c.bandwidth_bytes_per_s > 0
    assert len(c.samples["matmul_fp32"]) == len(c.samples["bandwidth"]) == 5
    assert set(c.matmul_flops_per_s_by_dtype) == set(MATMUL_DTYPES)
    for dtype, value in c.matmul_flops_per_s_by_dtype.items():
        assert (value is None) == (dtype in c.unavailable)
    assert (c.cache_read_bytes_per_s is None) == ("cache_read" in c.unavailable)
    data = json.loads(json.dumps(c.to_dict()))
    assert data["matmul_flops_per_s"] == c.matmul_flops_per_s
    metrics = c.to_metrics()
    assert metrics["matmul_flops_per_s_tf32"].value is None
    assert metrics["matmul_flops_per_s_tf32"].unavailable == c.unavailable["tf32"]
    assert metrics["bandwidth_bytes_per_s"].unit == "B/s"
    assert metrics["matmul_flops_per_s_fp32"].samples == c.samples["matmul_fp32"]


def test_device_info_on_cpu():
    info = device_info("cpu")
    assert info.tier == "cpu"
    assert info.cpu_cores >= 1
    assert info.cpu_model
    assert info.gpu_name is None
    assert info.mig is None
    assert info.reasons["gpu_name"] == "device is cpu"
    assert json.loads(json.dumps(info.to_dict()))["torch_version"] == info.torch_version


def test_device_info_reads_the_gpu_from_nvml(monkeypatch):
    card = FakeGpu(UUID_A, name="NVIDIA A100-SXM4-80GB", total=80 * GiB)
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_nvml([card]))
    monkeypatch.setattr(gpu, "_torch_uuid", lambda index: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    info = device_info("cuda:0")
    assert (info.gpu_name, info.gpu_uuid, info.gpu_memory_bytes) == (card.name, UUID_A, 80 * GiB)
    assert (info.driver_version, info.cuda_driver_version, info.mig) == ("550.54.15", "12.4", False)
    assert info.tier == "a100-80gb"
    assert info.reasons == {}


def test_device_info_without_nvml_says_why(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch fills the GPU fields on a CUDA machine")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    info = device_info("cuda:0")
    assert info.gpu_name is None
    assert info.tier == "unknown"
    assert info.reasons["gpu_name"] == "nvidia-ml-py not installed"


@pytest.mark.gpu
def test_measure_ceilings_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    c = measure_ceilings("cuda:0", quick=True)
    assert c.matmul_flops_per_s > 0
    assert c.bandwidth_bytes_per_s > 0
    assert c.matmul_flops_per_s_by_dtype["fp16"] > 0
    major, _ = torch.cuda.get_device_capability()
    if major >= 8:
        assert c.matmul_flops_per_s_by_dtype["bf16"] > 0
        assert c.matmul_flops_per_s_by_dtype["tf32"] > 0
    info = device_info("cuda:0")
    assert info.gpu_name
    assert info.gpu_memory_bytes > 0


@pytest.mark.parametrize(
    ("capability", "measured"),
    [((9, 0), {"fp32", "tf32", "bf16", "fp16"}), ((7, 0), {"fp32", "fp16"})],
)
def test_gpu_precisions_follow_compute_capability(monkeypatch, capability, measured):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    plan, unavailable = machine._dtype_plan("cuda:0")
    assert set(plan) == measured
    assert set(unavailable) == set(MATMUL_DTYPES) - measured
    if capability < (8, 0):
        assert unavailable["bf16"] == "bf16 needs compute capability 8.0+ (this GPU: 7.0)"
