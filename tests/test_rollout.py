"""The rollout buffer: what it stores, its bytes, GAE over its contents, and minibatches that
cover every transition once per epoch in the generator's order."""

import torch

from ppo_core.ppo import compute_gae
from ppo_core.rollout import RolloutBuffer

N_STEPS, N_ENVS, OBS_DIM, ACCOUNT_DIM = 4, 3, 5, 3


def _filled(obs_buffer: str) -> RolloutBuffer:
    buffer = RolloutBuffer(N_STEPS, N_ENVS, OBS_DIM, ACCOUNT_DIM, obs_buffer, torch.device("cpu"))
    for step in range(N_STEPS):
        ids = step * N_ENVS + torch.arange(N_ENVS)  # a transition's number, 0..11
        if obs_buffer == "indices":
            buffer.obs[step] = ids
            buffer.account[step] = ids[:, None].float().expand(N_ENVS, ACCOUNT_DIM)
        else:
            buffer.obs[step] = ids[:, None].float().expand(N_ENVS, OBS_DIM)
        buffer.add(step, ids, -ids.float(), ids.float() / 10, ids.float(), ids % 2 == 0)
    return buffer


def test_the_buffer_holds_what_was_added_and_counts_its_bytes():
    rows, indices = _filled("observations"), _filled("indices")
    assert rows.dones[1].tolist() == [0.0, 1.0, 0.0]  # transitions 3, 4, 5: even ones ended
    assert rows.values[2, 1].item() == torch.tensor(0.7).item()
    per_sample = 8 + 4 * 4 + 4 * 0  # action (long), log-prob, value, reward, done; no account
    assert rows.nbytes == N_STEPS * N_ENVS * (OBS_DIM * 4 + per_sample)
    assert indices.nbytes == N_STEPS * N_ENVS * (8 + ACCOUNT_DIM * 4 + per_sample)


def test_advantages_are_the_pure_gae_of_the_stored_rollout():
    buffer = _filled("observations")
    next_value = torch.tensor([0.5, -0.5, 1.0])
    got = buffer.advantages_and_returns(next_value, 0.9, 0.8)
    expected = compute_gae(buffer.rewards, buffer.values, buffer.dones, next_value, 0.9, 0.8)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_an_epoch_of_minibatches_covers_each_transition_once_and_rebuilds_observations():
    buffer = _filled("indices")
    advantages = torch.arange(12.0).reshape(N_STEPS, N_ENVS) * 100
    returns = advantages + 1

    def observe(bars, account):  # (B,) and (B, 3) -> (B, OBS_DIM), marking what it was given
        assert torch.equal(account[:, 0], bars.float())
        return bars[:, None].float().expand(-1, OBS_DIM) + 0.5

    generator = torch.Generator().manual_seed(0)
    batches = list(buffer.minibatches(advantages, returns, 5, generator, observe))
    assert [len(mb.actions) for mb in batches] == [5, 5, 2]
    ids = torch.cat([mb.actions for mb in batches])
    assert sorted(ids.tolist()) == list(range(12))
    assert torch.equal(ids, torch.randperm(12, generator=torch.Generator().manual_seed(0)))
    for mb in batches:  # every field of a row belongs to the same transition
        assert torch.equal(mb.obs[:, 0], mb.actions.float() + 0.5)
        assert torch.equal(mb.log_probs, -mb.actions.float())
        assert torch.equal(mb.advantages, mb.actions.float() * 100)
        assert torch.equal(mb.returns, mb.advantages + 1)
        assert torch.equal(mb.values, mb.actions.float() / 10)
