"""The learning test's margins from the spread of its statistics across CPUs (results.jsonl).

Each "CPU" is a kernel configuration of this machine (run.sh: ISA native, avx2 or sse42, at 1
or 2 torch threads): another instruction set or thread count rounds every matmul and
reduction differently, as another CPU model does, and 100,000 steps of PPO amplify that into
another run. For each of the test's statistics (over the seeds it runs) this prints its value
per configuration, the mean over configurations, and its standard deviation across CPUs: the
larger of the per-seed variances across configurations (averaged over seeds and carried to the
statistic) and the spread of the configurations' values. A margin is the mean minus three of
those, rounded down, which a CPU misses with probability ~0.1% (normal approximation).

Run from the repository root:
    python docs/measurements/learning-cpu-2026-12-04/margins.py [--seeds 0,1,2,3,4,5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

HERE = Path(__file__).parent
Z = 3.0
STATISTICS = {
    # name: (the per-seed value it is built from, whether it is a share of the oracle's sum)
    "over_baseline": ("over_baseline", False),
    "over_myopic": ("over_myopic", False),
    "oracle_share": ("log_return", True),
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument(
        "--margins",
        help="the test's margins, over_baseline,over_myopic,oracle_share: how many "
        "sds below the mean each sits, and the configurations that would miss it",
    )
    return parser.parse_args()


def _runs(steps: int) -> dict[tuple, dict]:
    """(isa, threads, seed, gamma) -> the record of that run at `steps`."""
    runs = {}
    for line in (HERE / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("steps", 100_000) == steps:
            runs[(r.get("isa", "native"), r["threads"], r["seed"], r["gamma"])] = r
    return runs


def _per_seed(runs: dict[tuple, dict], config: tuple, seeds: list[int]) -> list[dict]:
    """One configuration's per-seed values the test's statistics are built from."""
    rows = []
    for s in seeds:
        far, myopic = runs[(*config, s, 0.99)], runs[(*config, s, 0.0)]
        v = far["validation_sharpe"]
        rows.append(
            {
                "over_baseline": v["policy"] - max(v["buy_and_hold"], v["flat"]),
                "over_myopic": v["policy"] - myopic["validation_sharpe"]["policy"],
                "log_return": far["policy_log_return"],
                "oracle": far["oracle_log_return"],
            }
        )
    return rows


def _report(name: str, table: dict[tuple, list[dict]], chosen: float | None) -> None:
    """Print one statistic per configuration, its spread across CPUs and its margin."""
    column, is_share = STATISTICS[name]
    rows = next(iter(table.values()))
    # A mean over seeds, or a ratio of sums over the oracle's (the same bars in every config).
    divisor = sum(r["oracle"] for r in rows) if is_share else len(rows)
    values = {c: sum(r[column] for r in config_rows) / divisor for c, config_rows in table.items()}
    mean = statistics.mean(values.values())
    # Two estimates of the statistic's spread across CPUs: from each seed's spread across
    # configurations, carried to the statistic, and from the configurations' values
    # themselves; the larger is used.
    variance = sum(
        statistics.variance([config_rows[i][column] for config_rows in table.values()])
        for i in range(len(rows))
    )
    per_seed = math.sqrt(variance) / divisor
    sd = max(per_seed, statistics.stdev(values.values()))
    step = 0.01 if is_share else 0.1
    margin = math.floor((mean - Z * sd) / step) * step
    shown = ", ".join(f"{isa}/{t}t {v:+.3f}" for (isa, t), v in values.items())
    print(
        f"{name}: {shown}; mean {mean:+.3f}, sd across CPUs {sd:.3f} "
        f"(per seed {per_seed:.3f}), "
        f"mean - {Z:g} sd {margin:+.2f}; lowest {min(values.values()):+.3f}"
    )
    if chosen is not None:
        below = mean - chosen
        missed = [c for c, v in values.items() if not v > chosen]
        print(
            f"  margin {chosen:+.2f}: {below / sd:.1f} sds below the mean "
            f"({below / per_seed:.1f} per-seed sds); configurations that miss it: {missed}"
        )


def main() -> None:
    args = _arguments()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = _runs(args.steps)
    configs = sorted({k[:2] for k in runs})
    complete = [c for c in configs if all((*c, s, g) in runs for s in seeds for g in (0.99, 0.0))]
    print(f"{args.steps:,} steps, seeds {seeds}; complete configurations: {complete}")
    if len(complete) < 2:
        raise SystemExit("need at least two complete configurations")
    table = {c: _per_seed(runs, c, seeds) for c in complete}
    margins = map(float, args.margins.split(",")) if args.margins else [None] * len(STATISTICS)
    for name, chosen in zip(STATISTICS, margins, strict=True):
        _report(name, table, chosen)


if __name__ == "__main__":
    main()
