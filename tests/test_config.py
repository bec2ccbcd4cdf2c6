"""Config records: defaults, validation messages that name the field, JSON round trips."""

import dataclasses
import json
import math
import re

import pytest

from ppo_core.config import MAX_WIDTH, EnvConfig, NetworkConfig, PPOConfig
from ppo_core.errors import ConfigError


def test_network_defaults_are_the_reference_shape():
    config = NetworkConfig()
    assert config.market_dim == 53 * 100 == 5300
    assert config.account_state
    # + position, unrealised return, bars held, + 1 zero input: 5,304 = 8 x 663
    assert (config.account_dim, config.pad_dim, config.obs_dim) == (3, 1, 5304)
    assert config.input_multiple == 8
    assert NetworkConfig(account_state=False).obs_dim == 5304  # 5,300 + 4 zeros
    assert NetworkConfig(input_multiple=1).obs_dim == 5303
    assert NetworkConfig(account_state=False, input_multiple=1).obs_dim == 5300
    assert NetworkConfig(input_multiple=64).obs_dim == 5312
    assert config.hidden_dims == (1024, 512, 256)
    assert (config.n_actions, config.head_dim, config.trunk) == (3, 64, "shared")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        NetworkConfig().lookback = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOConfig().n_envs = 2  # type: ignore[misc]


def test_hidden_dims_list_becomes_tuple():
    assert NetworkConfig(hidden_dims=[64, 32]).hidden_dims == (64, 32)


@pytest.mark.parametrize(
    ("changes", "named", "shown"),
    [
        ({"hidden_dims": ()}, "hidden_dims", "()"),
        ({"hidden_dims": (64, 0)}, "hidden_dims[1]", "0"),
        ({"hidden_dims": (64, -3)}, "hidden_dims[1]", "-3"),
        ({"hidden_dims": (64.5,)}, "hidden_dims[0]", "64.5"),
        ({"hidden_dims": (True,)}, "hidden_dims[0]", "True"),
        ({"hidden_dims": (MAX_WIDTH + 1,)}, "hidden_dims[0]", "65,537"),
        ({"hidden_dims": "256,128"}, "hidden_dims", "'256,128'"),
        ({"n_features": 0}, "n_features", "0"),
        ({"lookback": -1}, "lookback", "-1"),
        ({"n_actions": 2.0}, "n_actions", "2.0"),
        ({"head_dim": 0}, "head_dim", "0"),
        ({"trunk": "both"}, "trunk", "'both'"),
        ({"activation": "swish"}, "activation", "'swish'"),
        ({"layer_norm": 1}, "layer_norm", "1"),
    ],
)
def test_network_rejects_bad_values_naming_field_and_value(changes, named, shown):
    with pytest.raises(ConfigError) as caught:
        NetworkConfig(**changes)
    message = str(caught.value)
    assert f"NetworkConfig.{named}" in message
    assert message.endswith(shown)
    assert "\n" not in message


def test_widest_allowed_width_is_accepted():
    assert NetworkConfig(n_features=1, lookback=1, hidden_dims=(MAX_WIDTH,)).hidden_dims[0] == (
        MAX_WIDTH
    )


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(),
        NetworkConfig(hidden_dims=(7,), trunk="separate", activation="gelu", layer_norm=True),
        EnvConfig(episode_bars=64, cost_bps=2.5, reward_scale=10.0),
        PPOConfig(),
        PPOConfig(
            target_kl=0.02,
            device="cuda:1",
            obs_buffer="observations",
            network=NetworkConfig(hidden_dims=(32, 16)),
            env=EnvConfig(cost_bps=0.0),
        ),
    ],
)
def test_round_trip_through_json(config):
    text = json.dumps(config.to_dict())
    assert type(config).from_dict(json.loads(text)) == config


def test_ppo_to_dict_nests_network_and_env_as_plain_dicts():
    data = PPOConfig().to_dict()
    assert data["network"]["hidden_dims"] == [1024, 512, 256]
    assert data["env"] == EnvConfig().to_dict()


@pytest.mark.parametrize("cls", [NetworkConfig, EnvConfig, PPOConfig])
def test_from_dict_names_an_unknown_key(cls):
    data = cls().to_dict()
    data["hiden_dims"] = [1]
    with pytest.raises(ConfigError, match="'hiden_dims'"):
        cls.from_dict(data)


def test_nested_unknown_key_is_named():
    data = PPOConfig().to_dict()
    data["network"]["widths"] = [1]
    with pytest.raises(ConfigError, match="NetworkConfig has no field 'widths'"):
        PPOConfig.from_dict(data)


def test_from_dict_rejects_a_non_mapping():
    with pytest.raises(ConfigError, match="must be a mapping"):
        NetworkConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_ppo_batch_properties():
    config = PPOConfig(total_timesteps=10_000, n_envs=4, n_steps=128, minibatch_size=64)
    assert config.batch_size == 512
    assert config.n_iterations == 10_000 // 512
    assert PPOConfig(total_timesteps=10, n_envs=4, n_steps=8, minibatch_size=8).n_iterations == 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"minibatch_size": 4096}, "minibatch_size (4096)"),
        ({"n_envs": 0}, "n_envs"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"gamma": 1.5}, "gamma"),
        ({"clip_coef": -0.1}, "clip_coef"),
        ({"target_kl": float("inf")}, "target_kl"),
        ({"seed": -1}, "seed"),
        ({"device": "gpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"obs_buffer": "frames"}, "obs_buffer"),
        ({"precision": "fp16"}, "precision"),
        ({"capture": "yes"}, "capture"),
        ({"network": {"hidden_dims": [4]}}, "network"),
    ],
)
def test_ppo_rejects_bad_values_naming_field(changes, named):
    with pytest.raises(ConfigError, match=re.escape(f"PPOConfig.{named}")):
        PPOConfig(**changes)


def test_replace_validates_again():
    assert PPOConfig().replace(n_envs=16).n_envs == 16
    with pytest.raises(ConfigError, match=r"PPOConfig\.n_steps"):
        PPOConfig().replace(n_steps=0)


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"episode_bars": 0}, "episode_bars"), ({"cost_bps": -1.0}, "cost_bps")],
)
def test_env_rejects_bad_values(changes, named):
    with pytest.raises(ConfigError, match=f"EnvConfig.{named}"):
        EnvConfig(**changes)


@pytest.mark.parametrize("bad", [0, -8, 65, 2.0, True, "8", None])
def test_input_multiple_is_validated(bad):
    with pytest.raises(ConfigError, match=r"NetworkConfig\.input_multiple"):
        NetworkConfig(input_multiple=bad)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_scale_account_is_validated(bad):
    with pytest.raises(ConfigError, match=r"NetworkConfig\.scale_account must be true or false"):
        NetworkConfig(scale_account=bad)


def test_the_account_gain_follows_the_window_and_old_dicts_load_raw():
    """Each account input enters at sqrt(market_dim), the whole window's scale at init; a dict
    written before scale_account existed is a network trained on the raw account state."""
    assert NetworkConfig().account_gain == math.sqrt(5300)
    assert NetworkConfig(lookback=10).account_gain == math.sqrt(530)
    assert NetworkConfig(scale_account=False).account_gain == 1.0
    old = NetworkConfig().to_dict()
    del old["scale_account"]
    assert NetworkConfig.from_dict(old).account_gain == 1.0
    assert NetworkConfig.from_dict(NetworkConfig().to_dict()).scale_account is True


def test_late_fusion_needs_no_gain_and_old_dicts_load_legacy_inputs_at_the_first_layer():
    """Late fusion joins the account state after the trunk, so it enters raw; a dict written
    before account_inputs and account_fusion existed saw the legacy inputs at the first layer."""
    late = NetworkConfig(account_fusion="late")
    assert (late.account_gain, late.late_account_dim) == (1.0, 3)
    assert NetworkConfig(account_fusion="late", account_state=False).late_account_dim == 0
    assert NetworkConfig(account_fusion="gain").late_account_dim == 0
    old = NetworkConfig(account_fusion="late").to_dict()
    del old["account_inputs"], old["account_fusion"]
    loaded = NetworkConfig.from_dict(old)
    assert (loaded.account_inputs, loaded.account_fusion) == ("legacy", "gain")
    assert NetworkConfig.from_dict(late.to_dict()) == late


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("account_fusion", "early", "account_fusion must be one of late, gain; got 'early'"),
        ("account_inputs", "raw", "account_inputs must be one of bounded, legacy; got 'raw'"),
        ("account_horizon", 0, "account_horizon must be positive, got 0"),
    ],
)
def test_bad_account_options_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        NetworkConfig(**{field: value})


def test_a_network_dict_without_input_multiple_is_the_unpadded_layout():
    """Checkpoints and records written before the padding existed have no input_multiple key:
    their networks were built on the 5,303-wide observation, so they must load as such."""
    old = NetworkConfig().to_dict()
    del old["input_multiple"]
    config = NetworkConfig.from_dict(old)
    assert (config.input_multiple, config.pad_dim, config.obs_dim) == (1, 0, 5303)
    ppo = PPOConfig.from_dict({**PPOConfig().to_dict(), "network": old})
    assert ppo.network.obs_dim == 5303
    assert NetworkConfig.from_dict(NetworkConfig().to_dict()).obs_dim == 5304


def test_network_replace_changes_the_named_fields_and_validates_again():
    base = NetworkConfig(lookback=8, hidden_dims=(32, 16))
    wider = base.replace(hidden_dims=[64, 32])
    assert wider.hidden_dims == (64, 32)  # a list from the edge becomes the tuple inside
    assert wider == NetworkConfig(lookback=8, hidden_dims=(64, 32))
    assert base.hidden_dims == (32, 16)  # the original is untouched (frozen)
    with pytest.raises(ConfigError, match=r"NetworkConfig\.hidden_dims\[1\]"):
        base.replace(hidden_dims=(64, 0))
