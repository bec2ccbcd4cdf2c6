"""Decisions on the four real H200 runs of docs/measurements/h200-2026-11-26, alone, in every
subset, and edited in code into the cases issue 23 names (never hand-typed numbers).
"""

from __future__ import annotations

import copy
import gzip
import itertools
import json
from pathlib import Path

import pytest

from archbench.reports.decision_types import USE_CASES
from archbench.reports.evidence import oos_cells
from archbench.reports.load import load_runs
from archbench.reports.use_cases import evidence_from_frame, recommend

H200 = Path(__file__).parents[1] / "docs" / "measurements" / "h200-2026-11-26"
NAMES = (
    "quick-cuda",
    "issue15-targets-cuda",
    "overfit-short-tiny-large",
    "captured-update-large-xlarge",
)
USE = {u.name.split(" (")[0]: u for u in USE_CASES}


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    return {n: json.loads(gzip.decompress((H200 / f"{n}.json.gz").read_bytes())) for n in NAMES}


def _save(folder: Path, name: str, data: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _decide(folder: Path, runs: dict[str, dict]) -> dict:
    paths = [_save(folder, name, data) for name, data in runs.items()]
    return {d.use_case.name.split(" (")[0]: d for d in recommend(load_runs(paths))}


def _records(data: dict, suite: str | None = None, preset: str | None = None) -> list[dict]:
    out = [b["extra_info"]["archbench"] for b in data["benchmarks"]]
    return [
        r
        for r in out
        if (suite is None or r["suite"] == suite) and (preset is None or r.get("preset") == preset)
    ]


def _figure_runs(decision) -> set[str]:
    line = next(d for d in decision.details if d.startswith("figures from: "))
    return {run.strip() for part in line.split(";") for run in part.split("(")[1][:-1].split(",")}


def test_every_subset_gives_supported_answers_that_name_their_runs(tmp_path, runs):
    for k in range(1, len(NAMES) + 1):
        for subset in itertools.combinations(NAMES, k):
            folder = tmp_path / "-".join(str(NAMES.index(n)) for n in subset)
            folder.mkdir()
            decisions = _decide(folder, {n: runs[n] for n in subset})
            for name, decision in decisions.items():
                if decision.size is None:
                    assert decision.summary.startswith("no recommendation: "), name
                    continue
                assert _figure_runs(decision) <= set(subset), (subset, name)
            quick = decisions["quick iteration"]
            if "issue15-targets-cuda" in subset:
                # tiny and small (553k, 586k captured) are never dropped for a newer run's large
                assert quick.size.label in ("tiny", "small"), subset
            if "overfit-short-tiny-large" in subset:
                # large's 7.49 does not beat buy-and-hold's per-seed Sharpe beyond the interval,
                # tiny's 3.31 is below it: no size shows skill on these bars.
                limited = decisions["limited data"]
                assert limited.size is None, subset
                assert "no size shows skill" in limited.summary
                if {"issue15-targets-cuda", "captured-update-large-xlarge"} & set(subset):
                    # 5,303-input Sharpes, 5,300-input throughput: said, not silently pooled
                    production = " ".join(decisions["standard production"].details)
                    assert "the usable-rate check reads throughput of obs_dim 5300" in production


def test_a_size_measured_in_two_runs_takes_each_case_from_the_newest(runs, tmp_path):
    paths = [_save(tmp_path, n, runs[n]) for n in NAMES]
    evidence = evidence_from_frame(load_runs(paths))
    sizes = {s.label: s for s in evidence.sizes}
    # large is measured in both perf runs: each case from the newer, nothing dropped
    assert sizes["large"].throughput is not None
    assert sizes["tiny"].throughput is not None
    assert dict(sizes["tiny"].runs)["throughput"] == "issue15-targets-cuda"
    assert dict(sizes["large"].runs)["throughput"] == "captured-update-large-xlarge"
    assert evidence.drift is not None
    assert evidence.drift > 0.05  # the same case, two runs


def test_all_flat_sizes_show_no_skill(runs, tmp_path):
    overfit = copy.deepcopy(runs["overfit-short-tiny-large"])
    for record in _records(overfit, "overfit"):
        record["metrics"]["val_sharpe"]["value"] = 0.0
        record["series"]["val_net_returns"] = [0.0] * len(record["series"]["val_net_returns"])
    decisions = _decide(tmp_path, {"flat": overfit})
    for name in ("standard production", "limited data", "complex / volatile symbols"):
        assert decisions[name].size is None, name
        assert "no size shows skill" in decisions[name].summary, name


def test_a_size_below_buy_and_hold_never_wins(runs, tmp_path):
    overfit = copy.deepcopy(runs["overfit-short-tiny-large"])
    for record in _records(overfit, "overfit"):
        metrics = record["metrics"]
        if record["preset"] == "tiny":  # buy-and-hold one Sharpe above tiny on every seed
            metrics["val_buy_and_hold_sharpe"]["value"] = metrics["val_sharpe"]["value"] + 1.0
        else:
            metrics["val_sharpe"]["value"] += 20.0  # large far above anything
    for record in _records(overfit, "overfit", "large"):  # the same bars: the same baseline
        seed = record["case"]["seed"]
        tiny = next(r for r in _records(overfit, "overfit", "tiny") if r["case"]["seed"] == seed)
        held = tiny["metrics"]["val_buy_and_hold_sharpe"]["value"]
        record["metrics"]["val_buy_and_hold_sharpe"]["value"] = held
    limited = _decide(tmp_path, {"bh": overfit})["limited data"]
    assert limited.size.label == "large"
    assert "tiny (no skill: " in " ".join(limited.details)
    assert "not beyond buy-and-hold" in " ".join(limited.details)


def test_sample_order_does_not_change_a_throughput_verdict(runs, tmp_path):
    answers = set()
    for order in ("recorded", "reversed", "rotated"):
        perf = copy.deepcopy(runs["issue15-targets-cuda"])
        tiny = {r["case"]["update"] + r["case"]["precision"]: r for r in _records(perf, "train")
                if r["preset"] == "tiny"}  # fmt: skip
        for record in _records(perf, "train", "small"):
            twin = tiny.get(record["case"]["update"] + record["case"]["precision"])
            samples = [v * 1.06 for v in twin["metrics"]["train_env_steps_per_s"]["samples"]]
            if order == "reversed":
                samples = samples[::-1]
            elif order == "rotated":
                samples = samples[2:] + samples[:2]
            record["metrics"]["train_env_steps_per_s"].update(samples=samples)
        quick = _decide(tmp_path, {order: perf})["quick iteration"]
        answers.add((quick.size.label, quick.within_noise, quick.summary))
    assert len(answers) == 1
    ((label, within, _),) = answers
    assert (label, within) == ("tiny", True)  # 6% faster is inside the run-to-run margin


def test_one_missing_seed_does_not_change_a_paired_verdict(runs, tmp_path):
    overfit = copy.deepcopy(runs["overfit-short-tiny-large"])
    for record in _records(overfit, "overfit"):
        record["metrics"]["val_sharpe"]["value"] += 5.0  # both clear flat and buy-and-hold
        record["metrics"]["val_buy_and_hold_sharpe"]["value"] = -5.0
    whole = _decide(tmp_path, {"all-seeds": overfit})["limited data"]
    overfit["benchmarks"] = [
        b
        for b in overfit["benchmarks"]
        if not (b["extra_info"]["archbench"]["preset"] == "tiny"
                and b["extra_info"]["archbench"]["case"]["seed"] == 3)
    ]  # fmt: skip
    dropped = _decide(tmp_path, {"no-tiny-seed-3": overfit})["limited data"]
    for decision, n in ((whole, 5), (dropped, 4)):
        assert decision.size.label == "large"
        assert decision.within_noise is False
        assert f"Student t over {n} paired seeds" in decision.summary


def test_a_bf16_only_oom_leaves_the_size_s_tf32_figures_in_play(runs, tmp_path):
    perf = copy.deepcopy(runs["captured-update-large-xlarge"])
    for record in _records(perf, "train", "large"):
        if record["case"]["precision"] == "bf16":
            record.update(status="oom", reason="CUDA out of memory (derived)", metrics={})
    decisions = _decide(tmp_path, {"bf16-oom": perf, "q": runs["quick-cuda"]})
    quick = decisions["quick iteration"]
    sizes = {s.label: s for s in evidence_from_frame(load_runs([tmp_path / "bf16-oom.json"])).sizes}
    assert sizes["large"].throughput is not None
    assert sizes["large"].oom is None
    assert sizes["large"].oom_cases
    assert "large" not in next((d for d in quick.details if d.startswith("excluded")), "")
    assert any("large: out of memory at train" in d for d in quick.details)


def test_mixed_workloads_are_ranked_apart_and_the_answer_says_which(runs, tmp_path):
    overfit = copy.deepcopy(runs["overfit-short-tiny-large"])
    other = copy.deepcopy(overfit)
    for record in _records(other, "overfit"):
        record["obs_dim"] = 5300
        record["case"]["gamma"] = 0.0
    paths = [_save(tmp_path, "a", overfit), _save(tmp_path, "b", other)]
    cells = oos_cells(load_runs(paths))
    assert len(cells) == 2  # one dataset per workload: never pooled
    assert {len(c["tiny"].val_sharpe) for c in cells.values()} == {5}
    limited = _decide(tmp_path, {"a": overfit, "b": other})["limited data"]
    assert any(d.startswith("not pooled: other workloads measured") for d in limited.details)
    # a recorded workload identity splits records that agree on everything else
    tagged = copy.deepcopy(overfit)
    for i, record in enumerate(_records(tagged, "overfit")):
        record["workload"] = {"obs_dim": 5303, "gamma": 0.99, "commit": "abc" if i % 2 else "def"}
    cells = oos_cells(load_runs([_save(tmp_path, "tagged", tagged)]))
    assert len(cells) == 1  # the commit is provenance, not the task


def test_pick_reads_another_gpu_s_out_of_sample_figures_and_exits_3_without_skill(
    runs, tmp_path, capsys
):
    from archbench.cli.main import main

    h100 = Path(__file__).parent / "fixtures" / "h100" / "full-overfit-partial-cuda.json.gz"
    overfit = _save(tmp_path, "h100-overfit", json.loads(gzip.decompress(h100.read_bytes())))
    perf = _save(tmp_path, "h200-perf", runs["issue15-targets-cuda"])
    args = ["pick", "--gpu", "h200", "--results", str(perf), "--results", str(overfit)]
    # The Sharpe does not depend on the GPU: the H100's overfit run decides on the H200 too,
    # and none of its sizes beats flat and buy-and-hold beyond the noise: exit status 3.
    assert main([*args, "--use-case", "production"]) == 3
    out = capsys.readouterr().out
    assert "no out-of-sample figure" not in out
    assert "no size shows skill" in out


def test_pick_keeps_a_size_whose_only_oom_was_at_another_precision(runs, tmp_path):
    from archbench.instrument.device.datasheets import find_gpu
    from archbench.reports.pick import pick

    perf = copy.deepcopy(runs["captured-update-large-xlarge"])
    for record in _records(perf, "train", "large"):
        if record["case"]["precision"] == "bf16":
            record.update(status="oom", reason="CUDA out of memory (derived)", metrics={})
    frame = load_runs([_save(tmp_path, "bf16-oom", perf)])
    device = find_gpu("h200", None)
    large = {c.label: c for c in pick(device, use_case="quick", runs=frame).candidates}["large"]
    assert large.fits  # the tf32 pick is not excluded by a bf16 OOM
    bf16 = pick(device, use_case="quick", runs=frame, precision="bf16").candidates
    assert not {c.label: c for c in bf16}["large"].fits  # at bf16 it is
