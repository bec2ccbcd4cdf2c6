"""What a use case ranks (its objective, on which overfit setting) and which sizes its constraints
exclude, with the words that state each rule as applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archbench.reports.decision_types import Evidence, Limits, Size, UseCase
from archbench.reports.evidence import Dataset, OosCell, oos_by_length
from archbench.reports.scores import Paired, Score, oos_scores, paired_seeds


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


def _objective(
    use: UseCase, evidence: Evidence, budgets: Limits, details: list[str]
) -> tuple[_Ranking | None, str]:
    """What the use case ranks, or None and why nothing can be ranked."""
    if use.objective == "throughput":
        return _throughput_ranking(evidence, budgets, details)
    if not evidence.oos:
        gap = evidence.gaps.get("overfit", "no overfit case finished")
        return None, f"no out-of-sample figure ({gap})"
    dataset, why = _dataset(use.dataset, evidence.oos, budgets)
    if dataset is None:
        return None, why
    details.append(f"data: {dataset.text()}; {why}")
    _note_workloads(use, evidence, dataset, details)
    return _oos_ranking(evidence.oos[dataset], dataset, details), ""


def _throughput_ranking(
    evidence: Evidence, budgets: Limits, details: list[str]
) -> tuple[_Ranking | None, str]:
    """Whole-iteration throughput, with the margin a faster size needs (the drift, if larger)."""
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


def _note_workloads(use: UseCase, evidence: Evidence, dataset: Dataset, details: list[str]) -> None:
    """Say which other workloads were measured and not pooled with the chosen one."""
    others = {d.workload for d in evidence.oos if d.workload != dataset.workload}
    if others:
        details.append(f"not pooled: other workloads measured ({'; '.join(sorted(others))})")
    perf = {s.throughput_workload for s in evidence.sizes if s.throughput_workload}
    if perf - {dataset.workload} and "usable_rate" in use.constraints:
        details.append(f"the usable-rate check reads throughput of {'; '.join(sorted(perf))}")


def _oos_ranking(cells: dict[str, OosCell], dataset: Dataset, details: list[str]) -> _Ranking:
    """Out-of-sample Sharpe of each size on `dataset`, annualised where bars per year are known."""
    per_year = dataset.bars_per_year or 1.0
    if dataset.bars_per_year is None:
        details.append("bars per year unknown: Sharpe not annualised")
    scores = oos_scores({k: (c.val_sharpe, c.val_returns) for k, c in cells.items()}, per_year)
    oracle = [v for c in cells.values() for v in c.oracle_sharpe]
    if oracle:
        details.append(f"the oracle's Sharpe on the same bars: {sum(oracle) / len(oracle):.2f}")
    what = f"out-of-sample Sharpe on {dataset.text()}"
    return _Ranking(scores, what, dict(cells), per_year)


def _dataset(
    which: str | None, oos: dict[Dataset, dict[str, OosCell]], budgets: Limits
) -> tuple[Dataset | None, str]:
    """The overfit setting a use case decides on, and why that one."""
    settings = oos_by_length(oos)  # shortest first
    # A setting where no size has two seeds or per-bar returns cannot separate anything.
    informative = [d for d in settings if any(_has_interval(c) for c in oos[d].values())]
    settings = informative or settings
    rank = {d: i for i, d in enumerate(settings)}
    if which == "longest":
        return settings[-1], "the longest dataset measured"
    if which == "longest_budget":
        return _longest_budget(settings, rank, budgets)
    if which == "most_volatile":
        return _most_volatile(settings, rank)
    if which == "short":
        return _short(settings, rank, budgets)
    raise ValueError(f"UseCase.dataset {which!r} is not one of the known settings")


def _longest_budget(
    settings: list[Dataset], rank: dict[Dataset, int], budgets: Limits
) -> tuple[Dataset | None, str]:
    """The longest setting at the largest training budget, if that budget is long enough."""
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
        top, key=rank.__getitem__
    ), f"the longest training budget measured ({max(budgets_seen):,} env steps)"


def _most_volatile(settings: list[Dataset], rank: dict[Dataset, int]) -> tuple[Dataset | None, str]:
    """The most volatile setting whose volatility is recorded (the longer of equals)."""
    known = [d for d in settings if d.volatility is not None]
    if not known:
        return (
            None,
            "no overfit record states its dataset's volatility (rerun the overfit suite)",
        )
    best = max(known, key=lambda d: (d.volatility, rank[d]))
    return best, f"the most volatile dataset measured ({best.volatility:.0%} a year)"


def _short(
    settings: list[Dataset], rank: dict[Dataset, int], budgets: Limits
) -> tuple[Dataset | None, str]:
    """The shortest setting under the limited-data bound (under one year unless given)."""
    if budgets.limited_data_bars is not None:
        short = [d for d in settings if d.bars <= budgets.limited_data_bars]
        wanted = f"<= {budgets.limited_data_bars:,} bars"
    else:
        short = [d for d in settings if d.years is not None and d.years < 1.0]
        wanted = "under one year of bars"
    if not short:
        shortest = settings[0]
        return None, f"no dataset {wanted} measured (shortest: {shortest.text()})"
    return min(short, key=rank.__getitem__), f"the shortest dataset {wanted}"


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
