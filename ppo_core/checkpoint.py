"""Checkpoints as plain containers: save atomically, load safely, inspect and diff them.

A file holds only tensors, dicts, lists and scalars, so `torch.load(weights_only=True)` reads it
and a crafted pickle is refused without running it. Layout (format "ppo-archbench/1")::

    {"format": "ppo-archbench/1",
     "config": {"network": NetworkConfig.to_dict(),
                "ppo": PPOConfig.to_dict() without its "network" key, or None},
     "policy_state_dict": {name: tensor},
     "optimizer_state_dict": torch.optim state_dict | None,
     "obs_norm": {name: tensor | list | float} | None,
     "data": {"name", "origin" (how load_market_data rebuilds it), "sha256", "n_bars",
              "first", "last", "lookback", "splits", "split_times"} | None,
     "meta": {"archbench_version", "torch_version", "created" (UTC ISO 8601),
              "git_commit" (None when unknown), ...extra_meta}}

Older checkpoints still load: one without "data" loads with `data` None (evaluation then
needs --data), and one whose network has no "account_state" was trained on the market window
alone, so it loads with account_state False; one whose network has no "input_multiple" was
built on the unpadded observation, so it loads with input_multiple 1, and one with no
"scale_account" saw the raw account state, so it loads with scale_account False; one with no
"account_inputs" or "account_fusion" saw the legacy account inputs at the first layer, so it
loads with account_inputs "legacy" and account_fusion "gain" (NetworkConfig.from_dict).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickletools
import re
import subprocess
import warnings
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppo_core import __version__
from ppo_core.atomic import atomic_path
from ppo_core.config import NetworkConfig, PPOConfig
from ppo_core.errors import ArchitectureMismatch, CheckpointError, ConfigError
from ppo_core.sizing import estimate

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointDiff",
    "CheckpointInfo",
    "diff",
    "inspect",
    "load",
    "load_into",
    "save",
]

FORMAT = "ppo-archbench/1"

# Compared in this order; the first that differs is the one the error message names in full.
_ARCHITECTURE_KEYS = (
    "hidden_dims",
    "n_features",
    "lookback",
    "trunk",
    "n_actions",
    "head_dim",
    "activation",
    "layer_norm",
    "account_state",
    "input_multiple",
    "scale_account",
    "account_inputs",
    "account_horizon",
    "account_fusion",
)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint, its configs rebuilt and validated."""

    path: Path
    """The file it was read from."""
    config: NetworkConfig
    """The architecture the weights belong to."""
    ppo_config: PPOConfig | None
    """The training run's config, when the checkpoint was saved with one."""
    policy_state_dict: dict[str, torch.Tensor]
    """ActorCritic weights, on the CPU."""
    optimizer_state_dict: dict[str, Any] | None
    """The optimizer's state_dict (Adam moments and step), when saved."""
    obs_norm: dict[str, Any] | None
    """Observation-normalisation statistics, when saved."""
    data: dict[str, Any] | None
    """The training data's identity (PreparedData.identity()): name, origin, content hash, bar
    count, split boundaries; None in checkpoints written before it was recorded."""
    meta: dict[str, Any]
    """archbench_version, torch_version, created (UTC ISO 8601), git_commit, and extras."""
    file_bytes: int
    """Size of the file on disk."""

    def check_architecture(self, config: NetworkConfig | PPOConfig) -> None:
        """Refuse (ArchitectureMismatch) a config whose architecture differs from the weights'."""
        mismatch = _architecture_mismatch(
            f"checkpoint {self.path}", self.config, _split_config(config)[0]
        )
        if mismatch is not None:
            raise mismatch


@dataclass(frozen=True)
class CheckpointInfo:
    """What `archbench inspect` shows about a checkpoint file."""

    path: str
    """The file."""
    file_bytes: int
    """Size on disk."""
    predicted_bytes: int
    """The sizing model's figure for this file (with or without optimizer state)."""
    hidden_dims: tuple[int, ...]
    """Trunk widths."""
    trunk: str
    """'shared' or 'separate'."""
    obs_dim: int
    """Input width: n_features x lookback + account_dim + pad_dim."""
    n_features: int
    """Features per bar."""
    lookback: int
    """Bars per observation."""
    account_dim: int
    """Account-state inputs (position, unrealised return, bars held); 0 without them."""
    account_gain: float
    """The factor the account state enters the observation with (1.0: raw)."""
    pad_dim: int
    """Zero inputs that pad the observation to input_multiple."""
    n_actions: int
    """Discrete actions."""
    activation: str
    """Hidden nonlinearity."""
    layer_norm: bool
    """LayerNorm in the trunk."""
    params: int
    """Parameters counted in the stored weights (a shared trunk's tensors once)."""
    has_optimizer_state: bool
    """Whether the optimizer's state was saved (needed to resume training exactly)."""
    has_obs_norm: bool
    """Whether observation-normalisation statistics were saved."""
    created: str | None
    """UTC time of the save, ISO 8601."""
    archbench_version: str | None
    """ppo-archbench version that wrote it."""
    torch_version: str | None
    """torch version that wrote it."""
    git_commit: str | None
    """Commit of the archbench source that wrote it, when known."""
    non_finite: int = 0
    """Weights that are NaN or inf (such a checkpoint cannot be evaluated, resumed or exported)."""
    training: dict[str, Any] | None = None
    """The run's PPOConfig without its network (gamma, cost, lr, budget, ...); None when the file
    was saved with its network alone."""
    progress: dict[str, int] | None = None
    """{"iteration", "global_step"} the run had reached when saved; None when not recorded."""
    data: dict[str, Any] | None = None
    """The training data's identity (name, origin, sha256, bars, split times); None when the
    file was written before archbench recorded it."""

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["hidden_dims"] = list(self.hidden_dims)
        return out


@dataclass(frozen=True)
class CheckpointDiff:
    """How two checkpoints differ: architecture fields, training fields, parameter counts."""

    path_a: str
    """First file."""
    path_b: str
    """Second file."""
    differences: tuple[tuple[str, Any, Any], ...]
    """(NetworkConfig field, value in a, value in b) for every architecture field that differs."""
    training_differences: tuple[tuple[str, Any, Any], ...]
    """(PPOConfig field, a, b) where both files carry a training config and the values differ."""
    data_differences: tuple[tuple[str, Any, Any], ...]
    """(data identity field, a, b) where the training data differ (name, origin, sha256, bars,
    splits; None on the side that does not record its data)."""
    params_a: int
    """Parameters stored in a."""
    params_b: int
    """Parameters stored in b."""

    @property
    def same_architecture(self) -> bool:
        """True when the weights of one load into the network of the other."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "path_a": self.path_a,
            "path_b": self.path_b,
            "same_architecture": self.same_architecture,
            "differences": [list(d) for d in self.differences],
            "training_differences": [list(d) for d in self.training_differences],
            "data_differences": [list(d) for d in self.data_differences],
            "params_a": self.params_a,
            "params_b": self.params_b,
        }


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """HEAD of the git checkout this package runs from; None for an installed wheel."""
    source = Path(__file__).resolve().parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if done.returncode == 0 and len(done.stdout.strip()) == 40:
            return done.stdout.strip()
    return None


def _split_config(config: NetworkConfig | PPOConfig) -> tuple[NetworkConfig, PPOConfig | None]:
    if isinstance(config, PPOConfig):
        return config.network, config
    if isinstance(config, NetworkConfig):
        return config, None
    raise ConfigError(f"config must be a NetworkConfig or PPOConfig, got {type(config).__name__}")


def _plain(value: Any, where: str) -> Any:
    """A copy of `value` made only of what weights_only loading accepts, or a ConfigError."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    # Exact types: numpy's float64 subclasses float but pickles as a numpy global.
    if value is None or type(value) in (bool, int, float, str):
        return value
    if hasattr(value, "__array__"):  # numpy arrays and scalars
        return torch.as_tensor(value).clone()
    raise ConfigError(
        f"{where} must hold tensors, arrays, lists, dicts or numbers; got {type(value).__name__}"
    )


def _architecture_mismatch(
    where: str, stored: NetworkConfig, wanted: NetworkConfig
) -> ArchitectureMismatch | None:
    differing = [k for k in _ARCHITECTURE_KEYS if getattr(stored, k) != getattr(wanted, k)]
    if not differing:
        return None
    first = differing[0]

    def show(value: Any) -> str:
        return str(tuple(value)) if first == "hidden_dims" else repr(value)

    message = (
        f"{where} has {first} {show(getattr(stored, first))}; "
        f"config asks for {show(getattr(wanted, first))}"
    )
    if len(differing) > 1:
        message += f" (also differs: {', '.join(differing[1:])})"
    return ArchitectureMismatch(message)


def save(
    path: str | os.PathLike[str],
    config: NetworkConfig | PPOConfig,
    policy: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    obs_norm: dict[str, Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, then rename); return its path.

    `config` may be the NetworkConfig alone or the whole PPOConfig of the run; either way the
    architecture is stored under config["network"]. `extra_meta` and `data` (the training
    data's identity) must be JSON-safe.
    """
    path = Path(path)
    network, ppo = _split_config(config)
    if obs_norm is not None and not isinstance(obs_norm, dict):
        raise ConfigError(f"obs_norm must be a dict, got {type(obs_norm).__name__}")
    policy_config = getattr(policy, "config", None)
    if isinstance(policy_config, NetworkConfig):
        mismatch = _architecture_mismatch("the policy", policy_config, network)
        if mismatch is not None:
            raise mismatch
    meta: dict[str, Any] = {
        "archbench_version": __version__,
        "torch_version": str(torch.__version__),  # a TorchVersion would need a pickled global
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    if extra_meta:
        try:
            meta.update(json.loads(json.dumps(extra_meta)))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"extra_meta must be JSON-safe: {error}") from None
    if data is not None:
        try:
            data = json.loads(json.dumps(data))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the data identity must be JSON-safe: {error}") from None
    ppo_dict = None
    if ppo is not None:
        ppo_dict = ppo.to_dict()
        del ppo_dict["network"]
    payload = {
        "format": FORMAT,
        "config": {"network": network.to_dict(), "ppo": ppo_dict},
        "policy_state_dict": policy.state_dict(),
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else None,
        "obs_norm": _plain(obs_norm, "obs_norm") if obs_norm is not None else None,
        "data": data,
        "meta": meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def _first_line(error: BaseException) -> str:
    """The first sentence of an error's first line: torch appends paragraphs of advice."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].strip() if text else type(error).__name__


def _load_failure(path: Path, error: Exception) -> CheckpointError:
    """One line for why torch.load(weights_only=True) failed: unsafe code, or not a torch file."""
    text = str(error)
    unsafe_global = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", text)
    if unsafe_global:
        return CheckpointError(
            f"checkpoint {path} refused: loading it would run pickled code "
            f"({unsafe_global.group(1)}); archbench loads only plain tensors and containers"
        )
    operand = re.search(r"Unsupported operand (\d+)", text)
    opcode = pickletools.code2op.get(chr(int(operand.group(1)))) if operand else None
    if opcode is not None:
        return CheckpointError(
            f"checkpoint {path} refused: it uses pickle opcode {opcode.name}, which plain "
            "torch.save containers never need; archbench loads only its own checkpoints"
        )
    reason = "not a pickle" if operand else f"{type(error).__name__}: {_first_line(error)}"
    return CheckpointError(
        f"checkpoint {path} is unreadable, truncated or not a torch file ({reason})"
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the save did not finish")
    try:
        with warnings.catch_warnings():
            # Plain pickles (protocol 4+) warn before failing; the failure says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
        raise _load_failure(path, error) from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(
            f"checkpoint {path} is not an archbench checkpoint "
            f"(a {type(payload).__name__} without a 'format' key)"
        )
    found = payload["format"]
    if found != FORMAT:
        hint = (
            "written by another archbench version"
            if str(found).startswith("ppo-archbench/")
            else "not an archbench checkpoint"
        )
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected {FORMAT} ({hint})")
    for key in ("config", "policy_state_dict", "meta"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry")
    return payload


def _parse_configs(path: Path, raw: Any) -> tuple[NetworkConfig, PPOConfig | None]:
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("network"), dict):
            raise ConfigError("config must be a dict with a 'network' entry")
        network_dict = raw["network"]
        if "account_state" not in network_dict:
            # Written before the account state existed: trained on the market window alone.
            network_dict = {**network_dict, "account_state": False}
        network = NetworkConfig.from_dict(network_dict)
        ppo = None
        if raw.get("ppo") is not None:
            ppo = PPOConfig.from_dict({**raw["ppo"], "network": network_dict})
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} has a bad config: {error}") from None
    return network, ppo


def _storage_key(tensor: torch.Tensor) -> tuple[int, int, tuple[int, ...]]:
    """Equal for two names of one tensor (a shared trunk is stored under both)."""
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))


def _stored_params(state_dict: dict[str, torch.Tensor]) -> int:
    """Parameters in a state dict, counting tensors that share storage (a shared trunk) once."""
    seen = set()
    total = 0
    for tensor in state_dict.values():
        key = _storage_key(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel()
    return total


def _non_finite(state_dict: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """NaN or inf weights in a state dict: their count and the tensors that hold them."""
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in state_dict.items()}
    names = [name for name, count in bad.items() if count]
    seen = {_storage_key(state_dict[name]): bad[name] for name in names}  # shared trunk: once
    return sum(seen.values()), names


def load(
    path: str | os.PathLike[str],
    config: NetworkConfig | PPOConfig | None = None,
    *,
    allow_non_finite: bool = False,
) -> Checkpoint:
    """Read a checkpoint safely; with `config`, refuse one of another architecture. Weights
    that are NaN or inf are refused (CheckpointError) unless allow_non_finite (inspect, diff)."""
    path = Path(path)
    payload = _read(path)
    network, ppo = _parse_configs(path, payload["config"])
    if config is not None:
        mismatch = _architecture_mismatch(f"checkpoint {path}", network, _split_config(config)[0])
        if mismatch is not None:
            raise mismatch
    state = payload["policy_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"checkpoint {path}: policy_state_dict is not a dict of tensors")
    stored, expected = _stored_params(state), estimate(network).params
    if stored != expected:
        raise CheckpointError(
            f"checkpoint {path} holds {stored:,} parameters but its own config "
            f"{tuple(network.hidden_dims)} has {expected:,}: the file is inconsistent"
        )
    if not allow_non_finite:
        count, names = _non_finite(state)
        if count:
            raise CheckpointError(
                f"checkpoint {path} has {count:,} NaN or inf weights (of {stored:,}; first in "
                f"{names[0]}): its training diverged, so it cannot be evaluated, resumed or "
                "exported; use an earlier checkpoint"
            )
    return Checkpoint(
        path=path,
        config=network,
        ppo_config=ppo,
        policy_state_dict=state,
        optimizer_state_dict=payload.get("optimizer_state_dict"),
        obs_norm=payload.get("obs_norm"),
        data=payload.get("data") if isinstance(payload.get("data"), dict) else None,
        meta=dict(payload["meta"]),
        file_bytes=path.stat().st_size,
    )


def load_into(policy: nn.Module, path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint's weights into `policy` (an ActorCritic); return the checkpoint."""
    policy_config = getattr(policy, "config", None)
    wanted = policy_config if isinstance(policy_config, NetworkConfig) else None
    checkpoint = load(path, config=wanted)
    try:
        policy.load_state_dict(checkpoint.policy_state_dict)
    except RuntimeError as error:
        raise ArchitectureMismatch(
            f"checkpoint {checkpoint.path} does not fit this policy: {_first_line(error)}"
        ) from None
    return checkpoint


def inspect(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Summarise a checkpoint file: architecture, parameters, size, optimizer state, origin."""
    checkpoint = load(path, allow_non_finite=True)
    network, meta = checkpoint.config, checkpoint.meta
    has_optimizer = checkpoint.optimizer_state_dict is not None
    sizing = estimate(network)
    training = None
    if checkpoint.ppo_config is not None:
        training = checkpoint.ppo_config.to_dict()
        del training["network"]
    progress = None
    if "iteration" in meta and "global_step" in meta:
        progress = {"iteration": int(meta["iteration"]), "global_step": int(meta["global_step"])}
    return CheckpointInfo(
        path=str(checkpoint.path),
        file_bytes=checkpoint.file_bytes,
        predicted_bytes=sizing.checkpoint_bytes
        if has_optimizer
        else sizing.checkpoint_bytes_no_optimizer,
        hidden_dims=tuple(network.hidden_dims),
        trunk=network.trunk,
        obs_dim=network.obs_dim,
        n_features=network.n_features,
        lookback=network.lookback,
        account_dim=network.account_dim,
        account_gain=network.account_gain,
        pad_dim=network.pad_dim,
        n_actions=network.n_actions,
        activation=network.activation,
        layer_norm=network.layer_norm,
        params=_stored_params(checkpoint.policy_state_dict),
        has_optimizer_state=has_optimizer,
        has_obs_norm=checkpoint.obs_norm is not None,
        created=meta.get("created"),
        archbench_version=meta.get("archbench_version"),
        torch_version=meta.get("torch_version"),
        git_commit=meta.get("git_commit"),
        non_finite=_non_finite(checkpoint.policy_state_dict)[0],
        training=training,
        progress=progress,
        data=checkpoint.data,
    )


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(a: dict[str, Any], b: dict[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    a, b = _flat(a), _flat(b)
    return tuple(
        (key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    )


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> CheckpointDiff:
    """Config and training-data fields that differ between two checkpoints, and both
    parameter counts."""
    first, second = load(a, allow_non_finite=True), load(b, allow_non_finite=True)
    training: tuple[tuple[str, Any, Any], ...] = ()
    if first.ppo_config is not None and second.ppo_config is not None:
        ppo_a, ppo_b = first.ppo_config.to_dict(), second.ppo_config.to_dict()
        del ppo_a["network"], ppo_b["network"]
        training = _differences(ppo_a, ppo_b)
    return CheckpointDiff(
        path_a=str(first.path),
        path_b=str(second.path),
        differences=_differences(first.config.to_dict(), second.config.to_dict()),
        training_differences=training,
        data_differences=_differences({"data": first.data or None}, {"data": second.data or None}),
        params_a=_stored_params(first.policy_state_dict),
        params_b=_stored_params(second.policy_state_dict),
    )
