"""`archbench sweep`: file naming, the pytest command, progress parsing, a real (tiny) sweep,
and Ctrl-C keeping the cases that finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import ppo_core
from ppo_core.errors import ArchbenchError
from ppo_core.sweep import _Progress, bench_dir, pytest_command, run_name, run_sweep
from reports.load import load_run


def test_run_name_is_file_safe_and_utc():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    name = run_name("My Box.local", "cuda0-H100 80GB HBM3", when)
    assert name == "run-my-box-local-cuda0-h100-80gb-hbm3-20260102T030405Z"


def test_pytest_command_passes_every_option(tmp_path):
    command = pytest_command(
        Path("/src/bench"),
        tmp_path / "run.json",
        tmp_path / "run.records.jsonl",
        profile="full",
        presets="tiny,large",
        hidden_dims=["768,384,192", "64,32"],
        device="cuda:1",
        data="sp500",
        extra=["-k", "infer"],
    )
    text = " ".join(command)
    assert command[1:4] == ["-m", "pytest", "/src/bench"]
    for part in (
        "--profile full",
        "--device cuda:1",
        "--data sp500",
        "--presets tiny,large",
        "--hidden-dims 768,384,192 --hidden-dims 64,32",
        f"--benchmark-json {tmp_path / 'run.json'}",
        f"--archbench-records {tmp_path / 'run.records.jsonl'}",
    ):
        assert part in text
    assert command[-2:] == ["-k", "infer"]


def test_bench_dir_is_found_in_a_checkout_and_explained_outside_one(tmp_path, monkeypatch):
    assert (bench_dir() / "conftest.py").is_file()
    fake = tmp_path / "site-packages" / "ppo_core" / "__init__.py"
    monkeypatch.setattr(ppo_core, "__file__", str(fake))
    with pytest.raises(ArchbenchError, match="source checkout"):
        bench_dir()


def test_progress_reads_whole_lines_only(tmp_path):
    path = tmp_path / "records.jsonl"
    lines: list[str] = []
    progress = _Progress(path, lines.append)
    progress.poll()  # no file yet: nothing happens
    record = {
        "suite": "infer",
        "status": "ok",
        "metrics": {"latency_p50_s": {"value": 0.0012, "unit": "s"}},
    }
    case = {
        "event": "case",
        "nodeid": "bench/test_inference_latency.py::test_inference_latency[tiny-batch1-eager]",
        "outcome": "passed",
        "duration_s": 1.5,
        "record": record,
    }
    text = json.dumps({"event": "collected", "count": 2}) + "\n" + json.dumps(case)
    path.write_text(text[:-10])  # the case line is still being written
    progress.poll()
    assert progress.collected == 2
    assert progress.finished == 0
    path.write_text(text + "\n")
    progress.poll()
    assert progress.finished == 1
    assert len(progress.records) == 1
    assert "[1/2] passed" in lines[-1]
    assert "latency_p50_s=1.200 ms" in lines[-1]


def test_a_tiny_sweep_writes_a_readable_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # seconds of tiny work; see test_bench_smoke
    lines: list[str] = []
    result = run_sweep(
        presets="tiny",
        device="cpu",
        out_dir=tmp_path,
        pytest_args=["-k", "env_step", "--benchmark-disable"],
        echo=lines.append,
    )
    assert result.returncode == 0, result.log_path.read_text()[-3000:]
    assert result.finished == result.collected == 2
    # --benchmark-disable writes no pytest-benchmark JSON: the run comes from the records.
    assert result.rebuilt
    assert result.json_path.name.startswith("run-")
    assert result.json_path.suffix == ".json"
    frame = load_run(result.json_path)
    assert set(frame["suite"]) == {"env"}
    assert sorted(frame["case_n_envs"].unique()) == [1, 64]
    assert frame["device"].iloc[0] == "cpu"
    assert any("[2/2] passed" in line for line in lines)
    if result.html_path is None:
        assert "reports.render" in result.report_note
    else:
        assert result.html_path.stat().st_size > 0


def test_ctrl_c_keeps_the_finished_cases(tmp_path):
    code = (
        "import sys; from ppo_core.cli import main; "
        f"sys.exit(main(['sweep', '--presets', 'tiny', '--device', 'cpu', '--out', "
        f"{str(tmp_path)!r}, '--no-report', '--', '-k', 'env_step']))"
    )
    out = tmp_path / "sweep.out"
    with out.open("w") as handle:
        # Its own session, so the SIGINT below reaches the sweep and its pytest as a terminal's
        # Ctrl-C would, and nothing else.
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        deadline = time.monotonic() + 240
        while "[1/3]" not in out.read_text() and child.poll() is None:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        os.killpg(child.pid, signal.SIGINT)
        returncode = child.wait(timeout=120)
    text = out.read_text()
    assert returncode == 130, text
    assert "interrupted" in text
    (run,) = tmp_path.glob("run-*.json")
    assert set(load_run(run)["suite"]) == {"env"}
    finished = json.loads(run.read_text())["benchmarks"]
    assert 1 <= len(finished) < 3
    assert all(b["extra_info"]["archbench"]["status"] == "ok" for b in finished)
    assert not list(tmp_path.glob("*.partial"))


def test_a_half_written_benchmark_json_is_not_taken_for_a_result(tmp_path):
    from ppo_core.sweep import _is_complete_json

    whole, half = tmp_path / "whole.json", tmp_path / "half.json"
    whole.write_text('{"benchmarks": []}')
    half.write_text('{"benchmarks": [{"name": "test_')
    assert _is_complete_json(whole)
    assert not _is_complete_json(half)
    assert not _is_complete_json(tmp_path / "missing.json")
