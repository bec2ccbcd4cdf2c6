"""The metrics record every benchmark writes into pytest-benchmark's `extra_info`.

One typed constructor per figure (`Metric.measured`, `Metric.unavailable`) and one place that
serialises to JSON. `archbench/reports/` reads these dicts and imports SCHEMA and SUITES from
here (so this module must stay free of torch: a test in tests/test_layout.py checks it).

Schema `archbench/1` (one record per benchmark case)::

    {"schema": "archbench/1",
     "suite": "train" | "infer" | "memory" | "overfit" | "ceiling" | "env" | "peer",
     "preset": "medium" | "768x384x192" | None,    # None for machine-level suites
     "hidden_dims": [1024, 512, 256] | None,
     "trunk": "shared" | "separate" | None,
     "obs_dim": 5300 | None,
     "params": 6117508 | None,                      # counted on the built network
     "device": "cpu" | "cuda:0",
     "precision": "fp32" | "tf32" | "bf16" | "fp16" | "int8" | None,  # arithmetic measured
     "profile": "quick" | "full",
     "status": "ok" | "oom" | "error",              # oom/error: `reason` says what happened
     "reason": None | "out of memory at n_envs=4096, minibatch=8192",
     "case": {"n_envs": 8, "batch": 1, "backend": "eager", "bars": 5000, "seed": 0, ...},
     "metrics": {NAME: {"value": float | None, "unit": "1/s", "better": "higher" | "lower" | None,
                        "samples": [float, ...], "unavailable": None | "no NVIDIA GPU",
                        "predicted": float | None}},
     "predicted": {"train_bytes": ..., "checkpoint_bytes": ..., ...},
     "series": {"val_net_returns": [...], "oracle_val_net_returns": [...]},  # optional
     "workload": {"observation": {market_dim, account_state, scale_account, input_multiple,
                                  obs_dim},
                  "market": {"name": "synthetic", "seed": 0, "signal": 0.5, "bars": 8760}
                            | {"name": "sp500", "origin": PATH, "sha256": HEX},
                  "gamma": 0.99, "cost_bps": 30.0, "budget": {"timesteps": N} | {...},
                  "commit": SHA | None, "torch_threads": 16}}  # optional

`workload` (written by bench/conftest.py since issue 23) says which task was measured, so a
report never pools different tasks; records written before it have none ("unknown").

`series` (only where a suite writes it: overfit) holds per-bar figures in time order, floats
rounded to 6 significant digits, so a report can pair sizes on the same bars and bootstrap.

A metric whose value could not be measured has `value: None` and `unavailable` saying why;
never 0. `predicted` inside a metric is the sizing model's figure for that same quantity,
so every report can put the prediction next to the measurement that checks it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA", "SUITES", "Metric", "Record"]

SCHEMA = "archbench/1"
SUITES = ("train", "infer", "memory", "overfit", "ceiling", "env", "peer")


@dataclass(frozen=True)
class Metric:
    """One measured figure, its raw samples, and the prediction that it checks."""

    value: float | None
    """The headline figure (usually the median of samples); None when unavailable."""
    unit: str
    """'1/s', 's', 'B', 'FLOP/s', 'B/s', '%', 'ratio', ... ."""
    better: str | None = None
    """'higher', 'lower', or None for figures that are context, not a goal."""
    samples: tuple[float, ...] = ()
    """Raw repeated measurements, for noise-aware comparison."""
    unavailable: str | None = None
    """Why the figure could not be measured (e.g. 'no NVIDIA GPU')."""
    predicted: float | None = None
    """The sizing model's figure for the same quantity, if it predicts one."""

    @classmethod
    def measured(
        cls,
        value: float,
        unit: str,
        better: str | None = None,
        samples: Iterable[float] = (),
        predicted: float | None = None,
    ) -> Metric:
        value = float(value)
        if not math.isfinite(value):
            return cls.unavailable_because(f"measurement was not finite ({value})", unit, better)
        return cls(value, unit, better, tuple(float(s) for s in samples), None, predicted)

    @classmethod
    def unavailable_because(
        cls, reason: str, unit: str, better: str | None = None, predicted: float | None = None
    ) -> Metric:
        return cls(None, unit, better, (), reason, predicted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "better": self.better,
            "samples": list(self.samples),
            "unavailable": self.unavailable,
            "predicted": self.predicted,
        }


def _round6(value: float) -> float | None:
    """A float to 6 significant digits (JSON-sized); None for NaN or inf."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


@dataclass(frozen=True)
class Record:
    """Everything one benchmark case measured, traceable to its config and machine."""

    suite: str
    device: str
    profile: str
    preset: str | None = None
    hidden_dims: tuple[int, ...] | None = None
    trunk: str | None = None
    obs_dim: int | None = None
    params: int | None = None
    precision: str | None = None
    """Arithmetic the case ran in: a training precision (fp32, tf32, bf16) or an inference
    backend's weights (fp32, bf16, fp16, int8); None where it does not apply (ceilings)."""
    status: str = "ok"
    reason: str | None = None
    case: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] | None = None
    workload: dict[str, Any] | None = None
    """The task measured (observation layout, market, gamma, cost, budget) and its provenance
    (commit, torch threads); None: not recorded."""

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"Record.suite must be one of {SUITES}, got {self.suite!r}")
        if self.status not in ("ok", "oom", "error"):
            raise ValueError(f"Record.status must be ok, oom or error, got {self.status!r}")

    def replace(self, **changes: Any) -> Record:
        """A copy with `changes` (validated again): the one way to derive a record."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": SCHEMA,
            "suite": self.suite,
            "preset": self.preset,
            "hidden_dims": list(self.hidden_dims) if self.hidden_dims is not None else None,
            "trunk": self.trunk,
            "obs_dim": self.obs_dim,
            "params": self.params,
            "device": self.device,
            "precision": self.precision,
            "profile": self.profile,
            "status": self.status,
            "reason": self.reason,
            "case": dict(self.case),
            "metrics": {name: metric.to_dict() for name, metric in self.metrics.items()},
            "predicted": dict(self.predicted),
        }
        if self.series is not None:
            out["series"] = {k: [_round6(v) for v in values] for k, values in self.series.items()}
        if self.workload is not None:
            out["workload"] = dict(self.workload)
        return out
