"""Frozen configuration records: the network, the trading environment and PPO.

Each validates itself in `__post_init__` and round-trips through JSON-safe dicts, so a
checkpoint or a benchmark record can always say exactly what it was made from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ppo_core.device import PRECISION_CHOICES, check_device
from ppo_core.errors import ConfigError

__all__ = [
    "ACCOUNT_DIM",
    "MAX_INPUT_MULTIPLE",
    "MAX_WIDTH",
    "EnvConfig",
    "NetworkConfig",
    "PPOConfig",
]

MAX_WIDTH = 65_536
MAX_INPUT_MULTIPLE = 64
MAX_SEED = 2**63 - 1
"""Largest seed torch.manual_seed takes (an int64)."""
ACCOUNT_DIM = 3
"""Account-state inputs: signed position, unrealised return of the open position, bars held."""
ACTIVATIONS = ("relu", "tanh", "gelu")
TRUNKS = ("shared", "separate")
ACCOUNT_INPUTS = ("bounded", "legacy")
ACCOUNT_FUSIONS = ("late", "gain")


def _positive_int(owner: str, name: str, value: Any, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{owner}.{name} must be positive, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{owner}.{name} must be at most {maximum:,}, got {value:,}")


def _finite_number(owner: str, name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{owner}.{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{owner}.{name} must be in [{low}, {high}], got {value!r}")


def _one_of(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{owner}.{name} must be one of {', '.join(allowed)}; got {value!r}")


def _pad_width(width: int, multiple: int) -> int:
    """Zero inputs that round `width` up to a multiple of `multiple` (0 when it already is)."""
    return -width % multiple


def _to_dict(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if dataclasses.is_dataclass(value):
            value = _to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _from_dict(cls: type, data: Any, nested: dict[str, type] | None = None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    kwargs = dict(data)
    for name, sub_cls in (nested or {}).items():
        if name in kwargs:
            kwargs[name] = sub_cls.from_dict(kwargs[name])
    return cls(**kwargs)


@dataclass(frozen=True)
class NetworkConfig:
    """The actor-critic MLP: input window, trunk widths and heads."""

    n_features: int = 53
    """Market features per bar."""
    lookback: int = 100
    """Bars of history in one observation; market_dim = n_features * lookback."""
    hidden_dims: tuple[int, ...] = (1024, 512, 256)
    """Widths of the trunk's Linear layers, input side first."""
    n_actions: int = 3
    """Discrete actions: short, flat, long."""
    head_dim: int = 64
    """Width of the hidden layer in each of the actor and critic heads."""
    trunk: str = "shared"
    """'shared': one trunk feeds both heads; 'separate': actor and critic trunks (SB3, CleanRL)."""
    activation: str = "relu"
    """Nonlinearity after every hidden Linear: relu, tanh or gelu."""
    layer_norm: bool = False
    """LayerNorm after each trunk Linear, before the activation."""
    account_state: bool = True
    """Append the account state (position, unrealised return, bars held) to the market window,
    so the policy can learn cost-aware holding; False: the market window alone."""
    input_multiple: int = 8
    """The observation is zero-padded up to a multiple of this many inputs; 1 = no padding."""
    scale_account: bool = True
    """Enter the account state at account_gain, the whole window's scale at init, so the policy
    reads its own position (README, "The workload"); False: raw, as older checkpoints. Only
    with account_fusion 'gain': late fusion needs no gain."""
    account_inputs: str = "bounded"
    """'bounded': position, tanh(unrealised log return / (recent volatility x sqrt(bars held)))
    and log1p(bars held) / log1p(account_horizon) capped at 1, each in [-1, 1]; 'legacy': the
    unrealised return in percent and bars held / 100, clipped at +-10 (older checkpoints)."""
    account_horizon: int = 256
    """Bars held reach 1 (the cap) at this many bars: the training episode length, so no
    evaluation bar shows a holding period training never saw. Used by 'bounded' inputs."""
    account_fusion: str = "gain"
    """Where the account state joins: 'late', concatenated to the trunk's output at the input of
    both heads; 'gain', beside the market window at the first layer (times account_gain)."""

    def __post_init__(self) -> None:
        owner = "NetworkConfig"
        _positive_int(owner, "n_features", self.n_features, MAX_WIDTH)
        _positive_int(owner, "lookback", self.lookback, MAX_WIDTH)
        _positive_int(owner, "n_actions", self.n_actions, MAX_WIDTH)
        _positive_int(owner, "head_dim", self.head_dim, MAX_WIDTH)
        dims = self.hidden_dims
        if isinstance(dims, list):
            dims = tuple(dims)
            object.__setattr__(self, "hidden_dims", dims)
        if not isinstance(dims, tuple) or not dims:
            raise ConfigError(f"{owner}.hidden_dims must be a non-empty list, got {dims!r}")
        for i, width in enumerate(dims):
            _positive_int(owner, f"hidden_dims[{i}]", width, MAX_WIDTH)
        _one_of(owner, "trunk", self.trunk, TRUNKS)
        _one_of(owner, "activation", self.activation, ACTIVATIONS)
        if not isinstance(self.layer_norm, bool):
            raise ConfigError(f"{owner}.layer_norm must be true or false, got {self.layer_norm!r}")
        if not isinstance(self.account_state, bool):
            raise ConfigError(
                f"{owner}.account_state must be true or false, got {self.account_state!r}"
            )
        _positive_int(owner, "input_multiple", self.input_multiple, MAX_INPUT_MULTIPLE)
        if not isinstance(self.scale_account, bool):
            raise ConfigError(
                f"{owner}.scale_account must be true or false, got {self.scale_account!r}"
            )
        _one_of(owner, "account_inputs", self.account_inputs, ACCOUNT_INPUTS)
        _positive_int(owner, "account_horizon", self.account_horizon, MAX_WIDTH)
        _one_of(owner, "account_fusion", self.account_fusion, ACCOUNT_FUSIONS)

    @property
    def market_dim(self) -> int:
        """Width of the market window: features x lookback bars."""
        return self.n_features * self.lookback

    @property
    def account_dim(self) -> int:
        """Width of the account state: ACCOUNT_DIM when account_state, else 0."""
        return ACCOUNT_DIM if self.account_state else 0

    @property
    def account_gain(self) -> float:
        """The factor the account state enters the observation with: sqrt(market_dim) when it
        joins at the first layer with scale_account (each first-layer weight is ~1/sqrt(obs_dim)
        at init), else 1.0."""
        gained = self.scale_account and self.account_fusion == "gain"
        return math.sqrt(self.market_dim) if gained and self.account_state else 1.0

    @property
    def late_account_dim(self) -> int:
        """Account inputs each head reads beside the trunk's output (0 unless late fusion)."""
        return self.account_dim if self.account_fusion == "late" else 0

    @property
    def observation_layout(self) -> dict[str, Any]:
        """What an environment needs to build this network's observation, beyond the data."""
        return {
            "account_state": self.account_state,
            "account_gain": self.account_gain if self.account_state else None,
            "account_inputs": self.account_inputs if self.account_state else None,
            "account_horizon": self.account_horizon if self.account_state else None,
            "pad_dim": self.pad_dim,
        }

    @property
    def pad_dim(self) -> int:
        """Zero inputs after the account state that round obs_dim up to input_multiple: 5,303
        inputs are padded to 5,304, so every row of the observation batch and of the first
        Linear's weight is 32-byte aligned and BLAS picks its fast GEMM kernels."""
        return _pad_width(self.market_dim + self.account_dim, self.input_multiple)

    @property
    def obs_dim(self) -> int:
        """Flattened observation width: market window + account state + zero padding."""
        return self.market_dim + self.account_dim + self.pad_dim

    def replace(self, **changes: Any) -> NetworkConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        if isinstance(data, dict):
            # Written before the padding, the account scaling, the bounded account inputs or
            # late fusion existed: built without them.
            old = {"input_multiple": 1, "scale_account": False}
            old |= {"account_inputs": "legacy", "account_fusion": "gain"}
            data = {**old, **data}
        return _from_dict(cls, data)


@dataclass(frozen=True)
class EnvConfig:
    """The vectorised trading task that every network size is trained and judged on."""

    episode_bars: int = 256
    """Bars per training episode before an automatic reset at a new random start."""
    cost_bps: float = 30.0
    """Trading cost in basis points per unit of position change: above one synthetic bar's
    edge (21 bp), so only holding through a regime pays. Set your market's own."""
    reward_scale: float = 10.0
    """Training rewards are log returns times this; evaluation metrics always use unscaled
    returns. 10 keeps gamma-0.99 value targets (sums of ~100 rewards) O(1): at 100 the value
    loss swamped a shared trunk and tiny collapsed to flat on the synthetic market, while at 10
    it reached a validation Sharpe of 8.3 (lookback 10, 30k steps, seed 0, raw account state)."""

    def __post_init__(self) -> None:
        _positive_int("EnvConfig", "episode_bars", self.episode_bars)
        _finite_number("EnvConfig", "cost_bps", self.cost_bps, 0.0, 10_000.0)
        _finite_number("EnvConfig", "reward_scale", self.reward_scale, 1e-6, 1e6)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class PPOConfig:
    """Proximal Policy Optimisation (clipped objective, GAE) and the run around it."""

    total_timesteps: int = 100_000
    """Environment steps to collect over the whole run (summed over environments)."""
    n_envs: int = 8
    """Environments stepped together."""
    n_steps: int = 256
    """Steps per environment per rollout; a rollout holds n_envs * n_steps samples."""
    n_epochs: int = 4
    """Passes over each rollout in the update."""
    minibatch_size: int = 256
    """Samples per gradient step."""
    learning_rate: float = 3e-4
    """Adam step size at the start of the run."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE's bias-variance trade-off."""
    clip_coef: float = 0.2
    """PPO's ratio clipping range."""
    clip_vloss: bool = False
    """Clip the value update around the old value prediction, as the PPO paper's code does."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the update's epochs early once approx_kl exceeds this; None never stops."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    seed: int = 0
    """Seeds torch, the environments and the data sampling."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda' or 'cuda:N'."""
    precision: str = "auto"
    """Matmul precision of training: 'fp32' (TF32 off), 'tf32' (fp32 tensors, TF32 matmuls),
    'bf16' (autocast) or 'auto' (tf32 on a CUDA GPU of compute capability 8.0+, else fp32).
    tf32 and bf16 need such a GPU; the trainer refuses them elsewhere."""
    capture: bool = False
    """Replay each update minibatch step (forward, loss, backward, clip, Adam) from a CUDA
    graph instead of launching its kernels one by one (CUDA only; eager is the reference)."""
    compile: bool = False
    """torch.compile the policy (opt-in: compilation costs seconds to minutes)."""
    obs_buffer: str = "indices"
    """'indices': the rollout stores bar indices and gathers windows on the fly (exact here,
    since an observation is a window over the feature tensor); 'observations': full rows."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The actor-critic."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The trading task."""

    def __post_init__(self) -> None:
        owner = "PPOConfig"
        for name in ("total_timesteps", "n_envs", "n_steps", "n_epochs", "minibatch_size"):
            _positive_int(owner, name, getattr(self, name))
        if self.minibatch_size > self.batch_size:
            raise ConfigError(
                f"{owner}.minibatch_size ({self.minibatch_size}) exceeds the rollout size "
                f"n_envs * n_steps = {self.batch_size}"
            )
        _finite_number(owner, "learning_rate", self.learning_rate, 0.0, 1.0)
        _finite_number(owner, "gamma", self.gamma, 0.0, 1.0)
        _finite_number(owner, "gae_lambda", self.gae_lambda, 0.0, 1.0)
        _finite_number(owner, "clip_coef", self.clip_coef, 0.0, 10.0)
        _finite_number(owner, "vf_coef", self.vf_coef, 0.0, 1e3)
        _finite_number(owner, "ent_coef", self.ent_coef, 0.0, 1e3)
        _finite_number(owner, "max_grad_norm", self.max_grad_norm, 0.0, 1e6)
        if self.target_kl is not None:
            _finite_number(owner, "target_kl", self.target_kl, 0.0, 1e3)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"{owner}.seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"{owner}.seed must be in [0, 2**63 - 1] (torch's), got {self.seed}")
        check_device(self.device, f"{owner}.device")
        _one_of(owner, "obs_buffer", self.obs_buffer, ("indices", "observations"))
        _one_of(owner, "precision", self.precision, PRECISION_CHOICES)
        for name in ("anneal_lr", "clip_vloss", "norm_adv", "capture", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{owner}.{name} must be true or false")
        if not isinstance(self.network, NetworkConfig):
            raise ConfigError(f"{owner}.network must be a NetworkConfig")
        if not isinstance(self.env, EnvConfig):
            raise ConfigError(f"{owner}.env must be an EnvConfig")

    @property
    def batch_size(self) -> int:
        """Samples per rollout: n_envs * n_steps."""
        return self.n_envs * self.n_steps

    @property
    def n_iterations(self) -> int:
        """Rollout + update cycles needed to collect total_timesteps (at least one)."""
        return max(1, self.total_timesteps // self.batch_size)

    def replace(self, **changes: Any) -> PPOConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        if isinstance(data, dict) and "bf16" in data and "precision" not in data:
            # Checkpoints written before `precision` existed stored a bf16 flag (false: fp32).
            data = dict(data)
            data["precision"] = "bf16" if data.pop("bf16") else "fp32"
        return _from_dict(cls, data, nested={"network": NetworkConfig, "env": EnvConfig})
