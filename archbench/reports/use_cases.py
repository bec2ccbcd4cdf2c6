"""THE decision engine: which hidden_dims for each use case, from measured figures and their noise.

`archbench report` and `archbench pick` both call `decide`; the use cases are data, below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from archbench.reports.evidence import (
    MEMORY_SAFETY_MARGIN,
    Dataset,
    OosCell,
    RunSummary,
    SizeScores,
    combine_per_case,
    device_groups,
    device_label,
    frame_dims,
    oos_by_length,
    oos_cells,
    run_to_run_drift,
    suite_gaps,
    summarise,
    summary_of,
)
from archbench.reports.scores import Paired, Score, oos_scores, paired_seeds
from ppo_core.presets import hidden_dims_text

__all__ = [
    "USE_CASES",
    "Decision",
    "Evidence",
    "Limits",
    "Size",
    "UseCase",
    "decide",
    "evidence_from_frame",
    "find_use_case",
    "recommend",
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


def recommend(
    df: pd.DataFrame,
    budgets: Limits | None = None,
    summaries: dict[str, RunSummary] | None = None,
) -> list[Decision]:
    """Every use case for every device in an archbench.reports.load frame (runs grouped by
    device). summaries: evidence.run_summaries of these same rows, when the caller has them."""
    budgets = budgets or Limits()
    out = []
    for device, frame in device_groups(df).items():
        evidence = evidence_from_frame(frame, budgets, device=device, summaries=summaries)
        out.extend(decide(use, evidence, budgets) for use in USE_CASES)
    return out


def evidence_from_frame(
    frame: pd.DataFrame,
    budgets: Limits | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    summaries: dict[str, RunSummary] | None = None,
) -> Evidence:
    """The Evidence of one device group, combined per (size, suite, case): every run adds what
    it measured, a newer run replaces an older one only for the same case.

    precision: rank throughput at this training precision (pick's --precision); None: the case
    most sizes measured, at any precision (the report). summaries: evidence.run_summaries of
    the rows `frame` was taken from, reused when the combined rows are one run's, all of them."""
    budgets = budgets or Limits()
    rows, used = combine_per_case(frame)
    runs_in = list(dict.fromkeys(rows["run"])) if len(rows) else []
    if precision is None and len(runs_in) == 1:
        summary = summary_of(runs_in[0], rows, summaries)
    else:
        summary = summarise(rows, precision)
    sizes = tuple(
        _size(s, summary.scores.get(s["preset"], SizeScores()))
        for s in summary.table.to_dict("records")
        if _complete(s)
    )
    memory_budget, note = _memory_budget(rows, budgets)
    runs: dict[str, set[str]] = {}
    for (_, suite, _), run in used.items():
        runs.setdefault(run, set()).add(suite)
    source = "; ".join(f"run {run}: {', '.join(sorted(suites))}" for run, suites in runs.items())
    return Evidence(
        device=device or device_label(rows),
        sizes=sizes,
        oos=oos_cells(rows),
        memory_budget=memory_budget,
        memory_budget_note=note,
        gaps=suite_gaps(rows),
        source=source,
        drift=run_to_run_drift(frame),
    )


def _complete(s: dict) -> bool:
    return s.get("params") is not None and s.get("hidden_dims") is not None


def _size(s: dict, scores: SizeScores) -> Size:
    """One preset_summary row as a Size, each figure with the run it came from."""
    oom = [suite for suite in s["oom_suites"] if suite in ("train", "memory", "overfit")]
    runs = [(f, s.get(f"{f}_run")) for f in ("throughput", "latency")]
    workload, case = (s.get(k) for k in ("throughput_workload", "throughput_case"))
    workload = workload if isinstance(workload, str) else ""  # NaN: not measured
    note = (case if isinstance(case, str) else "") + (f"; {workload}" if workload else "")
    return Size(
        label=str(s["preset"]),
        dims=frame_dims(s["hidden_dims"]),
        params=int(s["params"]),
        throughput=scores.throughput,
        throughput_note=note,
        throughput_workload=workload,
        latency=scores.latency,
        latency_note=str(s.get("latency_backend") or ""),
        memory_bytes=_number(s.get("memory_bytes")),
        memory_note=str(s.get("memory_source") or ""),
        oom=f"out of memory in every {', '.join(oom)} case" if oom else None,
        oom_cases=tuple(s.get("oom_cases") or ()),
        runs=tuple((f, str(r)) for f, r in runs if isinstance(r, str)),
    )


def _memory_budget(rows: pd.DataFrame, budgets: Limits) -> tuple[float | None, str]:
    if budgets.memory_bytes is not None:
        return budgets.memory_bytes, "given budget"
    gpu_memory = rows["gpu_memory_bytes"].dropna() if "gpu_memory_bytes" in rows else []
    on_gpu = rows["device"].astype(str).str.startswith("cuda").any()
    if on_gpu and len(gpu_memory):
        budget = float(gpu_memory.iloc[0]) * (1 - MEMORY_SAFETY_MARGIN)
        return budget, f"GPU memory minus a {MEMORY_SAFETY_MARGIN:.0%} safety margin"
    return None, "no memory limit known (CPU run, no budget given)"


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)  # type: ignore[arg-type]


# -- the decision -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranking:
    """What one use case ranks: each size's objective figure and how two sizes compare."""

    scores: dict[str, Score]
    """label -> objective Score for every size that measured it."""
    what: str
    """The objective in words ('training throughput', 'out-of-sample Sharpe on ...')."""
    cells: dict[str, OosCell] = field(default_factory=dict)
    """Out-of-sample cells by label (oos objective only)."""
    bars_per_year: float = 1.0
    """Annualisation of the oos cells."""
    min_effect: float = 0.0
    """Relative margin a faster size needs (throughput only)."""

    def beats(self, a: str, b: str) -> tuple[bool | None, str]:
        """Does a beat b beyond the noise? And the paired difference in words, '' if none."""
        if not self.cells:
            verdict = self.scores[a].beats(self.scores[b], higher=True, min_effect=self.min_effect)
            return verdict, ""
        paired = _pair(self.cells[a], self.cells[b], self.bars_per_year)
        if paired is None:
            return None, ""
        return paired.beyond, f"; paired difference {paired.text()}"


def decide(use: UseCase, evidence: Evidence, budgets: Limits | None = None) -> Decision:
    """One use case on one device: constraints, skill, then the objective, then noise and cost.

    1. Sizes without the objective's figure are 'not measured' and never chosen.
    2. Constraints drop sizes (a constraint no size measured is stated as not checked, except
       the latency budget of live trading, which is the point of that use case). For an
       out-of-sample objective a size must also show skill: beat flat and buy-and-hold beyond
       the paired interval.
    3. The best point estimate is found; the cheapest size (fewest parameters) that the best
       does not beat beyond the noise (95% interval: paired on common seeds out of sample,
       independent samples for timings, by at least the throughput margin) is the answer.
    """
    budgets = budgets or Limits()
    details = [f"rule: {use.rule}"]

    def none(why: str) -> Decision:
        return Decision(use, evidence.device, None, None, None, None, None,
                        f"no recommendation: {why}", tuple(details))  # fmt: skip

    if not evidence.sizes:
        return none("no per-size records")
    ranking, why_missing = _objective(use, evidence, budgets, details)
    if ranking is None or not ranking.scores:
        return none(why_missing)
    scores = ranking.scores
    measured = [s for s in evidence.sizes if s.label in scores]
    missing = [s.label for s in evidence.sizes if s.label not in scores]
    if missing:
        details.append(f"not measured ({ranking.what}): {', '.join(missing)}")
    pool, excluded = _constrain(use, measured, evidence, budgets, details)
    _note_oom_cases(pool, details)
    if ranking.cells and pool:
        pool, skill_excluded = _skilled(pool, ranking, details)
        excluded.update(skill_excluded)
        if not pool:
            best = max(skill_excluded, key=lambda k: scores[k].value)
            details.append("excluded: " + "; ".join(f"{k} ({v})" for k, v in excluded.items()))
            details.append(f"interval: {scores[best].how}")
            why = f"no size shows skill on this data (best, for information: {best}, "
            return replace(none(f"{why}{_fmt(use, scores[best])})"), skill_shown=False)
    if excluded:
        details.append("excluded: " + "; ".join(f"{k} ({v})" for k, v in excluded.items()))
    if not pool:
        return none(
            "no measured size meets the constraints ("
            + "; ".join(f"{k}: {v}" for k, v in excluded.items())
            + ")"
        )
    decision = _choose(use, evidence, ranking, pool, details)
    return replace(decision, skill_shown=True) if ranking.cells else decision


def _choose(
    use: UseCase, evidence: Evidence, ranking: _Ranking, pool: list[Size], details: list[str]
) -> Decision:
    """The cheapest size the best does not beat beyond the noise, and the words for it."""
    scores = ranking.scores
    best = max(pool, key=lambda s: (scores[s.label].value, -s.params))
    cheaper = sorted((s for s in pool if s.params < best.params), key=lambda s: s.params)
    chosen, unknown, paired = best, False, ""
    for size in cheaper:
        verdict, text = ranking.beats(best.label, size.label)
        if not verdict:  # False, or None (no interval): the bigger size has not proven itself
            chosen, unknown, paired = size, verdict is None, text
            break
    others = sorted((s for s in pool if s is not chosen), key=lambda s: -scores[s.label].value)
    runner = others[0] if others else None
    within = None if unknown else True if chosen is not best else False if cheaper else None
    score = scores[chosen.label]
    summary = f"{chosen.label} [{chosen.hidden_dims}]: {_fmt(use, score)}"
    if chosen is not best and unknown:
        summary += (
            f"; cannot be told apart from {best.label} ({_fmt(use, scores[best.label])}) "
            "without an interval, so the cheaper size"
        )
    elif chosen is not best:
        summary += (
            f"; within noise of {best.label} ({_fmt(use, scores[best.label])}{paired}), "
            "so the cheaper size"
        )
    elif cheaper:
        closest = max(cheaper, key=lambda s: scores[s.label].value)
        _, paired = ranking.beats(best.label, closest.label)
        summary += (
            f"; beats every cheaper size beyond the noise (closest: {closest.label}, "
            f"{_fmt(use, scores[closest.label])}{paired})"
        )
    elif runner is not None:
        runner_text = _fmt(use, scores[runner.label])
        summary += f"; the cheapest eligible size; runner-up {runner.label} ({runner_text})"
    details.append(f"interval: {score.how}")
    details.append("figures from: " + _sources(ranking, pool))
    if evidence.source:
        details.append(f"evidence: {evidence.source}")
    return Decision(use, evidence.device, chosen, score, best.label,
                    runner.label if runner is not None else None, within, summary,
                    tuple(details))  # fmt: skip


def _sources(ranking: _Ranking, pool: list[Size]) -> str:
    """The runs each ranked figure came from."""
    parts = []
    for size in pool:
        if ranking.cells:
            runs = ranking.cells[size.label].runs
        else:
            runs = tuple(run for figure, run in size.runs if figure == "throughput")
        parts.append(f"{size.label} ({', '.join(runs) or 'run not recorded'})")
    return "; ".join(parts)


def _note_oom_cases(pool: list[Size], details: list[str]) -> None:
    for size in pool:
        if size.oom_cases:
            details.append(
                f"{size.label}: out of memory at {'; '.join(size.oom_cases)} "
                "(those settings excluded, the size's other cases stand)"
            )


def _pair(a: OosCell, b: OosCell, bars_per_year: float) -> Paired | None:
    """a - b on the seeds both sizes measured (aligned by seed, the count printed)."""
    (sharpe_a, bars_a), (sharpe_b, bars_b) = _by_seed(a), _by_seed(b)
    return paired_seeds(sharpe_a, sharpe_b, (bars_a, bars_b), bars_per_year)


def _by_seed(cell: OosCell) -> tuple[dict, dict]:
    """(seed -> out-of-sample Sharpe, seed -> its per-bar returns) of one cell."""
    index = cell.by_seed()
    sharpe = {k: cell.val_sharpe[i] for k, i in index.items()}
    bars = {k: cell.val_returns[i] for k, i in index.items()} if cell.val_returns else {}
    return sharpe, bars


def _skilled(
    pool: list[Size], ranking: _Ranking, details: list[str]
) -> tuple[list[Size], dict[str, str]]:
    """The sizes that beat flat (Sharpe 0), buy-and-hold and the trend rule (where recorded)
    beyond the paired interval."""
    keep, excluded = [], {}
    for size in pool:
        sharpe, bars = _by_seed(ranking.cells[size.label])
        cell = ranking.cells[size.label]
        baselines = (
            ("flat", dict.fromkeys(sharpe, 0.0)),
            ("buy-and-hold", _baseline(cell, cell.buy_and_hold)),
            ("the trend rule", _baseline(cell, cell.trend)),
        )
        why = []
        for name, baseline in baselines:
            if not baseline:
                continue
            paired = paired_seeds(sharpe, baseline, (bars, None), ranking.bars_per_year)
            if paired is None or not paired.beyond:
                why.append(f"not beyond {name}: {paired.text() if paired else 'no interval'}")
        if why:
            excluded[size.label] = "no skill: " + "; ".join(why)
        else:
            keep.append(size)
    details.append(_skill_rule(pool, ranking))
    return keep, excluded


def _baseline(cell: OosCell, figures: tuple[float | None, ...]) -> dict:
    """seed -> a baseline's Sharpe on that seed's bars, where recorded."""
    return {
        k: figures[i]
        for k, i in cell.by_seed().items()
        if i < len(figures) and figures[i] is not None
    }


def _skill_rule(pool: list[Size], ranking: _Ranking) -> str:
    """The skill rule as applied: which baselines were recorded and checked."""
    cells = [ranking.cells[s.label] for s in pool]
    held = any(x is not None for c in cells for x in c.buy_and_hold)
    trend = any(x is not None for c in cells for x in c.trend)
    names = ["flat"] + ["buy-and-hold"] * held + ["the trend rule"] * trend
    missing = ["buy-and-hold"] * (not held) + ["the trend rule"] * (not trend)
    rule = (
        f"skill: must beat {', '.join(names)} beyond the paired interval (each baseline's "
        "per-bar returns are not recorded: its per-seed Sharpe is held fixed for one seed)"
    )
    return rule + (f"; {' and '.join(missing)} not recorded here: not checked" if missing else "")


def _fmt(use: UseCase, score: Score) -> str:
    interval = score.interval
    if use.objective == "throughput":
        text = f"{score.value:,.0f} env steps/s"
        span = "" if interval is None else f" [{interval[0]:,.0f}, {interval[1]:,.0f}]"
    else:
        text = f"Sharpe {score.value:.2f}"
        span = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return text + (span or " (no interval)")


def _objective(
    use: UseCase, evidence: Evidence, budgets: Limits, details: list[str]
) -> tuple[_Ranking | None, str]:
    """What the use case ranks, or None and why nothing can be ranked."""
    if use.objective == "throughput":
        scores = {s.label: s.throughput for s in evidence.sizes if s.throughput is not None}
        if not scores:
            gap = evidence.gaps.get("train", "no train case finished")
            return None, f"no training throughput measured ({gap})"
        margin = budgets.min_throughput_effect
        if evidence.drift is not None and evidence.drift > margin:
            margin = evidence.drift
            details.append(f"throughput margin {margin:.0%}: the run-to-run drift measured here")
        else:
            details.append(f"throughput margin {margin:.0%} (Limits.min_throughput_effect)")
        case = next(s.throughput_note for s in evidence.sizes if s.throughput is not None)
        details.append(f"compared on one case: {case}")
        return _Ranking(scores, "training throughput", min_effect=margin), ""
    if not evidence.oos:
        gap = evidence.gaps.get("overfit", "no overfit case finished")
        return None, f"no out-of-sample figure ({gap})"
    dataset, why = _dataset(use.dataset, evidence.oos, budgets)
    if dataset is None:
        return None, why
    cells = evidence.oos[dataset]
    details.append(f"data: {dataset.text()}; {why}")
    others = {d.workload for d in evidence.oos if d.workload != dataset.workload}
    if others:
        details.append(f"not pooled: other workloads measured ({'; '.join(sorted(others))})")
    perf = {s.throughput_workload for s in evidence.sizes if s.throughput_workload}
    if perf - {dataset.workload} and "usable_rate" in use.constraints:
        details.append(f"the usable-rate check reads throughput of {'; '.join(sorted(perf))}")
    per_year = dataset.bars_per_year or 1.0
    if dataset.bars_per_year is None:
        details.append("bars per year unknown: Sharpe not annualised")
    scores = oos_scores({k: (c.val_sharpe, c.val_returns) for k, c in cells.items()}, per_year)
    oracle = [v for c in cells.values() for v in c.oracle_sharpe]
    if oracle:
        details.append(f"the oracle's Sharpe on the same bars: {sum(oracle) / len(oracle):.2f}")
    what = f"out-of-sample Sharpe on {dataset.text()}"
    return _Ranking(scores, what, dict(cells), per_year), ""


def _dataset(
    which: str | None, oos: dict[Dataset, dict[str, OosCell]], budgets: Limits
) -> tuple[Dataset | None, str]:
    """The overfit setting a use case decides on, and why that one."""
    settings = oos_by_length(oos)  # shortest first
    # A setting where no size has two seeds or per-bar returns cannot separate anything.
    informative = [d for d in settings if any(_has_interval(c) for c in oos[d].values())]
    settings = informative or settings
    rank = {d: i for i, d in enumerate(settings)}

    def length(d: Dataset) -> int:
        return rank[d]

    if which == "longest":
        return settings[-1], "the longest dataset measured"
    if which == "longest_budget":
        budgets_seen = [d.budget for d in settings if d.budget is not None]
        floor = budgets.extended_min_budget
        if not budgets_seen or max(budgets_seen) < floor:
            longest = f"{max(budgets_seen):,}" if budgets_seen else "not recorded"
            return None, (
                f"not measured: no overfit run of >= {floor:,} env steps (longest: {longest}); "
                "a shorter budget ranks how fast sizes learn, not where they end"
            )
        top = [d for d in settings if d.budget == max(budgets_seen)]
        return max(
            top, key=length
        ), f"the longest training budget measured ({max(budgets_seen):,} env steps)"
    if which == "most_volatile":
        known = [d for d in settings if d.volatility is not None]
        if not known:
            return (
                None,
                "no overfit record states its dataset's volatility (rerun the overfit suite)",
            )
        best = max(known, key=lambda d: (d.volatility, length(d)))
        return best, f"the most volatile dataset measured ({best.volatility:.0%} a year)"
    if which == "short":
        if budgets.limited_data_bars is not None:
            short = [d for d in settings if d.bars <= budgets.limited_data_bars]
            wanted = f"<= {budgets.limited_data_bars:,} bars"
        else:
            short = [d for d in settings if d.years is not None and d.years < 1.0]
            wanted = "under one year of bars"
        if not short:
            shortest = settings[0]
            return None, f"no dataset {wanted} measured (shortest: {shortest.text()})"
        return min(short, key=length), f"the shortest dataset {wanted}"
    raise ValueError(f"UseCase.dataset {which!r} is not one of the known settings")


def _has_interval(cell: OosCell) -> bool:
    return len(cell.val_sharpe) >= 2 or cell.val_returns is not None


def _constrain(
    use: UseCase, sizes: list[Size], evidence: Evidence, budgets: Limits, details: list[str]
) -> tuple[list[Size], dict[str, str]]:
    """Apply the use case's constraints: (sizes left, label -> why excluded)."""
    excluded: dict[str, str] = {}
    pool = list(sizes)
    for kind in use.constraints:
        keep = []
        for size in pool:
            why = _violates(kind, size, evidence, budgets)
            if why:
                excluded[size.label] = why
            else:
                keep.append(size)
        pool = keep
        details.append(_constraint_text(kind, evidence, budgets))
    return pool, excluded


def _fastest(evidence: Evidence) -> float | None:
    rates = [s.throughput.value for s in evidence.sizes if s.throughput is not None]
    return max(rates) if rates else None


def _violates(kind: str, size: Size, evidence: Evidence, budgets: Limits) -> str | None:
    if kind == "fits":
        if size.oom:
            return size.oom
        limit = evidence.memory_budget
        if limit is None:
            return None
        if size.memory_bytes is None:
            # Stated as not checked when no size has a figure (a run without the memory suite)
            known = any(s.memory_bytes is not None for s in evidence.sizes)
            return "memory not measured or predicted" if known else None
        if size.memory_bytes > limit:
            return f"needs {size.memory_bytes / 2**30:.3g} GiB of {limit / 2**30:.3g} GiB"
        return None
    if kind == "usable_rate":
        fastest = _fastest(evidence)
        if fastest is None:
            return None  # stated as not checked
        if size.throughput is None:
            return "training throughput not measured"
        floor = budgets.min_throughput_fraction * fastest
        if size.throughput.value < floor:
            return f"{size.throughput.value:,.0f} env steps/s < {floor:,.0f}"
        return None
    if kind == "latency":
        if size.latency is None:
            return "batch-1 latency not measured"
        upper = size.latency.upper
        if upper is None:  # a p99 from too few samples cannot be held to a budget
            return (
                f"p99 {size.latency.value * 1e3:.3g} ms ({size.latency_note}): {size.latency.how}"
            )
        if upper > budgets.latency_p99_s:
            return (
                f"p99 {size.latency.value * 1e3:.3g} ms, 95% upper bound {upper * 1e3:.3g} ms "
                f"({size.latency_note}) > {budgets.latency_p99_s * 1e3:g} ms"
            )
        return None
    raise ValueError(f"UseCase.constraints has unknown constraint {kind!r}")


def _constraint_text(kind: str, evidence: Evidence, budgets: Limits) -> str:
    if kind == "fits":
        limit = evidence.memory_budget
        if limit is None:
            return f"fits: no OOM ({evidence.memory_budget_note})"
        if all(s.memory_bytes is None for s in evidence.sizes):
            why = evidence.gaps.get("memory", "no memory figure or prediction")
            return f"fits: no OOM; memory not checked ({why})"
        return f"fits: no OOM, memory <= {limit / 2**30:.3g} GiB ({evidence.memory_budget_note})"
    if kind == "usable_rate":
        fastest = _fastest(evidence)
        if fastest is None:
            return "usable rate: not checked (no training throughput measured)"
        return (
            f"usable rate: >= {budgets.min_throughput_fraction:.0%} of the fastest size's "
            f"{fastest:,.0f} env steps/s"
        )
    return (
        f"latency: the 95% upper bound of the batch-1 p99 of the fastest agreeing backend <= "
        f"{budgets.latency_p99_s * 1e3:g} ms"
    )
