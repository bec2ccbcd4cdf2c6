"""Inference backends: each one that runs here agrees with eager fp32; a wrong one is refused.

Small networks only; torch.compile (tens of seconds of inductor work) is marked slow.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from archbench.instrument import backends
from archbench.instrument.backends import (
    Backend,
    Unavailable,
    agreement,
    build_backend,
    compare_logits,
)
from ppo_core.config import NetworkConfig
from ppo_core.network import ActorCritic


@pytest.fixture
def policy() -> ActorCritic:
    """A separate-trunk policy with decisive logits, as after training (the 0.01-gain init
    head makes every action a near-tie, which no backend could be judged on)."""
    torch.manual_seed(0)
    network = NetworkConfig(n_features=4, lookback=8, hidden_dims=(32, 16), trunk="separate")
    net = ActorCritic(network).eval()
    with torch.no_grad():
        net.actor_head[-1].weight.mul_(100.0)
    return net


@pytest.fixture
def obs() -> torch.Tensor:
    # (512, obs_dim): 4 features x 8 bars + 3 account-state inputs + 5 zeros (input_multiple 8)
    values = torch.randn(512, 35, generator=torch.Generator().manual_seed(1))
    return torch.cat([values, torch.zeros(512, 5)], dim=1)


def test_eager_is_the_policy_itself(policy, obs):
    eager = build_backend("eager", policy, "cpu", obs[:1])
    check = agreement(eager, policy, obs)
    assert (check.action_agreement, check.max_abs_logit_diff, check.n_obs) == (1.0, 0.0, 512)
    assert check.ok
    assert torch.equal(eager.run(obs.numpy()), policy(obs)[0].detach())


def test_permuted_logits_are_refused(policy, obs):
    eager = build_backend("eager", policy, "cpu", obs[:1])
    broken = Backend("permuted", lambda x: eager.run(x)[:, [1, 2, 0]], "cpu")
    check = agreement(broken, policy, obs)
    assert not check.ok
    assert check.action_agreement is None or check.action_agreement < 0.5
    assert check.max_abs_logit_diff > 0.1
    assert check.describe().startswith("disagrees with eager: ")


def test_agreement_verdict_and_text_from_hand_values():
    reference = torch.tensor([[2.0, 0.0, -2.0], [0.0, 2.0, -2.0], [1.0, 1.0, -2.0]])
    same = compare_logits(reference, reference + 1e-6)
    assert same.ok
    assert (same.n_obs, same.n_decisive) == (3, 2)  # row 2 is a tie: not decisive
    assert same.describe().startswith("agrees with eager: 100.0% of 2 decisive actions")
    assert same.to_dict()["ok"] is True
    flipped = reference.clone()
    flipped[0] = flipped[0].flip(-1)
    check = compare_logits(reference, flipped)
    assert not check.ok
    assert check.action_agreement == 0.5
    assert check.describe().startswith("disagrees with eager: 50.0% of decisive actions")


def test_wrong_logit_shape_is_an_error(policy, obs):
    short = Backend("short", lambda x: torch.zeros(len(x), 2), "cpu")
    with pytest.raises(ValueError, match=r"shape \(512, 2\), eager \(512, 3\)"):
        agreement(short, policy, obs)


def test_int8_is_close_and_judged_by_the_threshold(policy, obs):
    int8 = build_backend("int8", policy, "cpu", obs[:1])
    if isinstance(int8, Unavailable):
        pytest.skip(f"int8 unavailable here: {int8.reason}")
    check = agreement(int8, policy, obs)
    logit_scale = policy(obs)[0].detach().abs().max().item()
    # Dynamic int8 rounds activations per batch: close, but near-ties may flip.
    assert check.max_abs_logit_diff < 0.05 * logit_scale
    assert check.action_agreement > 0.9
    assert check.ok == (check.action_agreement >= backends.AGREEMENT_THRESHOLD)


def test_onnxruntime_agrees_with_eager(policy, obs):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    onnx = build_backend("onnx", policy, "cpu", obs[:1])
    assert isinstance(onnx, Backend), onnx
    check = agreement(onnx, policy, obs)
    assert check.ok
    assert check.action_agreement == 1.0
    assert check.max_abs_logit_diff < 1e-4
    assert onnx.run(obs[:1]).shape == (1, 3)  # the batch axis is dynamic


def test_onnx_without_the_extra_says_how_to_install(policy, obs, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    onnx = build_backend("onnx", policy, "cpu", obs[:1])
    assert onnx == Unavailable(
        "onnx", "onnxscript not installed (pip install 'ppo-archbench[onnx]')"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_half_precision_is_unavailable_on_cpu_with_a_reason(policy, obs, name):
    result = build_backend(name, policy, "cpu", obs[:1])
    assert isinstance(result, Unavailable)
    assert "CUDA only" in result.reason


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_half_precision_agrees_on_gpu(policy, obs, name):
    half = build_backend(name, policy, "cuda", obs[:1])
    assert isinstance(half, Backend)
    assert agreement(half, policy.cuda(), obs.cuda()).action_agreement > 0.95


def test_build_backends_keeps_order_and_names(policy, obs):
    built = backends.build_backends(policy, "cpu", obs[:1], names=("eager", "int8", "bf16"))
    assert [b.name for b in built] == ["eager", "int8", "bf16"]
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        build_backend("tensorrt", policy, "cpu", obs[:1])


@pytest.mark.slow
def test_torch_compile_agrees_or_says_why(policy, obs):
    compiled = build_backend("compile", policy, "cpu", obs[:1])
    if isinstance(compiled, Unavailable):
        assert compiled.reason.startswith("torch.compile failed: ")
        return
    check = agreement(compiled, policy, obs)
    # Whether inductor's code is faithful depends on the CPU: with its AVX2 code (torch and
    # its kernels capped at AVX2 on an AVX-512 Xeon, ATEN_CPU_CAPABILITY=avx2) this policy's
    # logits came out up to 2.9 off (65% of decisive actions agreed), with AVX-512 code within
    # 1e-6. Either way the check must say which it is, and refuse to time a wrong one.
    with torch.inference_mode():
        error = (compiled.run(obs).float() - policy(obs)[0].float()).abs().max().item()
    assert check.max_abs_logit_diff == pytest.approx(error, abs=1e-6)
    if error < 1e-4:
        assert check.ok, check.describe()
    else:
        assert not check.ok
        assert check.refusal().startswith("disagrees with eager: "), check.describe()


def test_cuda_graph_is_unavailable_on_cpu_with_a_reason(policy, obs):
    result = build_backend("cuda_graph", policy, "cpu", obs[:1])
    assert result == Unavailable("cuda_graph", "CUDA graphs need a CUDA device; device is cpu")


def test_decide_is_the_argmax_action_on_the_host(policy, obs):
    """The end-to-end decision: host observations in, int64 actions on the host out."""
    eager = build_backend("eager", policy, "cpu", obs[:1])
    actions = eager.decide(obs[:7].numpy())
    assert actions.device.type == "cpu"
    assert actions.dtype == torch.int64
    assert torch.equal(actions, policy(obs[:7])[0].argmax(-1))
    assert eager.precision == "fp32"


@pytest.mark.gpu
def test_cuda_graph_agrees_and_decides_at_any_batch(policy, obs):
    graph = build_backend("cuda_graph", policy, "cuda", obs[:4].cuda())
    assert isinstance(graph, Backend)
    check = agreement(graph, policy.cuda(), obs.cuda())  # 512 = 128 replays of the batch of 4
    assert check.ok
    assert check.max_abs_logit_diff < 1e-4
    reference = policy(obs[:7].cuda())[0].argmax(-1).cpu()
    assert torch.equal(graph.decide(obs[:7].pin_memory()), reference)  # a padded last chunk
    assert torch.equal(graph.decide(obs[:4].numpy()), reference[:4])  # one replay, from numpy
