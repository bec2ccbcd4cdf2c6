"""The known-GPU table: loose name matching, ambiguity, dense rates and their sources."""

import pytest

from archbench.instrument.device.datasheets import (
    GPUS,
    PRECISIONS,
    GpuSpec,
    custom_spec,
    find_gpu,
    known_names,
)
from ppo_core.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a100-80gb", "A100-80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-40GB"),
        ("A100 80GB PCIe", "A100-80GB"),
        ("h100", "H100-80GB"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H200", "H200"),
        ("Tesla T4", "T4"),
        ("t4", "T4"),
        ("rtx4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "RTX 3090"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10G", "A10G"),
    ],
)
def test_loose_names_match_their_entry(name, expected):
    assert find_gpu(name).name == expected


@pytest.mark.parametrize(
    "name",
    ["NVIDIA L40S", "NVIDIA A10", "Radeon RX 7900", "gpu", "", "NVIDIA H100 80GB HBM3 MIG 3g.40gb"],
)
def test_other_cards_match_nothing(name):
    # L40S must not match L4, nor A10 the A10G: a model token matches only as a whole word.
    # A MIG slice is not the full card: its rates are a fraction of the datasheet's.
    assert find_gpu(name) is None


def test_a100_without_a_size_is_ambiguous_until_memory_says_which():
    with pytest.raises(ConfigError, match=r"ambiguous.*A100-40GB or A100-80GB.*--vram-gb"):
        find_gpu("NVIDIA A100")
    # A detected device's memory (a little under the datasheet's) picks the nearest capacity.
    assert find_gpu("NVIDIA A100", memory_gib=39.4).name == "A100-40GB"
    assert find_gpu("NVIDIA A100", memory_gib=79.2).name == "A100-80GB"


def test_every_entry_states_its_source_and_dense_rates():
    for spec in GPUS:
        assert spec.source, spec.name
        assert spec.variant, spec.name
        assert spec.fp32_tflops is not None
        assert spec.bandwidth_gbs is not None
        # Tensor-core rates are at least the CUDA-core fp32 rate, and bf16 doubles tf32.
        if spec.tf32_tflops is not None:
            assert spec.tf32_tflops >= spec.fp32_tflops
            assert spec.bf16_tflops == pytest.approx(2 * spec.tf32_tflops, rel=0.02)
        assert spec.matmul_flops_per_s("fp32") == spec.fp32_tflops * 1e12
        assert spec.bandwidth_bytes_per_s == spec.bandwidth_gbs * 1e9
    t4 = find_gpu("T4")
    assert t4.tf32_tflops is None
    assert t4.matmul_flops_per_s("bf16") is None
    assert "Turing" in t4.source


def test_required_cards_are_known_and_named_for_the_error_message():
    names = known_names()
    for required in ("T4", "L4", "A10G", "RTX 3090", "RTX 4090", "A100-40GB", "A100-80GB"):
        assert required in names
    assert {"H100-80GB", "H200", "cpu", "auto"} <= set(names)
    assert find_gpu("H100-80GB").variant == "SXM5"
    assert len(set(names)) == len(names)


def test_bad_precision_and_bad_memory_are_refused():
    with pytest.raises(ConfigError, match="precision must be one of fp32, tf32, bf16"):
        find_gpu("T4").matmul_flops_per_s("fp16")
    with pytest.raises(ConfigError, match="positive number of GiB"):
        custom_spec("mystery", 0, "--vram-gb")
    with pytest.raises(ConfigError, match="memory_gib must be positive"):
        GpuSpec("x", "", "x", (), -1.0, None, None, None, None, "test")
    spec = custom_spec("GPU with 24 GiB", 24, "--vram-gb")
    assert spec.memory_bytes == 24 * 2**30
    assert all(spec.matmul_flops_per_s(p) is None for p in PRECISIONS)
    assert spec.to_dict()["aliases"] == []
