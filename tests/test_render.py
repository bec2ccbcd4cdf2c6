"""The HTML report: one file, plotly.js once, every section, 'no data' notes, atomic writes.

Reads real-run fixtures from tests/make_report_fixtures.py; the browser test checks it renders.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from archbench.cli.main import main
from archbench.reports.charts import CHARTS, build_charts
from archbench.reports.compare import compare_runs
from archbench.reports.evidence import preset_summary
from archbench.reports.load import load_runs
from archbench.reports.render import render_html, render_report
from archbench.reports.use_cases import recommend

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
RUN_B = FIXTURES / "run-cpu-quick-b.json"
# A fragment of plotly.js itself: present once when inlined, absent with the CDN.
PLOTLY_MARKER = get_plotlyjs()[1000:1200]


@pytest.fixture(scope="module")
def two_runs():
    return load_runs([RUN, RUN_B])


@pytest.fixture(scope="module")
def page(two_runs):
    return render_html(two_runs)


def test_plotly_js_is_inlined_exactly_once(page):
    assert page.count(PLOTLY_MARKER) == 1
    assert "<script src='https://cdn.plot.ly" not in page


def test_every_chart_is_drawn_for_a_full_run(page):
    for name in CHARTS:
        if name != "curves":
            assert f'id="chart-{name}"' in page, name
    # The fixtures' overfit records predate the learning curves, and the page says so.
    assert page.count("no data:") == 1
    assert "no learning curve in any run (overfit records written before the curves)" in page


def test_the_throughput_chart_draws_the_rate_the_engine_ranks():
    """The whole-iteration rate (train_env_steps_per_s) and the rollout's are drawn beside the
    update rate (the H200 quick run); since the rename the chart had drawn only the update rate
    of every run newer than the fixtures here."""
    h200 = Path(__file__).parent.parent / "docs/measurements/h200-2026-11-26/quick-cuda.json.gz"
    chart = build_charts(load_runs([h200]))["throughput"]
    assert [trace.name for trace in chart.data] == [
        "quick-cuda: train_env_steps_per_s",
        "quick-cuda: rollout_env_steps_per_s",
        "quick-cuda: update_samples_per_s",
    ]


def test_header_names_machines_torch_and_commit(page, two_runs):
    for column in ("machine", "torch_version", "profile"):
        for value in two_runs[column].dropna().unique():
            assert str(value) in page
    assert str(two_runs["commit"].iloc[0])[:12] in page


def test_recommendations_sizing_unavailable_and_missing_suites(page, two_runs):
    assert "Recommended hidden_dims" in page
    assert "quick iteration" in page
    assert "params predicted" in page
    assert "checkpoint MB measured" in page
    for reason in two_runs["unavailable"].dropna().unique():
        assert reason.replace("'", "&#x27;") in page


def test_a_run_without_some_suites_says_which(two_runs):
    without_peer = two_runs[two_runs["suite"] != "peer"]
    assert "Missing suites" not in render_html(two_runs)
    page = render_html(without_peer)
    assert "Missing suites" in page
    assert "peer" in page


def test_cdn_mode_is_small_and_loads_plotly_from_the_cdn(tmp_path):
    path = render_report([RUN], tmp_path / "r.html", plotlyjs="cdn")
    text = path.read_text()
    assert "cdn.plot.ly/plotly-" in text
    assert PLOTLY_MARKER not in text
    assert path.stat().st_size < 500_000


def test_all_oom_run_shows_no_data_notes_instead_of_empty_charts():
    page = render_html(load_runs([FIXTURES / "all-oom.json"]))
    for name in ("throughput", "latency", "overfit", "pareto"):
        assert f"id='chart-{name}' data-chart='{name}' data-empty='1'>no data:" in page
    assert "OOM" in page


def test_failed_render_leaves_an_existing_report_untouched(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("previous report")
    with pytest.raises(Exception, match="plotlyjs"):
        render_report([RUN], out, plotlyjs="svg")
    assert out.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_cli_report_writes_the_file_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "report.html"
    code = main(
        ["report", str(RUN), str(RUN_B), "-o", str(out), "--latency-budget-ms", "5",
         "--compare", str(RUN), str(RUN_B)]
    )  # fmt: skip
    assert code == 0
    assert out.exists()
    text = out.read_text()
    assert "batch-1 p99 latency 5 ms" in text
    assert "Comparison" in text
    assert main(["report", str(FIXTURES / "wrong-schema.json"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "wrong-schema.json" in err
    assert "archbench/0" in err
    assert len(err.splitlines()) == 1
    assert main(["report", str(RUN), "-o", str(out), "--latency-budget-ms", "-1"]) == 2


def test_a_real_bench_run_loads_recommends_and_renders(tmp_path):
    """one-preset.json is what the real bench/ suites wrote, cut to its first preset."""
    df = load_runs([FIXTURES / "one-preset.json"])
    assert {"train", "infer", "memory", "overfit", "ceiling", "env"} <= set(df["suite"])
    # On a CPU the sizing model is checked against RSS, the figure the suite predicts for.
    summary = preset_summary(df)
    assert (summary["memory_check_source"] == "peak_rss_bytes").all()
    page = render_report(df, tmp_path / "bench.html").read_text()
    for name in CHARTS:  # drawn, or a 'no data' note in the chart's place
        assert f"id='chart-{name}'" in page or f'id="chart-{name}"' in page, name


def test_unmeasured_and_failed_records_never_crash_a_report(tmp_path):
    # From RUN: the first preset measured nothing (every value None, with a reason), the
    # others went OOM or failed; machine-level suites stay as measured.
    data = json.loads(RUN.read_text())
    presets = list(dict.fromkeys(b["extra_info"]["archbench"]["preset"]
                                 for b in data["benchmarks"]))  # fmt: skip
    first = next(p for p in presets if p is not None)
    for i, bench in enumerate(data["benchmarks"]):
        record = bench["extra_info"]["archbench"]
        if record["preset"] == first:
            for metric in record["metrics"].values():
                metric.update(value=None, samples=[], unavailable="derived: not measured")
        elif record["preset"] is not None:
            status = "oom" if i % 2 else "error"
            record.update(status=status, reason=f"derived {status}", metrics={})
    path = tmp_path / "unmeasured.json"
    path.write_text(json.dumps(data))
    df = load_runs([path])
    summary = preset_summary(df)
    assert set(summary["preset"]) == {p for p in presets if p is not None}
    for rec in recommend(df):
        assert rec.hidden_dims is None
        assert rec.summary.startswith("no recommendation: ")
    out = render_report([path, RUN], tmp_path / "report.html", plotlyjs="cdn")
    assert "unmeasured" in out.read_text()
    table = compare_runs(RUN, path)
    assert (table.loc[table["preset"] == first, "verdict"] == "not comparable").all()
    assert set(table.loc[~table["preset"].isin([first, "(machine)"]), "verdict"]) == {"regressed"}
    assert main(["compare", str(path), str(path), "--all"]) == 0


def test_the_fastest_agreeing_backend_is_named_per_preset(two_runs):
    from archbench.reports.tables import AGREEMENT_THRESHOLD, backend_table

    table = backend_table(two_runs)
    infer = two_runs[
        (two_runs["suite"] == "infer")
        & (two_runs["case_batch"] == 1)
        & (two_runs["metric"] == "latency_p99_s")
        & two_runs["value"].notna()
    ]
    for (run, preset), rows in infer.groupby(["run", "preset"]):
        agreement = two_runs[
            (two_runs["run"] == run)
            & (two_runs["preset"] == preset)
            & (two_runs["case_batch"] == 1)
            & (two_runs["metric"] == "action_agreement")
        ].set_index("case_backend")["value"]
        agreeing = rows[rows["case_backend"].map(agreement).fillna(1.0) >= AGREEMENT_THRESHOLD]
        best = agreeing.loc[agreeing["value"].idxmin()]
        assert f"<td>{run}</td><td>{preset}</td><td>{best['case_backend']}</td>" in table
        assert f"{best['value'] * 1e3:.3f}" in table


def test_sizing_table_states_the_memory_error_net_of_the_measured_runtime(two_runs):
    from archbench.reports.tables import sizing_table

    table = sizing_table(two_runs)
    assert "error net of runtime" in table
    run = two_runs[two_runs["run"] == "run-cpu-quick"]
    rows = run[(run["suite"] == "memory") & (run["preset"] == "tiny")]
    value = dict(zip(rows["metric"], rows["value"], strict=True))
    predicted = rows[rows["metric"] == "peak_rss_bytes"]["predicted"].iloc[0]
    net = value["peak_rss_bytes"] - value["runtime_overhead_bytes"]
    assert f"{(predicted - net) / net * 100:+.1f}%" in table


def test_every_subset_of_suites_renders(tmp_path):
    """Any run that lacks suites renders, and says which are missing (the report used to end
    in KeyError: 'memory_bytes' on an overfit-only run)."""
    data = json.loads(RUN.read_text())
    suites = ["infer", "memory", "overfit", "train"]
    for mask in range(2 ** len(suites)):
        keep = {s for i, s in enumerate(suites) if mask >> i & 1} | {"ceiling", "env"}
        subset = dict(data)
        subset["benchmarks"] = [
            b for b in data["benchmarks"] if b["extra_info"]["archbench"]["suite"] in keep
        ]
        path = tmp_path / f"subset-{mask}.json"
        path.write_text(json.dumps(subset))
        page = render_html(load_runs([path]), plotlyjs="cdn")
        assert "Recommended hidden_dims" in page
        for suite in set(suites) - keep:
            assert f"{suite} suite missing" in page or f"no {suite}" in page


def test_an_interrupted_overfit_only_gpu_run_renders(tmp_path):
    import gzip

    raw = (FIXTURES / "h100" / "full-overfit-partial-cuda.json.gz").read_bytes()
    path = tmp_path / "full-overfit-partial-cuda.json"
    path.write_bytes(gzip.decompress(raw))
    out = render_report([path], tmp_path / "report.html", plotlyjs="cdn")
    page = out.read_text()
    assert "memory not checked (memory suite missing from the run)" in html.unescape(page)
