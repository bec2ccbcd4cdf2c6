"""archbench.instrument.runfile, the run file's one owner: every fixture and shared run (old
formats included) reads back with the current fields; the archbench_run section (what a run
lacks and why, where its shards ran), resume's reading of an earlier run, the report's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archbench.instrument.record import Metric, Record
from archbench.instrument.runfile import (
    RunFileError,
    attach_run,
    finished_cases,
    fold_in,
    lost_cases,
    mismatches,
    previous_run,
    read_run,
    record_entry,
    run_from_records,
    run_records,
    run_section,
    write_run,
)
from archbench.reports.render import render_report
from ppo_core.errors import ArchbenchError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
SHARED_RUNS = sorted(
    p
    for folder in (FIXTURES, ROOT / "docs" / "measurements")
    for pattern in ("*.json", "*.json.gz")
    for p in folder.rglob(pattern)
)
# The fixtures that exist to be refused, and the one line each gets.
REFUSED = {
    "empty.json": "file is empty",
    "not-benchmark.json": "not a pytest-benchmark file",
    "wrong-schema.json": "record schema is 'archbench/0', this version of archbench reads",
}
# Every field a record has today: what the writer emits with its optional parts present.
CURRENT_FIELDS = set(
    Record(suite="env", device="cpu", profile="quick", series={}, workload={}).to_dict()
)
METRIC_FIELDS = set(Metric.measured(1.0, "1/s", "higher").to_dict())


def test_the_shared_runs_include_old_formats():
    names = {p.name for p in SHARED_RUNS}
    assert {"run-cpu-quick.json", "full-perf-cuda.json.gz", "quick-cuda.json.gz"} <= names
    assert set(REFUSED) <= names


@pytest.mark.parametrize("path", SHARED_RUNS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fixture_and_shared_run_reads_with_the_current_fields(path):
    if path.name in REFUSED:
        with pytest.raises(RunFileError, match=REFUSED[path.name]):
            read_run(path)
        return
    data = read_run(path)
    records = run_records(data, path)
    assert records, f"{path} holds no archbench record"
    for where, record in records:
        assert str(path) in where
        missing = CURRENT_FIELDS - set(record)
        assert not missing, f"{where} lacks {sorted(missing)} after migration"
        assert record["status"] in ("ok", "oom", "error")
        assert isinstance(record["series"], dict)
        assert record["workload"] is None or isinstance(record["workload"], dict)
        for name, metric in record["metrics"].items():
            assert METRIC_FIELDS <= set(metric), f"{where}: metric {name!r}"


def test_an_old_record_is_migrated_and_a_new_one_reads_as_written(tmp_path):
    new = Record(suite="env", device="cpu", profile="quick", series={"x": [1.0]}, workload={})
    dropped = ("status", "precision", "series", "workload")
    old = {k: v for k, v in new.to_dict().items() if k not in dropped}
    path = tmp_path / "run.json"
    write_run(
        path, {"benchmarks": [record_entry("t::old", old), record_entry("t::new", new.to_dict())]}
    )
    (_, migrated), (_, current) = run_records(read_run(path), path)
    assert migrated["status"] == "ok"
    assert migrated["reason"] is None
    assert migrated["precision"] is None
    assert migrated["series"] == {}
    assert migrated["workload"] is None  # the task it measured is unknown, not guessed
    assert current == new.to_dict()  # today's records pass through unchanged
    assert "status" not in json.loads(path.read_text())["benchmarks"][0]["extra_info"]["archbench"]


def _read_back(tmp_path, *records: dict) -> list[dict]:
    path = tmp_path / "run.json"
    write_run(path, {"benchmarks": [record_entry(f"t::{i}", r) for i, r in enumerate(records)]})
    return [record for _, record in run_records(read_run(path), path)]


@pytest.mark.parametrize(
    ("dataset", "recorded", "expected"),
    [
        ("synthetic", None, 8766.0),  # written before the suite recorded it: from the name
        (" SP500 ", None, 252.0),  # the name as the old engine matched it
        ("eurusd-1h", 0, 6280.0),  # not a usable figure: the name's
        ("sp500", 1000.0, 1000.0),  # recorded: kept, never overwritten from the name
        ("my-file.csv", None, None),  # a name nobody knows: no figure, not a guess
    ],
)
def test_an_old_overfit_case_gets_bars_per_year_from_its_dataset_name(
    tmp_path, dataset, recorded, expected
):
    case = {"dataset": dataset, "bars": 2000, "seed": 0}
    if recorded is not None:
        case["bars_per_year"] = recorded
    overfit = Record(suite="overfit", device="cpu", profile="quick", case=case).to_dict()
    train = Record(suite="train", device="cpu", profile="quick", case=dict(case)).to_dict()
    (migrated, other) = _read_back(tmp_path, overfit, train)
    assert migrated["case"].get("bars_per_year") == expected
    assert migrated["case"]["dataset"] == dataset
    assert other["case"] == train["case"]  # only the overfit suite's cases carry it


def test_a_planted_unknown_schema_is_refused_with_one_line_naming_the_case(tmp_path):
    data = json.loads(RUN.read_text())
    record = data["benchmarks"][3]["extra_info"]["archbench"]
    record["schema"] = "archbench/99"
    path = tmp_path / "run-future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunFileError) as caught:
        read_run(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "'archbench/99'" in message
    assert data["benchmarks"][3]["fullname"] in message
    assert str(path) in message


def test_a_rebuilt_run_holds_each_streamed_record_and_the_sessions_machine(tmp_path):
    session = {"machine_info": {"node": "box"}, "device": "cpu", "profile": "quick"}
    record = Record(suite="env", device="cpu", profile="quick").to_dict()
    data = run_from_records(session, [{"nodeid": "bench/t.py::test_env[tiny]", "record": record}])
    assert data["machine_info"] == {
        "node": "box",
        "archbench_profile": "quick",
        "archbench_device": "cpu",
    }
    assert data["commit_info"]["id"] is None  # the stream did not say: unknown, with why
    assert data["benchmarks"][0]["name"] == "test_env[tiny]"
    path = tmp_path / "run.json"
    write_run(path, data)
    [(_, back)] = run_records(read_run(path), path)
    assert back["suite"] == "env"
    assert back["status"] == "ok"


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


@pytest.mark.parametrize(
    ("section", "why"),
    [
        ("done", "archbench_run is a str, expected an object"),
        ({"lost": ["bench/t.py::a"]}, "archbench_run.lost is not a list of objects"),
        ({"mismatch": "torch differs"}, "archbench_run.mismatch is not a list"),
    ],
)
def test_a_damaged_run_section_is_refused_naming_the_file(tmp_path, section, why):
    data = json.loads(RUN.read_text())
    data["archbench_run"] = section
    path = tmp_path / "run-damaged.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RunFileError, match=why):
        read_run(path)


def test_the_run_file_is_built_in_one_module():
    # What only the run file's owner writes: a record-only case, a rebuilt run, the shards'
    # table. Another module spelling one of them is a second writer of the format.
    owned = ('"extra_info": {"archbench"', '"version": "archbench-records"', '"archbench_shards"')
    owner = ROOT / "archbench" / "instrument" / "runfile.py"
    elsewhere = [
        f"{path.relative_to(ROOT)}: {text}"
        for folder in ("archbench", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != owner
        for text in owned
        if text in path.read_text(encoding="utf-8")
    ]
    assert not elsewhere, "\n".join(elsewhere)
    assert all(text in owner.read_text(encoding="utf-8") for text in owned)
