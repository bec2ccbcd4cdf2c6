"""The batched greedy evaluation against the plain bar-by-bar loop, and its progress bar."""

import numpy as np
import pytest
import torch

from ppo_core import evaluation
from ppo_core.config import NetworkConfig
from ppo_core.data import prepare
from ppo_core.env import policy_positions
from ppo_core.evaluation import greedy_actions, greedy_positions
from ppo_core.network import ActorCritic
from ppo_core.synthetic import make_synthetic

LOOKBACK = 8


@pytest.fixture(scope="module")
def data():
    return prepare(make_synthetic(bars=3_000, seed=1), lookback=LOOKBACK)


def _trading_policy(**network) -> ActorCritic:
    """A small policy whose actions change often and depend on its account state: the default
    init's 0.01 policy head stays on one action, and at full weight the position (at gain
    sqrt(424)) holds every trade open, so either would compare little."""
    torch.manual_seed(0)
    policy = ActorCritic(NetworkConfig(lookback=LOOKBACK, hidden_dims=(32, 16), **network))
    config = policy.config
    with torch.no_grad():
        policy.actor_head[-1].weight.normal_(0.0, 3.0)
        policy.actor_trunk[0].weight[:, config.market_dim : config.market_dim + 3] *= 0.1
    return policy


def _per_bar(policy: ActorCritic, data, split: str) -> np.ndarray:
    """The reference: one full forward per bar, through the env's own loop."""
    policy.eval()
    return policy_positions(greedy_actions(policy), data, split, network=policy.config)


@pytest.mark.parametrize(
    "network",
    [
        {},
        {"trunk": "separate"},
        {"layer_norm": True, "activation": "tanh"},
        {"account_fusion": "late"},
        {"account_fusion": "late", "trunk": "separate", "activation": "tanh"},
    ],
    ids=["shared", "separate", "layer_norm", "late", "late-separate"],
)
@pytest.mark.parametrize("split", ["validation", "test"])
def test_batched_positions_equal_the_per_bar_loop(data, network, split, monkeypatch):
    # A chunk smaller than the split, so the positions carry across chunk boundaries.
    monkeypatch.setattr(evaluation, "CHUNK_BARS", 97)
    policy = _trading_policy(**network)
    expected = _per_bar(policy, data, split)
    got = greedy_positions(policy, data, split, progress=False)
    assert got.dtype == expected.dtype
    assert set(np.unique(expected)) == {-1, 0, 1}
    assert np.count_nonzero(np.diff(expected)) > 50  # it trades, so the account state moves
    np.testing.assert_array_equal(got, expected)


def test_the_account_state_changes_the_batched_actions(data, monkeypatch):
    """Pins that the equality above compares something: ignoring the account weights moves the
    decisions, so a batched pass that dropped them would fail it."""
    policy = _trading_policy()
    with_account = greedy_positions(policy, data, "validation", progress=False)
    config = policy.config
    with torch.no_grad():
        policy.actor_trunk[0].weight[:, config.market_dim : config.market_dim + 3] = 0.0
    assert not np.array_equal(with_account, greedy_positions(policy, data, "validation"))


def test_late_fusion_account_weights_change_the_batched_actions(data):
    """The same pin for late fusion: the account state's head weights move the decisions."""
    policy = _trading_policy(account_fusion="late")
    with_account = greedy_positions(policy, data, "validation", progress=False)
    with torch.no_grad():
        policy.actor_head[0].weight[:, -3:] = 0.0
    assert not np.array_equal(with_account, greedy_positions(policy, data, "validation"))


def test_without_an_account_state_the_positions_are_unchanged(data):
    policy = _trading_policy(account_state=False)
    np.testing.assert_array_equal(
        greedy_positions(policy, data, "validation", progress=False),
        _per_bar(policy, data, "validation"),
    )


def test_the_mode_is_restored(data):
    policy = _trading_policy()
    policy.train()
    greedy_positions(policy, data, "validation", progress=False)
    assert policy.training


def test_a_long_evaluation_shows_progress_on_stderr(data, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(evaluation, "CHUNK_BARS", 100)
    greedy_positions(_trading_policy(), data, "validation", progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "evaluating the validation split" in err


def test_a_short_or_disabled_evaluation_is_silent(data, monkeypatch, capsys):
    greedy_positions(_trading_policy(), data, "validation", progress=True)  # well under 10 s
    monkeypatch.setattr(evaluation, "PROGRESS_AFTER_S", 0.0)
    greedy_positions(_trading_policy(), data, "validation", progress=False)
    assert capsys.readouterr() == ("", "")
