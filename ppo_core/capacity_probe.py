"""A cheap capacity probe: supervised MLPs of scaled-down preset shapes learn the capacity
market's causal expected return from the normalised window, at two data lengths and two knobs.

`python -m ppo_core.capacity_probe` prints the out-of-sample R^2 per size (README, "The
capacity market"). Supervised, not PPO, so it fits a laptop CPU in minutes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ppo_core.capacity_market import make_capacity_market
from ppo_core.data import PreparedData, prepare
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS
from ppo_core.rules import window_blocks

__all__ = ["PROBE_SIZES", "ProbeResult", "run_probe"]

PROBE_SIZES: dict[str, tuple[int, ...]] = {
    "linear": (),
    **{name: tuple(w // 16 for w in dims) for name, dims in PRESETS.items() if name != "xlarge"},
}
"""The presets' shapes at 1/16 of their widths (tiny 16-8-4 .. large 128-64-32-16), and a
linear model: the shapes the probe fits."""
_BLOCK = 10
"""Lags averaged per input (a fixed linear map of the window; the patterns are smooth)."""


@dataclass(frozen=True)
class ProbeResult:
    """One fitted size: how well it predicts the causal expected return out of sample."""

    complexity: int
    """Hidden patterns of the market (the knob)."""
    train_bars: int
    """Training bars used: the most recent ones of the training split."""
    size: str
    """Key of PROBE_SIZES."""
    hidden_dims: tuple[int, ...]
    """Widths of the MLP's hidden layers (empty: linear)."""
    params: int
    """Trainable parameters."""
    r2_validation: float
    """1 - MSE / Var of the causal expected return on the validation split."""
    r2_train: float
    """The same on the training bars it was fitted on."""
    epochs: int
    """Epochs run before early stopping (best weights kept)."""
    seconds: float
    """Wall time of the fit."""


def _mlp(n_inputs: int, hidden_dims: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_inputs
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _r2(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(1 - ((model(x).squeeze(-1) - y) ** 2).mean() / y.var())


def _fit(x, y, hidden_dims, seed, max_epochs) -> tuple[nn.Module, int]:
    """Adam with early stopping on the last 15% of the training bars (patience 3)."""
    torch.manual_seed(seed)
    model = _mlp(x.shape[1], hidden_dims)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    cut = int(len(y) * 0.85)
    best, best_state, epoch, stale = -np.inf, None, 0, 0
    generator = torch.Generator().manual_seed(seed)
    while epoch < max_epochs and stale < 3:
        for batch in torch.randperm(cut, generator=generator).split(256):
            optimizer.zero_grad()
            loss = ((model(x[batch]).squeeze(-1) - y[batch]) ** 2).mean()
            loss.backward()
            optimizer.step()
        epoch += 1
        score = _r2(model, x[cut:], y[cut:])
        if score > best:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
    model.load_state_dict(best_state)
    return model, epoch


def _inputs(data: PreparedData, split: str) -> tuple[np.ndarray, np.ndarray]:
    bars = np.arange(*data.splits.range(split))
    return window_blocks(data, bars, _BLOCK), data.market.expected_return[bars]


def _probe_one(data, complexity, train_bars, seed, max_epochs) -> list[ProbeResult]:
    x_train, y_train = _inputs(data, "train")
    x_train, y_train = x_train[-train_bars:], y_train[-train_bars:]
    x_val, y_val = _inputs(data, "validation")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    scale = y_train.std()

    def tensors(x, y):
        return torch.as_tensor((x - mean) / std, dtype=torch.float32), torch.as_tensor(
            y / scale, dtype=torch.float32
        )

    (xt, yt), (xv, yv) = tensors(x_train, y_train), tensors(x_val, y_val)
    results = []
    for size, dims in PROBE_SIZES.items():
        started = time.perf_counter()
        model, epochs = _fit(xt, yt, dims, seed, max_epochs)
        params = sum(p.numel() for p in model.parameters())
        elapsed = time.perf_counter() - started
        results.append(
            ProbeResult(
                complexity,
                len(yt),
                size,
                dims,
                params,
                _r2(model, xv, yv),
                _r2(model, xt, yt),
                epochs,
                elapsed,
            )
        )
    return results


def run_probe(
    complexities: tuple[int, ...] = (2, 32),
    bars: int = 60_000,
    train_lengths: tuple[int, ...] = (6_000, 34_000),
    seed: int = 0,
    max_epochs: int = 30,
) -> list[ProbeResult]:
    """Fit every PROBE_SIZES shape at each knob and training length; one market per knob,
    the same validation bars for every length (the shorter length is the most recent bars)."""
    results = []
    for complexity in complexities:
        data = prepare(make_capacity_market(bars, seed=seed, complexity=complexity))
        available = data.splits.train[1] - data.splits.train[0]
        for length in train_lengths:
            if length > available:
                raise ConfigError(
                    f"train length {length:,} exceeds the {available:,} training bars of "
                    f"{bars:,} bars"
                )
            results += _probe_one(data, complexity, length, seed, max_epochs)
    return results


def _table(results: list[ProbeResult]) -> str:
    lines = [
        "| knob K | train bars | size | hidden_dims | params | R^2 val | R^2 train | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        dims = "-".join(map(str, r.hidden_dims)) or "(none)"
        lines.append(
            f"| {r.complexity} | {r.train_bars:,} | {r.size} | {dims} | {r.params:,} | "
            f"{r.r2_validation:.3f} | {r.r2_train:.3f} | {r.epochs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complexities", type=int, nargs="+", default=[2, 32])
    parser.add_argument("--bars", type=int, default=60_000)
    parser.add_argument("--train-lengths", type=int, nargs="+", default=[6_000, 34_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = run_probe(
        tuple(args.complexities),
        args.bars,
        tuple(args.train_lengths),
        args.seed,
        args.max_epochs,
    )
    print(_table(results))
    print(f"\n{time.perf_counter() - started:.0f} s, {args.threads} torch thread(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
