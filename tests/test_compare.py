"""Run-vs-run comparison: ratios, noise-aware verdicts, and the `archbench compare` exit codes.

A and B are two real quick runs (tests/make_report_fixtures.py); regressions are derived from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from archbench.cli.main import main
from archbench.reports.compare import (
    HostLoad,
    compare_runs,
    has_regression,
    setup_note,
    unjudged_timing_rows,
)
from archbench.reports.compare_text import comparison_html, verdict_text
from archbench.reports.compare_verdicts import VERDICTS, min_samples
from archbench.reports.host_load import HOST_LOAD_METRIC
from archbench.reports.load import case_label, load_runs
from ppo_core.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
RUN_B = FIXTURES / "run-cpu-quick-b.json"


@pytest.fixture(scope="module")
def pair():
    """compare_runs(RUN, RUN_B), computed once: the tests only read it."""
    return compare_runs(RUN, RUN_B)


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
    """RUN with every timing figure `factor` times slower (seconds x factor, rates / factor)."""
    return _edited(tmp_path, "slower.json", _scaled_timing(factor))


def test_min_samples_is_where_mann_whitney_can_reach_alpha():
    # 3 vs 3 separated: z = (9 - 4.5 - 0.5)/sqrt(9*7/12) = 1.746 -> p = 0.081 > 0.05; 4 vs 4: 0.030
    assert min_samples(0.05) == 4


def test_ratio_is_b_over_a_and_gain_is_oriented(pair):
    table = pair
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


def test_seeds_are_pooled_and_too_few_are_judged_by_the_stated_tolerance(pair):
    table = pair
    overfit = table[table["suite"] == "overfit"]
    assert not overfit["case"].str.contains("seed").any()
    assert (overfit["n_a"] >= 1).all()  # one figure per seed; a single seed is one sample
    small = overfit[(overfit["n_a"] < min_samples()) & overfit["a"].notna() & overfit["b"].notna()]
    assert len(small)
    # Timings are never judged by a tolerance (issue 23: runs of one commit drift 5-15%).
    timing = small[small["timing"]]
    assert (timing["verdict"] == "insufficient samples").all()
    assert timing["why"].str.endswith("a timing is not judged by a tolerance").all()
    small = small[~small["timing"]]
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


def test_unavailable_figures_are_not_comparable_with_reason(pair):
    table = pair
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


# --- each metric on its own statistic, corrected for many rows, with a minimum effect, and the
# host load. Every adversarial run below is one of the two real runs, edited in code.

_EAGER_BATCH_1 = "backend=eager, batch=1, weights=initial (untrained)"


def _timing_scale(metric: dict, factor: float) -> float:
    """How a uniform `factor`-times slowdown moves a figure: seconds x factor, rates / factor."""
    unit = metric["unit"] or ""
    return factor if unit == "s" else 1 / factor if unit.endswith("/s") else 1.0


def _scaled_timing(factor: float):
    """An edit that makes every timing figure of a record `factor` times slower."""

    def edit(record: dict) -> None:
        for metric in record["metrics"].values():
            if metric["value"] is not None:
                scale = _timing_scale(metric, factor)
                metric["value"] *= scale
                metric["samples"] = [s * scale for s in metric["samples"]]

    return edit


def _loaded(factor: float):
    """An edit that multiplies the host load per core every record carries by `factor`."""

    def edit(record: dict) -> None:
        load = record["metrics"][HOST_LOAD_METRIC]
        load["value"] *= factor
        load["samples"] = [s * factor for s in load["samples"]]

    return edit


def _both(*edits):
    def edit(record: dict) -> None:
        for one in edits:
            one(record)

    return edit


def _samples_of(path: Path) -> dict[tuple, tuple]:
    """(suite, preset, case, metric) -> raw samples, keyed as compare keys its rows."""
    frame = load_runs([path])
    out = {}
    for row in frame[frame["metric"].notna()].to_dict("records"):
        case = case_label({k: v for k, v in row["case_dict"].items() if k != "seed"})
        preset = row["preset"] if isinstance(row["preset"], str) else "(machine)"
        out[(row["suite"], preset, case, row["metric"])] = tuple(row["samples"])
    return out


def _row(table, preset: str, case: str, metric: str) -> dict:
    rows = table[(table["preset"] == preset) & (table["case"] == case)]
    return rows[rows["metric"] == metric].iloc[0].to_dict()


def test_each_metric_is_judged_on_the_statistic_it_reports(pair):
    table = pair
    tested = table[table["decided_by"] == "test"]
    assert len(tested)
    p99 = tested[tested["metric"].str.contains("p99")]
    assert len(p99)
    assert (p99["statistic"] == "p99").all()
    assert (p99["test"] == "bootstrap").all()
    p50 = tested[tested["metric"] == "latency_p50_s"]
    assert (p50["statistic"] == "median").all()
    assert (p50["test"] == "Mann-Whitney U").all()
    # Every test row is corrected for their number: q >= p, and the row says what decided it.
    assert (tested["q_value"].dropna() >= tested.loc[tested["q_value"].notna(), "p_value"]).all()
    judged = tested[tested["verdict"].isin(["improved", "regressed"])]
    for row in judged.to_dict("records"):
        assert verdict_text(row).startswith(f"{row['verdict']} ({row['statistic']} by ")
    assert HOST_LOAD_METRIC not in set(table["metric"])  # the load is context, not a row


def test_the_issues_4_5x_better_p99_is_improved_while_its_median_regressed(pair):
    # Real runs, small eager batch 1: B's p99 is 4.5x better (A's calls had a slow tail), its
    # median 1.3x worse. The old engine read the p99 row by the medians and called it regressed.
    table = pair
    p99 = _row(table, "small", _EAGER_BATCH_1, "latency_p99_s")
    p50 = _row(table, "small", _EAGER_BATCH_1, "latency_p50_s")
    assert 4 < p99["gain"] < 5
    assert p99["verdict"] == "improved"
    assert p99["ci_high"] < 1  # the whole bootstrap interval of the p99 ratio is below 1
    assert p50["gain"] < 1 / 1.2
    assert p50["verdict"] == "regressed"


def test_a_ten_times_slower_tail_with_the_same_median_is_a_regression(tmp_path):
    # Plant the tail where the run's own tail is steadiest (smallest p99 / median).
    records = [b["extra_info"]["archbench"] for b in json.loads(RUN.read_text())["benchmarks"]]
    infer = [r for r in records if r["suite"] == "infer" and r["status"] == "ok"]
    target = min(
        infer,
        key=lambda r: (
            r["metrics"]["latency_p99_s"]["value"] / r["metrics"]["latency_p50_s"]["value"]
        ),
    )
    key = (target["preset"], target["case"])

    def slow_tail(record: dict) -> None:
        if (record["preset"], record["case"]) != key:
            return
        for name, percentile in (("latency_p50_s", 50), ("latency_p99_s", 99)):
            metric = record["metrics"][name]
            samples = np.asarray(metric["samples"])
            cut = np.quantile(samples, 2 / 3)  # the slowest third of the calls, 10x slower
            metric["samples"] = [s * 10 if s > cut else s for s in samples]
            metric["value"] = float(np.percentile(metric["samples"], percentile))

    table = compare_runs(RUN, _edited(tmp_path, "tail.json", slow_tail))
    case = case_label(target["case"])
    p99 = _row(table, target["preset"], case, "latency_p99_s")
    p50 = _row(table, target["preset"], case, "latency_p50_s")
    assert p99["ratio"] == pytest.approx(10, rel=0.05)
    assert p99["verdict"] == "regressed"
    assert p99["statistic"] == "p99"
    assert p50["ratio"] == 1.0
    assert p50["verdict"] == "same"
    # Nothing else changed, and nothing else is called a change.
    assert set(table.loc[table["verdict"] == "regressed", "metric"]) == {"latency_p99_s"}
    assert (table["verdict"] == "regressed").sum() == 1


def test_a_uniform_2x_slowdown_regresses_every_timing_row_with_enough_samples(tmp_path, capsys):
    slower = _edited(tmp_path, "slower2x.json", _scaled_timing(2.0))
    table = compare_runs(RUN, slower)
    assert table.attrs["host_load"].loaded is None  # the same host load: judged
    samples = _samples_of(RUN)
    keys = ["suite", "preset", "case", "metric"]
    rows = table[table["timing"] & (table["n_a"] >= 5) & table["better"].notna()]
    assert len(rows) >= 20
    assert (rows["decided_by"] == "test").all()
    strict = 0
    for row in rows.to_dict("records"):
        a = np.asarray(samples[tuple(row[k] for k in keys)])
        # A lone slow call in A that a 2x slowdown does not clear (>= 2x A's median) can hide
        # the change from an honest test; without one, the row must be regressed.
        if a.max() < 2 * np.median(a) and a.min() > np.median(a) / 2:
            strict += 1
            assert row["verdict"] == "regressed", row
        else:
            assert row["verdict"] == "regressed" or row["ci_low"] <= 1 <= row["ci_high"], row
    assert strict >= len(rows) / 2
    assert main(["compare", str(RUN), str(slower), "--fail-on-regression"]) == 1
    capsys.readouterr()


def test_two_same_code_runs_on_one_machine_pass_fail_on_regression(pair, capsys):
    table = pair
    load = table.attrs["host_load"]
    # The two real runs on one 2-core machine: A's median load was 2.2 per core, B's 1.5,
    # where the benchmark's own threads account for 1: A ran beside twice B's other work.
    assert load.loaded == "A"
    assert load.a > load.b > 1
    judged = table.drop(unjudged_timing_rows(table).index)
    # The load rule is one-sided (issue 23): a row in which loaded A was still the faster is
    # judged, since the load cannot have made A fast; only A's slower rows are left out.
    regressed = judged[judged["verdict"] == "regressed"]
    assert (regressed["gain"] < 1).all()
    left_out = table.loc[unjudged_timing_rows(table).index, "gain"]
    assert ((left_out > 1) | left_out.isna()).all()
    expected = 1 if len(regressed) else 0
    assert main(["compare", str(RUN), str(RUN_B), "--fail-on-regression"]) == expected
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("--fail-on-regression: run A is LOADED")
    assert main(["compare", str(RUN_B), str(RUN), "--fail-on-regression"]) == 0
    # Told to judge them anyway, the loaded run's timings differ beyond their own noise.
    assert main(["compare", str(RUN), str(RUN_B), "--fail-on-regression", "--allow-loaded"]) == 1
    capsys.readouterr()


def test_a_loaded_run_is_flagged_and_its_timing_rows_are_not_judged(tmp_path, capsys):
    loaded_slower = _edited(tmp_path, "loaded.json", _both(_scaled_timing(2.0), _loaded(3.0)))
    table = compare_runs(RUN, loaded_slower)
    load = table.attrs["host_load"]
    assert load.b == pytest.approx(3 * load.a)
    assert load.loaded == "B"
    assert "run B is LOADED" in load.describe()
    unjudged = unjudged_timing_rows(table)
    assert len(unjudged)
    assert not unjudged["unit"].isin(["B", "count"]).any()
    assert has_regression(table, allow_loaded=True)
    assert not has_regression(table)
    html = comparison_html(table)
    assert "run B is LOADED" in html
    assert "(loaded host)" in html
    capsys.readouterr()
    assert main(["compare", str(RUN), str(loaded_slower), "--fail-on-regression"]) == 0
    captured = capsys.readouterr()
    assert "run B is LOADED" in captured.out  # the terminal table is flagged
    assert captured.err.count("\n") == 1
    assert f"its {len(unjudged)} timing rows are not judged" in captured.err
    args = ["compare", str(RUN), str(loaded_slower), "--fail-on-regression", "--allow-loaded"]
    assert main(args) == 1

    # Bytes are not timing: a memory blow-up on the loaded run still fails.
    def doubled_memory(record: dict) -> None:
        for metric in record["metrics"].values():
            if metric["unit"] == "B" and metric["value"] is not None:
                metric["value"] *= 2

    bigger = _edited(tmp_path, "loaded-bigger.json", _both(_loaded(3.0), doubled_memory))
    assert main(["compare", str(RUN), str(bigger), "--fail-on-regression"]) == 1
    # The same load on both sides is no difference to flag.
    both = compare_runs(loaded_slower, loaded_slower)
    assert both.attrs["host_load"].loaded is None
    capsys.readouterr()


def test_the_host_load_rule():
    # CPU runs: the benchmark's own threads are 1 per core; the excess decides.
    assert HostLoad(2.2, 1.5, 1.0, 1.0).loaded == "A"  # excess 1.2 vs 0.5: 2.4x, above 0.5
    assert HostLoad(1.5, 2.2, 1.0, 1.0).loaded == "B"
    assert HostLoad(1.4, 1.1, 1.0, 1.0).loaded is None  # excess 0.4: below half a core
    assert HostLoad(3.0, 2.4, 1.0, 1.0).loaded is None  # both busy, 2.0 vs 1.4: not 2x
    # GPU runs: the host thread is a small share of many cores; the raw load decides.
    assert HostLoad(0.6, 0.1, 0.0, 0.0).loaded == "A"
    assert HostLoad(0.3, 0.05, 0.0, 0.0).loaded is None
    missing = HostLoad(None, 1.0, 1.0, 1.0)
    assert missing.loaded is None
    assert "not recorded" in missing.describe()


def test_a_significant_change_below_the_minimum_effect_is_same(tmp_path, capsys):
    slightly = _edited(tmp_path, "slightly.json", _scaled_timing(1.04))
    # drift=0: no run-level drift allowed, so the uniform 4% shift is a change to test
    strict = compare_runs(RUN, slightly, min_effect=0, drift=0)
    significant = strict[(strict["decided_by"] == "test") & (strict["q_value"] <= 0.05)]
    assert len(significant)  # 30 steady samples see a 4% shift
    assert (significant["verdict"] == "regressed").all()
    default = compare_runs(RUN, slightly, drift=0).loc[significant.index]
    assert (default["verdict"] == "same").all()
    assert default["why"].str.contains("inside the 5% minimum effect").all()
    args = ["compare", str(RUN), str(slightly), "--fail-on-regression", "--drift", "0"]
    assert main(args) == 0
    assert main([*args, "--min-effect", "0"]) == 1
    # With the default drift a common 4% shift of every timing is run-to-run drift: quiet.
    assert compare_runs(RUN, slightly).attrs["run_shift"].within_drift
    assert (
        main(["compare", str(RUN), str(slightly), "--fail-on-regression", "--min-effect", "0"]) == 0
    )
    capsys.readouterr()


@pytest.mark.parametrize("value", ["nan", "inf", "1", "-0.1"])
def test_a_bad_min_effect_is_one_clear_line(value, capsys):
    assert main(["compare", str(RUN), str(RUN_B), "--min-effect", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    # nan and inf are refused by the check every float flag gets; 1 and -0.1 by the range check
    assert err[0].startswith("archbench compare: error: --min-effect ")
    assert "not a finite number" in err[0] or "must be in [0, 1)" in err[0]
    with pytest.raises(ConfigError, match="min_effect"):
        compare_runs(RUN, RUN_B, min_effect=float(value))


def test_a_different_thread_count_is_named_and_a_drift_sized_shift_is_not_a_verdict(tmp_path):
    def threads(n: int):
        def edit(record: dict) -> None:
            record["workload"] = {"observation": {"obs_dim": record["obs_dim"]}, "torch_threads": n}

        return edit

    a = _edited(tmp_path, "two.json", threads(2))
    b = _edited(tmp_path, "eight.json", _both(threads(8), _scaled_timing(1.10)))
    table = compare_runs(a, b)
    assert setup_note(table) == "setups differ: torch threads: A 2, B 8"
    shift = table.attrs["run_shift"]
    assert shift.gain == pytest.approx(1 / 1.10, rel=0.02)  # every timing 10% slower
    assert shift.within_drift
    assert not has_regression(table)  # 10% on every row is inside two runs' drift
    assert setup_note(compare_runs(a, a)) is None
