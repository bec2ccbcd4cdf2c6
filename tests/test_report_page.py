"""What the report page tells a newcomer before any figure: a loaded host, an incomplete run,
where the run file came from; and the sections a quick sweep fills (peers, env, baselines)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from archbench.cli.main import main
from archbench.reports.host_load import HOST_LOAD_METRIC
from archbench.reports.load import load_runs
from archbench.reports.render import render_html
from archbench.reports.tables import backend_table, missing_note, unavailable_table

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"


def _data() -> dict:
    return json.loads(RUN.read_text())


def _write(tmp_path: Path, data: dict, name: str = "run") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _with_load(data: dict, load: float) -> dict:
    data = copy.deepcopy(data)
    for bench in data["benchmarks"]:
        metrics = bench["extra_info"]["archbench"]["metrics"]
        if HOST_LOAD_METRIC in metrics:
            metrics[HOST_LOAD_METRIC]["value"] = load
    return data


def _text(page: str) -> str:
    page = re.sub(r"<script.*?</script>|<style.*?</style>", "", page, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def _section(page: str, heading: str) -> str:
    start = page.index(heading)
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else None]


@pytest.fixture(scope="module")
def loaded_page() -> str:
    return render_html(load_runs([RUN]), plotlyjs="cdn")


def test_a_loaded_run_says_so_at_the_top_and_beside_each_timing(tmp_path):
    busy = load_runs([_write(tmp_path, _with_load(_data(), 4.8))])
    page = render_html(busy, plotlyjs="cdn")
    top = page[: page.index("<h2>")]
    assert "Taken on a loaded host" in top
    assert "median 4.80" in top
    assert "left out of the recommendations" in top
    backend = _section(page, "Fastest agreeing backend")
    assert backend.count("(loaded host 4.8)") == backend.count("<tr>") - 1  # every p99 shown
    env = _section(page, "Environment steps")
    assert "(loaded host 4.8)" in env
    assert "taken on a loaded host" in _section(page, "Training throughput vs parameters")
    quick = _section(page, "Recommended hidden_dims")
    assert "no training throughput measured" in _text(quick)  # the timing was left out
    assert "timings taken on a loaded host are left out of these decisions" in _text(quick)
    allowed = render_html(busy, plotlyjs="cdn", allow_loaded=True)
    assert "used in the recommendations anyway" in allowed
    assert "no training throughput measured" not in _text(
        _section(allowed, "Recommended hidden_dims")
    )


def test_an_idle_run_has_no_load_warning(tmp_path):
    idle = load_runs([_write(tmp_path, _with_load(_data(), 1.1))])
    page = render_html(idle, plotlyjs="cdn")
    assert "loaded host" not in page


def test_an_incomplete_run_says_so_at_the_top_with_what_is_lost(tmp_path):
    data = _data()
    data["archbench_run"] = {
        "incomplete": True,
        "lost": [{"case": "test_memory[large]", "reason": "SIGTERM before it finished"}],
        "shards": [],
        "mismatch": [],
    }
    page = render_html(load_runs([_write(tmp_path, data)]), plotlyjs="cdn")
    top = _text(page[: page.index("<h2>")])
    assert "run is incomplete" in top
    assert "test_memory[large]: SIGTERM before it finished" in top
    data["archbench_run"] = {
        "incomplete": False,
        "lost": [],
        "shards": [],
        "mismatch": ["shard 1 ran torch 2.12, shard 0 torch 2.13"],
    }
    page = render_html(load_runs([_write(tmp_path, data)]), plotlyjs="cdn")
    assert "incomplete" not in page
    assert "shard 1 ran torch 2.12, shard 0 torch 2.13" in page[: page.index("<h2>")]


def _stream(tmp_path: Path, collected: int) -> Path:
    data = _data()
    session = {
        "event": "collected",
        "count": collected,
        "device": "cpu",
        "profile": "quick",
        "machine_info": data["machine_info"],
        "commit_info": data["commit_info"],
    }
    events = [
        {
            "event": "case",
            "nodeid": b["fullname"],
            "outcome": "passed",
            "duration_s": 1.0,
            "record": b["extra_info"]["archbench"],
        }
        for b in data["benchmarks"]
    ]
    path = tmp_path / "run-x.records.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [session, *events]))
    return path


def test_a_report_after_a_rebuild_says_it_was_rebuilt_and_what_never_ran(tmp_path, capsys):
    stream = _stream(tmp_path, collected=len(_data()["benchmarks"]) + 3)
    out = tmp_path / "r.html"
    assert main(["report", str(stream), "-o", str(out), "--plotlyjs", "cdn"]) == 0
    assert "rebuilt" in capsys.readouterr().out
    again = tmp_path / "again.html"
    for given in (stream, tmp_path / "run-x.json"):
        assert main(["report", str(given), "-o", str(again), "--plotlyjs", "cdn"]) == 0
        said = capsys.readouterr().out
        assert "rebuilt earlier from the records stream run-x.records.jsonl" in said
        assert "the sweep wrote it" not in said
    top = _text(again.read_text()[: again.read_text().index("<h2>")])
    assert "incomplete" in top
    assert "the other 3 never ran" in top


def test_the_backend_floor_is_the_chosen_backends_own(tmp_path):
    df = load_runs([RUN])
    infer = df[(df["suite"] == "infer") & (df["case_batch"] == 1) & (df["preset"] == "tiny")]
    assert set(infer["case_backend"]) >= {"eager"}
    # A second backend, faster than eager, with its own (4x lower) floor and a problem note.
    fast = infer[infer["case_backend"] == "eager"].copy()
    fast["case_backend"] = "compiled"
    fast["case_measurement_problem"] = "p99 below the floor: timer resolution"
    fast.loc[fast["metric"].str.startswith("latency"), "value"] /= 2
    fast.loc[fast["metric"] == "latency_p50_s", "predicted"] /= 4
    page = backend_table(pd.concat([df, fast], ignore_index=True))
    row = next(r for r in page.split("<tr>") if ">tiny<" in r)
    eager_floor = float(infer.loc[infer["metric"] == "latency_p50_s", "predicted"].iloc[0])
    assert ">compiled<" in row
    assert f">{eager_floor / 4 * 1e3:.3f}<" in row
    assert f">{eager_floor * 1e3:.3f}<" not in row
    assert "timer resolution" in row


def test_a_local_data_path_is_named_by_its_file_name(tmp_path):
    data = _data()
    for bench in data["benchmarks"]:
        record = bench["extra_info"]["archbench"]
        if record["suite"] == "overfit":
            record["case"]["dataset"] = "/home/someone/private/btc-1h.csv"
    page = render_html(load_runs([_write(tmp_path, data)]), plotlyjs="cdn")
    assert "/home/someone" not in page
    assert "btc-1h.csv" in page


def test_figures_not_measured_are_one_line_per_reason():
    df = load_runs([RUN])
    unavailable = df[df["unavailable"].notna()]
    table = unavailable_table(df)
    lines = table.count("<tr>") - 1
    reasons = unavailable.groupby(["run", "suite"])["unavailable"].nunique().sum()
    assert lines == reasons < len(unavailable)


def test_the_missing_suite_banner_only_says_need_where_a_figure_needs_it():
    df = load_runs([RUN])
    note = missing_note(df[~df["suite"].isin(["peer", "ceiling"])])
    assert "no peer suite (empty without it: the SB3 peer section)" in note
    assert "ceiling suite (nothing on this page needs it)" in note
    assert "need" not in note.replace("needs it", "")


def test_peer_env_and_baselines_are_on_the_page(loaded_page):
    peer = _text(_section(loaded_page, "Stable-Baselines3"))
    assert "speedup vs SB3" in peer
    assert re.search(r"\d\.\d\dx", peer)
    env = _text(_section(loaded_page, "Environment steps"))
    assert "env steps/s" in env
    baselines = _text(_section(loaded_page, "beside buy-and-hold, the trend rule and the oracle"))
    assert "buy-and-hold" in baselines
    assert "oracle" in baselines


def test_the_overfit_suites_own_verdict_comes_from_the_log_beside_the_run(tmp_path):
    run = _write(tmp_path, _data(), "run-x")
    (tmp_path / "run-x.log").write_text(
        "... 12 passed\n"
        "overfitting: validation mean net return per bar, 95% interval (seeds x blocks of 40 "
        "bars); Sharpe beside the cost-aware oracle's on the same bars\n"
        "  synthetic short     tiny: +1.00 bp/bar [-0.50, +2.50] over 1 seed(s); Sharpe 2.0\n"
        "  synthetic short: tiny vs small intervals OVERLAP: this run cannot tell them apart\n"
        "== 12 passed in 60s ==\n"
    )
    page = render_html(load_runs([run]), plotlyjs="cdn")
    assert "tiny vs small intervals OVERLAP: this run cannot tell them apart" in page
    assert "12 passed in 60s" not in page
    alone = render_html(load_runs([RUN]), plotlyjs="cdn")
    assert "which is not there" in alone


def test_the_page_fits_a_narrow_window():
    page = render_html(load_runs([RUN]), plotlyjs="cdn")
    assert "name='viewport'" in page
    assert "@media (max-width:900px)" in page
    assert "<div class='wide'>" + "<table>" in page


def test_a_few_busy_records_are_named_and_only_their_figures_marked():
    # A GPU run (own load 0) at 0.42 per core median; its ceiling and one env record at 0.54.
    df = load_runs([FIXTURES / "h100" / "full-perf-cuda.json.gz"])
    page = render_html(df, plotlyjs="cdn")
    top = _text(page[: page.index("<h2>")])
    assert "2 of 69 records taken above it: ceiling" in top
    assert "env forward_preset=tiny, n_envs=1" in top
    assert "loaded host" not in _section(page, "Training throughput vs parameters")
    assert "loaded host" not in _section(page, "Fastest agreeing backend")
    assert _section(page, "Environment steps").count("(loaded host 0.5)") == 4  # one record


def test_a_sweep_json_beside_a_stream_that_stopped_early_is_incomplete(tmp_path, capsys):
    _stream(tmp_path, collected=len(_data()["benchmarks"]) + 2)
    run = _write(tmp_path, _data(), "run-x")  # pytest-benchmark's own file, written on SIGTERM
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--plotlyjs", "cdn"]) == 0
    assert "rebuilt" not in capsys.readouterr().out
    top = _text(out.read_text()[: out.read_text().index("<h2>")])
    assert "run-x.json is incomplete" in top
    assert "the other 2 never ran" in top
