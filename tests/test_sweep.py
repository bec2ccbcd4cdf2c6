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
from archbench.cli.benchmarks import render_run
from archbench.instrument.sweep.options import SWEEP_OPTIONS, SweepOptions
from archbench.instrument.sweep.progress import Progress, _headline
from archbench.instrument.sweep.rebuild import rebuild_run, resolve_run
from archbench.instrument.sweep.runner import (
    bench_dir,
    nothing_to_resume,
    pytest_command,
    run_name,
    run_sweep,
)
from archbench.reports.load import load_run
from ppo_core.errors import ArchbenchError


def test_run_name_is_file_safe_and_utc():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    name = run_name("My Box.local", "cuda0-H100 80GB HBM3", when)
    assert name == "run-my-box-local-cuda0-h100-80gb-hbm3-20260102T030405Z"


def test_pytest_command_passes_every_option(tmp_path):
    options = SweepOptions(
        profile="full",
        presets=("tiny", "large"),
        hidden_dims=((768, 384, 192), (64, 32)),
        device="cuda:1",
        data="sp500",
    )
    command = pytest_command(
        Path("/src/bench"),
        tmp_path / "run.json",
        tmp_path / "run.records.jsonl",
        options,
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


def test_options_parsed_by_the_cli_read_back_the_same_in_pytest():
    """One parser per option: what the sweep passes to pytest parses to the same options."""
    import argparse

    raw = {
        "profile": "FULL",
        "presets": "small, tiny,small",
        "hidden_dims": ["768,384,192", "medium", "768,384,192"],
        "device": "cuda:0",
        "data": "Synthetic",
        "cost_bps": "2.5",
        "lookback": "20",
    }
    options = SweepOptions.parse(raw.__getitem__)
    assert options == SweepOptions(
        "full",
        ("small", "tiny"),
        ((768, 384, 192), (1024, 512, 256)),
        "cuda:0",
        "synthetic",
        cost_bps=2.5,
        lookback=20,
    )
    parser = argparse.ArgumentParser()
    for option in SWEEP_OPTIONS:
        option.declare(parser.add_argument)
    again = SweepOptions.parse(vars(parser.parse_args(options.argv())).__getitem__)
    assert again == options
    defaults = SweepOptions.parse(vars(parser.parse_args([])).__getitem__)
    assert defaults == SweepOptions()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--presets", "nonsense"], "--presets 'nonsense': unknown preset 'nonsense'"),
        (["--presets", ","], "unknown preset '(none)'"),
        (["--hidden-dims", "1,2,x"], "--hidden-dims: hidden_dims '1,2,x': 'x' is neither"),
        (["--hidden-dims", "0"], "width 0 is outside"),
        (["--device", "gpu"], "--device 'gpu': give auto, cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "--device 'cuda:x'"),
        (["--profile", "slow"], "--profile 'slow': choose quick or full"),
        (["--data", "/nope.csv"], "--data /nope.csv: no such file, and not a dataset name"),
    ],
)
def test_sweep_refuses_a_bad_option_in_one_line_before_pytest(tmp_path, capsys, argv, message):
    from archbench.cli.main import main

    out = tmp_path / "runs"
    assert main(["sweep", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err
    assert not out.exists()  # nothing started, nothing written


def test_sweep_reads_the_data_file_before_pytest(tmp_path, capsys):
    from archbench.cli.main import main

    few = tmp_path / "few.csv"
    few.write_text("Date,Open,High,Low,Close,Volume\n2020-01-01,1,1,1,1,1\n")
    columns = tmp_path / "columns.csv"
    columns.write_text("a,b\n1,2\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    out = tmp_path / "runs"
    for path, message in (
        (few, "has 1 data rows; no lookback fits: even --lookback 1 needs 208 rows"),
        (columns, "missing column(s) timestamp, open"),
        (folder, "is a directory"),
    ):
        assert main(["sweep", "--data", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert message in err
    assert not out.exists()


def test_sweep_refuses_a_file_as_its_output_folder(tmp_path, capsys):
    from archbench.cli.main import main

    taken = tmp_path / "runs"
    taken.write_text("not a folder")
    assert main(["sweep", "--device", "cpu", "--out", str(taken)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert taken.read_text() == "not a folder"


def test_bench_dir_is_found_in_a_checkout_and_explained_outside_one(tmp_path, monkeypatch):
    assert (bench_dir() / "conftest.py").is_file()
    fake = tmp_path / "site-packages" / "ppo_core" / "__init__.py"
    monkeypatch.setattr(ppo_core, "__file__", str(fake))
    with pytest.raises(ArchbenchError, match="source checkout"):
        bench_dir()


def test_progress_reads_whole_lines_only(tmp_path):
    path = tmp_path / "records.jsonl"
    lines: list[str] = []
    progress = Progress(path, lines.append)
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
    # The sweep renders nothing (issue 26: only the command line does, after it).
    assert (result.html_path, result.report_note) == (None, None)
    html, note = render_run(result.json_path, result.log_path)
    assert note is None
    assert html == result.json_path.with_suffix(".html")
    assert html.stat().st_size > 0


# A pytest plugin the interrupt tests load into the sweep's pytest (-p): it holds the second
# case in its setup, after the first has finished and been streamed, and says so in a file, so
# the signal always lands between the cases. Nothing depends on how fast a case runs.
_HOLD_PLUGIN = """
import os, time
from pathlib import Path

_started = []


def pytest_runtest_setup(item):
    _started.append(item.nodeid)
    if len(_started) == 2 and os.environ.get("ARCHBENCH_TEST_HELD"):
        Path(os.environ["ARCHBENCH_TEST_HELD"]).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
"""


def _held_sweep(tmp_path: Path) -> tuple[subprocess.Popen, Path, int]:
    """A sweep of 3 tiny env-step cases, the second held: (sweep, its output, pytest pid)."""
    (tmp_path / "archbench_hold.py").write_text(_HOLD_PLUGIN)
    held = tmp_path / "held"
    code = (
        "import sys; from archbench.cli.main import main; "
        f"sys.exit(main(['sweep', '--presets', 'tiny', '--device', 'cpu', '--out', "
        f"{str(tmp_path)!r}, '--no-report', '--', '-k', 'env_step', '-p', 'archbench_hold']))"
    )
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env["ARCHBENCH_TEST_HELD"] = str(held)
    out = tmp_path / "sweep.out"
    with out.open("w") as handle:
        # Its own session, so a signal sent to its group reaches the sweep as a terminal's
        # Ctrl-C or hangup would, and nothing else (the sweep's pytest has a session of its own).
        sweep = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + 300
    while not held.is_file() or not held.read_text():
        assert sweep.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)
    return sweep, out, int(held.read_text())


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        (signal.SIGINT, True),  # a terminal's Ctrl-C: the whole foreground group
        (signal.SIGTERM, False),  # `kill <sweep pid>`: the sweep alone
        (signal.SIGHUP, True),  # the terminal closed
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_stop_signal_keeps_the_finished_cases(tmp_path, signum, to_group):
    sweep, out, pytest_pid = _held_sweep(tmp_path)
    if to_group:
        os.killpg(sweep.pid, signum)
    else:
        os.kill(sweep.pid, signum)
    returncode = sweep.wait(timeout=120)
    text = out.read_text()
    assert returncode == 128 + signum, text
    assert f"interrupted by {signal.Signals(signum).name}" in text
    assert _gone(pytest_pid), f"pytest {pytest_pid} outlived the sweep"
    (run,) = tmp_path.glob("run-*.json")
    assert set(load_run(run)["suite"]) == {"env"}
    finished = json.loads(run.read_text())["benchmarks"]
    assert len(finished) == 1  # the first case, and not the held one
    assert finished[0]["extra_info"]["archbench"]["status"] == "ok"
    assert finished[0]["stats"] is not None  # pytest-benchmark's own JSON, not a rebuild
    assert "[1/3] passed" in text
    assert not list(tmp_path.glob("*.partial"))
    assert not list(tmp_path.glob(".*.tmp"))
    # The run file says it is incomplete, which cases it lacks and why (issue 24).
    run_file = json.loads(run.read_text())["archbench_run"]
    assert run_file["incomplete"] is True
    assert run_file["stopped_by"] == signal.Signals(signum).name
    assert len(run_file["lost"]) == 2
    assert all("stopped by" in e["reason"] for e in run_file["lost"])
    assert "incomplete: 2 case(s) not in the run" in text
    assert f"archbench sweep --resume {run}" in text


def test_resume_runs_only_the_cases_a_stopped_run_lacks(tmp_path, monkeypatch):
    sweep, _out, _pid = _held_sweep(tmp_path)
    os.kill(sweep.pid, signal.SIGTERM)
    sweep.wait(timeout=120)
    (stopped,) = tmp_path.glob("run-*.json")
    before = json.loads(stopped.read_text())
    (done,) = [b["fullname"] for b in before["benchmarks"]]
    # The held run's own options come back (its -p archbench_hold too), now without the hold.
    monkeypatch.delenv("ARCHBENCH_TEST_HELD", raising=False)
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    result = run_sweep(out_dir=tmp_path / "resumed", resume=stopped, echo=lines.append)
    assert result.returncode == 0, result.log_path.read_text()[-3000:]
    assert result.collected == 2  # the two it lacked, not the finished one
    assert not result.incomplete
    after = json.loads(result.json_path.read_text())
    assert sorted(b["fullname"] for b in after["benchmarks"]) == sorted(
        [done, *(e["case"] for e in before["archbench_run"]["lost"])]
    )
    assert after["benchmarks"][0] == before["benchmarks"][0]  # kept as it was, not redone
    assert after["archbench_run"]["resumed_from"] == str(stopped)
    assert json.loads(stopped.read_text()) == before  # the input is never rewritten


def _run_with(**section) -> dict:
    """A run of two finished cases whose archbench_run is `section` over a complete one's."""
    record = {"schema": "archbench/1", "suite": "env", "status": "ok"}
    ids = [f"bench/test_env.py::test_env_step[n_envs{n}]" for n in (1, 64)]
    shard = {"index": 0, "cases_done": 2, "cases_total": 2}
    whole = {"incomplete": False, "lost": [], "shards": [shard], "stopped_by": None}
    benchmarks = [{"fullname": i, "extra_info": {"archbench": record}} for i in ids]
    return {"benchmarks": benchmarks, "archbench_run": {**whole, **section}}


def test_only_a_run_that_knows_it_lacks_nothing_is_not_resumed(tmp_path):
    path = tmp_path / "run.json"
    said = nothing_to_resume(path, _run_with())
    assert said == (
        f"archbench sweep: {path} has every case of its sweep (2 finished, none lost): "
        "nothing to resume, nothing written"
    )
    # Stopped after every planned case had finished: whole all the same.
    assert nothing_to_resume(path, _run_with(incomplete=True, stopped_by="SIGINT")) == said
    # A lost case, a shard stopped before its plan was known, a run without shards or without
    # an archbench_run section (it cannot say what its sweep was): resumed as before.
    lost = [{"case": "bench/test_x.py::test_y", "reason": "not run"}]
    assert nothing_to_resume(path, _run_with(incomplete=True, lost=lost)) is None
    unplanned = [{"index": 0, "cases_done": 0, "cases_total": None}]
    assert nothing_to_resume(path, _run_with(stopped_by="SIGTERM", shards=unplanned)) is None
    assert nothing_to_resume(path, _run_with(shards=[])) is None
    assert nothing_to_resume(path, {"benchmarks": _run_with()["benchmarks"]}) is None


def test_a_case_past_its_timeout_fails_with_that_reason_and_the_rest_run(tmp_path):
    (tmp_path / "test_slow.py").write_text(
        "import time\n\ndef test_stuck():\n    time.sleep(60)\n\ndef test_next():\n    pass\n"
    )
    plugin = ["-p", "archbench.instrument.sweep.plugin", "--archbench-case-timeout", "1"]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *plugin,
        "test_slow.py",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 50, done.stdout
    assert done.returncode == 1, done.stdout
    assert "case timed out after 1 s" in done.stdout
    assert "1 failed, 1 passed" in done.stdout


def test_shards_below_one_and_resume_with_other_options_are_one_line(capsys, tmp_path):
    from archbench.cli.main import main

    # Refused by the one range table every numeric flag goes through (archbench.cli._common).
    assert main(["sweep", "--ray", "local", "--shards", "0"]) == 2
    assert "--shards 0: must be in (0," in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path), "--presets", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume takes the sweep's options from the run; drop --presets" in err
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "this folder holds 0 runs" in capsys.readouterr().err


def test_a_killed_sweep_is_rebuilt_by_report_from_its_records(tmp_path, capsys):
    from archbench.cli.main import main

    sweep, _out, pytest_pid = _held_sweep(tmp_path)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait(timeout=60)
    assert _gone(pytest_pid), "pytest outlived a SIGKILLed sweep"
    assert not list(tmp_path.glob("run-*.json"))
    (records,) = tmp_path.glob("run-*.records.jsonl")
    html = tmp_path / "report.html"
    assert main(["report", str(records), "-o", str(html), "--plotlyjs", "cdn"]) == 0
    printed = capsys.readouterr().out
    assert "rebuilt" in printed
    (run,) = tmp_path.glob("run-*.json")
    assert run.name == records.name.replace(".records.jsonl", ".json")
    frame = load_run(run)
    assert set(frame["suite"]) == {"env"}
    assert frame["device"].iloc[0] == "cpu"
    assert frame["profile"].iloc[0] == "quick"
    assert len(json.loads(run.read_text())["benchmarks"]) == 1
    assert html.stat().st_size > 0


def test_a_missing_run_json_is_rebuilt_from_the_records_beside_it(tmp_path):
    record = {
        "schema": "archbench/1",
        "suite": "env",
        "status": "ok",
        "device": "cpu",
        "metrics": {"env_steps_per_s": {"value": 10.0, "unit": "1/s", "better": "higher"}},
    }
    lines = [
        {"event": "collected", "count": 2, "device": "cpu", "profile": "quick"},
        {
            "event": "case",
            "nodeid": "b.py::t[a]",
            "outcome": "passed",
            "duration_s": 1.0,
            "record": record,
        },
    ]
    records = tmp_path / "run-x.records.jsonl"
    records.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event": "ca')
    path, note = resolve_run(tmp_path / "run-x.json")
    assert path == tmp_path / "run-x.json"
    assert "rebuilt" in note
    assert len(load_run(path)) == 1
    # Now the JSON exists: it is read as it is, from either name.
    assert resolve_run(records)[0] == path
    assert "rather than" in resolve_run(records)[1]
    assert resolve_run(path) == (path, None)
    empty = tmp_path / "run-y.records.jsonl"
    empty.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(ArchbenchError, match="no finished case"):
        rebuild_run(empty)
    garbage = tmp_path / "run-z.records.jsonl"
    garbage.write_text("not json\n")
    with pytest.raises(ArchbenchError, match="not an archbench records stream"):
        rebuild_run(garbage)


def test_a_case_that_measured_nothing_says_why_on_its_progress_line():
    why = "onnxruntime not installed (pip install 'ppo-archbench[onnx]')"
    record = {
        "suite": "infer",
        "status": "ok",
        "metrics": {
            "latency_p50_s": {"value": None, "unavailable": why, "unit": "s"},
            "latency_p99_s": {"value": None, "unavailable": why, "unit": "s"},
        },
    }
    assert _headline(record) == f"not measured: {why}"


def test_a_half_written_benchmark_json_is_not_taken_for_a_result(tmp_path):
    from archbench.instrument.sweep.rebuild import is_complete_json

    whole, half = tmp_path / "whole.json", tmp_path / "half.json"
    whole.write_text('{"benchmarks": []}')
    half.write_text('{"benchmarks": [{"name": "test_')
    assert is_complete_json(whole)
    assert not is_complete_json(half)
    assert not is_complete_json(tmp_path / "missing.json")


def test_cases_without_an_extra_say_why_and_raise_no_benchmark_warnings(tmp_path):
    # As if the onnx and peers extras were not installed: find_spec() answers None for them.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'onnxscript', 'stable_baselines3'):\n"
        "    sys.modules[name] = None\n"
    )
    records = tmp_path / "records.jsonl"
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "pytest", str(bench_dir()), "-q", "-p", "no:cacheprovider"]
    command += ["--presets", "tiny", "--device", "cpu", "--benchmark-disable"]
    command += ["-k", "onnx or peer", "--archbench-records", str(records)]
    done = subprocess.run(
        command,
        cwd=bench_dir().parent,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path},
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "PytestBenchmarkWarning" not in output
    lines: list[str] = []
    progress = Progress(records, lines.append)
    progress.poll()
    cases = [line for line in lines if line.startswith("[")]
    assert len(cases) == progress.collected >= 3
    for line in cases:
        if "-onnx]" in line:
            assert "not measured: onnx, onnxruntime, onnxscript not installed" in line
        else:  # the peers suite skips as a whole
            assert "skipped" in line
            assert "the peers extra is not installed" in line
            assert "(" not in line.split("s  ", 1)[1].split("(elapsed")[0]  # no raw tuple


def test_a_failing_report_keeps_the_run_and_says_where_the_traceback_is(tmp_path, monkeypatch):
    import archbench.reports.render

    def broken(*_args, **_kwargs):
        raise KeyError("memory_bytes")

    monkeypatch.setattr(archbench.reports.render, "render_report", broken)
    run, log = tmp_path / "run.json", tmp_path / "run.log"
    run.write_text("{}")
    html, note = render_run(run, log)
    assert html is None
    assert "rendering failed (KeyError: 'memory_bytes'" in note
    assert f"archbench report {run}" in note
    assert "Traceback" in log.read_text()
    assert run.read_text() == "{}"


def test_a_peer_case_has_a_progress_headline():
    record = {
        "status": "ok",
        "suite": "peer",
        "metrics": {"speedup_ratio_vs_sb3": {"value": 1.84, "unit": "ratio"}},
    }
    assert _headline(record) == "speedup_ratio_vs_sb3=1.84"


def test_a_case_hung_past_its_timeout_is_stopped_and_recorded_as_lost(tmp_path, monkeypatch):
    from archbench.instrument.sweep import runner

    # The held case sleeps in its setup, where the case timeout (armed around the call) cannot
    # reach it: the stand-in for a case stuck inside one long C or CUDA call.
    (tmp_path / "archbench_hold.py").write_text(_HOLD_PLUGIN)
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("ARCHBENCH_TEST_HELD", str(tmp_path / "held"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(runner, "HANG_GRACE_S", 1.0)
    lines: list[str] = []
    result = run_sweep(
        presets="tiny",
        device="cpu",
        out_dir=tmp_path / "out",
        pytest_args=["-k", "env_step", "-p", "archbench_hold"],
        echo=lines.append,
        case_timeout=20,
    )
    assert result.finished == 1, "\n".join(lines)
    assert any("hung: still running" in line for line in lines)
    reasons = [entry["reason"] for entry in result.lost]
    assert len(reasons) == 2
    assert "hung: still running" in reasons[0]
    assert reasons[1] == "not run: the sweep stopped pytest after a hung case"
    run = json.loads(result.json_path.read_text())["archbench_run"]
    assert run["incomplete"] is True
    assert run["lost"] == list(result.lost)


def test_the_command_line_renders_after_the_sweep_and_says_what_it_wrote(
    tmp_path, monkeypatch, capsys
):
    """The sweep only measures (issue 26): `archbench sweep` renders the run it returns,
    prints the same lines as before, and exits 1 when a report it was asked for failed."""
    import shutil

    import archbench.reports.render
    from archbench.cli.main import main
    from archbench.instrument.sweep import runner

    run = tmp_path / "run-x.json"
    shutil.copy(Path(__file__).parent / "fixtures" / "one-preset.json", run)
    swept = runner.SweepResult(
        json_path=run,
        log_path=tmp_path / "run-x.log",
        records_path=tmp_path / "run-x.records.jsonl",
        returncode=0,
        finished=3,
        collected=3,
        interrupted=False,
        stopped_by=None,
        rebuilt=False,
        report_note=None,
    )
    monkeypatch.setattr(runner, "run_sweep", lambda **_kwargs: swept)
    assert main(["sweep", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"3/3 cases finished; pytest exit code 0; log {tmp_path / 'run-x.log'}",
        f"wrote {run}",
        f"wrote {tmp_path / 'run-x.html'}",
    ]
    assert (tmp_path / "run-x.html").stat().st_size > 0

    def broken(*_args, **_kwargs):
        raise KeyError("memory_bytes")

    monkeypatch.setattr(archbench.reports.render, "render_report", broken)
    assert main(["sweep", "--out", str(tmp_path)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("no report: rendering failed (KeyError: 'memory_bytes'")
    assert main(["sweep", "--no-report", "--out", str(tmp_path)]) == 0
    assert "report" not in capsys.readouterr().out


def test_the_command_line_renders_one_report_over_the_merged_shards(tmp_path, monkeypatch, capsys):
    import shutil

    from archbench.cli.main import main
    from archbench.instrument.sweep import multisweep
    from archbench.instrument.sweep.options import SweepOptions

    run = tmp_path / "run-x.json"
    shutil.copy(Path(__file__).parent / "fixtures" / "one-preset.json", run)
    asked = []

    def fake(devices, options, **_kwargs):
        asked.append((devices, options))
        shards = tmp_path / "run-x.shards"
        return multisweep.MultiSweepResult(
            json_paths=(run,), shard_dir=shards, shards=2, finished=2
        )

    monkeypatch.setattr(multisweep, "run_on_devices", fake)
    argv = ["sweep", "--devices", "cpu,cpu", "--presets", "tiny", "--out", str(tmp_path)]
    assert main([*argv, "--", "-k", "env"]) == 0
    assert asked == [(["cpu", "cpu"], SweepOptions(presets=("tiny",), pytest_args=("-k", "env")))]
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote {run}",
        f"wrote {tmp_path / 'run-x.html'}",
    ]
    assert (tmp_path / "run-x.html").stat().st_size > 0
