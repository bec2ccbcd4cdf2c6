"""Checkpoints: round trips, atomic writes, safe loading, one-line errors for bad files."""

import json
import math
import os
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from ppo_core import checkpoint
from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.errors import ArchitectureMismatch, CheckpointError
from ppo_core.network import ActorCritic
from ppo_core.sizing import estimate


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_round_trip_weights_config_and_meta(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    loaded = checkpoint.load(path)
    torch.manual_seed(0)
    _assert_same_weights(loaded.policy_state_dict, ActorCritic(small_config).state_dict())
    assert loaded.config == small_config
    assert loaded.ppo_config is None
    assert loaded.optimizer_state_dict is None
    assert loaded.obs_norm is None
    assert loaded.file_bytes == path.stat().st_size
    assert loaded.meta["torch_version"] == torch.__version__
    assert loaded.meta["archbench_version"]
    created = datetime.fromisoformat(loaded.meta["created"])
    assert created.utcoffset().total_seconds() == 0
    commit = loaded.meta["git_commit"]
    assert commit is None or len(commit) == 40


def test_file_is_plain_containers_in_the_documented_layout(make_checkpoint, small_config):
    path = make_checkpoint(small_config, optimizer=True)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == checkpoint.FORMAT == "ppo-archbench/1"
    assert raw["config"] == {"network": small_config.to_dict(), "ppo": None}
    assert set(raw) == {
        "format",
        "config",
        "policy_state_dict",
        "optimizer_state_dict",
        "obs_norm",
        "data",
        "meta",
    }


def test_ppo_config_is_stored_next_to_the_network(make_checkpoint, small_config):
    ppo = PPOConfig(n_envs=4, n_steps=32, minibatch_size=64, network=small_config)
    loaded = checkpoint.load(make_checkpoint(ppo))
    assert loaded.ppo_config == ppo
    assert loaded.config == small_config
    assert "network" not in torch.load(loaded.path, weights_only=True)["config"]["ppo"]


def test_optimizer_state_survives_weights_only_loading(tmp_path, small_config):
    torch.manual_seed(0)
    policy = ActorCritic(small_config)
    adam = torch.optim.Adam(policy.parameters(), lr=1e-2)
    obs = torch.randn(16, small_config.obs_dim)

    def step(model, optimizer):
        optimizer.zero_grad()
        logits, value = model(obs)
        (logits.square().mean() + (value - 1).square().mean()).backward()
        optimizer.step()

    for _ in range(3):
        step(policy, adam)
    path = checkpoint.save(tmp_path / "run.pt", small_config, policy, adam)

    resumed = ActorCritic(small_config)
    resumed_adam = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    loaded = checkpoint.load_into(resumed, path)
    resumed_adam.load_state_dict(loaded.optimizer_state_dict)
    step(policy, adam)
    step(resumed, resumed_adam)
    _assert_same_weights(policy.state_dict(), resumed.state_dict())


def test_obs_norm_round_trips_numpy_tensors_and_numbers(make_checkpoint, small_config):
    obs_norm = {
        "mean": np.arange(4, dtype=np.float64),
        "std": torch.ones(4),
        "count": np.int64(1000),
        "clip": np.float64(5.0),
        "columns": ["close", "volume"],
        "nested": {"eps": 1e-8},
    }
    loaded = checkpoint.load(make_checkpoint(small_config, obs_norm=obs_norm))
    assert torch.equal(loaded.obs_norm["mean"], torch.arange(4, dtype=torch.float64))
    assert torch.equal(loaded.obs_norm["std"], torch.ones(4))
    assert int(loaded.obs_norm["count"]) == 1000
    assert float(loaded.obs_norm["clip"]) == 5.0
    assert loaded.obs_norm["columns"] == ["close", "volume"]
    assert loaded.obs_norm["nested"] == {"eps": 1e-8}


def test_save_rejects_what_cannot_be_loaded_safely(tmp_path, small_config):
    policy = ActorCritic(small_config)
    with pytest.raises(Exception, match=r"obs_norm\['bad'\]"):
        checkpoint.save(tmp_path / "a.pt", small_config, policy, obs_norm={"bad": object()})
    with pytest.raises(Exception, match="extra_meta must be JSON-safe"):
        checkpoint.save(tmp_path / "a.pt", small_config, policy, extra_meta={"x": object()})
    assert not list(tmp_path.iterdir())


def test_save_refuses_a_config_that_does_not_describe_the_policy(tmp_path, small_config):
    policy = ActorCritic(small_config)
    other = NetworkConfig(n_features=4, lookback=8, hidden_dims=(64, 16))
    with pytest.raises(ArchitectureMismatch, match=r"hidden_dims \(32, 16\).*\(64, 16\)"):
        checkpoint.save(tmp_path / "a.pt", other, policy)


def test_extra_meta_is_stored(tmp_path, small_config):
    path = checkpoint.save(
        tmp_path / "a.pt", small_config, ActorCritic(small_config), extra_meta={"iteration": 7}
    )
    assert checkpoint.load(path).meta["iteration"] == 7


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, small_config, monkeypatch):
    first = ActorCritic(small_config)
    path = checkpoint.save(tmp_path / "model.pt", small_config, first)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, small_config, ActorCritic(small_config))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_save_creates_missing_folders(tmp_path, small_config):
    path = checkpoint.save(
        tmp_path / "runs" / "a" / "m.pt", small_config, ActorCritic(small_config)
    )
    assert path.is_file()


def test_shared_trunk_weights_are_stored_once(make_checkpoint):
    shared = NetworkConfig(n_features=4, lookback=64, hidden_dims=(128, 64))
    separate = NetworkConfig(n_features=4, lookback=64, hidden_dims=(128, 64), trunk="separate")
    shared_info = checkpoint.inspect(make_checkpoint(shared, "a.pt"))
    separate_info = checkpoint.inspect(make_checkpoint(separate, "b.pt"))
    assert shared_info.params == estimate(shared).params
    assert separate_info.params == estimate(separate).params
    trunk = 256 * 128 + 128 + 128 * 64 + 64
    assert separate_info.file_bytes - shared_info.file_bytes == pytest.approx(4 * trunk, rel=0.05)


def test_loaded_weights_reproduce_the_policy_outputs(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    torch.manual_seed(0)
    original = ActorCritic(small_config)
    restored = ActorCritic(small_config)
    checkpoint.load_into(restored, path)
    obs = torch.randn(5, small_config.obs_dim)
    with torch.no_grad():
        for a, b in zip(original(obs), restored(obs), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- architecture mismatches ---------------------------------------------------------------


def test_mismatch_names_both_hidden_dims_in_one_line(tmp_path):
    stored = NetworkConfig(n_features=1, lookback=4, hidden_dims=(2048, 1024, 512, 256))
    with torch.device("meta"):  # shapes only: orthogonal init of 2048-wide layers is slow
        policy = ActorCritic(stored)
    path = checkpoint.save(tmp_path / "large.pt", stored, policy.to_empty(device="cpu"))
    wanted = NetworkConfig(n_features=1, lookback=4, hidden_dims=(1024, 512, 256))
    with pytest.raises(ArchitectureMismatch) as caught:
        checkpoint.load(path, config=wanted)
    assert str(caught.value) == (
        f"checkpoint {path} has hidden_dims (2048, 1024, 512, 256); "
        "config asks for (1024, 512, 256)"
    )
    with pytest.raises(ArchitectureMismatch, match=r"\(2048, 1024, 512, 256\).*\(1024, 512, 256\)"):
        checkpoint.load_into(ActorCritic(wanted), path)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("lookback", 16, "lookback 8; config asks for 16"),
        ("n_features", 8, "n_features 4; config asks for 8"),
        ("trunk", "separate", "trunk 'shared'; config asks for 'separate'"),
        ("n_actions", 5, "n_actions 3; config asks for 5"),
        ("head_dim", 32, "head_dim 64; config asks for 32"),
        ("activation", "tanh", "activation 'relu'; config asks for 'tanh'"),
        ("layer_norm", True, "layer_norm False; config asks for True"),
        ("account_fusion", "late", "account_fusion 'gain'; config asks for 'late'"),
        ("account_inputs", "legacy", "account_inputs 'bounded'; config asks for 'legacy'"),
        ("account_horizon", 512, "account_horizon 256; config asks for 512"),
    ],
)
def test_every_architecture_field_is_compared(make_checkpoint, small_config, field, value, shown):
    path = make_checkpoint(small_config)
    wanted = NetworkConfig(**{**small_config.to_dict(), field: value})
    with pytest.raises(ArchitectureMismatch, match=shown) as caught:
        checkpoint.load(path, config=PPOConfig(network=wanted))
    assert "\n" not in str(caught.value)
    with pytest.raises(ArchitectureMismatch, match=shown):
        checkpoint.load_into(ActorCritic(wanted), path)


def test_several_differences_are_all_named(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    wanted = NetworkConfig(n_features=4, lookback=8, hidden_dims=(8,), activation="gelu")
    with pytest.raises(ArchitectureMismatch, match=r"\(also differs: activation\)$"):
        checkpoint.load(path, config=wanted)


# --- files that must be refused --------------------------------------------------------------


def _refused(path: Path, *phrases: str) -> str:
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message
    return message


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.pt", "does not exist")


def test_directory(tmp_path):
    _refused(tmp_path, "is not a file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.touch()
    _refused(path, "is empty")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file(make_checkpoint, small_config, keep):
    path = make_checkpoint(small_config)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _refused(path, "unreadable, truncated or not a torch file")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    _refused(path, "unreadable")


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        (torch.zeros(3), "a Tensor without a 'format' key"),
        ({"state_dict": {}}, "a dict without a 'format' key"),
        ([1, 2], "a list without a 'format' key"),
    ],
)
def test_foreign_torch_files(tmp_path, payload, phrase):
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    _refused(path, "not an archbench checkpoint", phrase)


def test_a_bare_state_dict_is_foreign(tmp_path, small_config):
    path = tmp_path / "weights.pt"
    torch.save(ActorCritic(small_config).state_dict(), path)
    _refused(path, "not an archbench checkpoint")


@pytest.mark.parametrize(
    ("found", "phrase"),
    [("ppo-archbench/2", "another archbench version"), ("sb3/1", "not an archbench checkpoint")],
)
def test_other_format_versions(make_checkpoint, small_config, found, phrase):
    path = make_checkpoint(small_config)
    raw = torch.load(path, weights_only=True)
    raw["format"] = found
    torch.save(raw, path)
    _refused(path, repr(found), phrase)


def test_bad_config_inside(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    raw = torch.load(path, weights_only=True)
    raw["config"]["network"]["hidden_dims"] = [32, 0]
    torch.save(raw, path)
    _refused(path, "bad config", "hidden_dims[1]")


def test_weights_that_contradict_their_config(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    raw = torch.load(path, weights_only=True)
    raw["config"]["network"]["hidden_dims"] = [32, 17]
    torch.save(raw, path)
    _refused(path, "inconsistent")


def test_missing_entries(make_checkpoint, small_config):
    path = make_checkpoint(small_config)
    raw = torch.load(path, weights_only=True)
    del raw["policy_state_dict"]
    torch.save(raw, path)
    _refused(path, "no 'policy_state_dict' entry")


class _Exploit:
    """Pickles as a call that creates a marker file: proof that loading ran foreign code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenExploit(_Exploit):
    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("exploit", [_Exploit, _OpenExploit])
@pytest.mark.parametrize("writer", ["torch", "pickle-2", "pickle-default"])
def test_malicious_reduce_is_refused_without_running(tmp_path, exploit, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": checkpoint.FORMAT, "config": exploit(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        with path.open("wb") as handle:
            pickle.dump(payload, handle, protocol=2 if writer == "pickle-2" else None)
    message = _refused(path, "refused")
    assert not marker.exists()
    if writer != "pickle-default":  # protocol 2 reaches the global; 4+ stops at its FRAME opcode
        assert "loading it would run pickled code" in message
        assert "system" in message or "open" in message


def test_unsafe_checkpoint_cannot_be_loaded_into_a_policy(tmp_path, small_config):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load_into(ActorCritic(small_config), path)
    assert not marker.exists()


# --- inspect and diff ------------------------------------------------------------------------


def test_inspect_reports_architecture_size_and_origin(make_checkpoint, small_config):
    path = make_checkpoint(small_config, optimizer=True)
    info = checkpoint.inspect(path)
    sizing = estimate(small_config)
    assert info.hidden_dims == (32, 16)
    # 4 x 8 market + 3 account inputs, zero-padded to 40
    assert (info.trunk, info.obs_dim, info.n_features, info.lookback) == ("shared", 40, 4, 8)
    assert (info.account_dim, info.account_gain, info.pad_dim) == (3, math.sqrt(32), 5)
    assert (
        info.params
        == sizing.params
        == sum(p.numel() for p in ActorCritic(small_config).parameters())
    )
    assert info.file_bytes == path.stat().st_size
    assert info.predicted_bytes == sizing.checkpoint_bytes
    assert info.has_optimizer_state
    assert not info.has_obs_norm
    assert info.created
    data = json.loads(json.dumps(info.to_dict()))
    assert data["hidden_dims"] == [32, 16]
    assert not checkpoint.inspect(make_checkpoint(small_config, "b.pt")).has_optimizer_state


def test_diff_of_the_same_architecture(make_checkpoint, small_config):
    a = make_checkpoint(PPOConfig(network=small_config, learning_rate=1e-3), "a.pt")
    b = make_checkpoint(PPOConfig(network=small_config, learning_rate=3e-4, seed=2), "b.pt")
    result = checkpoint.diff(a, b)
    assert result.same_architecture
    assert result.differences == ()
    assert result.training_differences == (
        ("learning_rate", 1e-3, 3e-4),
        ("seed", 0, 2),
    )
    assert result.params_a == result.params_b == estimate(small_config).params


def test_diff_of_different_architectures(make_checkpoint, small_config):
    other = NetworkConfig(n_features=4, lookback=8, hidden_dims=(64, 32, 16), trunk="separate")
    result = checkpoint.diff(make_checkpoint(small_config, "a.pt"), make_checkpoint(other, "b.pt"))
    assert not result.same_architecture
    assert result.differences == (
        ("hidden_dims", [32, 16], [64, 32, 16]),
        ("trunk", "shared", "separate"),
    )
    assert result.training_differences == ()
    assert (result.params_a, result.params_b) == (
        estimate(small_config).params,
        estimate(other).params,
    )
    assert json.loads(json.dumps(result.to_dict()))["same_architecture"] is False


def test_diff_names_a_bad_file(make_checkpoint, small_config, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=str(bad)):
        checkpoint.diff(make_checkpoint(small_config), bad)


def test_a_checkpoint_from_before_the_account_state_and_data_fields_still_loads(tmp_path):
    """Files written before account_state and the data identity existed: their network saw
    the market window alone, so they load with account_state False and no data."""
    old = NetworkConfig(
        n_features=4, lookback=8, hidden_dims=(32, 16), account_state=False, input_multiple=1
    )
    path = tmp_path / "old.pt"
    checkpoint.save(path, old, ActorCritic(old))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["network"]["account_state"]
    del payload["config"]["network"]["input_multiple"]
    del payload["data"]
    torch.save(payload, path)
    loaded = checkpoint.load(path)
    assert loaded.config == old
    assert loaded.data is None
    assert loaded.config.obs_dim == 32


def test_a_checkpoint_from_before_the_padding_loads_unpadded_and_evaluates(tmp_path):
    """A file written before input_multiple, scale_account, account_inputs and account_fusion
    existed holds a 427-wide first layer (8 x 53 market + 3 account inputs) trained on the raw,
    legacy account state: it loads with input_multiple 1, scale_account False, account_inputs
    'legacy' and account_fusion 'gain' and evaluates on 427-wide, unscaled observations."""
    from ppo_core.data import prepare
    from ppo_core.evaluation import evaluate_with_baselines
    from ppo_core.synthetic import make_synthetic

    old = NetworkConfig(
        lookback=8,
        hidden_dims=(16,),
        input_multiple=1,
        scale_account=False,
        account_inputs="legacy",
        account_fusion="gain",
    )
    path = tmp_path / "old.pt"
    checkpoint.save(path, PPOConfig(network=old), ActorCritic(old))
    payload = torch.load(path, weights_only=True)
    for key in ("input_multiple", "scale_account", "account_inputs", "account_fusion"):
        del payload["config"]["network"][key]
    torch.save(payload, path)
    loaded = checkpoint.load(path)
    assert loaded.config == old == loaded.ppo_config.network
    assert loaded.policy_state_dict["actor_trunk.0.weight"].shape == (16, 427)
    policy = ActorCritic(loaded.config)
    policy.load_state_dict(loaded.policy_state_dict)
    data = prepare(make_synthetic(bars=600, seed=3), lookback=8)
    results = evaluate_with_baselines(policy, data, "validation", 1.0)
    assert results["policy"].n_bars == results["flat"].n_bars > 0
    with pytest.raises(ArchitectureMismatch, match="input_multiple 1; config asks for 8"):
        checkpoint.load(path, config=NetworkConfig(lookback=8, hidden_dims=(16,)))
    scaled = NetworkConfig(lookback=8, hidden_dims=(16,), input_multiple=1, account_inputs="legacy")
    with pytest.raises(ArchitectureMismatch, match="scale_account False; config asks for True"):
        checkpoint.load(path, config=scaled)


def test_a_late_fusion_checkpoint_round_trips_weights_only(tmp_path):
    """account_fusion travels in the file: a late-fusion policy loads (weights_only) into the
    same architecture, its heads 3 inputs wider than the trunk's output, same outputs."""
    config = NetworkConfig(lookback=8, hidden_dims=(16,), account_fusion="late")
    policy = ActorCritic(config)
    path = tmp_path / "late.pt"
    checkpoint.save(path, PPOConfig(network=config), policy)
    loaded = checkpoint.load(path)
    assert loaded.config == config
    assert loaded.policy_state_dict["actor_head.0.weight"].shape == (64, 16 + 3)
    again = ActorCritic(loaded.config)
    again.load_state_dict(loaded.policy_state_dict)
    obs = torch.randn(5, config.obs_dim)
    torch.testing.assert_close(again(obs)[0], policy(obs)[0])


def _poisoned(path: Path, value: float, which: str | None = None) -> Path:
    """A copy of the checkpoint at `path` whose weights (or the tensor `which`) are `value`,
    changed in place so a shared trunk stays one tensor."""
    payload = torch.load(path, weights_only=True)
    for name, tensor in payload["policy_state_dict"].items():
        if which is None or name == which:
            tensor.fill_(value)
    out = path.with_name(f"poisoned-{which or 'all'}.pt")
    torch.save(payload, out)
    return out


@pytest.mark.parametrize(
    ("value", "which"),
    [(math.nan, None), (math.inf, "actor_head.2.bias"), (-math.inf, "critic_head.0.weight")],
)
def test_non_finite_weights_are_refused_on_load_in_one_line(
    make_checkpoint, small_config, value, which
):
    path = _poisoned(make_checkpoint(small_config), value, which)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"checkpoint {path} has " in message
    assert "NaN or inf weights" in message
    assert "cannot be evaluated, resumed or exported" in message
    if which is not None:
        assert f"first in {which}" in message
    with pytest.raises(CheckpointError, match="NaN or inf"):
        checkpoint.load_into(ActorCritic(small_config), path)


def test_inspect_and_diff_still_read_a_diverged_checkpoint(make_checkpoint, small_config):
    good = make_checkpoint(small_config)
    bad = _poisoned(good, math.nan)
    info = checkpoint.inspect(bad)
    assert info.non_finite == estimate(small_config).params  # the shared trunk counted once
    assert checkpoint.inspect(good).non_finite == 0
    assert checkpoint.diff(good, bad).same_architecture


def test_inspect_shows_the_training_config_progress_and_data(tmp_path, small_config):
    config = PPOConfig(network=small_config, learning_rate=1e-3, gamma=0.9, total_timesteps=512)
    identity = {"name": "synthetic", "origin": {"spec": "synthetic", "seed": 3}, "sha256": "ab"}
    path = checkpoint.save(
        tmp_path / "run.pt",
        config,
        ActorCritic(small_config),
        extra_meta={"iteration": 1, "global_step": 256},
        data=identity,
    )
    info = checkpoint.inspect(path)
    assert info.training["gamma"] == 0.9
    assert info.training["learning_rate"] == 1e-3
    assert info.training["total_timesteps"] == 512
    assert info.training["env"]["cost_bps"] == config.env.cost_bps
    assert "network" not in info.training
    assert info.progress == {"iteration": 1, "global_step": 256}
    assert info.data == identity
    assert json.loads(json.dumps(info.to_dict()))["data"]["origin"]["seed"] == 3
    bare = checkpoint.inspect(
        checkpoint.save(tmp_path / "bare.pt", small_config, ActorCritic(small_config))
    )
    assert (bare.training, bare.progress, bare.data) == (None, None, None)


def test_diff_lists_two_different_datasets(tmp_path, small_config):
    policy = ActorCritic(small_config)

    def saved(name, data):
        return checkpoint.save(tmp_path / name, small_config, policy, data=data)

    a = saved("a.pt", {"name": "synthetic", "sha256": "aa", "n_bars": 2000})
    b = saved("b.pt", {"name": "prices", "sha256": "bb", "n_bars": 2000})
    result = checkpoint.diff(a, b)
    assert result.same_architecture
    assert result.data_differences == (
        ("data.name", "synthetic", "prices"),
        ("data.sha256", "aa", "bb"),
    )
    assert checkpoint.diff(a, a).data_differences == ()
    unknown = checkpoint.diff(a, saved("c.pt", None)).data_differences
    assert ("data.sha256", "aa", None) in unknown
    assert json.loads(json.dumps(result.to_dict()))["data_differences"][0][0] == "data.name"
