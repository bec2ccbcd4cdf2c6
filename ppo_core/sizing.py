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
- Training memory is the peak of live bytes over a PPO iteration, moment by moment: always
  the fp32 weights, Adam's two moments, the rollout buffer, the shuffled sample indices and
  (when n_bars is given) the feature tensor; on top, whichever of these moments holds most:
  the rollout step (observations and forward activations of n_envs rows), the minibatch
  gather (its rows and the int64 window indices), the forward (rows, saved activations and
  the widest layer's output in flight), the end of backward (rows, every gradient and the
  first layer's output gradient) or Adam's step (rows, gradients and the step's temporaries:
  one fp32 copy of the weights for the foreach Adam of a CPU, none for the fused Adam of a
  GPU). Plus a size-independent part per device kind (`WORKSPACE_BYTES`: cuBLAS workspaces
  and sort scratch on a GPU; thread pools, kernels and allocator arenas on a CPU), and on a
  CPU the freed heap pages glibc keeps resident (`HOST_SLACK_PER_WEIGHT_BYTE`). The CUDA
  context is separate (`CUDA_CONTEXT_BYTES`, a prior: the memory suite measures it).
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
    "HOST_SLACK_PER_WEIGHT_BYTE",
    "ROLLOUT_SAMPLE_BYTES",
    "WORKSPACE_BYTES",
    "SizingEstimate",
    "estimate",
]

CUDA_CONTEXT_BYTES = 780_000_000
"""Device memory a CUDA process holds outside torch's allocator: the driver context and the
kernel images loaded for it. A prior for GPUs nobody measured: 778-780 MB on an H100 80GB
(driver 580, CUDA 13, torch 2.11; shared/runs/h100), where 500 MB had been assumed. It varies
by GPU, driver and CUDA version; the memory suite measures it on every run (NVML per-process
used minus allocator reserved) and predicts with the measured figure."""

WORKSPACE_BYTES = {"cuda": 85_000_000, "cpu": 100_000_000}
"""The size-independent part of a training process's peak, by device kind (see
`SizingEstimate.workspace_bytes`). cuda: torch-allocated bytes no tensor of the model accounts
for: cuBLAS and cuBLASLt workspaces (32 MiB each on Hopper, PyTorch PR #120925) and the scratch
of randperm's sort and multinomial. Fitted on an H100 (torch 2.11, CUDA 13): with this
moment-by-moment model applied to the trainer as it ran there (foreach Adam; the previous
step's gradients and minibatch still alive at the next gather), 85 MB puts all 9 measured
allocator peaks (tiny..xlarge, quick and full settings) within -10% and +2%.
cpu: resident bytes a training region adds beyond its tensors: OpenMP thread stacks,
oneDNN/MKL kernels and the pages of libtorch first touched, glibc arenas; 8-wide calibration
runs on 2 EPYC cores measured 94-104 MB."""

HOST_SLACK_PER_WEIGHT_BYTE = 0.75
"""On a CPU, resident bytes beyond the live tensors per fp32 weight byte: glibc keeps the heap
pages of the gradients and Adam temporaries freed every step (set_to_none) resident while the
next step allocates anew. Fitted: the measured peak RSS beyond the live-tensor model was
0.6-1.5x the fp32 weights for tiny..large at the quick settings (2 EPYC cores, glibc 2.x)."""

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
    # Late fusion: the trunk reads the market window; each head, the account state as well.
    widths = [config.market_dim if config.late_account_dim else config.obs_dim, *config.hidden_dims]
    trunks = ["actor_trunk"] if config.trunk == "shared" else ["actor_trunk", "critic_trunk"]
    layers = [
        (f"{trunk}.{i * trunk_step}", d_in, d_out)
        for trunk in trunks
        for i, (d_in, d_out) in enumerate(itertools.pairwise(widths))
    ]
    h, k = config.hidden_dims[-1] + config.late_account_dim, config.head_dim
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
    device: str
    """Device kind the training memory is for: 'cuda' (fused Adam, allocator bytes) or 'cpu'
    (foreach Adam, resident bytes)."""
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
    """Transient fp32 temporaries of one Adam step while weights, grads and moments are live:
    on a CPU the trainer's foreach Adam builds sqrt(exp_avg_sq) / bias_correction + eps for
    every parameter at once (one fp32 copy of the weights); on a GPU its fused Adam none."""
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
    index_bytes: int
    """The int64 permutation of the rollout's samples that every update epoch shuffles."""
    gather_index_bytes: int
    """The int64 (minibatch x lookback) bar indices of one minibatch's window gather."""
    forward_transient_bytes: int
    """The widest trunk layer's Linear output for a minibatch, alive while its activation is
    computed (on top of the saved activations)."""
    first_grad_bytes: int
    """The gradient of the first trunk layer's output for a minibatch (per trunk), alive at
    the end of backward with every parameter gradient."""
    rollout_step_bytes: int
    """One rollout step's transients: the current, next and episode-end observations of
    n_envs rows and the forward's activations."""
    workspace_bytes: int
    """The size-independent part of the peak on this device kind (WORKSPACE_BYTES)."""
    host_slack_bytes: int
    """CPU only (0 on a GPU): freed heap pages the C allocator keeps resident
    (HOST_SLACK_PER_WEIGHT_BYTE x fp32 weights)."""

    @property
    def rollout_bytes(self) -> int:
        """The rollout buffer in the layout `obs_buffer` names."""
        if self.obs_buffer == "observations":
            return self.rollout_bytes_observations
        return self.rollout_bytes_indices

    def phases(self) -> dict[str, dict[str, int]]:
        """What each moment of an iteration holds on top of the always-live part (weights,
        Adam moments, rollout buffer, permutation, data, workspace), by component."""
        minibatch, grads = self.minibatch_bytes, self.grad_bytes
        return {
            "rollout step": {"activations": self.rollout_step_bytes},
            "minibatch gather": {"minibatch": minibatch, "index": self.gather_index_bytes},
            "forward": {
                "minibatch": minibatch,
                "activations": self.activation_bytes + self.forward_transient_bytes,
            },
            "end of backward": {
                "minibatch": minibatch,
                "grads": grads,
                "activations": self.first_grad_bytes,
            },
            "adam step": {
                "minibatch": minibatch,
                "grads": grads,
                "adam_step": self.adam_step_bytes,
            },
        }

    @property
    def peak_phase(self) -> str:
        """The moment of the iteration that holds the most (the first of equals)."""
        phases = self.phases()
        return max(phases, key=lambda name: sum(phases[name].values()))

    def memory_components(self) -> dict[str, int]:
        """What is live at the peak, by component (0 where a component is not live then);
        'data' only when n_bars is known. Sums to train_bytes."""
        components = dict.fromkeys(
            ("weights", "grads", "adam", "adam_step", "activations", "minibatch"), 0
        )
        components.update(
            weights=self.weight_bytes["fp32"], adam=self.adam_bytes, rollout=self.rollout_bytes
        )
        if self.data_bytes is not None:
            components["data"] = self.data_bytes
        components["index"] = self.index_bytes
        for name, size in self.phases()[self.peak_phase].items():
            components[name] += size
        components["workspace"] = self.workspace_bytes
        components["host_slack"] = self.host_slack_bytes
        return components

    @property
    def train_bytes(self) -> int:
        """Peak memory of a PPO training process on `device` (allocator bytes on a GPU, resident
        bytes beyond the interpreter and imports on a CPU), without the CUDA context."""
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
            "device": self.device,
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
            "index_bytes": self.index_bytes,
            "gather_index_bytes": self.gather_index_bytes,
            "forward_transient_bytes": self.forward_transient_bytes,
            "first_grad_bytes": self.first_grad_bytes,
            "rollout_step_bytes": self.rollout_step_bytes,
            "workspace_bytes": self.workspace_bytes,
            "host_slack_bytes": self.host_slack_bytes,
            "peak_phase": self.peak_phase,
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
    device: str = "cuda",
) -> SizingEstimate:
    """Size `config` for a PPO run of n_envs x n_steps rollouts and `minibatch`-sample updates
    on `device` ('cuda', 'cuda:N' or 'cpu': which Adam runs and what memory is counted)."""
    kind = _check_run(n_envs, n_steps, minibatch, n_bars, obs_buffer, device)
    linears = _linears(config)
    layers = _layer_params(config, linears)
    params = sum(count for _, count in layers)
    n_tensors = 2 * len(layers)
    first = sum(count for name, count in layers if name.endswith("trunk.0"))

    forward_macs = sum(d_in * d_out for _, d_in, d_out in linears)
    # Backward: weight grad for every Linear, input grad for all but those reading the obs.
    input_grad_macs = sum(
        d_in * d_out for name, d_in, d_out in linears if not name.endswith("trunk.0")
    )
    train_macs = 2 * forward_macs + input_grad_macs

    samples = n_envs * n_steps
    obs_row = config.obs_dim * _FP32
    n_trunks = 1 if config.trunk == "shared" else 2
    checkpoint_no_optimizer, adam_file = _checkpoint_bytes(config, layers)

    return SizingEstimate(
        config=config,
        n_envs=n_envs,
        n_steps=n_steps,
        minibatch=minibatch,
        n_bars=n_bars,
        obs_buffer=obs_buffer,
        device=kind,
        params=params,
        layer_params=tuple(layers),
        first_layer_share=first / params,
        n_tensors=n_tensors,
        weight_bytes={dtype: params * size for dtype, size in _DTYPE_BYTES.items()},
        grad_bytes=params * _FP32,
        adam_bytes=2 * params * _FP32,
        adam_step_bytes=params * _FP32 if kind == "cpu" else 0,
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
        index_bytes=samples * _INT64,
        gather_index_bytes=minibatch * config.lookback * _INT64,
        forward_transient_bytes=minibatch * max(config.hidden_dims) * _FP32,
        first_grad_bytes=n_trunks * minibatch * config.hidden_dims[0] * _FP32,
        rollout_step_bytes=n_envs * (3 * obs_row + _activation_elements(config) * _FP32),
        workspace_bytes=WORKSPACE_BYTES[kind],
        host_slack_bytes=round(HOST_SLACK_PER_WEIGHT_BYTE * params * _FP32) if kind == "cpu" else 0,
    )


def _check_run(
    n_envs: int, n_steps: int, minibatch: int, n_bars: int | None, obs_buffer: str, device: str
) -> str:
    """Refuse a bad run shape, in one line naming the argument -> the device kind."""
    for name, value in (("n_envs", n_envs), ("n_steps", n_steps), ("minibatch", minibatch)):
        _count(name, value)
    _count("n_bars", n_bars, allow_none=True)
    if obs_buffer not in ("indices", "observations"):
        raise ConfigError(
            f"sizing.estimate: obs_buffer must be indices or observations, got {obs_buffer!r}"
        )
    kind = "cuda" if isinstance(device, str) and device.split(":")[0] == "cuda" else device
    if kind not in WORKSPACE_BYTES:
        raise ConfigError(f"sizing.estimate: device must be cpu, cuda or cuda:N, got {device!r}")
    return kind


def _layer_params(
    config: NetworkConfig, linears: list[tuple[str, int, int]]
) -> list[tuple[str, int]]:
    """(module name, parameter count) of every Linear and LayerNorm, in build order."""
    # Interleave LayerNorms after their Linear so layer_params reads in build order.
    layers = [(name, d_in * d_out + d_out) for name, d_in, d_out in linears]
    layers += [(name, 2 * width) for name, width in _layer_norms(config)]
    layers.sort(key=lambda item: _build_order(item[0]))
    return layers


def _checkpoint_bytes(config: NetworkConfig, layers: list[tuple[str, int]]) -> tuple[int, int]:
    """Bytes of a checkpoint without the optimizer, and of the Adam state it adds."""
    params = sum(count for _, count in layers)
    n_tensors = 2 * len(layers)
    n_tensors_trunk = sum(2 for name, _ in layers if "trunk" in name)
    shared_keys = n_tensors_trunk if config.trunk == "shared" else 0
    no_optimizer = (
        CHECKPOINT_FIXED_BYTES
        + params * _FP32
        + n_tensors * CHECKPOINT_TENSOR_BYTES
        + shared_keys * _SHARED_KEY_BYTES
    )
    # Adam stores exp_avg, exp_avg_sq and a 0-d fp32 `step` per parameter tensor.
    adam_file = 2 * params * _FP32 + n_tensors * (_FP32 + CHECKPOINT_ADAM_TENSOR_BYTES)
    return no_optimizer, adam_file


def _build_order(name: str) -> tuple[int, int]:
    module, index = name.rsplit(".", 1)
    order = ("actor_trunk", "critic_trunk", "actor_head", "critic_head")
    return order.index(module), int(index)
