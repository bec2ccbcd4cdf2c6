"""THE decision engine: which hidden_dims for each use case, from measured figures and their noise.

`archbench report` and `archbench pick` both call `decide`; the use cases are data (decision_types),
what each ranks and which sizes its constraints exclude are in ranking.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from archbench.reports.decision_types import USE_CASES, Decision, Evidence, Limits, Size, UseCase
from archbench.reports.evidence import (
    MEMORY_SAFETY_MARGIN,
    OosCell,
    RunSummary,
    SizeScores,
    combine_per_case,
    device_groups,
    device_label,
    frame_dims,
    oos_cells,
    run_to_run_drift,
    suite_gaps,
    summarise,
    summary_of,
)
from archbench.reports.ranking import _by_seed, _constrain, _objective, _Ranking
from archbench.reports.scores import Score, paired_seeds

__all__ = ["decide", "evidence_from_frame", "recommend"]


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
