"""Run-vs-run comparison: ratios, noise-aware verdicts, and the `archbench compare` exit codes.

A and B are two real quick runs (tests/make_report_fixtures.py); regressions are derived from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppo_core.cli import main
from reports.compare import (
    VERDICTS,
    compare_runs,
    comparison_html,
    has_regression,
    min_samples,
    verdict_text,
)

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
RUN_B = FIXTURES / "run-cpu-quick-b.json"


def _edited(tmp_path: Path, name: str, edit) -> Path:
    """RUN with `edit(record)` applied to every archbench record, written to tmp_path/name."""
    data = json.loads(RUN.read_text())
    for bench in data["benchmarks"]:
        edit(bench["extra_info"]["archbench"])
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _oom_preset(preset: str):
    """An edit that records every case of `preset` as the suites record an OOM case."""

    def edit(record: dict) -> None:
        if record["preset"] == preset:
            record.update(status="oom", reason=f"out of memory at {record['case']}", metrics={})

    return edit


def _slowed(tmp_path: Path, factor: float) -> Path:
    """RUN with every train and infer time scaled by `factor` (rates by 1/factor)."""
    data = json.loads(RUN.read_text())
    for bench in data["benchmarks"]:
        record = bench["extra_info"]["archbench"]
        if record["suite"] not in ("train", "infer"):
            continue
        for metric in record["metrics"].values():
            if metric["value"] is None:
                continue
            scale = (
                factor if metric["unit"] == "s" else 1 / factor if metric["unit"] == "1/s" else 1
            )
            metric["value"] *= scale
            metric["samples"] = [s * scale for s in metric["samples"]]
    path = tmp_path / "slower.json"
    path.write_text(json.dumps(data))
    return path


def test_min_samples_is_where_mann_whitney_can_reach_alpha():
    # 3 vs 3 separated: z = (9 - 4.5 - 0.5)/sqrt(9*7/12) = 1.746 -> p = 0.081 > 0.05; 4 vs 4: 0.030
    assert min_samples(0.05) == 4


def test_ratio_is_b_over_a_and_gain_is_oriented():
    table = compare_runs(RUN, RUN_B)
    assert set(table["verdict"]) <= set(VERDICTS)
    row = table[(table["metric"] == "latency_p50_s") & table["a"].notna()].iloc[0]
    assert row["ratio"] == pytest.approx(row["b"] / row["a"])
    assert row["gain"] == pytest.approx(row["a"] / row["b"])  # lower is better
    row = table[(table["metric"] == "env_steps_per_s") & (table["suite"] == "train")].iloc[0]
    assert row["gain"] == pytest.approx(row["b"] / row["a"])
    assert (table[table["suite"] == "ceiling"]["preset"] == "(machine)").all()


def test_a_run_against_itself_is_the_same_everywhere():
    table = compare_runs(RUN, RUN)
    tested = table[table["verdict"].isin(["same", "improved", "regressed"])]
    assert len(tested) > 0
    assert (tested["verdict"] == "same").all()
    assert not has_regression(table)


def test_seeds_are_pooled_and_too_few_are_judged_by_the_stated_tolerance():
    table = compare_runs(RUN, RUN_B)
    overfit = table[table["suite"] == "overfit"]
    assert not overfit["case"].str.contains("seed").any()
    assert (overfit["n_a"] >= 1).all()  # one figure per seed; a single seed is one sample
    small = overfit[(overfit["n_a"] < min_samples()) & overfit["a"].notna() & overfit["b"].notna()]
    assert len(small)
    # Both values positive and a direction: the tolerance decides and the row says so.
    judged = small[(small["a"] > 0) & (small["b"] > 0) & small["better"].notna()]
    assert len(judged)
    assert (judged["decided_by"] == "tolerance").all()
    for row in judged.to_dict("records"):
        worse = row["gain"] < 0.9
        better = row["gain"] > 1 / 0.9
        expected = "regressed" if worse else "improved" if better else "same"
        assert row["verdict"] == expected
        assert verdict_text(row).endswith("10%, too few samples for a test)")
    # A sign change (or no direction) has no relative change: still insufficient samples.
    rest = small.drop(judged.index)
    assert (rest["verdict"] == "insufficient samples").all()
    assert rest["decided_by"].isna().all()


def test_unavailable_figures_are_not_comparable_with_reason():
    table = compare_runs(RUN, RUN_B)
    missing = table[table["a"].isna()]
    assert len(missing)
    assert (missing["verdict"] == "not comparable").all()
    assert missing["why"].str.startswith("unavailable in A").all()


def test_a_real_slowdown_is_a_regression(tmp_path):
    table = compare_runs(RUN, _slowed(tmp_path, 2.0))
    latency = table[(table["metric"] == "latency_p50_s") & table["a"].notna()]
    assert (latency["verdict"] == "regressed").all()
    assert has_regression(table)
    html = comparison_html(table)
    assert "regressed" in html
    assert "B = slower" in html


def test_cli_exit_codes(tmp_path, capsys):
    slower = _slowed(tmp_path, 2.0)
    assert main(["compare", str(RUN), str(RUN)]) == 0
    assert main(["compare", str(RUN), str(slower)]) == 0
    out = tmp_path / "cmp.html"
    assert main(["compare", str(RUN), str(slower), "--fail-on-regression", "--html", str(out)]) == 1
    assert "regressed" in out.read_text()
    assert "regressed" in capsys.readouterr().out
    assert main(["compare", str(RUN), str(FIXTURES / "empty.json")]) == 2
    assert "empty.json: file is empty" in capsys.readouterr().err


def test_a_case_that_ran_in_a_and_is_oom_in_b_is_a_regression(tmp_path, capsys):
    records = [b["extra_info"]["archbench"] for b in json.loads(RUN.read_text())["benchmarks"]]
    preset = next(r["preset"] for r in records if r["preset"] is not None)
    oom = _edited(tmp_path, "oom.json", _oom_preset(preset))
    table = compare_runs(RUN, oom)
    rows = table[table["preset"] == preset]
    assert len(rows)
    assert (rows["verdict"] == "regressed").all()
    assert (rows["decided_by"] == "status").all()
    assert rows["why"].str.startswith("oom in B: ").all()
    assert "out of memory at" in rows["why"].iloc[0]
    assert has_regression(table)
    assert main(["compare", str(RUN), str(oom), "--fail-on-regression"]) == 1
    # The reverse: it went OOM in A and ran in B.
    reverse = compare_runs(oom, RUN)
    rows = reverse[reverse["preset"] == preset]
    assert (rows["verdict"] == "improved").all()
    assert not has_regression(reverse)
    # OOM on both sides: nothing to compare, said once per case.
    both = compare_runs(oom, oom)
    rows = both[both["preset"] == preset]
    assert (rows["verdict"] == "not comparable").all()
    assert (rows["metric"] == "(status)").all()
    assert rows["why"].eq("oom in A and oom in B").all()
    capsys.readouterr()


def test_a_single_shot_memory_blow_up_fails_by_the_tolerance(tmp_path):
    def doubled(record: dict) -> None:
        if record["suite"] == "memory":
            for metric in record["metrics"].values():
                if metric["unit"] == "B" and metric["value"] is not None:
                    metric["value"] *= 2
                    metric["samples"] = [v * 2 for v in metric["samples"]]

    bigger = _edited(tmp_path, "bigger.json", doubled)
    table = compare_runs(RUN, bigger)
    memory = table[
        (table["suite"] == "memory")
        & (table["unit"] == "B")
        & table["a"].notna()
        & table["better"].notna()  # context figures (no direction) cannot regress
    ]
    assert len(memory)
    assert (memory["n_a"] < min_samples()).all()  # single-shot: no test possible
    assert (memory["verdict"] == "regressed").all()
    assert (memory["decided_by"] == "tolerance").all()
    assert "regressed (&gt;10%, too few samples for a test)" in comparison_html(table)
    assert main(["compare", str(RUN), str(bigger), "--fail-on-regression"]) == 1
    # A 2x change passes a 150% tolerance; a bad tolerance is a user error (exit 2).
    loose = compare_runs(RUN, bigger, tolerance=0.6)
    assert not (loose[loose["suite"] == "memory"]["verdict"] == "regressed").any()
    assert main(["compare", str(RUN), str(bigger), "--tolerance", "0"]) == 2
