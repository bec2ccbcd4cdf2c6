"""The CI smoke of the benchmark suites: `pytest bench/ --benchmark-disable` with tiny budgets.

Every case must run once, pass, and leave one valid archbench/1 record that reports/ can read;
the figures themselves are not judged here (a smoke run measures seconds of work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_core.sweep import _write_json_from_records, bench_dir
from reports.load import load_run

SUITES = {"ceiling", "env", "infer", "memory", "overfit", "train"}


def _pytest_bench(*args: str, records: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", str(bench_dir()), "-q", "-p", "no:cacheprovider"]
    if records is not None:
        command += ["--archbench-records", str(records)]
    # One thread: the smoke's seconds of tiny work are not slowed by OpenMP threads spinning
    # against whatever else shares the CI machine's cores. Its figures are never reported.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, *args],
        cwd=bench_dir().parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_every_suite_runs_once_and_writes_a_valid_record(tmp_path):
    records = tmp_path / "records.jsonl"
    done = _pytest_bench("--benchmark-disable", "--presets", "tiny", records=records)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    events = [json.loads(line) for line in records.read_text().splitlines()]
    collected = [e["count"] for e in events if e["event"] == "collected"]
    cases = [e for e in events if e["event"] == "case"]
    assert collected == [len(cases)]
    assert all(e["outcome"] == "passed" and e["record"] is not None for e in cases)
    by_suite = {e["record"]["suite"] for e in cases}
    assert SUITES <= by_suite <= SUITES | {"peer"}  # peers run when the peers extra is installed

    for event in cases:
        record = event["record"]
        assert record["status"] == "ok", (event["nodeid"], record["reason"])
        for name, metric in record["metrics"].items():
            # Unmeasurable figures say why; nothing is silently reported as zero.
            assert (metric["value"] is None) == bool(metric["unavailable"]), (event["nodeid"], name)
        assert any(m["value"] is not None for m in record["metrics"].values()), event["nodeid"]
        if record["preset"] is not None:
            assert record["preset"] == "tiny"
            assert record["hidden_dims"] == [256, 128, 64]
            if record["trunk"] == "shared":  # peers build SB3's separate trunks
                assert record["params"] == 1_406_788  # counted on the built net (DESIGN.md)

    memory = next(e["record"] for e in cases if e["record"]["suite"] == "memory")
    for key in ("weights", "grads", "adam", "rollout", "params", "checkpoint_bytes"):
        assert memory["predicted"][key] > 0
    checkpoint = memory["metrics"]["checkpoint_bytes"]
    assert abs(checkpoint["value"] - checkpoint["predicted"]) < 0.01 * checkpoint["predicted"]

    run = tmp_path / "run.json"
    _write_json_from_records(run, cases, "cpu", "quick")
    frame = load_run(run)  # the reports' own schema checks
    assert set(frame["suite"]) == by_suite


def test_ids_name_presets_and_custom_sizes():
    done = _pytest_bench(
        "--collect-only", "--presets", "tiny", "--hidden-dims", "768,384,192", "--device", "cpu"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ids = done.stdout.split()
    assert "bench/test_train_throughput.py::test_train_throughput[tiny]" in ids
    assert "bench/test_train_throughput.py::test_train_throughput[768x384x192]" in ids
    assert "bench/test_memory.py::test_memory[768x384x192]" in ids
    assert "bench/test_inference_latency.py::test_inference_latency[tiny-batch1-eager]" in ids


def test_quick_profile_sweeps_training_on_tiny_and_small_only():
    done = _pytest_bench("--collect-only", "--profile", "quick", "--device", "cpu")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    train = [i for i in done.stdout.split() if "::test_train_throughput[" in i]
    memory = [i for i in done.stdout.split() if "::test_memory[" in i]
    assert [i.split("[")[1] for i in train] == ["tiny]", "small]"]
    assert [i.split("[")[1] for i in memory] == ["tiny]", "small]", "medium]", "large]"]


def test_a_bad_preset_is_a_usage_error_naming_it():
    done = _pytest_bench("--collect-only", "--presets", "tiny,huge")
    assert done.returncode == 4  # pytest's usage-error exit code
    assert "unknown preset 'huge'" in done.stderr
