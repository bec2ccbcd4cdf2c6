"""The decision engine and the statistics under it, on real runs and runs derived from them.

Stats expectations are worked by hand in comments; fixtures come from make_report_fixtures.py
(CPU) and the H100 runs of shared/runs/h100 (tests/fixtures/h100). Adversarial runs are real
runs edited in code, never hand-typed numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from archbench.instrument.device.datasheets import cpu_spec, find_gpu
from archbench.reports.decision_types import USE_CASES, Limits
from archbench.reports.load import load_runs
from archbench.reports.pick import pick
from archbench.reports.scores import (
    Score,
    annualised_sharpe,
    block_length,
    circular_block_indices,
    median_score,
    oos_scores,
    paired_seeds,
)
from archbench.reports.stats import (
    bootstrap_ratio_ci,
    mann_whitney_u,
    mean_ci,
    t_critical_975,
)
from archbench.reports.use_cases import decide, evidence_from_frame, recommend

FIXTURES = Path(__file__).parent / "fixtures"
RUN = FIXTURES / "run-cpu-quick.json"
H100 = ("full-perf-cuda", "full-overfit-partial-cuda")
USE = {u.name.split(" (")[0]: u for u in USE_CASES}


@pytest.fixture(scope="module")
def run_df():
    return load_runs([RUN])


@pytest.fixture(scope="module")
def h100_paths(tmp_path_factory):
    """The H100 full-profile perf run and the interrupted overfit run, unzipped."""
    folder = tmp_path_factory.mktemp("h100")
    paths = []
    for name in H100:
        path = folder / f"{name}.json"
        path.write_bytes(gzip.decompress((FIXTURES / "h100" / f"{name}.json.gz").read_bytes()))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def h100(h100_paths):
    return [json.loads(p.read_text()) for p in h100_paths]


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


# -- scores -----------------------------------------------------------------------------------


def test_sharpe_and_block_indices_match_hand_computation():
    # mean 2, sample std 1 -> per-bar Sharpe 2; x sqrt(4 bars a year) = 4
    assert annualised_sharpe(np.array([1.0, 2.0, 3.0]), 4.0) == pytest.approx(4.0)
    assert annualised_sharpe(np.zeros(5), 252.0) == 0.0  # flat: earned nothing
    assert block_length(100) == 10
    idx = circular_block_indices(100, 7, np.random.default_rng(0))
    assert idx.shape == (7, 100)
    # inside each block of 10 the bars are consecutive, wrapping past the end
    steps = np.diff(idx.reshape(7, 10, 10), axis=2) % 100
    assert (steps == 1).all()


def test_paired_bootstrap_sees_a_small_edge_that_shared_noise_would_hide():
    returns = np.random.default_rng(1).normal(0.0, 0.01, size=(3, 2000))  # 3 seeds
    better = returns + 0.0005  # +0.05 per-bar Sharpe, far inside one series' noise
    scores = oos_scores(
        {
            "a": (annualised_sharpe(returns, 252.0), returns),
            "b": (annualised_sharpe(better, 252.0), better),
        },
        252.0,
    )
    a, b = scores["a"], scores["b"]
    assert a.how == "Student t over 3 seeds"  # seeds carry the training noise
    assert b.beats(a, higher=True) is True  # the paired difference sees the edge
    assert a.beats(a, higher=True) is False  # identical: never better than itself
    by_seed = [dict(enumerate(annualised_sharpe(r, 252.0))) for r in (better, returns)]
    paired = paired_seeds(*by_seed, ({}, {}), 252.0)
    assert paired.n == 3
    assert paired.beyond  # per-seed differences agree: +0.79 each, so t over 3 seeds separates


def test_median_scores_need_the_minimum_effect_to_win():
    slow, fast = [100, 101, 99, 100, 100], [103, 104, 102, 103, 103]
    a, b = median_score(slow), median_score(fast)
    assert b.beats(a, higher=True) is True
    assert b.beats(a, higher=True, min_effect=0.05) is False  # 3% is not worth a bigger net
    assert median_score([5.0]).interval is None
    assert Score(1.0, (), "x").beats(a, higher=True) is None


def test_budgets_are_validated():
    for bad in ({"latency_p99_s": -1}, {"min_throughput_effect": 1.5}, {"memory_bytes": 0}):
        with pytest.raises(ValueError, match="Limits"):
            Limits(**bad)


# -- runs derived from real runs ---------------------------------------------------------------


def _records(data: dict) -> list[dict]:
    return [b["extra_info"]["archbench"] for b in data["benchmarks"]]


def _save(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _decisions(paths, budgets=None) -> dict:
    return {d.use_case.name.split(" (")[0]: d for d in recommend(load_runs(paths), budgets)}


def _as_size(record: dict, like: dict) -> dict:
    """A copy of `record` relabelled as the size that `like` describes."""
    out = copy.deepcopy(record)
    out.update({k: like[k] for k in ("preset", "hidden_dims", "params")})
    return out


def _sizes(data: dict) -> dict:
    return {r["preset"]: r for r in _records(data) if r.get("preset") and r["suite"] == "train"}


def test_quick_iteration_follows_whole_iteration_throughput(tmp_path, h100, h100_paths):
    perf = copy.deepcopy(h100[0])
    decisions = _decisions(h100_paths)
    quick = decisions["quick iteration"]
    fastest = max(
        (s for s in evidence_from_frame(load_runs(h100_paths)).sizes if s.throughput),
        key=lambda s: s.throughput.value,
    )
    assert quick.size.label == fastest.label or quick.within_noise
    # The rollout-only figure decides nothing: make xlarge's 100x faster and nothing moves.
    for record in _records(perf):
        if record["suite"] == "train" and record["preset"] == "xlarge":
            metric = record["metrics"]["env_steps_per_s"]
            metric["value"] *= 100
            metric["samples"] = [v * 100 for v in metric["samples"]]
    path = _save(tmp_path, "rollout-only", perf)
    assert _decisions([path, h100_paths[1]])["quick iteration"].size.label == quick.size.label
    # Whole iterations three times faster for large: large wins, beyond the noise.
    for record in _records(perf):
        if record["suite"] == "train" and record["preset"] == "large":
            metric = record["metrics"]["iteration_s"]
            metric["value"] /= 3
            metric["samples"] = [v / 3 for v in metric["samples"]]
    path = _save(tmp_path, "large-fast", perf)
    won = _decisions([path, h100_paths[1]])["quick iteration"]
    assert won.size.label == "large"
    assert won.within_noise is False


def test_pick_on_the_h100_runs_names_the_measured_fastest(h100_paths):
    df = load_runs(h100_paths)
    gib = float(df["gpu_memory_bytes"].dropna().iloc[0]) / 2**30
    device = dataclasses.replace(find_gpu(str(df["gpu"].iloc[0]), gib), memory_gib=gib)
    result = pick(device, use_case="quick iteration", runs=df)
    sizes = {s.label: s for s in evidence_from_frame(df).sizes if s.throughput}
    fastest = max(sizes.values(), key=lambda s: s.throughput.value)
    chosen = sizes[result.recommended.label]
    assert chosen is fastest or not fastest.throughput.beats(
        chosen.throughput, higher=True, min_effect=Limits().min_throughput_effect
    )
    assert "env steps/s" in result.why[0]


def _cpu_device(df):
    from archbench.instrument.device.machine import Ceilings

    model = df["cpu_model"].dropna().iloc[0]
    # Stated rates: only the device's identity and memory matter to a pick of its own runs.
    ceilings = Ceilings("cpu", 1e11, {"fp32": 1e11}, 2e10, {}, {}, 1024, 2**26, 2)
    return cpu_spec(ceilings, model, 64 * 2**30)


@pytest.mark.parametrize(
    "names", [["run-cpu-quick"], ["run-cpu-quick-b"], ["one-preset"], ["all-oom"], "h100"]
)
def test_report_and_pick_give_one_answer(names, h100_paths):
    paths = h100_paths if names == "h100" else [FIXTURES / f"{n}.json" for n in names]
    df = load_runs(paths)
    if names == "h100":
        gib = float(df["gpu_memory_bytes"].dropna().iloc[0]) / 2**30
        device = dataclasses.replace(find_gpu(str(df["gpu"].iloc[0]), gib), memory_gib=gib)
    else:
        device = _cpu_device(df)
    for decision in recommend(df):
        result = pick(device, use_case=decision.use_case.name, runs=df)
        picked = None if result.recommended is None else result.recommended.label
        chosen = None if decision.size is None else decision.size.label
        assert picked == chosen, decision.use_case.name
        assert result.decision.summary == decision.summary


def test_a_much_better_large_wins_production(tmp_path, h100, h100_paths):
    overfit = copy.deepcopy(h100[1])
    large = _sizes(h100[0])["large"]
    benches = overfit["benchmarks"]
    for bench in list(benches):
        record = bench["extra_info"]["archbench"]
        if record["preset"] == "small" and record["case"]["length"] == "long":
            twin = copy.deepcopy(bench)
            twin["extra_info"]["archbench"] = _as_size(record, large)
            metric = twin["extra_info"]["archbench"]["metrics"]["val_sharpe"]
            metric["value"] += 10.0
            benches.append(twin)
    path = _save(tmp_path, "large-better", overfit)
    production = _decisions([h100_paths[0], path])["standard production"]
    assert production.size.label == "large"
    # Every cheaper size is either beaten beyond the paired interval or shows no skill at all.
    assert production.within_noise is not True
    assert "beats every cheaper size beyond the noise" in production.summary or any(
        "no skill" in line for line in production.details
    )


def test_a_non_learning_size_with_zero_gap_never_wins(tmp_path, h100, h100_paths):
    overfit = copy.deepcopy(h100[1])
    for record in _records(overfit):
        if record["preset"] == "medium":
            for name in ("val_sharpe", "train_sharpe"):
                record["metrics"][name]["value"] = -24.0
            record["metrics"]["sharpe_gap"]["value"] = 0.0
    path = _save(tmp_path, "medium-flat", overfit)
    for name, decision in _decisions([h100_paths[0], path]).items():
        if decision.use_case.objective == "oos" and decision.size is not None:
            assert decision.size.label != "medium", name


def test_an_oom_size_is_excluded_however_good(tmp_path, h100, h100_paths):
    perf = copy.deepcopy(h100[0])
    for record in _records(perf):
        if record["preset"] == "tiny" and record["suite"] == "train":
            record.update(status="oom", reason="CUDA out of memory (derived)", metrics={})
    path = _save(tmp_path, "tiny-oom", perf)
    decisions = _decisions([path, h100_paths[1]])
    for name in ("quick iteration", "standard production", "limited data"):
        size = decisions[name].size
        assert size is None or size.label != "tiny", name
    assert any("out of memory" in line for line in decisions["limited data"].details)


def test_an_unmeasured_size_never_beats_a_measured_one(tmp_path, h100, h100_paths):
    decisions = _decisions(h100_paths)
    # xlarge never reached the interrupted overfit run
    for decision in decisions.values():
        if decision.use_case.objective == "oos" and decision.size is not None:
            assert decision.size.label != "xlarge"
            assert any(line.startswith("not measured") and "xlarge" in line
                       for line in decision.details)  # fmt: skip
    perf = copy.deepcopy(h100[0])
    perf["benchmarks"] = [
        b
        for b in perf["benchmarks"]
        if (b["extra_info"]["archbench"].get("preset"), b["extra_info"]["archbench"]["suite"])
        != ("tiny", "train")
    ]
    path = _save(tmp_path, "no-tiny-train", perf)
    quick = _decisions([path, h100_paths[1]])["quick iteration"]
    assert quick.size.label != "tiny"
    assert any(line.startswith("not measured") and "tiny" in line for line in quick.details)


def test_limited_data_and_production_read_different_datasets(h100_paths):
    decisions = _decisions(h100_paths)
    assert "8,760 bars" in " ".join(decisions["limited data"].details)
    assert "43,800 bars" in " ".join(decisions["standard production"].details)
    volatile = decisions["complex / volatile symbols"]
    assert volatile.size is None
    assert "volatility" in volatile.summary


def test_every_subset_of_suites_decides_without_a_traceback(tmp_path):
    data = json.loads(RUN.read_text())
    df = load_runs([RUN])
    device = _cpu_device(df)
    # Every subset of the suites decisions read; the others (ceiling, env, peer) come along.
    suites = ["infer", "memory", "overfit", "train"]
    for mask in range(2 ** len(suites)):
        keep = {s for i, s in enumerate(suites) if mask >> i & 1} | {"ceiling", "env", "peer"}
        subset = dict(data)
        subset["benchmarks"] = [
            b for b in data["benchmarks"] if b["extra_info"]["archbench"]["suite"] in keep
        ]
        sub_df = load_runs([_save(tmp_path, "subset", subset)])
        for decision in recommend(sub_df):
            assert decision.size is not None or decision.summary.startswith("no recommendation:")
            if decision.size is None and decision.use_case.objective == "throughput":
                assert "train" in decision.summary or "per-size" in decision.summary
        evidence = evidence_from_frame(sub_df)
        for use in USE_CASES:
            assert decide(use, evidence).use_case is use
        use = USE_CASES[mask % len(USE_CASES)]  # pick is slower: one use case per subset
        result = pick(device, use_case=use.name, runs=sub_df)
        assert result.recommended is not None or "no recommendation" in result.why[0]


def test_an_explicit_precision_ranks_only_the_cases_trained_in_it(tmp_path, h100, h100_paths):
    perf = copy.deepcopy(h100[0])
    for bench in list(perf["benchmarks"]):
        record = bench["extra_info"]["archbench"]
        if record["suite"] == "train" and record["preset"] == "large":
            twin = copy.deepcopy(bench)
            fast = twin["extra_info"]["archbench"]
            fast["case"]["precision"] = "tf32"
            metric = fast["metrics"]["iteration_s"]
            metric["value"] /= 4
            metric["samples"] = [v / 4 for v in metric["samples"]]
            perf["benchmarks"].append(twin)
    df = load_runs([_save(tmp_path, "tf32", perf), h100_paths[1]])
    gib = float(df["gpu_memory_bytes"].dropna().iloc[0]) / 2**30
    device = dataclasses.replace(find_gpu(str(df["gpu"].iloc[0]), gib), memory_gib=gib)
    # Without a precision sizes are compared on a case every size measured, not each on its own
    # fastest case (issue 23: like for like): large's tf32-only case decides nothing.
    mixed = pick(device, use_case="quick", runs=df)
    compared = next(d for d in mixed.decision.details if d.startswith("compared on one case"))
    assert "precision=tf32" not in compared
    assert mixed.recommended.label != "large"
    assert pick(device, use_case="quick", runs=df, precision="tf32").recommended.label == "large"
    fp32 = pick(device, use_case="quick", runs=df, precision="fp32")
    assert fp32.recommended.label != "large"  # the tf32 cases are not fp32 figures


def test_without_intervals_no_size_can_show_skill_and_the_best_is_shown(run_df):
    # The quick CPU run has one seed and no per-bar returns: no interval for any Sharpe, so no
    # size can be shown to beat flat (issue 23: skill required); the best is information only.
    production = next(d for d in recommend(run_df) if d.use_case.name == "standard production")
    cells = evidence_from_frame(run_df).oos
    best = max(next(iter(cells.values())).items(), key=lambda kv: sum(kv[1].val_sharpe))[0]
    assert production.size is None
    assert "no size shows skill" in production.summary
    assert f"for information: {best}" in production.summary


def test_an_overfit_only_gpu_run_still_decides_and_says_memory_was_not_checked(h100_paths):
    production = _decisions([h100_paths[1]])["standard production"]
    assert any("memory not checked (memory suite missing" in line for line in production.details)
    assert any("usable rate: not checked" in line for line in production.details)


def test_seeds_that_draw_their_own_series_pool_into_one_dataset(tmp_path, h100, h100_paths):
    overfit = copy.deepcopy(h100[1])
    for record in _records(overfit):
        record["case"]["volatility"] = 0.1 + 0.01 * record["case"]["seed"]  # one per series
    path = _save(tmp_path, "vol", overfit)
    decisions = _decisions([h100_paths[0], path])
    production = decisions["standard production"]
    assert any("Student t over 3 seeds" in line for line in production.details)
    volatile = decisions["complex / volatile symbols"]
    # volatility recorded: the use case reaches its data (skill is judged there)
    assert any("the most volatile dataset measured" in line for line in volatile.details)
