"""compute_gae and ppo_loss against plain Python loops over scalars, on random inputs."""

import math
import random

import pytest
import torch

from ppo_core.ppo import compute_gae, explained_variance, ppo_loss


def _gae_reference(rewards, values, dones, next_value, gamma, lam):
    """Per environment, walk back in time with floats: the textbook recursion."""
    n_steps, n_envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * n_envs for _ in range(n_steps)]
    for env in range(n_envs):
        gae = 0.0
        for t in reversed(range(n_steps)):
            v_next = next_value[env] if t == n_steps - 1 else values[t + 1][env]
            mask = 0.0 if dones[t][env] else 1.0
            delta = rewards[t][env] + gamma * v_next * mask - values[t][env]
            gae = delta + gamma * lam * mask * gae
            advantages[t][env] = gae
    returns = [[advantages[t][e] + values[t][e] for e in range(n_envs)] for t in range(n_steps)]
    return advantages, returns


@pytest.mark.parametrize("seed", range(5))
def test_compute_gae_matches_plain_loop(seed):
    rng = random.Random(seed)
    n_steps, n_envs = rng.randint(1, 40), rng.randint(1, 6)
    gamma, lam = rng.uniform(0.8, 1.0), rng.uniform(0.0, 1.0)
    rewards = [[rng.gauss(0, 1) for _ in range(n_envs)] for _ in range(n_steps)]
    values = [[rng.gauss(0, 1) for _ in range(n_envs)] for _ in range(n_steps)]
    dones = [[rng.random() < 0.15 for _ in range(n_envs)] for _ in range(n_steps)]
    next_value = [rng.gauss(0, 1) for _ in range(n_envs)]

    adv, ret = compute_gae(
        torch.tensor(rewards, dtype=torch.float64),
        torch.tensor(values, dtype=torch.float64),
        torch.tensor(dones, dtype=torch.float64),
        torch.tensor(next_value, dtype=torch.float64),
        gamma,
        lam,
    )
    ref_adv, ref_ret = _gae_reference(rewards, values, dones, next_value, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(ref_adv, dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor(ref_ret, dtype=torch.float64))


def test_gae_lambda_one_no_dones_is_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [0.25], [0.125]])
    adv, ret = compute_gae(rewards, values, torch.zeros(3, 1), torch.tensor([10.0]), 0.9, 1.0)
    expected_return = [1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 10, 2 + 0.9 * 3 + 0.81 * 10, 3 + 0.9 * 10]
    torch.testing.assert_close(ret.flatten(), torch.tensor(expected_return))
    torch.testing.assert_close(adv.flatten(), torch.tensor(expected_return) - values.flatten())


def _loss_reference(new_lp, old_lp, adv, new_v, old_v, ret, ent, clip, vf, ec, clip_v, norm):
    n = len(new_lp)
    if norm:
        mean = sum(adv) / n
        std = math.sqrt(sum((a - mean) ** 2 for a in adv) / (n - 1))  # unbiased, as torch.std
        adv = [(a - mean) / (std + 1e-8) for a in adv]
    pg, vl, kl, cf = 0.0, 0.0, 0.0, 0.0
    for i in range(n):
        ratio = math.exp(new_lp[i] - old_lp[i])
        clipped = min(max(ratio, 1 - clip), 1 + clip)
        pg += max(-adv[i] * ratio, -adv[i] * clipped)
        unclipped = (new_v[i] - ret[i]) ** 2
        if clip_v:
            v_clip = old_v[i] + min(max(new_v[i] - old_v[i], -clip), clip)
            vl += 0.5 * max(unclipped, (v_clip - ret[i]) ** 2)
        else:
            vl += 0.5 * unclipped
        kl += (ratio - 1) - (new_lp[i] - old_lp[i])
        cf += 1.0 if abs(ratio - 1) > clip else 0.0
    pg, vl, kl, cf = pg / n, vl / n, kl / n, cf / n
    ent_mean = sum(ent) / n
    return pg - ec * ent_mean + vf * vl, pg, vl, ent_mean, kl, cf


@pytest.mark.parametrize(
    ("seed", "clip_v", "norm"),
    [(0, False, True), (1, True, True), (2, True, False), (3, False, False)],
)
def test_ppo_loss_matches_plain_loop(seed, clip_v, norm):
    rng = random.Random(seed)
    n = rng.randint(2, 64)
    old_lp = [-rng.uniform(0.1, 2.0) for _ in range(n)]
    new_lp = [lp + rng.gauss(0, 0.3) for lp in old_lp]  # ratios both inside and outside the clip
    adv = [rng.gauss(0, 2) for _ in range(n)]
    old_v = [rng.gauss(0, 1) for _ in range(n)]
    new_v = [v + rng.gauss(0, 0.5) for v in old_v]
    ret = [rng.gauss(0, 1) for _ in range(n)]
    ent = [rng.uniform(0, 1.1) for _ in range(n)]
    clip, vf, ec = 0.2, 0.5, 0.01

    def t(x):
        return torch.tensor(x, dtype=torch.float64)

    terms = ppo_loss(
        t(new_lp), t(old_lp), t(adv), t(new_v), t(old_v), t(ret), t(ent),
        clip_coef=clip, vf_coef=vf, ent_coef=ec, clip_vloss=clip_v, norm_adv=norm,
    )  # fmt: skip
    expected = _loss_reference(
        new_lp, old_lp, adv, new_v, old_v, ret, ent, clip, vf, ec, clip_v, norm
    )
    got = (
        terms.loss,
        terms.policy_loss,
        terms.value_loss,
        terms.entropy,
        terms.approx_kl,
        terms.clipfrac,
    )
    for name, value, ref in zip(
        ("loss", "pg", "v", "ent", "kl", "clipfrac"), got, expected, strict=True
    ):
        assert value.item() == pytest.approx(ref, rel=1e-9, abs=1e-12), name


def test_ppo_loss_gradient_flows_only_through_new_quantities():
    new_lp = torch.tensor([-1.0, -0.5], requires_grad=True)
    new_v = torch.tensor([0.3, 0.1], requires_grad=True)
    terms = ppo_loss(
        new_lp, torch.tensor([-1.1, -0.4]), torch.tensor([1.0, -1.0]), new_v,
        torch.tensor([0.2, 0.2]), torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]),
        clip_coef=0.2, vf_coef=0.5, ent_coef=0.0,
    )  # fmt: skip
    terms.loss.backward()
    assert torch.all(new_lp.grad != 0)
    assert torch.all(new_v.grad != 0)
    assert not terms.approx_kl.requires_grad


def test_explained_variance():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)
    assert math.isnan(explained_variance(target, torch.ones(4)))
