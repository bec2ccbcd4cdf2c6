"""The PPO minibatch step captured in a CUDA graph, and the checks that it can be.

Replay copies a minibatch into static inputs and relaunches every kernel in one call; the
warm-up capture needs is undone, so the first replayed step starts where the eager one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ppo_core.config import PPOConfig
from ppo_core.errors import ConfigError

__all__ = ["CapturedStep", "check_capture", "restore", "snapshot"]

StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""step(*minibatch, autocast_cache=...) -> (stats (5,), approx_kl), both on the device."""


def check_capture(config: PPOConfig, device: torch.device) -> None:
    """Refuse, in one line, a capture that could not be replayed on `device`."""
    if not config.capture:
        return
    if device.type != "cuda":
        raise ConfigError(
            f"PPOConfig.capture replays CUDA graphs; device is {device}: set it false"
        )
    if config.compile:
        raise ConfigError("PPOConfig.capture and compile are two ways to cut launches: pick one")
    if config.batch_size % config.minibatch_size:
        raise ConfigError(
            f"PPOConfig.capture replays one minibatch shape: minibatch_size "
            f"{config.minibatch_size} must divide n_envs * n_steps = {config.batch_size}"
        )


class CapturedStep:
    """One minibatch step (`step`, gradients None on entry) captured in a CUDA graph.

    Capture needs a few warm-up steps (cuBLAS workspaces, Adam's state); they run on the real
    parameters and Adam state, which `restore` then puts back, so the first replayed step
    starts from exactly the state the eager update would have started from.
    """

    WARMUP_STEPS = 3

    def __init__(
        self,
        step: StepFn,
        policy: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        minibatch: Sequence[torch.Tensor],
    ) -> None:
        self._static = tuple(t.detach().clone() for t in minibatch)
        saved = snapshot(policy, optimizer)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                step(*self._static, autocast_cache=False)
        torch.cuda.current_stream(device).wait_stream(side)
        restore(policy, optimizer, saved)
        optimizer.zero_grad(set_to_none=True)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._stats, self._approx_kl = step(*self._static, autocast_cache=False)

    def replay(self, minibatch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the captured step on `minibatch` -> (stats (5,), approx_kl), fresh tensors."""
        for static, value in zip(self._static, minibatch, strict=True):
            static.copy_(value)
        self._graph.replay()
        return self._stats.clone(), self._approx_kl.clone()


def snapshot(policy: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Copies of the parameters and Adam's state (None for state not created yet)."""
    return {
        "params": [p.detach().clone() for p in policy.parameters()],
        "state": [
            {k: v.detach().clone() for k, v in optimizer.state[p].items()}
            if optimizer.state.get(p)
            else None
            for p in policy.parameters()
        ],
    }


def restore(policy: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Write `saved` back in place (the graph keeps these tensors' addresses); Adam state that
    did not exist before becomes zeros, which is exactly what a fresh Adam starts from."""
    with torch.no_grad():
        for param, value, state in zip(
            policy.parameters(), saved["params"], saved["state"], strict=True
        ):
            param.copy_(value)
            for key, tensor in optimizer.state[param].items():
                if isinstance(tensor, torch.Tensor):
                    tensor.copy_(state[key] if state is not None else torch.zeros_like(tensor))
