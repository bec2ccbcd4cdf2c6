"""The loaded-host rule report, pick and compare share, and the one reader for .json/.json.gz."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from archbench.cli.main import main
from archbench.reports.host_load import (
    HOST_LOAD_METRIC,
    HostLoad,
    RunLoad,
    decision_rows,
    mark_loaded,
    run_loads,
    timing_rows,
)
from archbench.reports.load import ReportError, load_runs, run_name

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"


def with_host_load(tmp_path: Path, load: float, name: str = "run") -> Path:
    """RUN with every record's host_load_per_core set to `load` (a CPU run: its own is 1)."""
    data = json.loads(RUN.read_text())
    for bench in data["benchmarks"]:
        metrics = bench["extra_info"]["archbench"]["metrics"]
        if HOST_LOAD_METRIC in metrics:
            metrics[HOST_LOAD_METRIC]["value"] = load
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_gzipped_run_reads_exactly_as_the_json(tmp_path):
    packed = tmp_path / "run-cpu-quick.json.gz"
    packed.write_bytes(gzip.compress(RUN.read_bytes()))
    plain, unpacked = load_runs([RUN]), load_runs([packed])
    assert run_name(packed) == "run-cpu-quick" == unpacked["run"].iloc[0]
    columns = [c for c in plain.columns if c != "path"]
    assert plain[columns].astype(str).equals(unpacked[columns].astype(str))


def test_a_cut_gzip_is_one_clear_error(tmp_path):
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(gzip.compress(RUN.read_bytes())[:500])
    with pytest.raises(ReportError, match=r"cut\.json\.gz: a damaged or cut gzip file"):
        load_runs([cut])


def test_report_pick_and_compare_read_the_projects_own_gz_measurements(tmp_path, capsys):
    packed = tmp_path / "a.json.gz"
    packed.write_bytes(gzip.compress(RUN.read_bytes()))
    out = tmp_path / "r.html"
    assert main(["report", str(packed), "-o", str(out), "--plotlyjs", "cdn"]) == 0
    assert out.stat().st_size > 0
    assert main(["compare", str(packed), str(RUN)]) == 0
    code = main(["pick", "--gpu", "H100", "--results", str(packed), "--json"])
    assert code in (0, 1, 3)  # an answer, none, or no size showing skill: never a read error
    assert "codec can't decode" not in capsys.readouterr().err


def test_single_run_rule_is_half_a_core_beyond_the_runs_own_threads():
    def run(median: float | None, own: float) -> RunLoad:
        return RunLoad("r", median, median, own, loaded_records=0, records=1)

    assert run(1.6, 1.0).loaded  # a CPU run: 0.6 beyond its own 1 per core
    assert not run(1.4, 1.0).loaded
    assert run(0.6, 0.0).loaded  # a GPU run's own host work is taken as 0
    assert not run(0.4, 0.0).loaded
    assert not run(None, 1.0).loaded
    assert "not recorded" in run(None, 1.0).describe()
    assert "LOADED" in run(4.8, 1.0).describe()


def test_compare_keeps_its_two_run_rule_from_the_shared_module():
    from archbench.reports import compare

    assert compare.HostLoad is HostLoad
    assert HostLoad(2.2, 1.5, 1.0, 1.0).loaded == "A"
    assert HostLoad(3.0, 2.4, 1.0, 1.0).loaded is None


def test_loaded_timings_leave_the_decisions_and_say_why(tmp_path):
    df = load_runs([with_host_load(tmp_path, 4.0)])
    (load,) = run_loads(df)
    assert load.loaded
    assert load.median == 4.0
    assert load.loaded_records == load.records > 0
    decided = decision_rows(df)
    timing = timing_rows(decided)
    measured = df["value"].notna()
    left_out = measured & decided["value"].isna()
    assert left_out.sum() > 0
    assert (left_out == (measured & timing)).all()  # every timing, and nothing else
    assert decided.loc[left_out, "unavailable"].str.contains("loaded host").all()
    kept = decision_rows(df, allow_loaded=True)
    assert kept["value"].equals(df["value"])


def test_an_idle_run_keeps_every_timing(tmp_path):
    df = load_runs([with_host_load(tmp_path, 1.1)])
    assert not mark_loaded(df)["loaded_host"].any()
    assert decision_rows(df)["value"].equals(df["value"])


def test_pick_says_its_figures_came_from_a_loaded_host_and_leaves_them_out(tmp_path, capsys):
    busy = with_host_load(tmp_path, 4.8, "busy")
    assert main(["pick", "--gpu", "H100", "--results", str(busy), "--json"]) in (0, 1, 3)
    (line,) = json.loads(capsys.readouterr().out)["loaded_host"]
    assert "busy: host load per core median 4.80" in line
    assert "left out" in line
    assert main(["pick", "--gpu", "H100", "--results", str(busy), "--allow-loaded"]) in (0, 1, 3)
    assert "taken on a loaded host: busy" in capsys.readouterr().out
    idle = with_host_load(tmp_path, 1.1, "idle")
    assert main(["pick", "--gpu", "H100", "--results", str(idle), "--json"]) in (0, 1, 3)
    assert json.loads(capsys.readouterr().out)["loaded_host"] == []
