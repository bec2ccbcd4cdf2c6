"""The use cases as data, the limits they are judged under, and the records a decision reads
(Evidence, one Size per network) and returns (Decision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from archbench.reports.evidence import Dataset, OosCell
from archbench.reports.scores import Score
from ppo_core.presets import hidden_dims_text

__all__ = [
    "USE_CASES",
    "Decision",
    "Evidence",
    "Limits",
    "Size",
    "UseCase",
    "find_use_case",
]


@dataclass(frozen=True)
class Limits:
    """The limits (latency and memory budgets) and noise rules decisions are made under; every
    default is stated. Not bench's per-profile `Budget`, which is how much work a suite does."""

    latency_p99_s: float = 1e-3
    """Live trading: batch-1 p99 budget. 1 ms leaves a bar-close decision room for features
    and order routing."""
    memory_bytes: float | None = None
    """Training memory budget; None: the device's memory minus MEMORY_SAFETY_MARGIN on a GPU,
    no limit on a CPU run."""
    min_throughput_fraction: float = 0.25
    """'Trains at a usable rate': at least this fraction of the fastest size's whole-iteration
    throughput (production, extended training)."""
    min_throughput_effect: float = 0.15
    """A faster size must be at least this much faster (relative), beyond the noise, to beat a
    cheaper one: the run-to-run drift measured at one commit on one GPU (README, H200 runs);
    where the evidence repeats a case in two runs, the larger of this and that drift."""
    limited_data_bars: int | None = None
    """Limited data: the most bars counted as limited; None: under one year of bars."""
    extended_min_budget: int = 100_000_000
    """Extended training is decided only from overfit runs of at least this many env steps (a
    fifth of the 500M it names): below it a ranking says which size learns fastest, not which
    ends best."""

    def __post_init__(self) -> None:
        for name in ("latency_p99_s", "min_throughput_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if not 0 <= self.min_throughput_effect < 1:
            effect = self.min_throughput_effect
            raise ValueError(f"Limits.min_throughput_effect must be in [0, 1), got {effect!r}")
        if self.memory_bytes is not None and not (
            math.isfinite(self.memory_bytes) and self.memory_bytes > 0
        ):
            raise ValueError(f"Limits.memory_bytes must be positive, got {self.memory_bytes!r}")
        if self.limited_data_bars is not None and not self.limited_data_bars > 0:
            raise ValueError(
                f"Limits.limited_data_bars must be positive, got {self.limited_data_bars!r}"
            )


@dataclass(frozen=True)
class UseCase:
    """One way people use a PPO trading net: an objective over a measured quantity, as data."""

    name: str
    """Label shown in the report and accepted (loosely) by `pick --use-case`."""
    objective: str
    """'throughput' (whole-iteration env steps/s, higher) or 'oos' (validation Sharpe, higher)."""
    dataset: str | None
    """For 'oos': which overfit setting decides: 'longest', 'most_volatile', 'short',
    'longest_budget'."""
    constraints: tuple[str, ...]
    """Applied before ranking: 'fits' (memory budget, no OOM), 'usable_rate' (throughput
    fraction of the fastest), 'latency' (batch-1 p99 of the fastest agreeing backend)."""
    training_mode: str
    """presets.TRAINING_MODES key this use case trains with (pick's n_steps and epochs)."""
    rule: str
    """The rule in one line, printed with every answer and in the README."""


USE_CASES: tuple[UseCase, ...] = (
    UseCase(
        "quick iteration",
        "throughput",
        None,
        ("fits",),
        "quick",
        "highest whole-iteration training throughput (rollout + GAE + update) among sizes that fit",
    ),
    UseCase(
        "standard production",
        "oos",
        "longest",
        ("fits", "usable_rate"),
        "production",
        "best out-of-sample Sharpe on the longest dataset among sizes that fit and train at "
        ">= 25% of the fastest size's rate",
    ),
    UseCase(
        "live trading",
        "oos",
        "longest",
        ("fits", "latency"),
        "production",
        "best out-of-sample Sharpe on the longest dataset among sizes whose fastest agreeing "
        "backend meets the batch-1 p99 budget",
    ),
    UseCase(
        "complex / volatile symbols",
        "oos",
        "most_volatile",
        ("fits",),
        "production",
        "best out-of-sample Sharpe on the most volatile dataset measured, among sizes that fit",
    ),
    UseCase(
        "limited data (< 1 year of bars)",
        "oos",
        "short",
        ("fits",),
        "production",
        "best out-of-sample Sharpe on the shortest dataset under one year of bars",
    ),
    UseCase(
        "extended training (500M+ steps)",
        "oos",
        "longest_budget",
        ("fits", "usable_rate"),
        "extended",
        "best out-of-sample Sharpe at the longest training budget measured, among sizes that "
        "fit and train at >= 25% of the fastest size's rate",
    ),
)


def find_use_case(text: str | None) -> UseCase:
    """A loosely spelled use case ('live-trading', 'limited data') -> its UseCase.

    None means standard production. Raises ValueError naming the choices.
    """
    if text is None:
        return USE_CASES[1]
    wanted = _words(text)
    hits = [
        u for u in USE_CASES if wanted and (_words(u.name) == wanted or wanted in _words(u.name))
    ]
    if len(hits) == 1:
        return hits[0]
    what = "ambiguous" if hits else "unknown"
    names = "; ".join(u.name for u in USE_CASES)
    raise ValueError(f"{what} use case {text!r}; choose one of: {names}")


def _words(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


@dataclass(frozen=True)
class Size:
    """One network size and the figures measured (or modelled) for it on one device."""

    label: str
    """Preset name, or the widths joined by 'x'."""
    dims: tuple[int, ...]
    """Widths, (1024, 512, 256): the key sizes are matched by (pick's candidates too)."""
    params: int
    """Exact parameter count: the cost that breaks ties (fewer is cheaper)."""
    throughput: Score | None = None
    """Whole-iteration env steps/s; None: not measured."""
    throughput_note: str = ""
    """Which case, or how it was extrapolated."""
    throughput_workload: str = ""
    """The workload the throughput was measured on (evidence.workload_text); '' if unknown."""
    latency: Score | None = None
    """Batch-1 p99 seconds of the fastest agreeing backend; None: not measured."""
    latency_note: str = ""
    """Which backend."""
    memory_bytes: float | None = None
    """What training needs on the device (measured, or the sizing model's, see memory_note)."""
    memory_note: str = ""
    """Where memory_bytes comes from."""
    oom: str | None = None
    """Why this size cannot run here: every case of a suite ran out of memory; None: it did not."""
    oom_cases: tuple[str, ...] = ()
    """Cases that ran out of memory ('suite: case'): those settings are excluded, not the size."""
    runs: tuple[tuple[str, str], ...] = ()
    """(figure, run) pairs: which run each figure came from."""

    @property
    def hidden_dims(self) -> str:
        """The widths as shown and passed on a command line, '1024,512,256'."""
        return hidden_dims_text(self.dims)


@dataclass(frozen=True)
class Evidence:
    """Everything a decision may read, for one device."""

    device: str
    """What the figures were measured on (or the device a pick sizes for)."""
    sizes: tuple[Size, ...]
    """Every size considered, fewest parameters first."""
    oos: dict[Dataset, dict[str, OosCell]] = field(default_factory=dict)
    """Out-of-sample cells per overfit setting, keyed by Size.label."""
    memory_budget: float | None = None
    """Bytes a size may need; None: no limit known."""
    memory_budget_note: str = "no memory limit known"
    """Where the budget comes from."""
    gaps: dict[str, str] = field(default_factory=dict)
    """suite -> why it gave no figures."""
    source: str = ""
    """Which runs supplied which suites."""
    drift: float | None = None
    """Largest relative run-to-run change of one train case measured in two runs; None: no case
    was repeated."""


@dataclass(frozen=True)
class Decision:
    """The size chosen for one use case on one device, and why, with the figures."""

    use_case: UseCase
    """What was asked."""
    device: str
    """Evidence.device."""
    size: Size | None
    """The chosen size; None when nothing can be recommended."""
    score: Score | None
    """The chosen size's objective figure with its interval."""
    best: str | None
    """The size with the best point estimate (differs from size.label when within noise)."""
    runner_up: str | None
    """The eligible size ranked next to the chosen one."""
    within_noise: bool | None
    """True: a cheaper size won because the best does not beat it beyond the noise; False: the
    chosen size beats the next cheaper eligible size beyond the noise; None: no comparison."""
    summary: str
    """One line: the answer and the figures that decided it, or 'no recommendation: <why>'."""
    details: tuple[str, ...] = ()
    """The rule, the data used, constraints, exclusions and sizes not measured, a line each."""
    skill_shown: bool | None = None
    """Out of sample: False when no size beat the baselines beyond the noise (the answer is
    'no size shows skill'), True when the chosen one did; None: not an out-of-sample use case."""

    @property
    def hidden_dims(self) -> str | None:
        return None if self.size is None else self.size.hidden_dims
