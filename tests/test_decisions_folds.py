"""Decisions on the overfitting suite's walk-forward folds: the validation-chosen model's test
figure decides, sizes pair on (seed, fold), and skill means beating the trend rule too.

Built from a real quick run (`archbench sweep --profile quick -- -k overfit`, 2-core CPU: tiny
and small, short and long data, seed 0, folds 0 and 1), with its per-bar return series left out
to keep the fixture small; extra seeds are copies of it relabelled, as test_use_cases does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from archbench.reports.load import load_runs
from archbench.reports.use_cases import evidence_from_frame, recommend

FIXTURES = Path(__file__).parent / "fixtures"
FOLDS = FIXTURES / "overfit-folds-quick.json"
OLD = FIXTURES / "run-cpu-quick.json"


def _with_seeds(data: dict, seeds: int, edit=None) -> dict:
    """The run with each record copied to seeds 0..seeds-1; `edit(record, seed)` adjusts one."""
    out = copy.deepcopy(data)
    benches = []
    for bench in data["benchmarks"]:
        for seed in range(seeds):
            twin = copy.deepcopy(bench)
            record = twin["extra_info"]["archbench"]
            record["case"]["seed"] = seed
            if edit is not None:
                edit(record, seed)
            benches.append(twin)
    out["benchmarks"] = benches
    return out


def _save(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _by_name(paths) -> dict:
    return {d.use_case.name.split(" (")[0]: d for d in recommend(load_runs(paths))}


def test_records_with_folds_are_judged_on_the_test_split_paired_by_seed_and_fold():
    evidence = evidence_from_frame(load_runs([FOLDS]))
    assert evidence.oos, "the fixture's overfit records give no out-of-sample evidence"
    for dataset, cells in evidence.oos.items():
        assert dataset.split == "test"
        assert "; test;" in dataset.text()
        for cell in cells.values():
            # One entry per (seed, fold); the figure is the record's test_sharpe.
            assert sorted(cell.seeds) == [(0, 0), (0, 1)]
            assert all(t is not None for t in cell.trend)
    data = json.loads(FOLDS.read_text())
    tests = {
        (r["preset"], r["case"]["length"], r["case"]["fold"]): r["metrics"]["test_sharpe"]["value"]
        for r in (b["extra_info"]["archbench"] for b in data["benchmarks"])
    }
    long = next(d for d in evidence.oos if d.bars == max(x.bars for x in evidence.oos))
    tiny = evidence.oos[long]["tiny"]
    assert tiny.val_sharpe == pytest.approx([tests["tiny", "long", 0], tests["tiny", "long", 1]])


def test_records_without_folds_are_still_judged_on_validation():
    evidence = evidence_from_frame(load_runs([OLD]))
    assert evidence.oos
    assert {d.split for d in evidence.oos} == {"validation"}


def _skilled_small(record: dict, seed: int) -> None:
    """small: a clear test Sharpe (+20, a little spread) over flat and buy-and-hold."""
    metrics = record["metrics"]
    if record["preset"] == "small":
        metrics["test_sharpe"]["value"] = 20.0 + 0.5 * seed
    metrics["test_buy_and_hold_sharpe"]["value"] = 0.0
    metrics["test_trend_sharpe"]["value"] = 0.0


def test_a_size_that_beats_the_baselines_shows_skill(tmp_path):
    path = _save(tmp_path, "skilled", _with_seeds(json.loads(FOLDS.read_text()), 4, _skilled_small))
    production = _by_name([path])["standard production"]
    assert production.skill_shown is True, production.summary
    assert production.size.label == "small"
    assert any("the trend rule" in line for line in production.details)


def test_a_size_below_the_trend_rule_shows_no_skill(tmp_path):
    def trend_wins(record: dict, seed: int) -> None:
        _skilled_small(record, seed)
        record["metrics"]["test_trend_sharpe"]["value"] = 30.0  # the trend rule does better

    path = _save(tmp_path, "trend", _with_seeds(json.loads(FOLDS.read_text()), 4, trend_wins))
    production = _by_name([path])["standard production"]
    assert production.skill_shown is False
    assert production.size is None
    assert "no size shows skill" in production.summary
