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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument(
        "--margins",
        help="the test's margins, over_baseline,over_myopic,oracle_share: how many "
        "sds below the mean each sits, and the configurations that would miss it",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {}
    for line in (HERE / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("steps", 100_000) != args.steps:
            continue
        runs[(r.get("isa", "native"), r["threads"], r["seed"], r["gamma"])] = r
    configs = sorted({k[:2] for k in runs})
    complete = [c for c in configs if all((*c, s, g) in runs for s in seeds for g in (0.99, 0.0))]
    print(f"{args.steps:,} steps, seeds {seeds}; complete configurations: {complete}")
    if len(complete) < 2:
        raise SystemExit("need at least two complete configurations")

    def per_seed(config):
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

    table = {c: per_seed(c) for c in complete}
    oracle_sum = sum(row["oracle"] for row in table[complete[0]])
    stats = {
        "over_baseline": lambda rows: statistics.mean(r["over_baseline"] for r in rows),
        "over_myopic": lambda rows: statistics.mean(r["over_myopic"] for r in rows),
        "oracle_share": lambda rows: sum(r["log_return"] for r in rows) / oracle_sum,
    }
    # How much each seed's value moves across CPUs, carried to the mean (or the ratio of sums).
    scale = {
        "over_baseline": 1 / len(seeds),
        "over_myopic": 1 / len(seeds),
        "oracle_share": 1 / oracle_sum,
    }
    key = {
        "over_baseline": "over_baseline",
        "over_myopic": "over_myopic",
        "oracle_share": "log_return",
    }
    chosen = (
        dict(zip(stats, map(float, args.margins.split(",")), strict=True)) if args.margins else {}
    )
    for name, statistic in stats.items():
        values = {c: statistic(rows) for c, rows in table.items()}
        mean = statistics.mean(values.values())
        variance = sum(
            statistics.variance([table[c][i][key[name]] for c in complete])
            for i in range(len(seeds))
        )
        # Two estimates of the statistic's spread across CPUs: from each seed's spread across
        # configurations, and from the configurations' values themselves; the larger is used.
        per_seed = math.sqrt(variance) * scale[name]
        sd = max(per_seed, statistics.stdev(values.values()))
        step = 0.01 if name == "oracle_share" else 0.1
        margin = math.floor((mean - Z * sd) / step) * step
        shown = ", ".join(f"{isa}/{t}t {v:+.3f}" for (isa, t), v in values.items())
        print(
            f"{name}: {shown}; mean {mean:+.3f}, sd across CPUs {sd:.3f} "
            f"(per seed {per_seed:.3f}), "
            f"mean - {Z:g} sd {margin:+.2f}; lowest {min(values.values()):+.3f}"
        )
        if name in chosen:
            below = mean - chosen[name]
            missed = [c for c, v in values.items() if not v > chosen[name]]
            print(
                f"  margin {chosen[name]:+.2f}: {below / sd:.1f} sds below the mean "
                f"({below / per_seed:.1f} per-seed sds); configurations that miss it: {missed}"
            )


if __name__ == "__main__":
    main()
