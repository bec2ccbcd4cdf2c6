"""Training precision (fp32 / tf32 / bf16) and the captured update step.

The CPU checks: which precision 'auto' resolves to, the one-line refusals, that the TF32
setting never leaks out of a trainer, and that the captured step's warm-up leaves the very
parameters and Adam state it found. The `gpu` checks: a captured update gives the eager one's
parameters, and tf32/bf16 training runs.
"""

import re

import pytest
import torch
from _configs import LOOKBACK, tiny_cpu_config

from ppo_core import device as device_layer
from ppo_core.capture import check_capture, restore, snapshot
from ppo_core.config import PPOConfig
from ppo_core.data import prepare
from ppo_core.env import TradingEnv
from ppo_core.errors import ConfigError
from ppo_core.synthetic import make_synthetic
from ppo_core.trainer import PPOTrainer

ITERATIONS = 2
"""Updates a learn() here runs (the GPU precision runs): half the tiny config's default."""


@pytest.fixture(scope="module")
def data():
    return prepare(make_synthetic(bars=2_000, seed=3), lookback=LOOKBACK)


def _trainer(data, config: PPOConfig) -> PPOTrainer:
    env = TradingEnv(data, "train", config.n_envs, config.env, device=config.device, seed=0)
    return PPOTrainer(env, config)


@pytest.mark.parametrize(
    ("requested", "device", "capability", "expected"),
    [
        ("auto", "cpu", None, "fp32"),
        ("fp32", "cpu", None, "fp32"),
        ("auto", "cuda:0", (9, 0), "tf32"),
        ("auto", "cuda:0", (8, 0), "tf32"),
        ("auto", "cuda:0", (7, 5), "fp32"),
        ("bf16", "cuda:0", (8, 6), "bf16"),
        ("fp32", "cuda:0", (9, 0), "fp32"),
    ],
)
def test_auto_is_tf32_on_ampere_and_later_only(requested, device, capability, expected):
    assert device_layer.resolve_precision(requested, device, capability) == expected


@pytest.mark.parametrize(
    ("requested", "device", "capability", "message"),
    [
        ("tf32", "cpu", None, "precision tf32 needs a CUDA GPU"),
        ("bf16", "cpu", None, "precision bf16 needs a CUDA GPU"),
        ("bf16", "cuda:0", (7, 0), "needs compute capability 8.0+; cuda:0 is 7.0"),
        ("fp16", "cpu", None, "precision must be auto, fp32, tf32, bf16"),
    ],
)
def test_unsupported_precision_is_refused_in_one_line(requested, device, capability, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        device_layer.resolve_precision(requested, device, capability)
    assert len(str(caught.value).splitlines()) == 1


def test_matmul_precision_is_restored_even_on_error():
    before, seen = torch.get_float32_matmul_precision(), []

    def fail_inside() -> None:
        with device_layer.matmul_precision("tf32"):
            seen.append(torch.get_float32_matmul_precision())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert seen == ["high"]
    assert torch.get_float32_matmul_precision() == before


def test_trainer_records_the_resolved_precision_and_refuses_bf16_on_cpu(data):
    assert _trainer(data, tiny_cpu_config(ITERATIONS)).precision == "fp32"
    with pytest.raises(ConfigError, match="precision bf16 needs a CUDA GPU"):
        _trainer(data, tiny_cpu_config(ITERATIONS, precision="bf16"))


def test_legacy_bf16_flag_in_a_stored_config_becomes_a_precision():
    stored = tiny_cpu_config(ITERATIONS).to_dict()
    del stored["precision"], stored["capture"]
    assert PPOConfig.from_dict({**stored, "bf16": True}).precision == "bf16"
    assert PPOConfig.from_dict({**stored, "bf16": False}).precision == "fp32"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "replays CUDA graphs; device is cpu"),
        ({"device": "cuda", "compile": True}, "pick one"),
        ({"device": "cuda", "minibatch_size": 24}, "must divide n_envs"),
    ],
)
def test_capture_is_refused_where_it_cannot_be_replayed(data, changes, message):
    config = tiny_cpu_config(ITERATIONS, capture=True, **changes)
    with pytest.raises(ConfigError, match=message):
        check_capture(config, torch.device(config.device))


def _minibatch(trainer: PPOTrainer, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    n, obs_dim = trainer.config.minibatch_size, trainer.config.network.obs_dim
    return (
        torch.randn(n, obs_dim, generator=generator),
        torch.randint(0, 3, (n,), generator=generator),
        -torch.rand(n, generator=generator) - 0.5,
        torch.randn(n, generator=generator),
        torch.randn(n, generator=generator),
        torch.randn(n, generator=generator),
    )


@pytest.mark.parametrize("prior_steps", [0, 2])
def test_capture_warmup_is_undone_exactly(data, prior_steps):
    """What CapturedStep does around its warm-up, on a CPU: snapshot, three steps, restore.
    The next step must then match a trainer that never warmed up, bit for bit, both from a
    fresh Adam (whose state the restore recreates as zeros) and from one mid-run."""
    reference, warmed = (
        _trainer(data, tiny_cpu_config(ITERATIONS)),
        _trainer(data, tiny_cpu_config(ITERATIONS)),
    )
    for trainer in (reference, warmed):
        for seed in range(prior_steps):
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer._minibatch_step(*_minibatch(trainer, seed))
    saved = snapshot(warmed.policy, warmed.optimizer)
    for seed in (10, 11, 12):
        warmed.optimizer.zero_grad(set_to_none=True)
        warmed._minibatch_step(*_minibatch(warmed, seed))
    restore(warmed.policy, warmed.optimizer, saved)
    for trainer in (reference, warmed):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer._minibatch_step(*_minibatch(trainer, 99))
    for a, b in zip(reference.policy.parameters(), warmed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_captured_update_gives_the_eager_parameters(data):
    config = tiny_cpu_config(
        ITERATIONS, device="cuda", precision="fp32", n_envs=8, n_steps=32, minibatch_size=64
    )
    eager, captured = _trainer(data, config), _trainer(data, config.replace(capture=True))
    for _ in range(2):
        a, b = eager.train_iteration(), captured.train_iteration()
        assert b.value_loss == pytest.approx(a.value_loss, rel=1e-4)
    for p, q in zip(eager.policy.parameters(), captured.policy.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_lower_precision_trains_and_leaves_the_process_setting_alone(data, precision):
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("tf32 and bf16 need compute capability 8.0+")
    before = torch.get_float32_matmul_precision()
    trainer = _trainer(data, tiny_cpu_config(ITERATIONS, device="cuda", precision=precision))
    stats = trainer.learn(progress=False)
    assert trainer.precision == precision
    assert all(s.train_env_steps_per_s > 0 for s in stats)
    assert torch.get_float32_matmul_precision() == before


def test_a_gpu_checkpoint_resumes_with_the_cpus_adam(data, tmp_path):
    """A checkpoint written by a captured, fused GPU Adam (tensor step size, device steps) keeps
    its moments and step size but runs with this trainer's foreach Adam."""
    trainer = _trainer(data, tiny_cpu_config(ITERATIONS))
    trainer.train_iteration()
    path = tmp_path / "gpu.pt"
    trainer.save(path)
    payload = torch.load(path, weights_only=True)
    for group in payload["optimizer_state_dict"]["param_groups"]:
        group.update(fused=True, foreach=None, capturable=True, lr=torch.tensor(group["lr"]))
    torch.save(payload, path)

    resumed = _trainer(data, tiny_cpu_config(ITERATIONS))
    resumed.resume(path)
    group = resumed.optimizer.param_groups[0]
    assert (group["fused"], group["foreach"], group["capturable"]) == (None, True, False)
    assert group["lr"] == pytest.approx(trainer.optimizer.param_groups[0]["lr"])
    assert isinstance(group["lr"], float)
    resumed.train_iteration()  # the foreach step runs on the loaded state
    assert resumed.iteration == 2


@pytest.mark.parametrize(
    ("capability", "expected"),
    [(None, False), ((7, 5), False), ((8, 0), True), ((8, 9), True), ((9, 0), True)],
)
def test_one_rule_says_which_cards_have_tf32_and_bf16_tensor_cores(capability, expected):
    """The trainer's auto precision, its refusals and the matmul ceiling's plan all ask this."""
    assert device_layer.has_tensor_float_cores(capability) is expected
    assert device_layer.auto_precision(expected) == ("tf32" if expected else "fp32")
    if capability is not None:
        resolved = device_layer.resolve_precision("auto", "cuda:0", capability)
        assert resolved == device_layer.auto_precision(expected)


def test_pick_models_auto_as_train_does_from_the_datasheet():
    from archbench.instrument.device.datasheets import GpuSpec, find_gpu
    from archbench.reports.pick import _precisions

    assert _precisions("auto", find_gpu("T4")) == ("fp32", None)  # Turing: no TF32 cores
    assert _precisions("auto", find_gpu("A100-80GB")) == ("tf32", None)
    cpu = GpuSpec("cpu", "test", "cpu", (), 16.0, 1.0, None, None, None, "a test's CPU")
    assert _precisions("auto", cpu) == ("fp32", None)
    with pytest.raises(ConfigError, match=r"precision must be auto, fp32, tf32 or bf16, got 'x'"):
        _precisions("x", find_gpu("T4"))
