"""The sizing model against the real thing: built networks, FlopCounterMode, autograd, files.

Parameter and FLOP checks build networks on the meta device (shapes only, no memory), so even
xlarge with separate trunks costs milliseconds; checkpoint sizes are real files on disk.
"""

import itertools
import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from ppo_core import checkpoint
from ppo_core.config import NetworkConfig
from ppo_core.errors import ConfigError
from ppo_core.network import ActorCritic
from ppo_core.presets import PRESETS
from ppo_core.sizing import (
    CUDA_CONTEXT_BYTES,
    HOST_SLACK_PER_WEIGHT_BYTE,
    ROLLOUT_SAMPLE_BYTES,
    WORKSPACE_BYTES,
    estimate,
)


def _meta_policy(config: NetworkConfig) -> ActorCritic:
    with torch.device("meta"):
        return ActorCritic(config)


def _numel(policy: torch.nn.Module) -> int:
    return sum(p.numel() for p in policy.parameters())


def _design_formula(d: int, hidden: tuple[int, ...], a: int) -> int:
    """DESIGN.md's closed form for a shared trunk with 64-wide heads."""
    widths = [d, *hidden]
    trunk = sum(i * o + o for i, o in itertools.pairwise(widths))
    heads = (hidden[-1] * 64 + 64) + (64 * a + a) + (hidden[-1] * 64 + 64) + (64 + 1)
    return trunk + heads


def test_reference_counts_are_pinned():
    """DESIGN.md's counts: the 5,300-wide market window alone, unpadded (input_multiple=1)."""
    params = {
        name: estimate(
            NetworkConfig(hidden_dims=dims, account_state=False, input_multiple=1)
        ).params
        for name, dims in PRESETS.items()
    }
    assert params["tiny"] == 1_406_788
    assert params["small"] == 2_895_108
    assert params["medium"] == 6_117_508
    assert params["large"] == 13_643_908
    assert params["xlarge"] == _design_formula(5300, PRESETS["xlarge"], 3)
    # 12 bytes per parameter (weights + two Adam moments): 16.9, 34.7, 73.4, 163.7 MB.
    megabytes = [round(params[n] * 12 / 1e6, 1) for n in ("tiny", "small", "medium", "large")]
    assert megabytes == [16.9, 34.7, 73.4, 163.7]


def test_the_account_state_adds_three_inputs_to_the_first_layer():
    """Position, unrealised return and bars held widen the input to 5,303, which adds 3 x the
    first width to the parameters (768 for tiny, 6,144 for large)."""
    for name, dims in PRESETS.items():
        with_state = estimate(NetworkConfig(hidden_dims=dims, input_multiple=1))
        without = estimate(NetworkConfig(hidden_dims=dims, account_state=False, input_multiple=1))
        assert with_state.config.obs_dim == 5303
        assert with_state.params - without.params == 3 * dims[0], name
        assert with_state.params == _design_formula(5303, dims, 3)
    assert estimate(NetworkConfig(hidden_dims=PRESETS["tiny"], input_multiple=1)).params == (
        1_407_556
    )


@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_late_fusion_moves_the_account_inputs_from_the_trunk_to_each_head(trunk):
    """The trunk reads the 5,300-wide window (no padding) and each head 3 more inputs: the
    estimate counts what ActorCritic builds."""
    from ppo_core.network import ActorCritic

    config = NetworkConfig(hidden_dims=(64, 32), trunk=trunk, account_fusion="late")
    built = sum(p.numel() for p in ActorCritic(config).parameters())
    assert estimate(config).params == built
    gained = estimate(NetworkConfig(hidden_dims=(64, 32), trunk=trunk, input_multiple=1))
    trunks = 1 if trunk == "shared" else 2
    assert gained.params - estimate(config).params == trunks * 3 * 64 - 2 * 3 * 64


def test_the_default_pads_the_input_to_5304_with_one_zero_weight_per_first_width():
    """input_multiple 8 pads 5,303 inputs with one zero to 5,304 (aligned GEMMs): one more
    weight per first-layer output, 256 for tiny (+0.02%); without the account state the
    5,300-wide window gets 4 zeros and the same 5,304-wide first layer."""
    pinned = {
        "tiny": 1_407_812,
        "small": 2_897_156,
        "medium": 6_121_604,
        "large": 13_652_100,
        "xlarge": 32_808_836,
    }
    for name, dims in PRESETS.items():
        padded = estimate(NetworkConfig(hidden_dims=dims))
        unpadded = estimate(NetworkConfig(hidden_dims=dims, input_multiple=1))
        assert padded.config.obs_dim == 5304
        assert padded.params - unpadded.params == dims[0], name
        assert padded.params == _design_formula(5304, dims, 3) == pinned[name]
        no_account = estimate(NetworkConfig(hidden_dims=dims, account_state=False))
        assert no_account.params == padded.params, name


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("trunk", ["shared", "separate"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("account_state", [True, False])
def test_params_equal_the_built_network_for_presets(name, trunk, layer_norm, account_state):
    config = NetworkConfig(
        hidden_dims=PRESETS[name], trunk=trunk, layer_norm=layer_norm, account_state=account_state
    )
    assert estimate(config).params == _numel(_meta_policy(config))


_small_configs = st.builds(
    NetworkConfig,
    n_features=st.integers(1, 16),
    lookback=st.integers(1, 8),
    hidden_dims=st.lists(st.integers(1, 64), min_size=1, max_size=4).map(tuple),
    n_actions=st.integers(1, 5),
    head_dim=st.integers(1, 64),
    trunk=st.sampled_from(["shared", "separate"]),
    activation=st.sampled_from(["relu", "tanh", "gelu"]),
    layer_norm=st.booleans(),
    account_state=st.booleans(),
    input_multiple=st.sampled_from([1, 2, 8, 64]),
)


@settings(max_examples=200, deadline=None)
@given(config=_small_configs)
def test_params_and_per_layer_counts_equal_the_built_network(config):
    policy = _meta_policy(config)
    sizing = estimate(config)
    assert sizing.params == _numel(policy)
    assert sum(count for _, count in sizing.layer_params) == sizing.params
    for name, count in sizing.layer_params:
        assert _numel(policy.get_submodule(name)) == count, name
    assert 2 * len(sizing.layer_params) == sizing.n_tensors == len(list(policy.parameters()))
    first = sum(count for name, count in sizing.layer_params if name.endswith("trunk.0"))
    assert sizing.first_layer_share == pytest.approx(first / sizing.params)


def _counted_flops(config: NetworkConfig, batch: int) -> tuple[int, int]:
    policy = _meta_policy(config)
    obs = torch.empty(batch, config.obs_dim, device="meta")
    with FlopCounterMode(display=False) as forward:
        policy(obs)
    with FlopCounterMode(display=False) as both:
        logits, value = policy(obs)
        (logits.sum() + value.sum()).backward()
    return forward.get_total_flops(), both.get_total_flops()


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_flops_equal_flop_counter_for_presets(name, trunk):
    config = NetworkConfig(hidden_dims=PRESETS[name], trunk=trunk)
    sizing = estimate(config)
    forward, both = _counted_flops(config, batch=3)
    assert sizing.forward_flops_per_sample * 3 == forward
    assert sizing.train_flops_per_sample * 3 == both
    # The first layer needs no input gradient, so the 6 x params rule overcounts here.
    assert 6 * sizing.params > 1.25 * sizing.train_flops_per_sample


@settings(max_examples=25, deadline=None)
@given(config=_small_configs, batch=st.integers(1, 5))
def test_flops_equal_flop_counter_for_random_configs(config, batch):
    sizing = estimate(config)
    forward, both = _counted_flops(config, batch)
    assert sizing.forward_flops_per_sample * batch == forward
    assert sizing.train_flops_per_sample * batch == both


def _saved_activation_bytes(policy: ActorCritic, obs: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves in one forward, excluding weights and the obs."""
    excluded = {p.untyped_storage().data_ptr() for p in policy.parameters()}
    excluded.add(obs.untyped_storage().data_ptr())
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        policy(obs)
    return sum(saved.values())


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("trunk", ["shared", "separate"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_activation_bytes_equal_what_autograd_saves(activation, trunk, layer_norm):
    config = NetworkConfig(
        n_features=5,
        lookback=4,
        hidden_dims=(48, 24, 12),
        trunk=trunk,
        activation=activation,
        layer_norm=layer_norm,
    )
    policy = ActorCritic(config)
    obs = torch.randn(7, config.obs_dim)
    assert estimate(config, minibatch=7).activation_bytes == _saved_activation_bytes(policy, obs)


def _file_bytes(tmp_path, config: NetworkConfig, with_adam: bool) -> int:
    # Uninitialised weights of the right shapes: a file's size does not depend on the values.
    policy = _meta_policy(config).to_empty(device="cpu")
    optimizer = None
    if with_adam:
        optimizer = torch.optim.Adam(policy.parameters())
        for param in policy.parameters():
            param.grad = torch.zeros_like(param)
        optimizer.step()
    path = checkpoint.save(tmp_path / "size.pt", config, policy, optimizer)
    size = path.stat().st_size
    path.unlink()
    return size


# xlarge with Adam is a 394 MB file: its weights-only case (131 MB) is checked instead.
@pytest.mark.parametrize(
    ("name", "trunk", "with_adam"),
    [
        *[(name, "shared", False) for name in PRESETS],
        *[(name, "shared", True) for name in PRESETS if name != "xlarge"],
        ("tiny", "separate", True),
        ("small", "separate", False),
    ],
)
def test_checkpoint_bytes_within_one_percent_of_a_saved_file(tmp_path, name, trunk, with_adam):
    config = NetworkConfig(hidden_dims=PRESETS[name], trunk=trunk)
    sizing = estimate(config)
    predicted = sizing.checkpoint_bytes if with_adam else sizing.checkpoint_bytes_no_optimizer
    actual = _file_bytes(tmp_path, config, with_adam)
    assert abs(predicted - actual) / actual < 0.01


def test_training_memory_components_by_hand():
    sizing = estimate(NetworkConfig(), n_envs=8, n_steps=256, minibatch=256, n_bars=1000)
    p = 6_121_604  # medium, 5,304 inputs: 6,117,508 + 3 x 1024 (account) + 1 x 1024 (pad)
    assert sizing.weight_bytes == {"fp32": 4 * p, "bf16": 2 * p, "fp16": 2 * p, "int8": p}
    assert sizing.grad_bytes == 4 * p
    assert sizing.adam_bytes == 8 * p
    assert sizing.adam_step_bytes == 0  # a GPU's fused Adam makes no temporaries
    assert ROLLOUT_SAMPLE_BYTES == 32
    # A bar index plus the fp32 account state (3 values) per sample.
    assert sizing.rollout_bytes_indices == 8 * 256 * (8 + 3 * 4 + 32)
    assert sizing.rollout_bytes_observations == 8 * 256 * (5304 * 4 + 32) == 43_515_904
    assert sizing.minibatch_bytes == 256 * 5304 * 4
    assert sizing.data_bytes == 1000 * 53 * 4
    # relu, shared trunk: one saved row per hidden layer plus one per head's 64-wide layer.
    assert sizing.activation_bytes == 256 * (1024 + 512 + 256 + 64 + 64) * 4
    assert sizing.index_bytes == 8 * 256 * 8
    assert sizing.gather_index_bytes == 256 * 100 * 8
    assert sizing.forward_transient_bytes == sizing.first_grad_bytes == 256 * 1024 * 4
    assert sizing.rollout_step_bytes == 8 * (3 * 5304 * 4 + (1024 + 512 + 256 + 128) * 4)
    minibatch = 256 * 5304 * 4
    assert {name: sum(parts.values()) for name, parts in sizing.phases().items()} == {
        "rollout step": 8 * (3 * 5304 * 4 + 1920 * 4),
        "minibatch gather": minibatch + 256 * 100 * 8,
        "forward": minibatch + 256 * 1920 * 4 + 256 * 1024 * 4,
        "end of backward": minibatch + 4 * p + 256 * 1024 * 4,
        "adam step": minibatch + 4 * p,
    }
    assert sizing.peak_phase == "end of backward"
    components = sizing.memory_components()
    assert components == {
        "weights": 4 * p,
        "grads": 4 * p,
        "adam": 8 * p,
        "adam_step": 0,
        "activations": 256 * 1024 * 4,  # the first layer's output gradient
        "minibatch": minibatch,
        "rollout": sizing.rollout_bytes_indices,
        "data": 1000 * 53 * 4,
        "index": 8 * 256 * 8,
        "workspace": WORKSPACE_BYTES["cuda"],
        "host_slack": 0,
    }
    assert sizing.train_bytes == sum(components.values())
    assert sizing.train_bytes_on_gpu == sizing.train_bytes + CUDA_CONTEXT_BYTES


def test_a_cpu_peaks_in_the_foreach_adam_step_and_keeps_freed_pages():
    cuda = estimate(NetworkConfig(), n_envs=8, n_steps=256, minibatch=256, n_bars=1000)
    cpu = estimate(NetworkConfig(), n_envs=8, n_steps=256, minibatch=256, n_bars=1000, device="cpu")
    p = _design_formula(5304, PRESETS["medium"], 3)  # market window + 3 account + 1 zero
    assert cpu.adam_step_bytes == 4 * p  # foreach Adam's sqrt(v) denominator, all at once
    assert cpu.peak_phase == "adam step"
    assert cpu.host_slack_bytes == round(HOST_SLACK_PER_WEIGHT_BYTE * 4 * p)
    parts = cpu.memory_components()
    assert (parts["grads"], parts["adam_step"], parts["activations"]) == (4 * p, 4 * p, 0)
    assert parts["workspace"] == WORKSPACE_BYTES["cpu"]
    assert cpu.train_bytes - cuda.train_bytes == (
        4 * p
        - 256 * 1024 * 4
        + WORKSPACE_BYTES["cpu"]
        - WORKSPACE_BYTES["cuda"]
        + cpu.host_slack_bytes
    )
    assert estimate(NetworkConfig(), device="cuda:3").device == "cuda"


def test_the_peak_is_the_forward_when_activations_outweigh_gradients():
    # A small net on a huge minibatch: saved activations, not gradients, set the peak.
    sizing = estimate(NetworkConfig(hidden_dims=(256, 128)), n_envs=64, n_steps=128, minibatch=8192)
    assert sizing.peak_phase == "forward"
    assert sizing.memory_components()["grads"] == 0


def test_unknown_data_size_is_not_counted_and_observation_buffer_is_selectable():
    without = estimate(NetworkConfig())
    assert without.data_bytes is None
    assert "data" not in without.memory_components()
    observations = estimate(NetworkConfig(), obs_buffer="observations")
    assert observations.rollout_bytes == observations.rollout_bytes_observations
    assert observations.train_bytes - without.train_bytes == (
        without.rollout_bytes_observations - without.rollout_bytes_indices
    )


def test_to_dict_is_json_safe_and_complete():
    sizing = estimate(NetworkConfig(hidden_dims=(64, 32)), n_bars=500)
    data = json.loads(json.dumps(sizing.to_dict()))
    for key in (
        "params",
        "layer_params",
        "first_layer_share",
        "weight_bytes",
        "grad_bytes",
        "adam_bytes",
        "checkpoint_bytes",
        "checkpoint_bytes_no_optimizer",
        "forward_flops_per_sample",
        "train_flops_per_sample",
        "rollout_bytes_observations",
        "rollout_bytes_indices",
        "activation_bytes",
        "minibatch_bytes",
        "data_bytes",
        "memory_components",
        "train_bytes",
        "cuda_context_bytes",
        "train_bytes_on_gpu",
    ):
        assert key in data, key
    assert data["params"] == sizing.params
    assert NetworkConfig.from_dict(data["config"]) == sizing.config
    assert data["memory_components"] == sizing.memory_components()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n_envs": 0}, "n_envs"),
        ({"n_steps": -4}, "n_steps"),
        ({"minibatch": 2.5}, "minibatch"),
        ({"n_bars": 0}, "n_bars"),
        ({"obs_buffer": "frames"}, "obs_buffer"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_setup_is_rejected_naming_the_argument(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        estimate(NetworkConfig(), **kwargs)


def test_sizing_does_not_import_torch():
    code = "import sys, ppo_core.sizing; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
