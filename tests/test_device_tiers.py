"""The GPU tier table and auto config: the issue's cards get the issue's hidden_dims."""

from __future__ import annotations

import json

import pytest

from archbench.instrument.device.tiers import (
    GPU_TIERS,
    TierRow,
    config_for_gpu,
    get_a100_config,
    get_auto_config,
    gpu_tier,
    tiers_from_dicts,
)
from ppo_core.config import PPOConfig
from ppo_core.device import Device, check_device, resolve_device
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS, TRAINING_MODES

MEDIUM, SMALL, TINY = PRESETS["medium"], PRESETS["small"], PRESETS["tiny"]


# Memory as drivers report it (GiB), not as the label says.
@pytest.mark.parametrize(
    ("name", "memory_gb", "tier", "dims"),
    [
        ("NVIDIA H100 80GB HBM3", 79.6, "h100", MEDIUM),
        ("NVIDIA H100 PCIe", 79.6, "h100", MEDIUM),
        ("NVIDIA A100-SXM4-80GB", 79.2, "a100-80gb", MEDIUM),
        ("NVIDIA A100 80GB PCIe", 79.2, "a100-80gb", MEDIUM),
        ("NVIDIA A100-SXM4-40GB", 39.4, "40gb+", SMALL),
        ("NVIDIA A100-PCIE-40GB", 39.6, "40gb+", SMALL),
        ("NVIDIA L40S", 44.4, "40gb+", SMALL),
        ("NVIDIA A10G", 22.0, "20-40gb", SMALL),
        ("NVIDIA GeForce RTX 4090", 23.6, "20-40gb", SMALL),
        ("Tesla T4", 15.1, "<20gb", TINY),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 9.8, "<20gb", TINY),
        (None, None, "cpu", TINY),
    ],
)
def test_tiers_of_named_cards(name, memory_gb, tier, dims):
    row = gpu_tier(name, memory_gb)
    assert row.name == tier
    assert row.hidden_dims == dims


def test_a100_configs():
    assert get_a100_config(80).network.hidden_dims == (1024, 512, 256)
    assert get_a100_config(40).network.hidden_dims == (512, 256, 128)


def test_config_for_a_named_card_without_the_card():
    cfg = config_for_gpu("NVIDIA A100-SXM4-40GB", 40, total_timesteps=1_000_000)
    assert isinstance(cfg, PPOConfig)
    assert cfg.network.hidden_dims == (512, 256, 128)
    assert cfg.device == "cuda"
    assert cfg.total_timesteps == 1_000_000
    assert (cfg.n_envs, cfg.minibatch_size) == (64, 2048)
    assert cfg.n_steps == TRAINING_MODES["production"]["n_steps"]


@pytest.mark.parametrize("mode", list(TRAINING_MODES))
@pytest.mark.parametrize("row", GPU_TIERS, ids=lambda r: r.name)
def test_every_tier_gives_a_valid_config_in_every_mode(row, mode):
    from archbench.instrument.device.tiers import _config

    cfg = _config(row, "cuda", 10_000, mode)
    assert cfg.minibatch_size <= cfg.batch_size
    for key, value in TRAINING_MODES[mode].items():
        assert getattr(cfg, key) == value


def test_auto_config_on_this_cpu_machine():
    cfg = get_auto_config(50_000, "quick", device="cpu")
    assert cfg.device == "cpu"
    assert cfg.network.hidden_dims == TINY
    assert (cfg.n_envs, cfg.minibatch_size, cfg.n_steps) == (8, 256, 128)


def test_auto_config_rejects_unknown_modes_and_devices():
    with pytest.raises(ConfigError, match="training_mode must be one of quick"):
        get_auto_config(1000, "turbo", device="cpu")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda"):
        resolve_device("tpu")


def test_detect_cpu():
    assert resolve_device("cpu") == Device("cpu", None, None, None)


def test_one_validator_names_the_owner_and_the_value():
    for good in ("auto", "cpu", "cuda", "cuda:3"):
        assert check_device(good) == good
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", 0):
        with pytest.raises(ConfigError, match=r"PPOConfig\.device must be auto, cpu, cuda"):
            check_device(bad, "PPOConfig.device")
    with pytest.raises(ConfigError, match=r"PPOConfig\.device"):
        PPOConfig(device="tpu")


def test_the_device_is_resolved_once_per_process():
    assert resolve_device("cpu") is resolve_device("cpu")


def test_detect_cuda_without_cuda_says_why():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        resolve_device("cuda:0")
    assert resolve_device("auto").device == "cpu"


def test_a_gpu_needs_its_memory():
    with pytest.raises(ConfigError, match="memory_gb"):
        gpu_tier("NVIDIA A100-SXM4-40GB", None)
    with pytest.raises(ConfigError, match="memory_gb"):
        get_a100_config(0)


def test_tier_table_round_trips_as_json_and_can_be_overridden():
    rows = json.loads(json.dumps([row.to_dict() for row in GPU_TIERS]))
    assert tiers_from_dicts(rows) == GPU_TIERS
    custom = (
        TierRow("big", ["A100"], 30.0, None, [2048, 1024], 32, 512, "my override"),
        *GPU_TIERS,
    )
    assert gpu_tier("NVIDIA A100-SXM4-40GB", 40, custom).name == "big"
    cfg = config_for_gpu("NVIDIA A100-SXM4-40GB", 40, tiers=custom)
    assert cfg.network.hidden_dims == (2048, 1024)


def test_bad_tier_rows_are_named():
    row = GPU_TIERS[0].to_dict()
    with pytest.raises(ConfigError, match="tier row 0 must have exactly the keys"):
        tiers_from_dicts([{**row, "extra": 1}])
    with pytest.raises(ConfigError, match="tier 'h100': n_envs must be a positive integer"):
        tiers_from_dicts([{**row, "n_envs": 0}])
    with pytest.raises(ConfigError, match=r"tier 'h100': NetworkConfig\.hidden_dims"):
        tiers_from_dicts([{**row, "hidden_dims": []}])


def test_a_table_without_a_matching_row_says_so():
    with pytest.raises(ConfigError, match="no tier row matches the CPU"):
        gpu_tier(None, None, GPU_TIERS[:-1])
