"""A cheap capacity probe: supervised MLPs of scaled-down preset shapes learn the capacity
market's causal expected return from the normalised window, at two data lengths and two knobs.

`python -m ppo_core.capacity_probe` prints the out-of-sample R^2 per size (README, "The
capacity market"). Supervised, not PPO, so it fits a laptop CPU in minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ppo_core.atomic import atomic_path, check_output
from ppo_core.capacity_market import make_capacity_market
from ppo_core.data import PreparedData, make_splits, prepare
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
_BLOCK = {"traces": 4, "window": 10}
"""Lags averaged per input, by input kind (a fixed linear map of the window: the planted
patterns are smooth in the lag; 10 keeps the 53-feature window to 530 inputs for a CPU)."""
TRACE_FEATURES = ("gap", "volume_z_100", "upper_wick", "lower_wick")
"""The features that carry the capacity market's three traces (the rest are distractors)."""
INPUTS = ("traces", "window")
"""What a probe MLP reads: the TRACE_FEATURES' window, or the whole 53-feature window."""
_PATIENCE = 5
"""Epochs without a better held-out R^2 before a fit stops (its best weights are kept)."""


@dataclass(frozen=True)
class ProbeResult:
    """One fitted size: how well it predicts the causal expected return out of sample."""

    inputs: str
    """'traces' or 'window' (INPUTS)."""
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
    seed: int
    """Seed of the initial weights and the minibatch order."""
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


def _fit(
    x: torch.Tensor, y: torch.Tensor, hidden_dims: tuple[int, ...], seed: int, max_epochs: int
) -> tuple[nn.Module, int]:
    """Adam with early stopping on the last 15% of the training bars (_PATIENCE epochs)."""
    torch.manual_seed(seed)
    model = _mlp(x.shape[1], hidden_dims)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    cut = int(len(y) * 0.85)
    best, best_state, epoch, stale = -np.inf, None, 0, 0
    generator = torch.Generator().manual_seed(seed)
    while epoch < max_epochs and stale < _PATIENCE:
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


def _inputs(data: PreparedData, split: str, inputs: str) -> tuple[np.ndarray, np.ndarray]:
    bars = np.arange(*data.splits.range(split))
    x = window_blocks(data, bars, _BLOCK[inputs])  # (n, blocks * 53), newest block first
    if inputs == "traces":
        keep = [data.feature_names.index(name) for name in TRACE_FEATURES]
        x = x.reshape(len(bars), -1, data.n_features)[:, :, keep].reshape(len(bars), -1)
    return x, data.market.expected_return[bars]


def _tensors(data: PreparedData, inputs: str, train_bars: int) -> list[tuple[torch.Tensor, ...]]:
    """Standardised (x, y) of the last `train_bars` training bars and of validation, with
    statistics of those training bars; y in units of its training std, so MSE = 1 - R^2."""
    x_train, y_train = _inputs(data, "train", inputs)
    x_train, y_train = x_train[-train_bars:], y_train[-train_bars:]
    x_val, y_val = _inputs(data, "validation", inputs)
    mean, std, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8, y_train.std()
    return [
        (
            torch.as_tensor((x - mean) / std, dtype=torch.float32),
            torch.as_tensor(y / scale, dtype=torch.float32),
        )
        for x, y in ((x_train, y_train), (x_val, y_val))
    ]


def _probe_one(
    data: PreparedData,
    inputs: str,
    complexity: int,
    train_bars: int,
    seeds: tuple[int, ...],
    max_epochs: int,
    on_fit: Callable[[ProbeResult], None] | None,
) -> list[ProbeResult]:
    (xt, yt), (xv, yv) = _tensors(data, inputs, train_bars)
    results = []
    for size, dims in PROBE_SIZES.items():
        for seed in seeds:
            started = time.perf_counter()
            model, epochs = _fit(xt, yt, dims, seed, max_epochs)
            params = sum(p.numel() for p in model.parameters())
            r2_val, r2_train = _r2(model, xv, yv), _r2(model, xt, yt)
            elapsed = time.perf_counter() - started
            result = ProbeResult(
                inputs,
                complexity,
                len(yt),
                size,
                dims,
                params,
                r2_val,
                r2_train,
                seed,
                epochs,
                elapsed,
            )
            if on_fit is not None:
                on_fit(result)
            results.append(result)
    return results


def run_probe(
    complexities: tuple[int, ...] = (2, 32),
    bars: int = 100_000,
    train_lengths: tuple[int, ...] = (5_000, 20_000, 59_000),
    seeds: tuple[int, ...] = (0, 1),
    max_epochs: int = 60,
    inputs: tuple[str, ...] = INPUTS,
    on_fit: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Fit every PROBE_SIZES shape per input kind, knob, training length and seed; one market
    (seed 0) per knob, the same validation bars for every length (a shorter length is the most
    recent bars of the training split). `on_fit` sees each result as it is made."""
    for kind in inputs:
        if kind not in INPUTS:
            raise ConfigError(f"probe inputs must be among {', '.join(INPUTS)}, got {kind!r}")
    train = make_splits(bars, lookback=100).train  # the default window, as prepare cuts it
    for length in train_lengths:
        if not 2 <= length <= train[1] - train[0]:
            raise ConfigError(
                f"train length {length:,} is outside 2..{train[1] - train[0]:,}, the training "
                f"bars of {bars:,} bars"
            )
    results = []
    for complexity in complexities:
        data = prepare(make_capacity_market(bars, seed=0, complexity=complexity))
        for length in train_lengths:
            for kind in inputs:
                results += _probe_one(data, kind, complexity, length, seeds, max_epochs, on_fit)
    return results


def _table(results: list[ProbeResult]) -> str:
    """Mean validation R^2 over seeds: one row per (inputs, knob, length), a column per size;
    the best size of each row in bold."""
    sizes = list(dict.fromkeys(r.size for r in results))
    rows: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for r in results:
        row = rows.setdefault((r.inputs, r.complexity, r.train_bars), {})
        row.setdefault(r.size, []).append(r.r2_validation)
    lines = [
        "| inputs | knob K | train bars | " + " | ".join(sizes) + " |",
        "|---|---:|---:|" + "---:|" * len(sizes),
    ]
    for (kind, complexity, length), row in rows.items():
        means = {size: float(np.mean(row[size])) for size in sizes}
        best = max(means, key=means.get)
        cells = [f"**{means[s]:.3f}**" if s == best else f"{means[s]:.3f}" for s in sizes]
        lines.append(f"| {kind} | {complexity} | {length:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_fit(r: ProbeResult) -> None:
    print(
        f"{r.inputs} K={r.complexity} {r.train_bars:,} bars {r.size} seed {r.seed}: "
        f"R^2 val {r.r2_validation:.3f}, train {r.r2_train:.3f}, {r.epochs} epochs, "
        f"{r.seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complexities", type=int, nargs="+", default=[2, 32])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--train-lengths", type=int, nargs="+", default=[5_000, 20_000, 59_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write every fit's figures to this JSON file")
    args = parser.parse_args(argv)
    # Refused before minutes of fitting, not after.
    out = check_output(args.json, flag="--json", example="probe.json") if args.json else None
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = run_probe(
        tuple(args.complexities),
        args.bars,
        tuple(args.train_lengths),
        tuple(args.seeds),
        args.max_epochs,
        tuple(args.inputs),
        on_fit=_report_fit,
    )
    print(_table(results))
    print(f"\n{time.perf_counter() - started:.0f} s, {args.threads} torch thread(s)")
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
