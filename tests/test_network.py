"""ActorCritic: shapes, shared vs separate trunks, init, act/evaluate/value agreement."""

import math

import pytest
import torch
from torch import nn

from ppo_core.config import NetworkConfig
from ppo_core.network import ActorCritic


def _config(**changes) -> NetworkConfig:
    base = {"n_features": 4, "lookback": 8, "hidden_dims": (32, 16), "n_actions": 3}
    return NetworkConfig(**{**base, **changes})


@pytest.mark.parametrize("trunk", ["shared", "separate"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_forward_shapes(trunk, activation, layer_norm):
    config = _config(trunk=trunk, activation=activation, layer_norm=layer_norm)
    policy = ActorCritic(config)
    logits, value = policy(torch.randn(5, config.obs_dim))
    assert logits.shape == (5, 3)
    assert value.shape == (5,)
    assert torch.isfinite(logits).all()
    assert torch.isfinite(value).all()


def test_shared_trunk_is_one_module_and_separate_are_two():
    shared = ActorCritic(_config(trunk="shared"))
    separate = ActorCritic(_config(trunk="separate"))
    assert shared.actor_trunk is shared.critic_trunk
    assert separate.actor_trunk is not separate.critic_trunk
    trunk_params = sum(p.numel() for p in shared.actor_trunk.parameters())
    total_shared = sum(p.numel() for p in shared.parameters())
    total_separate = sum(p.numel() for p in separate.parameters())
    assert total_separate - total_shared == trunk_params


def test_separate_trunks_give_the_critic_its_own_features():
    torch.manual_seed(0)
    policy = ActorCritic(_config(trunk="separate"))
    obs = torch.randn(6, policy.config.obs_dim)
    _, value = policy(obs)
    value.sum().backward()
    assert all(p.grad is None for p in policy.actor_trunk.parameters())
    assert all(p.grad is not None for p in policy.critic_trunk.parameters())


def test_orthogonal_init_with_ppo_gains():
    policy = ActorCritic(_config(hidden_dims=(16, 8)))
    # (16, 40): 32 market + 3 account inputs, orthonormal rows scaled by sqrt(2), + 5 zero columns
    first = policy.actor_trunk[0].weight
    torch.testing.assert_close(first @ first.T, 2.0 * torch.eye(16), atol=1e-5, rtol=0)
    actor_out = policy.actor_head[2].weight  # (3, 64)
    torch.testing.assert_close(actor_out @ actor_out.T, 1e-4 * torch.eye(3), atol=1e-9, rtol=0)
    critic_out = policy.critic_head[2].weight  # (1, 64)
    assert critic_out.norm().item() == pytest.approx(1.0, abs=1e-5)
    for module in policy.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0


def test_initial_policy_is_near_uniform():
    # The 0.01-gain policy head makes the first policy close to uniform, as PPO intends.
    torch.manual_seed(0)
    policy = ActorCritic(_config())
    _, entropy, _ = policy.evaluate(
        torch.randn(64, policy.config.obs_dim), torch.zeros(64, dtype=torch.long)
    )
    assert entropy.min().item() > math.log(3) - 1e-2


def test_act_evaluate_value_agree():
    torch.manual_seed(1)
    policy = ActorCritic(_config())
    obs = torch.randn(10, policy.config.obs_dim)
    with torch.no_grad():
        action, log_prob, value = policy.act(obs)
        log_prob_again, entropy, value_again = policy.evaluate(obs, action)
        logits, forward_value = policy(obs)
    assert action.shape == log_prob.shape == value.shape == (10,)
    assert action.dtype == torch.long
    assert ((action >= 0) & (action < 3)).all()
    torch.testing.assert_close(log_prob, log_prob_again)
    torch.testing.assert_close(value, value_again)
    torch.testing.assert_close(policy.value(obs), forward_value)
    expected = torch.log_softmax(logits, -1)
    torch.testing.assert_close(log_prob, expected.gather(-1, action[:, None]).squeeze(-1))
    assert (entropy <= math.log(3) + 1e-6).all()
    assert (entropy >= 0).all()


def test_deterministic_act_is_the_argmax():
    torch.manual_seed(2)
    policy = ActorCritic(_config())
    with torch.no_grad():
        for module in policy.actor_head:
            if isinstance(module, nn.Linear):
                module.weight.mul_(300.0)  # sharpen the policy so the argmax is unambiguous
        obs = torch.randn(20, policy.config.obs_dim)
        action, _, _ = policy.act(obs, deterministic=True)
        logits, _ = policy(obs)
    assert torch.equal(action, logits.argmax(-1))


def test_sampling_follows_the_policy_distribution():
    torch.manual_seed(3)
    policy = ActorCritic(_config())
    with torch.no_grad():
        policy.actor_head[2].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
        obs = torch.zeros(1, policy.config.obs_dim).expand(20_000, -1)
        action, _, _ = policy.act(obs)
        probs = torch.softmax(policy(obs[:1])[0], -1)[0]
    counts = torch.bincount(action, minlength=3).float() / action.numel()
    torch.testing.assert_close(counts, probs, atol=0.015, rtol=0)


def test_every_parameter_gets_a_gradient():
    policy = ActorCritic(_config(trunk="separate", layer_norm=True, activation="tanh"))
    obs = torch.randn(8, policy.config.obs_dim)
    log_prob, entropy, value = policy.evaluate(obs, torch.randint(0, 3, (8,)))
    (log_prob.sum() + entropy.sum() + value.sum()).backward()
    for name, param in policy.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def _unpadded_copy(padded: ActorCritic) -> ActorCritic:
    """The same network on the unpadded observation: every weight copied, minus the pad
    columns of the first Linear of each trunk."""
    config = padded.config
    unpadded = ActorCritic(config.replace(input_multiple=1))
    width = unpadded.config.obs_dim
    state = {
        name: tensor[:, :width] if tensor.shape[-1:] == (config.obs_dim,) else tensor
        for name, tensor in padded.state_dict().items()
    }
    unpadded.load_state_dict(state)
    return unpadded


@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_pad_weights_start_and_stay_zero_and_change_no_output(trunk):
    """32 market + 3 account inputs are padded to 40: the first Linear's 5 pad columns start at
    0, get exactly zero gradients and zero Adam steps (their inputs are always 0), and the
    network's outputs are those of the 35-wide network with the same other weights."""
    torch.manual_seed(0)
    policy = ActorCritic(_config(trunk=trunk))
    config = policy.config
    assert (config.obs_dim, config.pad_dim) == (40, 5)
    firsts = [policy.actor_trunk[0], policy.critic_trunk[0]]
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2, eps=1e-5)
    for _ in range(5):
        obs = torch.cat([torch.randn(16, 35), torch.zeros(16, 5)], dim=1)  # as TradingEnv pads
        logits, value = policy(obs)
        loss = logits.logsumexp(-1).mean() + value.square().mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
        optimizer.step()
        for layer in firsts:
            assert torch.count_nonzero(layer.weight.grad[:, 35:]) == 0
    for layer in firsts:
        assert torch.count_nonzero(layer.weight[:, 35:]) == 0
        assert torch.count_nonzero(layer.weight[:, :35]) == layer.weight[:, :35].numel()
    obs = torch.randn(9, 35)
    logits, value = policy(torch.cat([obs, torch.zeros(9, 5)], dim=1))
    same_logits, same_value = _unpadded_copy(policy)(obs)
    torch.testing.assert_close(logits, same_logits)
    torch.testing.assert_close(value, same_value)


@pytest.mark.parametrize("trunk", ["shared", "separate"])
def test_late_fusion_feeds_the_account_state_to_the_heads_beside_the_trunk(trunk):
    """The trunk reads the 32 market inputs alone; each head reads the trunk's output and the
    3 account inputs, exactly as a plain concatenation computes it; the padding is ignored."""
    torch.manual_seed(0)
    policy = ActorCritic(_config(trunk=trunk, account_fusion="late"))
    assert policy.actor_trunk[0].in_features == 32
    assert policy.actor_head[0].in_features == policy.critic_head[0].in_features == 16 + 3
    obs = torch.cat([torch.randn(6, 35), torch.zeros(6, 5)], dim=1)  # (6, 40) as the env pads
    logits, value = policy(obs)
    actor = policy.actor_head(torch.cat([policy.actor_trunk(obs[:, :32]), obs[:, 32:35]], 1))
    critic = policy.critic_head(torch.cat([policy.critic_trunk(obs[:, :32]), obs[:, 32:35]], 1))
    torch.testing.assert_close(logits, actor)
    torch.testing.assert_close(value, critic.squeeze(-1))
    torch.testing.assert_close(policy.value(obs), value)
    moved = obs.clone()
    moved[:, 32] = 1.0  # another position, same market
    assert not torch.allclose(policy(moved)[0], logits)
    padded = obs.clone()
    padded[:, 35:] = 5.0
    torch.testing.assert_close(policy(padded)[0], logits)


@pytest.mark.gpu
def test_runs_on_cuda_with_bf16_autocast():
    policy = ActorCritic(_config()).cuda()
    obs = torch.randn(4, policy.config.obs_dim, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        action, log_prob, value = policy.act(obs)
    assert action.device.type == "cuda"
    assert log_prob.dtype == value.dtype == torch.float32
