"""A cheap capacity probe: supervised MLPs of scaled-down preset shapes learn the capacity
market's causal expected return from the normalised window, at several data lengths and knobs.

`python -m ppo_core.capacity_probe` prints the out-of-sample R^2 and the Sharpe of trading each
size's prediction per size (README, "The capacity market"). Supervised, not PPO, so it fits a
laptop CPU in minutes.
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
from ppo_core.capacity_market import make_capacity_market, parse_capacity_spec
from ppo_core.ceiling import Hysteresis, fit_hysteresis
from ppo_core.data import PreparedData, make_splits, prepare
from ppo_core.env import evaluate_positions
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS
from ppo_core.rules import window_blocks

__all__ = ["PROBE_SIZES", "FitSettings", "ProbeResult", "probe_market", "run_probe"]

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
COST_BPS = 30.0
"""The cost the prediction's Sharpe is judged at (the env's default)."""


@dataclass(frozen=True)
class FitSettings:
    """How a probe MLP is fitted: Adam with early stopping on the last 15% of its bars."""

    max_epochs: int = 60
    """Epochs at most (early stopping usually ends a fit sooner)."""
    batch: int = 256
    """Minibatch size."""
    lr: float = 1e-3
    """Adam step size."""

    def __post_init__(self) -> None:
        for name in ("max_epochs", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"FitSettings.{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, int | float) and 0 < self.lr < 1):
            raise ConfigError(f"FitSettings.lr must lie in (0, 1), got {self.lr!r}")


@dataclass(frozen=True)
class ProbeResult:
    """One fitted size: how well it predicts the causal expected return out of sample."""

    inputs: str
    """'traces' or 'window' (INPUTS)."""
    market: str
    """The market's dataset name ('capacity-8', 'capacity-w64')."""
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
    sharpe_validation: float
    """Annualised net Sharpe at COST_BPS on validation of trading the prediction with the
    causal ceiling's hysteresis (thresholds fitted on the training split's planted edge)."""
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
    x: torch.Tensor, y: torch.Tensor, hidden_dims: tuple[int, ...], seed: int, fit: FitSettings
) -> tuple[nn.Module, int]:
    """Adam with early stopping on the last 15% of the training bars (_PATIENCE epochs)."""
    torch.manual_seed(seed)
    model = _mlp(x.shape[1], hidden_dims)
    optimizer = torch.optim.Adam(model.parameters(), lr=fit.lr, weight_decay=1e-5)
    cut = int(len(y) * 0.85)
    best, best_state, epoch, stale = -np.inf, None, 0, 0
    generator = torch.Generator().manual_seed(seed)
    while epoch < fit.max_epochs and stale < _PATIENCE:
        for batch in torch.randperm(cut, generator=generator).split(fit.batch):
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
    keep = None
    if inputs == "traces":
        keep = [data.feature_names.index(name) for name in TRACE_FEATURES]
    x = window_blocks(data, bars, _BLOCK[inputs], keep)  # (n, blocks * features), newest first
    return x, data.market.expected_return[bars]


@dataclass(frozen=True)
class _Problem:
    """One regression: standardised tensors of the training bars and validation, and how a
    prediction turns into positions."""

    xt: torch.Tensor
    """(train_bars, inputs) standardised with the training bars' statistics."""
    yt: torch.Tensor
    """(train_bars,) the causal expected return in units of its training std."""
    xv: torch.Tensor
    """(validation bars, inputs), standardised as xt."""
    yv: torch.Tensor
    """(validation bars,) in the units of yt."""
    scale: float
    """The training std of y: a prediction times scale is a log return per bar."""
    rule: Hysteresis
    """The causal ceiling's hysteresis, fitted on the training split's planted edge."""


def _problem(data: PreparedData, inputs: str, train_bars: int) -> _Problem:
    """Standardised (x, y) of the last `train_bars` training bars and of validation, with
    statistics of those training bars; y in units of its training std, so MSE = 1 - R^2. The
    hysteresis is the causal ceiling's (fitted on the whole training split's planted edge)."""
    x_train, y_train = _inputs(data, "train", inputs)
    train = slice(*data.splits.train)
    rule, _ = fit_hysteresis(data.market.expected_return[train], data.log_returns[train], COST_BPS)
    x_train, y_train = x_train[-train_bars:], y_train[-train_bars:]
    x_val, y_val = _inputs(data, "validation", inputs)
    mean, std, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8, y_train.std()
    (xt, yt), (xv, yv) = (
        (
            torch.as_tensor((x - mean) / std, dtype=torch.float32),
            torch.as_tensor(y / scale, dtype=torch.float32),
        )
        for x, y in ((x_train, y_train), (x_val, y_val))
    )
    return _Problem(xt, yt, xv, yv, float(scale), rule)


def _sharpe(data: PreparedData, problem: _Problem, model: nn.Module) -> float:
    """Trade the validation prediction (back in log return per bar) with the ceiling's rule."""
    with torch.no_grad():
        prediction = model(problem.xv).squeeze(-1).numpy().astype(np.float64) * problem.scale
    positions = problem.rule.positions(prediction)
    return evaluate_positions(positions, data, "validation", COST_BPS).sharpe


def _fit_problem(
    data: PreparedData,
    problem: _Problem,
    inputs: str,
    size: str,
    hidden_dims: tuple[int, ...],
    seed: int,
    fit: FitSettings,
) -> ProbeResult:
    started = time.perf_counter()
    model, epochs = _fit(problem.xt, problem.yt, hidden_dims, seed, fit)
    knob = parse_capacity_spec(data.market.name)
    return ProbeResult(
        inputs=inputs,
        market=data.market.name,
        complexity=knob.complexity if knob is not None else 0,
        train_bars=len(problem.yt),
        size=size,
        hidden_dims=hidden_dims,
        params=sum(p.numel() for p in model.parameters()),
        r2_validation=_r2(model, problem.xv, problem.yv),
        r2_train=_r2(model, problem.xt, problem.yt),
        sharpe_validation=_sharpe(data, problem, model),
        seed=seed,
        epochs=epochs,
        seconds=time.perf_counter() - started,
    )


def probe_market(
    data: PreparedData,
    inputs: str,
    train_bars: int,
    sizes: dict[str, tuple[int, ...]],
    seeds: tuple[int, ...],
    fit: FitSettings = FitSettings(),
    on_fit: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Fit each size (name -> hidden widths) and seed on the last `train_bars` training bars
    of a capacity market and judge it on validation: R^2 of the causal expected return, and
    the Sharpe of trading the prediction."""
    problem = _problem(data, inputs, train_bars)
    results = []
    for size, dims in sizes.items():
        for seed in seeds:
            result = _fit_problem(data, problem, inputs, size, dims, seed, fit)
            if on_fit is not None:
                on_fit(result)
            results.append(result)
    return results


def _market_names(complexities: tuple[int, ...], markets: tuple[str, ...]) -> list[str]:
    """Canonical capacity-market names of the knobs asked for, in order, each once."""
    names = [f"capacity-{k}" for k in complexities]
    for spec in markets:
        knob = parse_capacity_spec(spec)
        if knob is None:
            raise ConfigError(f"probe markets must be capacity-K or capacity-wK, got {spec!r}")
        names.append(knob.name)
    return list(dict.fromkeys(names))


def run_probe(
    complexities: tuple[int, ...] = (2, 32),
    bars: int = 100_000,
    train_lengths: tuple[int, ...] = (5_000, 20_000, 59_000),
    seeds: tuple[int, ...] = (0, 1),
    fit: FitSettings = FitSettings(),
    inputs: tuple[str, ...] = INPUTS,
    on_fit: Callable[[ProbeResult], None] | None = None,
    markets: tuple[str, ...] = (),
    sizes: dict[str, tuple[int, ...]] | None = None,
) -> list[ProbeResult]:
    """Fit every size (default PROBE_SIZES) per input kind, knob, training length and seed; one
    market (seed 0) per knob: capacity-K for each of `complexities`, then the `markets` named
    ('capacity-w64'). The same validation bars serve every length (a shorter length is the most
    recent bars of the training split). `on_fit` sees each result as it is made."""
    for kind in inputs:
        if kind not in INPUTS:
            raise ConfigError(f"probe inputs must be among {', '.join(INPUTS)}, got {kind!r}")
    names = _market_names(complexities, markets)
    train = make_splits(bars, lookback=100).train  # the default window, as prepare cuts it
    for length in train_lengths:
        if not 2 <= length <= train[1] - train[0]:
            raise ConfigError(
                f"train length {length:,} is outside 2..{train[1] - train[0]:,}, the training "
                f"bars of {bars:,} bars"
            )
    results = []
    for name in names:
        knob = parse_capacity_spec(name)
        market = make_capacity_market(bars, seed=0, complexity=knob.complexity, wide=knob.wide)
        data = prepare(market)
        for length in train_lengths:
            for kind in inputs:
                results += probe_market(
                    data, kind, length, sizes or PROBE_SIZES, seeds, fit, on_fit
                )
    return results


def _table(results: list[ProbeResult], field: str = "r2_validation", digits: int = 3) -> str:
    """Mean of `field` over seeds: one row per (inputs, market, length), a column per size;
    the best size of each row in bold."""
    sizes = list(dict.fromkeys(r.size for r in results))
    rows: dict[tuple[str, str, int], dict[str, list[float]]] = {}
    for r in results:
        row = rows.setdefault((r.inputs, r.market, r.train_bars), {})
        row.setdefault(r.size, []).append(getattr(r, field))
    lines = [
        "| inputs | market | train bars | " + " | ".join(sizes) + " |",
        "|---|---|---:|" + "---:|" * len(sizes),
    ]
    for (kind, market, length), row in rows.items():
        means = {size: float(np.mean(row[size])) for size in sizes}
        best = max(means, key=means.get)
        cells = [
            f"**{means[s]:.{digits}f}**" if s == best else f"{means[s]:.{digits}f}" for s in sizes
        ]
        lines.append(f"| {kind} | {market} | {length:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_fit(r: ProbeResult) -> None:
    print(
        f"{r.inputs} {r.market} {r.train_bars:,} bars {r.size} seed {r.seed}: "
        f"R^2 val {r.r2_validation:.3f}, train {r.r2_train:.3f}, Sharpe val "
        f"{r.sharpe_validation:.2f}, {r.epochs} epochs, {r.seconds:.0f} s",
        file=sys.stderr,
        flush=True,
    )


def _parse_size(text: str) -> tuple[str, tuple[int, ...]]:
    """'tiny' (a PROBE_SIZES key) or widths '16' / '64,32,16' -> (name, hidden_dims)."""
    if text in PROBE_SIZES:
        return text, PROBE_SIZES[text]
    try:
        dims = tuple(int(w) for w in text.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a probe size ({', '.join(PROBE_SIZES)}) nor widths like 64,32"
        )
    return "-".join(map(str, dims)), dims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--complexities", type=int, nargs="*", default=[2, 32])
    parser.add_argument(
        "--markets", nargs="+", default=[], help="more knobs by name, e.g. capacity-w64"
    )
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--train-lengths", type=int, nargs="+", default=[5_000, 20_000, 59_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--sizes", type=_parse_size, nargs="+", help="probe sizes or widths (default: all)"
    )
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write every fit's figures to this JSON file")
    args = parser.parse_args(argv)
    # Refused before minutes of fitting, not after.
    out = check_output(args.json, flag="--json", example="probe.json") if args.json else None
    try:
        fit = FitSettings(args.max_epochs, args.batch, args.lr)
        markets = tuple(_market_names(tuple(args.complexities), tuple(args.markets)))
    except ConfigError as error:
        parser.error(str(error))  # one line and exit status 2, before any fitting
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = run_probe(
        (),
        args.bars,
        tuple(args.train_lengths),
        tuple(args.seeds),
        fit,
        tuple(args.inputs),
        on_fit=_report_fit,
        markets=markets,
        sizes=dict(args.sizes) if args.sizes else None,
    )
    print("Validation R^2 of the causal expected return:\n" + _table(results))
    print("\nValidation Sharpe of trading it (causal ceiling's hysteresis, 30 bp):")
    print(_table(results, "sharpe_validation", digits=2))
    print(f"\n{time.perf_counter() - started:.0f} s, {args.threads} torch thread(s)")
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
