"""Regenerate tests/fixtures/*.json for the report tests from real quick benchmark runs.

Run: .venv/bin/python tests/make_report_fixtures.py --source bench|standin [--presets tiny,small]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
STANDIN = FIXTURES / "standin"

# The files the report tests read; each is a real run or derived from one by the code below.
MAIN_RUN = "run-cpu-quick.json"
SECOND_RUN = "run-cpu-quick-b.json"
ONE_PRESET = "one-preset.json"
ALL_OOM = "all-oom.json"
EMPTY = "empty.json"
WRONG_SCHEMA = "wrong-schema.json"
NOT_BENCHMARK = "not-benchmark.json"
# A real bench/ run of one preset: proves the reports read what the real suites write.
BENCH_SAMPLE = "bench-cpu-quick-tiny.json"


def run_suites(source: str, presets: str, out: Path, *extra: str) -> None:
    """One real quick run -> pytest-benchmark JSON at `out`."""
    if source == "bench":
        command = [
            sys.executable, "-m", "pytest", str(ROOT / "bench"), "--profile", "quick",
            "--presets", presets, "--benchmark-json", str(out), "-p", "no:cacheprovider", "-q",
            *extra,
        ]  # fmt: skip
        env = dict(os.environ)
    else:
        command = [
            sys.executable, "-m", "pytest", str(STANDIN / "standin_suites.py"),
            "-o", "python_files=standin_suites.py", "-p", "standin_plugin",
            "--benchmark-json", str(out), "-p", "no:cacheprovider", "-q",
        ]  # fmt: skip
        env = dict(os.environ, ARCHBENCH_FIXTURE_PRESETS=presets)
        env["PYTHONPATH"] = os.pathsep.join([str(STANDIN), str(ROOT), env.get("PYTHONPATH", "")])
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=env)


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
    parser.add_argument(
        "--source",
        choices=["bench", "standin"],
        help="bench: the real bench/ suites (use this once train, infer, memory and overfit "
        "exist); standin: the numpy stand-in suites in tests/fixtures/standin",
    )
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument(
        "--bench-sample-only",
        action="store_true",
        help=f"only rewrite {BENCH_SAMPLE}: a real bench/ run of tiny (~5 min on 2 cores)",
    )
    args = parser.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    if args.bench_sample_only:
        # The update_large_minibatch case alone takes minutes on a laptop CPU; it adds no new
        # record shape, so the sample leaves it out.
        run_suites("bench", "tiny", FIXTURES / BENCH_SAMPLE, "-k", "not large_minibatch")
        return 0
    if args.source is None:
        parser.error("--source bench|standin is required (or --bench-sample-only)")
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "a.json", Path(tmp) / "b.json"
        run_suites(args.source, args.presets, first)
        run_suites(args.source, args.presets, second)
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
