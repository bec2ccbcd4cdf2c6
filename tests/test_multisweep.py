"""`archbench sweep --devices` and `--ray` on the CPU: two CPU shards, on this node and on one
local Ray cluster, merge into the run a single process makes of the same cases; bad input is
one line before any work starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archbench.cli.benchmarks import render_runs
from archbench.cli.main import main
from archbench.instrument.runfile import ShardRun
from archbench.instrument.sweep import raysweep
from archbench.instrument.sweep.multisweep import check_devices, run_on_devices
from archbench.instrument.sweep.options import SweepOptions
from archbench.instrument.sweep.raysweep import RAY_INSTALL_HINT, run_on_ray
from archbench.instrument.sweep.runner import run_sweep
from archbench.reports.load import load_run
from ppo_core.errors import ArchbenchError, ConfigError

# Three cases the splitter spreads over two shards (env steps, machine ceilings), in smoke
# budgets: seconds.
# test_input_alignment shares the ceilings module but times 2048-row GEMMs: left out, for speed.
SELECT = ("-k", "env_step or (ceilings and not input_alignment)", "--benchmark-disable")
OPTIONS = SweepOptions.from_text(SELECT, presets="tiny")


def _cases(path: Path) -> list[str]:
    return sorted(b["fullname"] for b in json.loads(path.read_text())["benchmarks"])


def _records(path: Path) -> list[dict]:
    return [b["extra_info"]["archbench"] for b in json.loads(path.read_text())["benchmarks"]]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """The same cases in one ordinary sweep process: what every merged run must equal."""
    result = run_sweep(
        presets="tiny",
        device="cpu",
        out_dir=tmp_path_factory.mktemp("single"),
        pytest_args=SELECT,
        echo=lambda line: None,
    )
    assert result.returncode == 0, result.log_path.read_text()[-3000:]
    return result.json_path


def _assert_same_run(merged: Path, single: Path) -> None:
    assert _cases(merged) == _cases(single)
    assert len(_cases(single)) == 3  # env steps at two n_envs, one ceilings case
    frame = load_run(merged)  # every record valid, or this raises naming it
    assert set(frame["status"]) == {"ok"}
    assert set(frame["device"]) == {"cpu"}
    records = _records(merged)
    assert {r["shard"] for r in records} == {0, 1}  # both shards did work (split by case)
    run = json.loads(merged.read_text())["archbench_run"]
    assert run["incomplete"] is False
    assert [s["cases_done"] for s in run["shards"]] == [2, 1]


def test_two_cpu_devices_merge_into_the_single_process_run(single_run, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    result = run_on_devices(["cpu", "cpu"], OPTIONS, out_dir=tmp_path, echo=lines.append)
    assert (result.shards, result.finished, result.failed) == (2, 2, ()), "\n".join(lines)
    (merged,) = result.json_paths
    _assert_same_run(merged, single_run)
    assert any(line.startswith("[1:cpu] ") for line in lines)  # progress names the shard
    machine = json.loads(merged.read_text())["machine_info"]
    assert [s["device"] for s in machine["archbench_shards"]] == ["cpu", "cpu"]
    assert result.html_path is None  # the command line renders, not the sweep
    html = render_runs(result.json_paths, result.report_path)
    assert html == merged.with_suffix(".html")
    assert html.stat().st_size > 0


# With the input-alignment case (seconds of 2048-row GEMMs) in the plan, a shard is still at
# work when the first sub-second case has finished: without it, all three cases could end
# before the interrupt lands on a loaded machine, and the sweep would rightly exit 0.
SELECT_WITH_A_LONG_CASE = ("-k", "env_step or ceilings", "--benchmark-disable")


def test_ctrl_c_keeps_the_shards_finished_cases(tmp_path):
    code = (
        "import sys; from archbench.cli.main import main; "
        f"sys.exit(main(['sweep', '--presets', 'tiny', '--devices', 'cpu,cpu', '--out', "
        f"{str(tmp_path)!r}, '--no-report', '--', *{list(SELECT_WITH_A_LONG_CASE)!r}]))"
    )
    out = tmp_path / "sweep.out"
    with out.open("w") as handle:
        # Its own session, so the SIGINT below reaches the driver as a terminal's Ctrl-C would.
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        deadline = time.monotonic() + 240
        while "[1/" not in out.read_text() and child.poll() is None:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        assert child.poll() is None, out.read_text()  # the interrupt lands mid-sweep
        os.killpg(child.pid, signal.SIGINT)
        returncode = child.wait(timeout=120)
    text = out.read_text()
    assert returncode == 130, text
    assert "interrupted: each shard keeps its finished cases" in text
    (merged,) = tmp_path.glob("run-*.json")
    records = _records(merged)
    # At least one case finished before the interrupt (the loop above waited for it). Usually
    # the seconds-long case is cut; on a loaded machine the shards may have finished all four
    # by the time the interrupt reaches them, and all four must then be kept.
    assert 1 <= len(records) <= 4
    assert all(r["status"] == "ok" for r in records)
    assert not list(tmp_path.rglob("*.partial"))
    assert json.loads(merged.read_text())["archbench_run"]["incomplete"] is True  # stopped
    # --resume on two CPU shards again: only the cases the stopped run lacks, then all four.
    resumed_dir = tmp_path / "resumed"
    argv = ["sweep", "--resume", str(merged), "--devices", "cpu,cpu", "--out", str(resumed_dir)]
    assert main([*argv, "--no-report"]) == 0
    if len(records) == 4:  # all four came home before the stop: nothing to resume, no new run
        assert not resumed_dir.exists()
        return
    (resumed,) = resumed_dir.glob("run-*.json")
    assert len(_records(resumed)) == 4
    assert json.loads(resumed.read_text())["archbench_run"]["incomplete"] is False
    kept = {b["fullname"]: b for b in json.loads(merged.read_text())["benchmarks"]}
    again = {b["fullname"]: b for b in json.loads(resumed.read_text())["benchmarks"]}
    assert all(again[name] == bench for name, bench in kept.items())  # not redone


@pytest.mark.parametrize(
    "how",
    [[], ["--devices", "cpu,cpu"], ["--ray", "local", "--devices", "cpu"]],
    ids=["plain", "devices", "ray"],
)
def test_resuming_a_run_that_has_every_case_says_so_and_writes_nothing(
    single_run, how, tmp_path, capsys
):
    before = {path: path.read_bytes() for path in single_run.parent.iterdir()}
    out = tmp_path / "resumed"
    capsys.readouterr()
    assert main(["sweep", "--resume", str(single_run), *how, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"archbench sweep: {single_run} has every case of its sweep (3 finished, none lost): "
        "nothing to resume, nothing written"
    ]
    assert captured.err == ""
    assert not out.exists()
    assert {path: path.read_bytes() for path in single_run.parent.iterdir()} == before


# --- bad input: one line, exit 2, before any work ------------------------------------------


def _cli_error(capsys, *argv: str) -> str:
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_devices_and_flags_are_one_line(capsys, tmp_path):
    import torch

    if not torch.cuda.is_available():
        assert "cuda:0 asked for, but torch sees no CUDA" in _cli_error(
            capsys, "--devices", "cuda:0", "--out", str(tmp_path)
        )
    if (torch.cuda.device_count() if torch.cuda.is_available() else 0) < 8:
        with pytest.raises(ConfigError, match="cuda:7"):
            check_devices("cpu,cuda:7")
    assert "--accelerator needs --ray" in _cli_error(capsys, "--accelerator", "H100")
    assert "unknown preset 'huge'" in _cli_error(capsys, "--devices", "cpu", "--presets", "huge")
    assert not list(tmp_path.iterdir())  # nothing was started


def test_an_unreachable_ray_address_fails_fast(capsys):
    pytest.importorskip("ray")
    err = _cli_error(capsys, "--ray", "127.0.0.1:1", "--devices", "cpu")
    assert "no Ray cluster answers at 127.0.0.1:1" in err
    assert "is not an address" in _cli_error(capsys, "--ray", "nowhere")


def test_without_ray_installed_ray_says_how_to_get_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ArchbenchError, match="pip install 'ppo-archbench\\[ray\\]'"):
        run_on_ray("local", OPTIONS)
    assert RAY_INSTALL_HINT in _cli_error(capsys, "--ray", "local")


# --- one local Ray cluster for the rest of the module ----------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # "local": a new cluster, not the one a killed run may have left in /tmp/ray.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_cpu_shards_merge_into_the_single_process_run(
    ray_cluster, single_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    result = run_on_ray(
        "local", OPTIONS, shards=2, cpu_only=True, out_dir=tmp_path, echo=lines.append
    )
    assert (result.shards, result.finished, result.failed) == (2, 2, ()), "\n".join(lines)
    (merged,) = result.json_paths
    _assert_same_run(merged, single_run)
    assert {r["node"] for r in _records(merged)} == {json.loads(merged.read_text())[
        "machine_info"]["node"]}  # fmt: skip
    assert render_runs(result.json_paths, result.report_path) is not None
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running


def test_an_accelerator_the_cluster_lacks_is_one_line(ray_cluster, capsys, tmp_path):
    err = _cli_error(capsys, "--ray", "local", "--accelerator", "H100", "--out", str(tmp_path))
    assert "--accelerator H100: the Ray cluster has no GPU of that type" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.gpu
def test_a_gpu_shard_is_pinned_and_named_by_uuid(tmp_path):
    options = SweepOptions.from_text(("-k", "env_step", "--benchmark-disable"), presets="tiny")
    result = run_on_devices(["cuda:0"], options, out_dir=tmp_path)
    (merged,) = result.json_paths
    records = _records(merged)
    assert {r["device"] for r in records} == {"cuda:0"}
    assert all(str(r["device_uuid"]).startswith(("GPU-", "MIG-")) for r in records)
    assert all(r["gpu_name"] for r in records)


class _TypedCluster:
    """A fake Ray cluster of two H100 nodes and one A100 node; each shard returns its half of
    a real H100 run's cases, as measured on the GPU type its task asked for."""

    def __init__(self, run: dict) -> None:
        self.run = run
        self.asked: list[dict] = []

    def is_initialized(self) -> bool:
        return True

    def nodes(self) -> list[dict]:
        node = {"Alive": True}
        return [
            {**node, "Resources": {"GPU": 1.0, "accelerator_type:H100": 1.0}},
            {**node, "Resources": {"GPU": 1.0, "accelerator_type:H100": 1.0}},
            {**node, "Resources": {"GPU": 1.0, "accelerator_type:A100": 1.0}},
            {"Alive": False, "Resources": {"GPU": 8.0, "accelerator_type:L4": 1.0}},
        ]

    def shard(self, index: int, n_shards: int, accelerator: str) -> ShardRun:
        self.asked.append({"accelerator_type": accelerator})
        run = json.loads(json.dumps(self.run))
        run["machine_info"]["archbench"]["gpu_name"] = f"NVIDIA {accelerator}"
        run["benchmarks"] = run["benchmarks"][index::n_shards]
        return ShardRun(index=index, device="cuda:0", data=run, node=f"{accelerator}-{index}",
                        accelerator=accelerator)  # fmt: skip


class _TypedDriver:
    """raysweep's driver over _TypedCluster: every shard of the plan finishes at once."""

    def __init__(self, ray, plan, *_args) -> None:
        self.cluster, self.plan = ray, plan

    def run(self, stopper):
        runs = [
            self.cluster.shard(index, n_shards, accelerator)
            for accelerator, _kind, n_shards in self.plan
            for index in range(n_shards)
        ]
        entries = [(f"{r.accelerator}/{r.index}", {"index": r.index}) for r in runs]
        return runs, [], entries, []


def test_accelerator_types_each_get_a_whole_sweep_and_one_report(tmp_path, monkeypatch):
    import gzip

    fixture = Path(__file__).parent / "fixtures" / "h100" / "full-perf-cuda.json.gz"
    with gzip.open(fixture, "rt", encoding="utf-8") as handle:
        cluster = _TypedCluster(json.load(handle))
    monkeypatch.setattr(raysweep, "_import_ray", lambda: cluster)
    monkeypatch.setattr(raysweep, "_Driver", _TypedDriver)
    result = run_on_ray("auto", OPTIONS, accelerators=["H100", "A100"], out_dir=tmp_path)
    assert (result.shards, result.finished, result.failed) == (3, 3, ())  # 2 H100 + 1 A100
    assert sorted(a["accelerator_type"] for a in cluster.asked) == ["A100", "H100", "H100"]
    h100, a100 = result.json_paths
    assert "ray-h100" in h100.name
    assert "ray-a100" in a100.name
    assert len(_records(h100)) == len(_records(a100)) == len(cluster.run["benchmarks"])
    assert {r["gpu_name"] for r in _records(a100)} == {"NVIDIA A100"}
    page = render_runs(result.json_paths, result.report_path).read_text()
    assert "<th>use case</th><th>NVIDIA H100</th><th>NVIDIA A100</th>" in page
    with pytest.raises(ConfigError, match=r"no GPU of that type \(it has: A100, H100\)"):
        run_on_ray("auto", OPTIONS, accelerators=["L4"], out_dir=tmp_path)
