"""Regenerate tests/fixtures/*.json for the report tests from real quick benchmark runs.

Run: .venv/bin/python tests/make_report_fixtures.py [--presets tiny,small]
(two quick runs of bench/: ~5 minutes each on an idle 2-core machine)
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The files the report tests read; each is a real run or derived from one by the code below.
MAIN_RUN = "run-cpu-quick.json"
SECOND_RUN = "run-cpu-quick-b.json"
ONE_PRESET = "one-preset.json"
ALL_OOM = "all-oom.json"
EMPTY = "empty.json"
WRONG_SCHEMA = "wrong-schema.json"
NOT_BENCHMARK = "not-benchmark.json"


def run_suites(presets: str, out: Path) -> None:
    """One real quick run of bench/ -> pytest-benchmark JSON at `out`."""
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "bench"), "--profile", "quick",
        "--presets", presets, "--benchmark-json", str(out), "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def one_preset(run: dict) -> dict:
    """Keep the machine-level suites and the first preset's records only."""
    out = copy.deepcopy(run)
    presets = [b["extra_info"]["archbench"]["preset"] for b in run["benchmarks"]]
    first = next(p for p in presets if p is not None)
    out["benchmarks"] = [
        b for b in out["benchmarks"] if b["extra_info"]["archbench"]["preset"] in (None, first)
    ]
    return out


def all_oom(run: dict) -> dict:
    """Every per-preset case as the suites record an out-of-memory case: no metrics, a reason."""
    out = copy.deepcopy(run)
    for bench in out["benchmarks"]:
        record = bench["extra_info"]["archbench"]
        if record["preset"] is not None:
            record.update(
                status="oom",
                reason=f"out of memory (derived fixture: {record['suite']} {record['case']})",
                metrics={},
            )
            bench["stats"] = None
    return out


def second_machine(run: dict) -> dict:
    """A second real run, labelled as another machine so the two sit side by side."""
    out = copy.deepcopy(run)
    out["machine_info"]["node"] = f"{run['machine_info'].get('node', 'machine')}-b"
    return out


def wrong_schema(run: dict) -> dict:
    """The first two records, the first one claiming a schema this version does not read."""
    out = copy.deepcopy(run)
    out["benchmarks"] = out["benchmarks"][:2]
    out["benchmarks"][0]["extra_info"]["archbench"]["schema"] = "archbench/0"
    return out


def _write(name: str, data: dict | str) -> None:
    path = FIXTURES / name
    text = data if isinstance(data, str) else json.dumps(data, indent=1) + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    args = parser.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "a.json", Path(tmp) / "b.json"
        run_suites(args.presets, first)
        run_suites(args.presets, second)
        run = json.loads(first.read_text())
        run_b = json.loads(second.read_text())
    _write(MAIN_RUN, run)
    _write(SECOND_RUN, second_machine(run_b))
    _write(ONE_PRESET, one_preset(run))
    _write(ALL_OOM, all_oom(run))
    _write(WRONG_SCHEMA, wrong_schema(run))
    _write(EMPTY, "")
    _write(NOT_BENCHMARK, {"results": [], "note": "not a pytest-benchmark file"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
