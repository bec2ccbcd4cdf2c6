"""`archbench sweep --ray`: shards spread over a simulated 4-node cluster with their thread
count; SIGINT, SIGTERM and a worker killed past its retries each stop a `--ray local` sweep
within 30 s keeping every finished case, and --resume completes the run; a web server given as
the address is one line; failures read as their cause."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from archbench.instrument.sweep import ray_connect, ray_driver, ray_worker, raysweep
from archbench.instrument.sweep.options import SweepOptions
from ppo_core.errors import ArchbenchError

ray = pytest.importorskip("ray")

# The second case of each shard pytest is held in its setup (after the first has finished and
# been streamed) while ARCHBENCH_TEST_HELD is set, so a stop always lands between cases.
_HOLD_PLUGIN = """
import os, time
from pathlib import Path

_started = []


def pytest_runtest_setup(item):
    _started.append(item.nodeid)
    held = os.environ.get("ARCHBENCH_TEST_HELD")
    if held and len(_started) == 2:
        Path(held).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
"""


# Three cases: the machine ceilings (seconds), then env steps at n_envs 1 and 64.
SELECT = "env_step or (ceilings and not input_alignment)"


def _env(tmp_path: Path, hold: bool) -> dict[str, str]:
    (tmp_path / "archbench_hold.py").write_text(_HOLD_PLUGIN)
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env.pop("ARCHBENCH_TEST_HELD", None)
    if hold:
        env["ARCHBENCH_TEST_HELD"] = str(tmp_path / "held")
    return env


def _cli(tmp_path: Path, argv: list[str], hold: bool, name: str) -> tuple[subprocess.Popen, Path]:
    code = f"import sys; from archbench.cli.main import main; sys.exit(main({argv!r}))"
    out = tmp_path / f"{name}.out"
    with out.open("w") as handle:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_env(tmp_path, hold),
        )
    return child, out


def _wait_for(out: Path, child: subprocess.Popen, pattern: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, out.read_text()):
        assert child.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)
    return re.search(pattern, out.read_text()).group(0)


def _sweep_argv(out_dir: Path) -> list[str]:
    return ["sweep", "--presets", "tiny", "--ray", "local", "--devices", "cpu", "--out",
            str(out_dir), "--", "-k", SELECT, "-p", "archbench_hold",
            "--benchmark-disable"]  # fmt: skip


def _run_file(out_dir: Path) -> tuple[Path, dict]:
    (path,) = [p for p in out_dir.glob("run-*.json") if p.is_file()]
    return path, json.loads(path.read_text())


# --- stop, lose, resume: a real `--ray local` sweep of three tiny env-step cases -------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_stop_keeps_every_streamed_case_and_resume_completes_the_run(tmp_path, signum):
    first = tmp_path / "first"
    child, out = _cli(tmp_path, _sweep_argv(first), hold=True, name="first")
    _wait_for(out, child, r"\[0\] \[1/3\] passed")  # case 1 is home; case 2 is held
    assert (tmp_path / "held").is_file()
    stopped_at = time.monotonic()
    os.kill(child.pid, signum)
    returncode = child.wait(timeout=120)
    took = time.monotonic() - stopped_at
    text = out.read_text()
    assert took < 30, text
    assert returncode == 128 + signum, text
    assert f"interrupted by {signal.Signals(signum).name}" in text
    path, data = _run_file(first)
    assert [b["name"] for b in data["benchmarks"]] == ["test_ceilings"]
    run = data["archbench_run"]
    assert run["incomplete"] is True
    assert sorted(e["case"].split("::")[-1] for e in run["lost"]) == [
        "test_env_step[n_envs1]",
        "test_env_step[n_envs64]",
    ], run
    (html,) = first.glob("run-*.html")  # the report of what finished, saying it is incomplete
    assert "incomplete" in html.read_text().lower()
    assert "incomplete" in text
    # --resume runs only the two lost cases (no hold now) and writes a run holding all three.
    second = tmp_path / "second"
    argv = ["sweep", "--resume", str(path), "--ray", "local", "--devices", "cpu", "--out",
            str(second)]  # fmt: skip
    child, out = _cli(tmp_path, argv, hold=False, name="second")
    assert child.wait(timeout=300) == 0, out.read_text()
    text = out.read_text()
    assert "[0] collected 2 cases" in text
    assert "test_ceilings " not in text  # not redone
    _path, resumed = _run_file(second)
    assert len(resumed["benchmarks"]) == 3
    assert resumed["archbench_run"]["incomplete"] is False
    assert resumed["archbench_run"]["resumed_from"] == str(path)
    kept = next(b for b in resumed["benchmarks"] if b["name"] == "test_ceilings")
    assert kept == data["benchmarks"][0]


@pytest.mark.slow
def test_a_worker_killed_past_its_retries_keeps_its_finished_case(tmp_path):
    child, out = _cli(tmp_path, _sweep_argv(tmp_path / "run"), hold=True, name="kill")
    _wait_for(out, child, r"\[0\] \[1/3\] passed")
    pids = set()
    for attempt in range(3):  # the first attempt and Ray's two retries
        pattern = r"\[0\] on \S+ \(Ray node \w+\), worker pid (\d+)"
        pattern += f".*retry {attempt}" if attempt else ""
        line = _wait_for(out, child, pattern)
        pid = int(re.search(r"pid (\d+)", line).group(1))
        assert pid not in pids
        pids.add(pid)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
    returncode = child.wait(timeout=120)
    text = out.read_text()
    assert time.monotonic() - killed_at < 30, text
    assert returncode == 3, text  # incomplete
    _path, data = _run_file(tmp_path / "run")
    assert [b["name"] for b in data["benchmarks"]] == ["test_ceilings"]
    lost = data["archbench_run"]["lost"]
    assert lost
    assert all("lost after 2 retries" in e["reason"] for e in lost), lost
    shard_root = next((tmp_path / "run").glob("run-*.shards"))
    assert not list(Path(tempfile.gettempdir()).glob(f"archbench-{shard_root.name}-*"))
    ours = [line for line in text.splitlines() if line.startswith(("[0]", "  shard", "incomplete"))]
    assert not [line for line in ours if "\x1b[" in line]  # Ray's own (raylet) lines aside


# --- placement: 4 simulated nodes ----------------------------------------------------------


@pytest.mark.slow
def test_cpu_shards_spread_one_per_node_with_the_node_s_cores(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # Ray's own default; the shards must not keep it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(3):
        cluster.add_node(num_cpus=2)  # room for two shards each: only SPREAD keeps them apart
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        options = SweepOptions.from_text(("-k", "env_step", "--benchmark-disable"), presets="tiny")
        lines: list[str] = []
        result = raysweep.run_on_ray(
            cluster.address, options, shards=4, cpu_only=True, out_dir=tmp_path,
            echo=lines.append,
        )  # fmt: skip
        # A node without the driver's interpreter path is refused before any shard starts.
        monkeypatch.setattr(sys, "executable", "/nowhere/bin/python")
        with pytest.raises(ArchbenchError, match=r"has no /nowhere/bin/python.*same path"):
            ray_connect._preflight(ray)
    finally:
        ray.shutdown()
        cluster.shutdown()
    (path,) = result.json_paths
    shards = json.loads(path.read_text())["archbench_run"]["shards"]
    assert len({s["ray_node"] for s in shards}) == 4, "\n".join(lines)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert [s["torch_threads"] for s in shards] == [cores] * 4  # one shard per node: all cores
    records = [b["extra_info"]["archbench"] for b in json.loads(path.read_text())["benchmarks"]]
    assert len(records) == 2


# --- connecting -------------------------------------------------------------------------------


def test_a_web_server_given_as_the_address_is_one_line_within_30_s(capsys):
    from archbench.cli.main import main

    # The test reads stderr for the sweep's one line, so the server must print nothing: not
    # its request log, and not the traceback it prints when the probe hangs up mid-answer.
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>dashboard</html>")

        def log_message(self, *args):
            pass

    class QuietServer(http.server.HTTPServer):
        def handle_error(self, request, client_address):
            pass

    server = QuietServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        assert main(["sweep", "--ray", f"127.0.0.1:{server.server_port}", "--devices", "cpu"]) == 2
        assert time.monotonic() - started < 30
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "a web server answers there, not a Ray cluster" in err


# --- small pieces -----------------------------------------------------------------------------


def test_accelerator_types_match_whatever_their_case():
    class Nodes:
        def nodes(self):
            return [{"Alive": True, "Resources": {"GPU": 2.0, "accelerator_type:H100": 1.0}}]

    assert raysweep._plan(Nodes(), ["h100"], None) == [("H100", "gpu", 2)]


def test_cpu_shards_ask_ray_to_spread_and_gpu_shards_for_their_type():
    cpu = ray_driver._Shard(key="0", index=0, n_shards=2, accelerator=None, gpu=False)
    gpu = ray_driver._Shard(key="A100/1", index=1, n_shards=2, accelerator="A100", gpu=True)
    assert ray_driver._task_options(cpu) == {
        "max_retries": 2, "retry_exceptions": False, "scheduling_strategy": "SPREAD",
        "num_cpus": 1,
    }  # fmt: skip
    assert ray_driver._task_options(gpu)["accelerator_type"] == "A100"
    assert ray_driver._task_options(gpu)["num_gpus"] == 1


def test_a_failure_reads_as_its_cause_without_colour_or_frame_header():
    class TaskError(Exception):
        def __init__(self, text, cause):
            super().__init__(text)
            self.cause = cause

    header = "\x1b[36mray::_shard_task()\x1b[39m (pid=1, ip=10.0.0.1)\nTraceback (most ..."
    error = TaskError(header, FileNotFoundError("[Errno 2] No such file: '/opt/venv/bin/python'"))
    assert ray_driver._cause(error) == (
        "FileNotFoundError: [Errno 2] No such file: '/opt/venv/bin/python'"
    )
    log = "collected 4 cases\n\x1b[31mERROR: torch sees no CUDA device (--device cuda)\x1b[0m\n"
    assert ray_driver._last_error_line(log) == "ERROR: torch sees no CUDA device (--device cuda)"


def test_retries_are_named_only_when_ray_retried():
    class Ray:
        def __init__(self, attempts):
            self.attempts = attempts

        def get(self, value, timeout=None):
            return value

    class Collector:
        def __init__(self, attempts):
            self.attempts = type("M", (), {"remote": staticmethod(lambda: {"0": attempts})})

    shard = ray_driver._Shard(key="0", index=0, n_shards=1, accelerator=None, gpu=False)
    for attempts, expected in [(1, "failed: "), (3, "lost after 2 retries: ")]:
        driver = object.__new__(ray_driver._Driver)
        driver.ray, driver.collector, driver.stopped = Ray(attempts), Collector(attempts), None
        assert driver._failure(shard, RuntimeError("worker died")).startswith(expected)


def test_cases_one_node_could_not_collect_are_recorded_not_dropped(tmp_path):
    from archbench.instrument.runfile import mismatches
    from archbench.instrument.sweep.progress import Progress

    driver = object.__new__(ray_driver._Driver)
    driver.shards = [
        ray_driver._Shard(key=str(i), index=i, n_shards=2, accelerator=None, gpu=False)
        for i in range(2)
    ]
    everything = ["t::a", "t::b", "t::data[sp500]", "t::data[eurusd]"]
    without_data = everything[:2]  # shard 1's node has no [data] extra
    driver.progress = {}
    for key, collected, plan in (("0", everything, ["t::a", "t::data[eurusd]"]),
                                 ("1", without_data, ["t::b"])):  # fmt: skip
        progress = Progress(tmp_path / f"{key}.jsonl", lambda _line: None)
        progress.collected_ids, progress.plan = collected, plan
        driver.progress[key] = progress
    missing = driver._not_collected([], [])
    assert [e["case"] for _key, e in missing] == ["t::data[sp500]"]
    assert "shard(s) 1 collected 2 of 4 cases" in missing[0][1]["reason"]
    assert mismatches([{"index": 0, "collected": 4}, {"index": 1, "collected": 2}]) == [
        "collected differs: shard 0 4, shard 1 2"
    ]


def test_a_shard_gets_its_node_s_cores_over_the_shards_there():
    class Context:
        def get_node_id(self):
            return "n1"

    class Ray:
        def get_runtime_context(self):
            return Context()

        def nodes(self):
            return [{"NodeID": "n0", "Resources": {"GPU": 8.0}},
                    {"NodeID": "n1", "Resources": {"GPU": 2.0}}]  # fmt: skip

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert ray_worker._threads_here(Ray(), gpu=False, per_node=1) == cores
    assert ray_worker._threads_here(Ray(), gpu=False, per_node=cores * 4) == 1  # never 0
    assert ray_worker._threads_here(Ray(), gpu=True, per_node=1) == max(1, cores // 2)  # 2 GPUs


def test_ray_local_starts_its_own_cluster_rather_than_joining_a_recorded_one():
    """A bare ray.init() joins the cluster /tmp/ray/ray_current_cluster names, and hung there
    when a killed run left that file pointing at a dead one; 'local' always starts a new one."""
    calls = []

    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            calls.append(kwargs)

    assert ray_connect._connect(FakeRay, "local", {"runtime_env": {}}) is True
    assert calls == [
        {"address": "local", "include_dashboard": False, "log_to_driver": False, "runtime_env": {}}
    ]
