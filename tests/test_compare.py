"""Run-vs-run comparison: ratios, noise-aware verdicts, and the `archbench compare` exit codes.

A and B are two real quick runs (tests/make_report_fixtures.py); regressions are derived from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppo_core.cli import main
from reports.compare import VERDICTS, compare_runs, comparison_html, has_regression, min_samples

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
RUN_B = FIXTURES / "run-cpu-quick-b.json"


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


def test_seeds_are_pooled_and_too_few_are_insufficient():
    table = compare_runs(RUN, RUN_B)
    overfit = table[table["suite"] == "overfit"]
    assert not overfit["case"].str.contains("seed").any()
    assert (overfit["n_a"] > 1).all()
    small = overfit[overfit["n_a"] < min_samples()]
    assert len(small)
    assert (small["verdict"] == "insufficient samples").all()


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
