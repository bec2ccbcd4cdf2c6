"""archbench.instrument.runfile: the run file's archbench_run section (what a run lacks and
why, where its shards ran), resume's reading of an earlier run, and the report's line for both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archbench.instrument.runfile import (
    attach_run,
    finished_cases,
    fold_in,
    lost_cases,
    mismatches,
    previous_run,
    run_section,
)
from archbench.reports.render import render_report
from ppo_core.errors import ArchbenchError

RUN = Path(__file__).parent / "fixtures" / "run-cpu-quick.json"


def test_lost_cases_are_the_plan_without_a_record_each_with_why():
    plan = ["t::a", "t::b", "t::c", "t::d"]
    events = [
        {"nodeid": "t::a", "outcome": "passed", "record": {"suite": "env"}},
        {"nodeid": "t::b", "outcome": "failed", "record": None, "message": "case timed out"},
        {"nodeid": "t::c", "outcome": "skipped", "record": None, "message": "needs onnx"},
    ]
    assert lost_cases(plan, events, "not run: stopped") == [
        {"case": "t::b", "reason": "case timed out"},
        {"case": "t::d", "reason": "not run: stopped"},
    ]  # a skip said why in its own line and is not lost work


def test_a_section_is_incomplete_when_stopped_or_lacking_and_flags_differing_shards():
    shards = [{"index": 0, "torch": "2.13.0", "python": "3.11.7"},
              {"index": 1, "torch": "2.12.0", "python": "3.11.7"}]  # fmt: skip
    section = run_section(lost=[], shards=shards, options={"profile": "quick"})
    assert section["incomplete"] is False
    assert section["mismatch"] == ["torch differs: shard 0 2.13.0, shard 1 2.12.0"]
    assert run_section(lost=[], shards=[], options={}, stopped_by="SIGTERM")["incomplete"]
    assert mismatches(shards[:1]) == []


def test_resume_keeps_every_earlier_case_and_the_new_one_wins(tmp_path):
    earlier = json.loads(RUN.read_text())
    done = finished_cases(earlier)
    assert done
    new = {"benchmarks": [dict(earlier["benchmarks"][0], name="again")], "machine_info": {}}
    merged = fold_in(new, earlier)
    assert len(merged["benchmarks"]) == len(earlier["benchmarks"])
    assert merged["benchmarks"][-1]["name"] == "again"  # the new record of that case
    path = tmp_path / "run-x.json"
    path.write_text(json.dumps(new))
    attach_run(path, run_section(lost=[], shards=[], options={}), earlier)
    assert len(json.loads(path.read_text())["benchmarks"]) == len(earlier["benchmarks"])


def test_resume_refuses_what_is_not_one_run(tmp_path):
    with pytest.raises(ArchbenchError, match="no such file"):
        previous_run(tmp_path / "run-gone.json")
    (tmp_path / "run-a.json").write_text("{}")
    (tmp_path / "run-b.json").write_text("{}")
    with pytest.raises(ArchbenchError, match="this folder holds 2 runs"):
        previous_run(tmp_path)
    with pytest.raises(ArchbenchError, match="not a pytest-benchmark run"):
        previous_run(tmp_path / "run-a.json")
    (tmp_path / "run-b.json").unlink()
    (tmp_path / "run-a.json").write_text(RUN.read_text())
    assert previous_run(tmp_path)[0] == tmp_path / "run-a.json"


def test_the_report_says_a_run_is_incomplete_and_its_shards_differ(tmp_path):
    data = json.loads(RUN.read_text())
    lost = [{"case": "bench/test_memory.py::test_memory[large]", "reason": "stopped by SIGINT"}]
    shards = [{"index": 0, "cuda": "12.8"}, {"index": 1, "cuda": "13.0"}]
    data["archbench_run"] = run_section(lost=lost, shards=shards, options={})
    path = tmp_path / "run-incomplete.json"
    path.write_text(json.dumps(data))
    page = render_report([path], tmp_path / "r.html", plotlyjs="cdn").read_text()
    assert "run-incomplete is incomplete</b>" in page
    assert "(1 case(s) lost)" in page
    assert f"archbench sweep --resume {path}" in page
    assert "run-incomplete: cuda differs: shard 0 12.8, shard 1 13.0" in page
    complete = render_report([RUN], tmp_path / "c.html", plotlyjs="cdn").read_text()
    assert "is incomplete" not in complete
