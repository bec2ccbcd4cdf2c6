"""archbench.instrument.sweep.shards: the splitter keeps each size on one device and loses no case;
--devices is checked against the machine; the merged run names every record's device and reads
back through archbench.reports.load, split per kind of GPU in the report and in compare."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from archbench.instrument.runfile import ShardRun, merge_shards
from archbench.instrument.sweep.shards import (
    Case,
    case_weight,
    parse_devices,
    parse_shard,
    select_shard,
    split_cases,
    visible_device,
)
from archbench.reports.compare import compare_runs, devices_note
from archbench.reports.evidence import device_groups
from archbench.reports.load import load_run
from archbench.reports.render import render_html
from ppo_core.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


def _cases() -> list[Case]:
    ids = []
    for size in ("tiny", "small", "medium", "large"):
        ids += [Case(f"t::infer[{size}-batch{b}]", f"size:{size}") for b in (1, 64)]
        ids.append(Case(f"t::train[{size}]", f"size:{size}", case_weight("test_train_throughput")))
    ids += [Case("t::ceilings", "test:ceilings"), Case("t::env[n1]", "test:env")]
    return ids


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7])
def test_every_case_lands_in_exactly_one_shard_with_its_whole_size(n_shards):
    cases = _cases()
    shards = split_cases(cases, n_shards)
    assert len(shards) == n_shards
    assert sorted(i for shard in shards for i in shard) == sorted(c.nodeid for c in cases)
    owner = {nodeid: k for k, shard in enumerate(shards) for nodeid in shard}
    for group in {c.group for c in cases}:
        assert len({owner[c.nodeid] for c in cases if c.group == group}) == 1, group
    for k in range(n_shards):  # each shard computes its own share and gets the same one
        assert select_shard(cases, k, n_shards) == shards[k]


def test_heavy_groups_are_spread_and_order_is_kept():
    cases = _cases()
    shards = split_cases(cases, 2)
    # four sizes of weight 2 + 8 = 10 each and two machine cases of 1: 21 and 21
    weights = {c.nodeid: c.weight for c in cases}
    assert [sum(weights[i] for i in shard) for shard in shards] == [21.0, 21.0]
    order = [c.nodeid for c in cases]
    for shard in shards:
        assert shard == sorted(shard, key=order.index)


def test_shard_option_and_count_are_checked():
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(ConfigError, match="I/N"):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="at least 1"):
        split_cases(_cases(), 0)


def test_devices_are_checked_against_the_machine():
    assert parse_devices("all", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices("cuda:1, cuda:0", 2) == ["cuda:1", "cuda:0"]
    assert parse_devices("cpu,cpu", 0) == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match=r"cuda:7 does not exist: torch sees 2 CUDA"):
        parse_devices("cuda:0,cuda:7", 2)
    with pytest.raises(ConfigError, match="cuda:0 asked for, but torch sees no CUDA"):
        parse_devices("cuda:0", 0)
    with pytest.raises(ConfigError, match="no CUDA device here"):
        parse_devices("all", 0)
    with pytest.raises(ConfigError, match="names a GPU twice"):
        parse_devices("cuda:0,cuda:0", 2)
    with pytest.raises(ConfigError, match="'gpu1' is not cpu or cuda:N"):
        parse_devices("gpu1", 2)


def test_a_shard_is_pinned_to_the_gpu_the_driver_calls_cuda_n():
    assert visible_device("cuda:1", None) == "1"
    assert visible_device("cuda:1", "") == "1"
    assert visible_device("cuda:1", "2,3") == "3"  # the driver's cuda:1 is GPU 3
    assert visible_device("cuda:0", "GPU-abc, GPU-def") == "GPU-abc"
    with pytest.raises(ConfigError, match="not among CUDA_VISIBLE_DEVICES='2'"):
        visible_device("cuda:1", "2")


def _h100_run() -> dict:
    with gzip.open(FIXTURES / "h100" / "full-perf-cuda.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def _as_gpu(run: dict, name: str, uuid: str) -> dict:
    """The fixture run as if a shard on another GPU had made it."""
    run = copy.deepcopy(run)
    run["machine_info"]["archbench"].update(gpu_name=name, gpu_uuid=uuid)
    return run


def _halves(run: dict) -> tuple[dict, dict]:
    """The fixture's cases split by size, as two shards would have run them."""
    first, second = copy.deepcopy(run), copy.deepcopy(run)
    small = {"tiny", "small"}
    keep = [b["extra_info"]["archbench"].get("preset") in small for b in run["benchmarks"]]
    first["benchmarks"] = [b for b, k in zip(run["benchmarks"], keep, strict=True) if k]
    second["benchmarks"] = [b for b, k in zip(run["benchmarks"], keep, strict=True) if not k]
    return first, second


def test_merged_records_name_their_device_and_read_back(tmp_path):
    run = _h100_run()
    one, two = _halves(run)
    merged = merge_shards(
        [
            ShardRun(0, "cuda:0", _as_gpu(one, "NVIDIA H100 80GB HBM3", "GPU-aaa")),
            ShardRun(1, "cuda:3", _as_gpu(two, "NVIDIA H100 80GB HBM3", "GPU-bbb")),
        ]
    )
    assert len(merged["benchmarks"]) == len(run["benchmarks"])
    records = [b["extra_info"]["archbench"] for b in merged["benchmarks"]]
    by_uuid = {r["device_uuid"]: r["device"] for r in records}
    assert by_uuid == {"GPU-aaa": "cuda:0", "GPU-bbb": "cuda:3"}
    assert all(r["device"] == "cuda:0" for r in records if r.get("preset") in ("tiny", "small"))
    shards = merged["machine_info"]["archbench_shards"]
    assert [(s["device"], s["device_uuid"]) for s in shards] == [
        ("cuda:0", "GPU-aaa"),
        ("cuda:3", "GPU-bbb"),
    ]
    assert merged["machine_info"]["archbench_device"] == "cuda:0,cuda:3"
    assert run["benchmarks"][0]["extra_info"]["archbench"].get("device_uuid") is None  # no edit
    path = tmp_path / "merged.json"
    path.write_text(json.dumps(merged), encoding="utf-8")
    df = load_run(path)
    assert set(df["device"]) == {"cuda:0", "cuda:3"}
    # Same GPU model: one device in the report, its sizes combined from both shards.
    assert list(device_groups(df)) == ["NVIDIA H100 80GB HBM3"]
    assert set(df["preset"].dropna()) == {
        b["extra_info"]["archbench"]["preset"]
        for b in run["benchmarks"]
        if b["extra_info"]["archbench"].get("preset")
    }


def test_a_run_merged_from_two_gpu_models_reports_each_side_by_side(tmp_path):
    run = _h100_run()
    merged = merge_shards(
        [
            ShardRun(0, "cuda:0", _as_gpu(run, "NVIDIA H100 80GB HBM3", "GPU-aaa"), node="a"),
            ShardRun(1, "cuda:0", _as_gpu(run, "NVIDIA A100-SXM4-80GB", "GPU-bbb"), node="b"),
        ]
    )
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(merged), encoding="utf-8")
    df = load_run(path)
    groups = device_groups(df)
    assert list(groups) == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"]
    assert set(groups["NVIDIA A100-SXM4-80GB"]["machine"]) == {"b"}
    page = render_html(df, plotlyjs="cdn")
    # one recommendations column per GPU, and both GPUs and nodes in the header
    assert "<th>NVIDIA H100 80GB HBM3</th><th>NVIDIA A100-SXM4-80GB</th>" in page
    assert "NVIDIA H100 80GB HBM3, NVIDIA A100-SXM4-80GB" in page
    assert "mixed (NVIDIA A100-SXM4-80GB)" in page  # chart lines name the device


def test_compare_across_two_gpu_models_judges_rows_and_says_the_devices_differ(tmp_path):
    run = _h100_run()
    a, b = tmp_path / "h100.json", tmp_path / "a100.json"
    a.write_text(json.dumps(run), encoding="utf-8")
    other = _as_gpu(run, "NVIDIA A100-SXM4-80GB", "GPU-bbb")
    other["machine_info"]["archbench"]["cpu_model"] = "another host's CPU"
    for bench in other["benchmarks"]:  # another host: other CPU threads in the ceiling case
        case = bench["extra_info"]["archbench"].get("case") or {}
        if "threads" in case:
            case["threads"] += 8
    b.write_text(json.dumps(other), encoding="utf-8")
    table = compare_runs(a, b)
    assert (table["verdict"] == "not comparable").mean() < 0.5
    assert not table[(table["suite"] == "ceiling") & (table["verdict"] == "not comparable")].size
    note = devices_note(table)
    assert note is not None
    assert "A: NVIDIA H100 80GB HBM3; B: NVIDIA A100-SXM4-80GB" in note
    assert devices_note(compare_runs(a, a)) is None


def _full_profile_cases(tmp_path: Path) -> list[str]:
    """The full profile's case list as the sweep's pytest collects it here (the plan event)."""
    import subprocess
    import sys

    from archbench.instrument.sweep.runner import bench_dir

    records = tmp_path / "records.jsonl"
    bench = bench_dir()
    command = [sys.executable, "-m", "pytest", str(bench), "--collect-only", "-q",
               "-p", "no:cacheprovider", "-p", "archbench.instrument.sweep.plugin",
               "--profile", "full",
               "--device", "cpu", "--archbench-records", str(records)]  # fmt: skip
    done = subprocess.run(command, cwd=bench.parent, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = [json.loads(line) for line in records.read_text().splitlines()]
    (plan,) = [e["nodeids"] for e in events if e["event"] == "plan"]
    return plan


@pytest.mark.slow
def test_shards_of_the_full_profile_are_balanced_by_case(tmp_path):
    from archbench.instrument.sweep.shards import case_of

    cases = [case_of(nodeid) for nodeid in _full_profile_cases(tmp_path)]
    assert len(cases) > 100
    weight = {c.nodeid: c.weight for c in cases}
    for n_shards in (2, 4, 8):
        loads = [sum(weight[i] for i in shard) for shard in split_cases(cases, n_shards)]
        mean = sum(loads) / n_shards
        assert max(loads) <= 1.3 * mean, (n_shards, loads)
    # by whole size, the largest size bounded 4 GPUs; one case at a time it no longer does
    by_size = [Case(c.nodeid, c.nodeid.split("[")[-1].split("-")[0], c.weight) for c in cases]
    loads = [sum(weight[i] for i in shard) for shard in split_cases(by_size, 8)]
    assert max(loads) > 1.3 * sum(loads) / 8
