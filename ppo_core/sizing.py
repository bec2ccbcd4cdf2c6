"""The exact analytic size model of an ActorCritic: parameters, bytes, FLOPs, training memory.

Pure arithmetic on a NetworkConfig (no torch, no network built), so `pick` and the reports can
size a network for a GPU nobody measured; tests check every figure against the real network.

What is counted, and what is not:

- `params` counts every tensor of `ActorCritic`: trunk Linear layers (twice for
  trunk="separate"), LayerNorm weight and bias when layer_norm, and both 64-wide heads.
- FLOPs count matrix multiplies only, 2 FLOPs per multiply-add, as
  `torch.utils.flop_counter.FlopCounterMode` does (addmm/mm). Bias adds, activations,
  LayerNorm and the loss are elementwise, O(width) per sample, under 0.1% of the total for the
  reference shape, and are left out so the figure means the same as a measured MFU's.
  Backward: a Linear's weight gradient and input gradient each cost as much as its forward,
  except that a layer reading the observation needs no input gradient, which is why
  6 x params overcounts by ~30% for a 5,300-wide input.
- Training memory is what a PPO update holds at its peak on the device: fp32 weights,
  gradients, Adam's two moments and its step's temporaries, the activations autograd saves
  for one minibatch, the
  gathered minibatch, the rollout buffer and (when n_bars is given) the feature tensor.
  The CUDA context is a separate stated constant (`CUDA_CONTEXT_BYTES`), never folded in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ppo_core.config import NetworkConfig
from ppo_core.errors import ConfigError

__all__ = [
    "CHECKPOINT_ADAM_TENSOR_BYTES",
    "CHECKPOINT_FIXED_BYTES",
    "CHECKPOINT_TENSOR_BYTES",
    "CUDA_CONTEXT_BYTES",
    "ROLLOUT_SAMPLE_BYTES",
    "SizingEstimate",
    "estimate",
]

CUDA_CONTEXT_BYTES = 500_000_000
"""Device memory a CUDA process holds before its first tensor: the driver context, the kernel
images loaded for it and cuBLAS/cuBLASLt workspaces (32 MiB per handle on Hopper, PyTorch PR
#120925). About 500 MB with CUDA's lazy module loading (default since CUDA 11.7 / torch 1.13);
up to ~800 MB without it (pytorch/pytorch#34323). The real figure varies by GPU, driver and
CUDA version; the memory benchmark measures it (NVML used minus allocator reserved)."""

CHECKPOINT_FIXED_BYTES = 2_000
"""Bytes of a `checkpoint.save` file beyond its tensors, independent of the network: the zip
directory, version records, the pickled config and meta. Least-squares fit over 24 small
configs with torch 2.13: 1.5 kB with a NetworkConfig, 2.7 kB with a PPOConfig."""

CHECKPOINT_TENSOR_BYTES = 300
"""Bytes per stored weight tensor beyond its data: its zip local header and central-directory
entry, 64-byte alignment padding and its pickle entry (fit: 298 B, torch 2.13)."""

CHECKPOINT_ADAM_TENSOR_BYTES = 750
"""Bytes per parameter tensor in Adam's saved state beyond the moments' data: three storage
records (exp_avg, exp_avg_sq, step) with their pickle entries (fit: 753 B, torch 2.13)."""

_SHARED_KEY_BYTES = 120
"""A shared trunk appears twice in the state dict (actor_trunk.*, critic_trunk.*): the second
name costs a pickle entry but no data (fit: 121 B)."""

ROLLOUT_SAMPLE_BYTES = 8 + 6 * 4
"""Per-sample rollout storage besides the observation: an int64 action and fp32 log-prob,
value, reward, done, advantage and return."""

_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
_FP32 = 4
_INT64 = 8


def _linears(config: NetworkConfig) -> list[tuple[str, int, int]]:
    """(module name, in, out) of every Linear, named as in ActorCritic's state dict."""
    trunk_step = 3 if config.layer_norm else 2  # Linear, [LayerNorm], activation
    widths = [config.obs_dim, *config.hidden_dims]
    trunks = ["actor_trunk"] if config.trunk == "shared" else ["actor_trunk", "critic_trunk"]
    layers = [
        (f"{trunk}.{i * trunk_step}", d_in, d_out)
        for trunk in trunks
        for i, (d_in, d_out) in enumerate(itertools.pairwise(widths))
    ]
    h, k = config.hidden_dims[-1], config.head_dim
    layers += [("actor_head.0", h, k), ("actor_head.2", k, config.n_actions)]
    layers += [("critic_head.0", h, k), ("critic_head.2", k, 1)]
    return layers


def _layer_norms(config: NetworkConfig) -> list[tuple[str, int]]:
    if not config.layer_norm:
        return []
    trunks = ["actor_trunk"] if config.trunk == "shared" else ["actor_trunk", "critic_trunk"]
    return [
        (f"{trunk}.{3 * i + 1}", width)
        for trunk in trunks
        for i, width in enumerate(config.hidden_dims)
    ]


def _activation_elements(config: NetworkConfig) -> int:
    """fp32 elements per sample that autograd saves in one forward, beyond weights and obs.

    Per trunk layer of width w: relu and tanh save their output (which is also what the next
    Linear saves, so one copy); gelu saves its input as well. LayerNorm saves its input and a
    mean and rstd per row. In a head: the 64-wide activation output that its last Linear reads.
    """
    per_layer = 0
    for width in config.hidden_dims:
        per_layer += width  # activation output, read by the next Linear
        if config.activation == "gelu":
            per_layer += width  # gelu's input (the Linear or LayerNorm output)
        if config.layer_norm:
            per_layer += width + 2  # LayerNorm's input (the Linear output), mean, rstd
    n_trunks = 1 if config.trunk == "shared" else 2
    heads = 2 * config.head_dim * (2 if config.activation == "gelu" else 1)
    return n_trunks * per_layer + heads


@dataclass(frozen=True)
class SizingEstimate:
    """Exact size, cost and memory of one network in one training setup, in bytes and FLOPs."""

    config: NetworkConfig
    """The network sized."""
    n_envs: int
    """Environments per rollout."""
    n_steps: int
    """Steps per environment per rollout."""
    minibatch: int
    """Samples per gradient step."""
    n_bars: int | None
    """Bars in the feature tensor kept on the device; None: not known, not counted."""
    obs_buffer: str
    """Rollout layout that train_bytes counts: 'indices' or 'observations'."""
    params: int
    """Trainable parameters: `sum(p.numel() for p in ActorCritic(config).parameters())`."""
    layer_params: tuple[tuple[str, int], ...]
    """(module name in ActorCritic, parameters) per Linear and LayerNorm, in build order."""
    first_layer_share: float
    """Share of params in the Linear layer(s) reading the observation (both trunks' if separate)."""
    n_tensors: int
    """Parameter tensors (a weight and a bias per Linear and per LayerNorm)."""
    weight_bytes: dict[str, int]
    """Weights at 'fp32', 'bf16', 'fp16' and 'int8' (one byte per weight, no scales)."""
    grad_bytes: int
    """fp32 gradients."""
    adam_bytes: int
    """Adam's two fp32 moments (exp_avg, exp_avg_sq)."""
    adam_step_bytes: int
    """Transient fp32 temporaries of one foreach Adam step (the trainer's and CUDA's default):
    the denominator sqrt(exp_avg_sq) / bias_correction + eps is built for every parameter at
    once, one fp32 copy of the weights, while the weights, grads and moments are all live."""
    checkpoint_bytes: int
    """File size of `checkpoint.save` with Adam state: ~12 B per parameter plus overhead."""
    checkpoint_bytes_no_optimizer: int
    """File size of `checkpoint.save` without optimizer state: ~4 B per parameter plus overhead."""
    forward_flops_per_sample: int
    """Matmul FLOPs of one forward pass for one observation (both heads)."""
    train_flops_per_sample: int
    """Matmul FLOPs of forward + backward for one observation."""
    rollout_bytes_observations: int
    """Rollout buffer storing every fp32 observation row plus per-sample scalars."""
    rollout_bytes_indices: int
    """Rollout buffer storing one int64 bar index (and, with account_state, the fp32 account
    state) per sample instead of the row."""
    activation_bytes: int
    """fp32 tensors autograd saves during one minibatch forward (excluding weights and obs)."""
    minibatch_bytes: int
    """The gathered fp32 observations of one minibatch."""
    data_bytes: int | None
    """The fp32 feature tensor (n_bars x n_features) on the device; None when n_bars is None."""

    @property
    def rollout_bytes(self) -> int:
        """The rollout buffer in the layout `obs_buffer` names."""
        if self.obs_buffer == "observations":
            return self.rollout_bytes_observations
        return self.rollout_bytes_indices

    def memory_components(self) -> dict[str, int]:
        """Training memory by component; 'data' only when n_bars is known. Sums to train_bytes."""
        components = {
            "weights": self.weight_bytes["fp32"],
            "grads": self.grad_bytes,
            "adam": self.adam_bytes,
            "adam_step": self.adam_step_bytes,
            "activations": self.activation_bytes,
            "minibatch": self.minibatch_bytes,
            "rollout": self.rollout_bytes,
        }
        if self.data_bytes is not None:
            components["data"] = self.data_bytes
        return components

    @property
    def train_bytes(self) -> int:
        """Peak device memory of a PPO update, without the CUDA context."""
        return sum(self.memory_components().values())

    @property
    def train_bytes_on_gpu(self) -> int:
        """train_bytes plus CUDA_CONTEXT_BYTES: what nvidia-smi would show, roughly."""
        return self.train_bytes + CUDA_CONTEXT_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: plain ints, floats, strings, lists and dicts."""
        return {
            "config": self.config.to_dict(),
            "n_envs": self.n_envs,
            "n_steps": self.n_steps,
            "minibatch": self.minibatch,
            "n_bars": self.n_bars,
            "obs_buffer": self.obs_buffer,
            "obs_dim": self.config.obs_dim,
            "params": self.params,
            "layer_params": [[name, count] for name, count in self.layer_params],
            "first_layer_share": self.first_layer_share,
            "n_tensors": self.n_tensors,
            "weight_bytes": dict(self.weight_bytes),
            "grad_bytes": self.grad_bytes,
            "adam_bytes": self.adam_bytes,
            "adam_step_bytes": self.adam_step_bytes,
            "checkpoint_bytes": self.checkpoint_bytes,
            "checkpoint_bytes_no_optimizer": self.checkpoint_bytes_no_optimizer,
            "forward_flops_per_sample": self.forward_flops_per_sample,
            "train_flops_per_sample": self.train_flops_per_sample,
            "rollout_bytes_observations": self.rollout_bytes_observations,
            "rollout_bytes_indices": self.rollout_bytes_indices,
            "activation_bytes": self.activation_bytes,
            "minibatch_bytes": self.minibatch_bytes,
            "data_bytes": self.data_bytes,
            "memory_components": self.memory_components(),
            "train_bytes": self.train_bytes,
            "cuda_context_bytes": CUDA_CONTEXT_BYTES,
            "train_bytes_on_gpu": self.train_bytes_on_gpu,
        }


def _count(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"sizing.estimate: {name} must be a positive integer, got {value!r}")


def estimate(
    config: NetworkConfig,
    n_envs: int = 8,
    n_steps: int = 256,
    minibatch: int = 256,
    n_bars: int | None = None,
    obs_buffer: str = "indices",
) -> SizingEstimate:
    """Size `config` for a PPO run of n_envs x n_steps rollouts and `minibatch`-sample updates."""
    for name, value in (("n_envs", n_envs), ("n_steps", n_steps), ("minibatch", minibatch)):
        _count(name, value)
    _count("n_bars", n_bars, allow_none=True)
    if obs_buffer not in ("indices", "observations"):
        raise ConfigError(
            f"sizing.estimate: obs_buffer must be indices or observations, got {obs_buffer!r}"
        )

    linears = _linears(config)
    norms = _layer_norms(config)
    # Interleave LayerNorms after their Linear so layer_params reads in build order.
    layers = [(name, d_in * d_out + d_out) for name, d_in, d_out in linears]
    layers += [(name, 2 * width) for name, width in norms]
    layers.sort(key=lambda item: _build_order(item[0]))
    params = sum(count for _, count in layers)
    n_tensors = 2 * len(layers)
    n_tensors_trunk = sum(2 for name, _ in layers if "trunk" in name)
    first = sum(count for name, count in layers if name.endswith("trunk.0"))

    forward_macs = sum(d_in * d_out for _, d_in, d_out in linears)
    # Backward: weight grad for every Linear, input grad for all but those reading the obs.
    input_grad_macs = sum(
        d_in * d_out for name, d_in, d_out in linears if not name.endswith("trunk.0")
    )
    train_macs = 2 * forward_macs + input_grad_macs

    samples = n_envs * n_steps
    obs_row = config.obs_dim * _FP32
    shared_keys = n_tensors_trunk if config.trunk == "shared" else 0
    checkpoint_no_optimizer = (
        CHECKPOINT_FIXED_BYTES
        + params * _FP32
        + n_tensors * CHECKPOINT_TENSOR_BYTES
        + shared_keys * _SHARED_KEY_BYTES
    )
    # Adam stores exp_avg, exp_avg_sq and a 0-d fp32 `step` per parameter tensor.
    adam_file = 2 * params * _FP32 + n_tensors * (_FP32 + CHECKPOINT_ADAM_TENSOR_BYTES)

    return SizingEstimate(
        config=config,
        n_envs=n_envs,
        n_steps=n_steps,
        minibatch=minibatch,
        n_bars=n_bars,
        obs_buffer=obs_buffer,
        params=params,
        layer_params=tuple(layers),
        first_layer_share=first / params,
        n_tensors=n_tensors,
        weight_bytes={dtype: params * size for dtype, size in _DTYPE_BYTES.items()},
        grad_bytes=params * _FP32,
        adam_bytes=2 * params * _FP32,
        adam_step_bytes=params * _FP32,
        checkpoint_bytes=checkpoint_no_optimizer + adam_file,
        checkpoint_bytes_no_optimizer=checkpoint_no_optimizer,
        forward_flops_per_sample=2 * forward_macs,
        train_flops_per_sample=2 * train_macs,
        rollout_bytes_observations=samples * (obs_row + ROLLOUT_SAMPLE_BYTES),
        rollout_bytes_indices=samples
        * (_INT64 + config.account_dim * _FP32 + ROLLOUT_SAMPLE_BYTES),
        activation_bytes=minibatch * _activation_elements(config) * _FP32,
        minibatch_bytes=minibatch * obs_row,
        data_bytes=None if n_bars is None else n_bars * config.n_features * _FP32,
    )


def _build_order(name: str) -> tuple[int, int]:
    module, index = name.rsplit(".", 1)
    order = ("actor_trunk", "critic_trunk", "actor_head", "critic_head")
    return order.index(module), int(index)
