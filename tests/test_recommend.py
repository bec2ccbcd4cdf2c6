"""Recommendations from measured figures, and the statistics under them, on real-run fixtures.

Stats expectations are worked by hand in comments; fixtures come from make_report_fixtures.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ppo_core.pick import DEFAULT_SAFETY_MARGIN
from ppo_core.sizing import CUDA_CONTEXT_BYTES
from reports.load import load_runs
from reports.recommend import (
    MEMORY_SAFETY_MARGIN,
    USE_CASES,
    Budgets,
    Recommendation,
    preset_summary,
    recommend,
)
from reports.recommend import within_noise as noise
from reports.stats import (
    bootstrap_percentile_ci,
    bootstrap_ratio_ci,
    mann_whitney_u,
    mean_ci,
    t_critical_975,
)

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"


@pytest.fixture(scope="module")
def run_df():
    return load_runs([RUN])


def test_mann_whitney_separated_samples_match_hand_computation():
    # U1 = 0; mu = 8; sigma = sqrt(4*4/12 * 9) = sqrt(12); z = (16 - 8 - 0.5)/sqrt(12) = 2.16506
    # p = erfc(2.16506 / sqrt 2) = 0.030383
    result = mann_whitney_u([1, 2, 3, 4], [5, 6, 7, 8])
    assert result.u == 0
    assert result.z == pytest.approx(2.16506, abs=1e-5)
    assert result.p_value == pytest.approx(0.030383, abs=1e-6)


def test_mann_whitney_ties_use_average_ranks_and_corrected_variance():
    # pooled 1,2,2,2,3,3,4,4 -> ranks 1, 3,3,3, 5.5,5.5, 7.5,7.5; a's ranks 1+3+3+5.5 = 12.5
    # U1 = 12.5 - 10 = 2.5; ties (3,2,2): sum t^3-t = 36; 36/(8*7) = 0.642857
    # sigma = sqrt(16/12 * (9 - 0.642857)) = 3.338092; z = (13.5 - 8 - 0.5)/sigma = 1.497862
    # p = erfc(1.497862 / sqrt 2) = 0.134169
    result = mann_whitney_u([1, 2, 2, 3], [2, 3, 4, 4])
    assert result.u == 2.5
    assert result.z == pytest.approx(1.497862, abs=1e-6)
    assert result.p_value == pytest.approx(0.134169, abs=1e-6)


def test_mann_whitney_all_tied_is_no_evidence():
    assert mann_whitney_u([3, 3, 3], [3, 3]).p_value == 1.0


def test_mean_ci_uses_student_t():
    # mean 2, s = 1, t(0.975, 2) = 4.303 -> half width 4.303/sqrt(3) = 2.48434
    mean, low, high = mean_ci([1, 2, 3])
    assert (mean, low, high) == pytest.approx((2.0, -0.48434, 4.48434), abs=1e-5)
    assert all(math.isnan(v) for v in mean_ci([5.0])[1:])


def test_t_critical_table_and_expansion_agree_with_tables():
    assert t_critical_975(1) == 12.706
    assert t_critical_975(60) == pytest.approx(2.000, abs=1e-3)
    assert t_critical_975(120) == pytest.approx(1.980, abs=1e-3)


def test_bootstrap_ratio_ci_is_seeded_and_exact_for_constant_samples():
    assert bootstrap_ratio_ci([2, 2, 2], [3, 3, 3]) == (1.5, 1.5)
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.1, 1.9, 2.2, 1.8]
    assert bootstrap_ratio_ci(a, b, seed=3) == bootstrap_ratio_ci(a, b, seed=3)
    low, high = bootstrap_ratio_ci(a, b)
    assert low < 2.0 < high


def test_within_noise_uses_the_test_the_sample_sizes_allow():
    assert noise([1, 2, 3, 4, 5], [1.5, 2.5, 3.5, 4.5, 5.5]) is True
    assert noise([1, 2, 3, 4], [5, 6, 7, 8]) is False
    # 3 vs 3 cannot reach p < 0.05 with Mann-Whitney: 95% t intervals decide instead
    assert noise([1.0, 1.1, 1.2], [5.0, 5.1, 5.2]) is False
    assert noise([1.0, 3.0, 2.0], [1.5, 2.5, 2.0]) is True
    assert noise([1.0], [2.0]) is None


def test_every_use_case_is_answered_for_every_run():
    df = load_runs([RUN, FIXTURES / "run-cpu-quick-b.json"])
    recs = recommend(df)
    assert len(recs) == 2 * len(USE_CASES)
    for rec in recs:
        assert rec.reason
        if rec.hidden_dims is None:
            assert rec.reason.startswith("no recommendation: ")
        else:
            assert rec.preset in set(df["preset"].dropna())


def test_quick_iteration_picks_the_highest_measured_throughput(run_df):
    m = run_df[(run_df["suite"] == "train") & (run_df["metric"] == "env_steps_per_s")]
    fastest = m.loc[m["value"].idxmax(), "preset"]
    rec = next(r for r in recommend(run_df) if r.use_case == "quick iteration")
    assert rec.preset == fastest
    assert f"{m['value'].max():,.0f} env steps/s" in rec.reason
    assert rec.runner_up is not None
    assert rec.within_noise in (True, False)


def test_live_trading_follows_the_latency_budget(run_df):
    summary = preset_summary(run_df)
    largest = summary.loc[summary["params"].idxmax(), "preset"]
    roomy = recommend(run_df, Budgets(latency_p99_s=10.0))
    assert next(r for r in roomy if r.use_case == "live trading").preset == largest
    strict = next(
        r for r in recommend(run_df, Budgets(latency_p99_s=1e-9)) if r.use_case == "live trading"
    )
    fastest = summary.loc[summary["latency_p99"].idxmin(), "preset"]
    assert strict.preset is None
    assert "no size meets batch-1 p99 <= 1e-06 ms" in strict.reason
    assert f"fastest is {fastest}" in strict.reason


def test_memory_budget_excludes_sizes_that_do_not_fit(run_df):
    recs = recommend(run_df, Budgets(memory_bytes=1.0, latency_p99_s=10.0))
    production = next(r for r in recs if r.use_case == "standard production")
    assert production.hidden_dims is None
    assert "no size meets memory <= " in production.reason
    assert "smallest need is" in production.reason


def test_missing_suite_gives_no_recommendation_with_the_reason(run_df):
    recs = recommend(run_df[run_df["suite"] != "overfit"])
    by_case = {r.use_case: r for r in recs}
    assert "overfit suite missing" in by_case["standard production"].reason
    assert by_case["limited data (< 1 year of bars)"].hidden_dims is None
    assert by_case["quick iteration"].hidden_dims is not None


def test_all_oom_run_recommends_nothing_and_says_why():
    for rec in recommend(load_runs([FIXTURES / "all-oom.json"])):
        assert rec.hidden_dims is None
        assert "OOM" in rec.reason


def test_one_preset_run_has_no_runner_up():
    recs = recommend(load_runs([FIXTURES / "one-preset.json"]))
    chosen = [r for r in recs if r.hidden_dims is not None]
    assert chosen
    assert all(r.runner_up is None for r in chosen)
    # Nothing to compare with except, for sizes ranked by params, the limit that admitted them.
    for rec in chosen:
        if rec.within_noise is not None:
            assert rec.noise_against not in (None, "runner-up")


def test_records_and_budgets_are_frozen_and_validated():
    rec = Recommendation("r", "quick iteration", "1,2", "x", "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.preset = "y"  # type: ignore[misc]
    with pytest.raises(ValueError, match="latency_p99_s"):
        Budgets(latency_p99_s=-1)


def _derived(tmp_path: Path, name: str, edit, *, machine: dict | None = None) -> Path:
    """RUN with `edit(benchmarks)` applied (it returns the new list), written to tmp_path."""
    data = json.loads(RUN.read_text())
    data["benchmarks"] = edit(data["benchmarks"])
    if machine:
        data["machine_info"].setdefault("archbench", {}).update(machine)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _record(bench: dict) -> dict:
    return bench["extra_info"]["archbench"]


def _overfit_as(benchmarks: list, dataset: str, bars: int, offset: float, **case) -> list:
    """Copies of RUN's overfit records as if run on `dataset` with `bars` bars; every figure
    shifted by `offset` so that the figures of each dataset can be told apart."""
    out = []
    for bench in benchmarks:
        if _record(bench)["suite"] != "overfit":
            continue
        bench = copy.deepcopy(bench)
        record = _record(bench)
        record["case"].pop("bars_per_year", None)  # the synthetic data's, if recorded
        record["case"].update(dataset=dataset, bars=bars, **case)
        for metric in record["metrics"].values():
            if metric["value"] is not None:
                metric["value"] += offset
                metric["samples"] = [v + offset for v in metric["samples"]]
        out.append(bench)
    return out


def _overfit_values(benchmarks: list, dataset: str, bars: int, metric: str) -> dict:
    values: dict = {}
    for bench in benchmarks:
        record = _record(bench)
        case = record["case"]
        if record["suite"] == "overfit" and (case["dataset"], case["bars"]) == (dataset, bars):
            values.setdefault(record["preset"], []).append(record["metrics"][metric]["value"])
    return {preset: sum(v) / len(v) for preset, v in values.items()}


def test_dataset_length_is_judged_in_years_per_dataset(tmp_path):
    # Many daily bars are many years: 5,031 sp500 bars (20 y) are the longest data, not the
    # shortest; 2,000 'googl' bars recorded with their own bars_per_year (252) are ~8 years.
    def edit(benchmarks):
        kept = [b for b in benchmarks if _record(b)["suite"] != "overfit"]
        daily = _overfit_as(benchmarks, "sp500", 5031, 1.0)
        eight_years = _overfit_as(benchmarks, "googl", 2000, 2.0, bars_per_year=252.0)
        return kept + daily + eight_years

    path = _derived(tmp_path, "daily.json", edit)
    benchmarks = json.loads(path.read_text())["benchmarks"]
    summary = preset_summary(load_runs([path])).set_index("preset")
    expected = _overfit_values(benchmarks, "sp500", 5031, "val_sharpe")
    for preset, value in expected.items():
        assert summary.loc[preset, "val_sharpe"] == pytest.approx(value)  # sp500 only, pooled
        assert summary.loc[preset, "long_data"] == "sp500 5,031 bars (20 years)"
        assert pd.isna(summary.loc[preset, "short_data"])  # nothing under one year
    recs = {r.use_case: r for r in recommend(load_runs([path]))}
    limited = recs["limited data (< 1 year of bars)"]
    assert limited.hidden_dims is None
    assert "no size meets a dataset of < 1 year of bars" in limited.reason
    assert "shortest was googl 2,000 bars (7.9 years)" in limited.reason


def test_limited_data_pools_only_the_short_datasets(tmp_path):
    # RUN's synthetic data (hourly, 24/7) is under one year; add 20 years of sp500 beside it.
    def edit(benchmarks):
        return benchmarks + _overfit_as(benchmarks, "sp500", 5031, 5.0)

    path = _derived(tmp_path, "mixed.json", edit)
    benchmarks = json.loads(RUN.read_text())["benchmarks"]
    summary = preset_summary(load_runs([path])).set_index("preset")
    for preset in summary.index:
        gaps = [
            _record(b)["metrics"]["sharpe_gap"]["value"]
            for b in benchmarks
            if _record(b)["suite"] == "overfit"
            and _record(b)["preset"] == preset
            and _record(b)["case"]["bars"] < _record(b)["case"].get("bars_per_year", 8766)
        ]
        assert summary.loc[preset, "short_sharpe_gap"] == pytest.approx(sum(gaps) / len(gaps))
        assert "sp500" not in summary.loc[preset, "short_data"]
        assert summary.loc[preset, "long_data"].startswith("sp500")


def _oom_in(suite: str, preset: str):
    def edit(benchmarks):
        for bench in benchmarks:
            record = _record(bench)
            if record["suite"] == suite and record["preset"] == preset:
                record.update(status="oom", reason="out of memory (derived)", metrics={})
        return benchmarks

    return edit


def test_an_oom_rules_a_size_out_only_where_its_suite_decides(tmp_path, run_df):
    m = run_df[(run_df["suite"] == "train") & (run_df["metric"] == "env_steps_per_s")]
    fastest = m.loc[m["value"].idxmax(), "preset"]
    # OOM in the infer suite: still the fastest to train; gone from live trading only.
    infer_oom = load_runs([_derived(tmp_path, "infer-oom.json", _oom_in("infer", fastest))])
    recs = {r.use_case: r for r in recommend(infer_oom, Budgets(latency_p99_s=10.0))}
    assert recs["quick iteration"].preset == fastest
    assert recs["live trading"].preset not in (None, fastest)
    # OOM in the memory suite: does not fit, so not for any use case with a memory limit.
    memory_oom = load_runs([_derived(tmp_path, "memory-oom.json", _oom_in("memory", fastest))])
    recs = {r.use_case: r for r in recommend(memory_oom, Budgets(latency_p99_s=10.0))}
    assert recs["quick iteration"].preset == fastest
    for name in ("complex / volatile symbols", "extended training (500M+ steps)"):
        assert recs[name].preset != fastest
        if recs[name].preset is None:
            assert "went OOM" in recs[name].reason


def test_params_ranked_use_cases_check_the_limit_not_the_runner_up(run_df):
    summary = preset_summary(run_df)
    largest = summary.loc[summary["params"].idxmax()]
    raw = largest["latency_p99_raw"]
    assert len(raw) >= 20
    # A budget a hair above the largest size's p99: inside the noise of its own p99.
    tight = Budgets(latency_p99_s=float(largest["latency_p99"]) * 1.0001)
    rec = next(r for r in recommend(run_df, tight) if r.use_case == "live trading")
    assert rec.preset == largest["preset"]
    assert rec.noise_against == f"batch-1 p99 <= {tight.latency_p99_s * 1e3:g} ms"
    assert rec.within_noise is True
    roomy = next(r for r in recommend(run_df, Budgets(latency_p99_s=10.0))
                 if r.use_case == "live trading")  # fmt: skip
    assert roomy.within_noise is False
    # The p99's interval comes from resampling its raw samples, not from 20 fake samples.
    low, high = bootstrap_percentile_ci(raw, 99.0)
    assert low <= largest["latency_p99"] <= high
    assert bootstrap_percentile_ci([2.0] * 50, 99.0) == (2.0, 2.0)


def test_predicted_memory_includes_the_cuda_context_and_the_safety_margin(tmp_path):
    # A GPU run whose memory suite could not measure (value None): the prediction decides.
    def edit(benchmarks):
        for bench in benchmarks:
            record = _record(bench)
            record["device"] = "cuda:0"
            if record["suite"] == "memory":
                for metric in record["metrics"].values():
                    metric.update(value=None, samples=[], unavailable="derived: not measured")
        return benchmarks

    path = _derived(tmp_path, "gpu.json", edit)
    df = load_runs([path])
    summary = preset_summary(df)
    needs = {}
    for row in summary.itertuples():
        predicted = df[(df["preset"] == row.preset) & (df["suite"] == "memory")]
        stated = predicted["record_predicted"].iloc[0]
        # The context the records state (the memory suite measures it), else the prior.
        context = stated.get("cuda_context_bytes") or CUDA_CONTEXT_BYTES
        assert row.memory_bytes == stated["train_bytes"] + context
        assert row.memory_source == "predicted + CUDA context"
        needs[row.preset] = row.memory_bytes
    # A card whose raw capacity holds the largest need, but not with pick's 10% kept free.
    largest = max(needs, key=needs.get)
    card = needs[largest] / (1 - DEFAULT_SAFETY_MARGIN / 2)
    gpu = load_runs([_derived(tmp_path, "gpu-card.json", edit,
                              machine={"gpu_memory_bytes": card})])  # fmt: skip
    recs = {r.use_case: r for r in recommend(gpu, Budgets(latency_p99_s=10.0))}
    extended = recs["extended training (500M+ steps)"]
    assert extended.preset != largest
    assert "GPU memory minus a 10% safety margin" in extended.reason
    assert MEMORY_SAFETY_MARGIN == DEFAULT_SAFETY_MARGIN  # one figure for report and pick


def test_a_stated_bar_limit_replaces_the_one_year_rule(run_df):
    lengths = sorted(set(run_df.loc[run_df["suite"] == "overfit", "case_bars"].dropna()))
    assert len(lengths) >= 2
    shortest, longer = int(lengths[0]), int(lengths[1])
    recs = recommend(run_df, Budgets(limited_data_bars=shortest))
    limited = next(r for r in recs if r.use_case == "limited data (< 1 year of bars)")
    assert limited.hidden_dims is not None
    assert f"<= {shortest:,} bars: synthetic {shortest:,} bars" in limited.reason
    assert f"{longer:,} bars" not in limited.reason
