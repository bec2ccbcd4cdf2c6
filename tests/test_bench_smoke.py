"""The CI smoke of the benchmark suites: `pytest bench/ --benchmark-disable` with tiny budgets.

Every case must run once, pass, and leave one valid archbench/1 record that archbench/reports/ can
read; the figures themselves are not judged here (a smoke run measures seconds of work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archbench.instrument.backends import LOGIT_TOLERANCE, compare_logits
from archbench.instrument.sweep.rebuild import rebuild_run
from archbench.instrument.sweep.runner import bench_dir
from archbench.reports.load import load_run

SUITES = {"ceiling", "env", "infer", "memory", "overfit", "train"}


def _pytest_bench(*args: str, records: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", str(bench_dir()), "-q", "-p", "no:cacheprovider"]
    if records is not None:
        command += ["--archbench-records", str(records)]
    # One thread: the smoke's seconds of tiny work are not slowed by OpenMP threads spinning
    # against whatever else shares the CI machine's cores. Its figures are never reported.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, *args],
        cwd=bench_dir().parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_every_suite_runs_once_and_writes_a_valid_record(tmp_path):
    records = tmp_path / "records.jsonl"
    done = _pytest_bench("--benchmark-disable", "--presets", "tiny", records=records)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    events = [json.loads(line) for line in records.read_text().splitlines()]
    collected = [e["count"] for e in events if e["event"] == "collected"]
    cases = [e for e in events if e["event"] == "case"]
    assert collected == [len(cases)]
    assert all(e["outcome"] == "passed" and e["record"] is not None for e in cases)
    by_suite = {e["record"]["suite"] for e in cases}
    assert SUITES <= by_suite <= SUITES | {"peer"}  # peers run when the peers extra is installed

    for event in cases:
        record = event["record"]
        assert record["status"] == "ok", (event["nodeid"], record["reason"])
        for name, metric in record["metrics"].items():
            # Unmeasurable figures say why; nothing is silently reported as zero.
            assert (metric["value"] is None) == bool(metric["unavailable"]), (event["nodeid"], name)
        assert any(m["value"] is not None for m in record["metrics"].values()), event["nodeid"]
        if record["preset"] is not None:
            assert record["preset"] == "tiny"
            assert record["hidden_dims"] == [256, 128, 64]
            if record["trunk"] == "shared":  # peers build SB3's separate trunks
                # Counted on the built net: 1,406,788 (DESIGN.md) + 3 x 256 account-state
                # inputs + 1 x 256 zero pad input.
                assert record["params"] == 1_407_812
                assert record["obs_dim"] == 5304

    overfit = next(e["record"] for e in cases if e["record"]["suite"] == "overfit")
    case = overfit["case"]
    for key in ("dataset", "bars", "bars_per_year", "seed", "train_bars", "val_bars"):
        assert case[key] is not None, key
    for key in ("val_start", "train_env_steps", "gamma", "gae_lambda", "cost_bps", "volatility"):
        assert case[key] is not None, key
    assert case["gamma"] == 0.99
    assert case["account_state"] is True
    # Each account input enters at the whole window's scale.
    assert case["account_gain"] == pytest.approx(5300**0.5)
    series = overfit["series"]
    assert (
        len(series["val_net_returns"]) == len(series["oracle_val_net_returns"]) == case["val_bars"]
    )
    for name in ("oracle_val_sharpe", "edge_capture", "val_mean_return", "val_sharpe_ci95_low"):
        assert name in overfit["metrics"], name
    # The validation-chosen model is judged once on the fold's test split; the record carries
    # its learning curve and each step size's best validation Sharpe.
    assert case["fold"] == 0
    assert case["test_start"] >= case["val_start"] + case["val_bars"]
    assert len(series["test_net_returns"]) == case["test_bars"]
    for name in (
        "test_sharpe",
        "test_sharpe_ci95_low",
        "test_oracle_sharpe",
        "chosen_learning_rate",
    ):
        assert overfit["metrics"][name]["value"] is not None, name
    points = case["curve_points"]
    for name in (
        "curve_env_steps",
        "curve_train_sharpe",
        "curve_val_sharpe",
        "curve_val_value_loss",
    ):
        assert len(series[name]) == points, name
    assert series["curve_env_steps"] == sorted(series["curve_env_steps"])
    assert series["lr_sweep_learning_rate"] == case["learning_rates"]
    assert overfit["metrics"]["chosen_learning_rate"]["value"] in case["learning_rates"]

    train = [e["record"] for e in cases if e["record"]["suite"] == "train"]
    assert {r["precision"] for r in train} == {"fp32"}  # a CPU trains in fp32 only
    for record in train:
        metrics = record["metrics"]
        assert metrics["train_env_steps_per_s"]["value"] > 0  # the whole iteration
        assert metrics["rollout_env_steps_per_s"]["value"] > 0  # the rollout alone
        assert "env_steps_per_s" not in metrics  # the old, rollout-only name is gone

    memory = next(e["record"] for e in cases if e["record"]["suite"] == "memory")
    for key in ("weights", "grads", "adam", "rollout", "params", "checkpoint_bytes"):
        assert memory["predicted"][key] > 0
    checkpoint = memory["metrics"]["checkpoint_bytes"]
    assert abs(checkpoint["value"] - checkpoint["predicted"]) < 0.01 * checkpoint["predicted"]

    run = rebuild_run(records, tmp_path / "run.json")
    frame = load_run(run)  # the reports' own schema checks
    assert set(frame["suite"]) == by_suite


def test_ids_name_presets_and_custom_sizes():
    done = _pytest_bench(
        "--collect-only", "--presets", "tiny", "--hidden-dims", "768,384,192", "--device", "cpu"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ids = done.stdout.split()
    # A CPU trains in fp32 and eagerly only; a GPU adds tf32/bf16 and the captured update.
    assert "bench/test_train_throughput.py::test_train_throughput[tiny-fp32-eager]" in ids
    assert "bench/test_train_throughput.py::test_train_throughput[768x384x192-fp32-eager]" in ids
    assert "bench/test_train_throughput.py::test_update_large_minibatch[tiny-fp32]" in ids
    assert "bench/test_memory.py::test_memory[768x384x192]" in ids
    assert "bench/test_inference_latency.py::test_inference_latency[tiny-batch1-eager]" in ids


def test_quick_profile_sweeps_training_on_tiny_and_small_only():
    done = _pytest_bench("--collect-only", "--profile", "quick", "--device", "cpu")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    train = [i for i in done.stdout.split() if "::test_train_throughput[" in i]
    memory = [i for i in done.stdout.split() if "::test_memory[" in i]
    assert [i.split("[")[1] for i in train] == ["tiny-fp32-eager]", "small-fp32-eager]"]
    assert [i.split("[")[1] for i in memory] == ["tiny]", "small]", "medium]", "large]"]


def test_a_bad_preset_is_a_usage_error_naming_it():
    done = _pytest_bench("--collect-only", "--presets", "tiny,huge")
    assert done.returncode == 4  # pytest's usage-error exit code
    assert "unknown preset 'huge'" in done.stderr


def _bench_module(monkeypatch, name: str):
    import importlib

    monkeypatch.syspath_prepend(str(bench_dir()))
    return importlib.import_module(name)


def _logits_with_ties():
    """(8, 3) eager logits: rows 0-5 decisive (margin 1.0), rows 6-7 tied to within 1e-4."""
    import torch

    decisive = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]] * 2)
    tied = torch.tensor([[0.5, 0.5 + 1e-4, -0.5], [-0.5, 0.5, 0.5 + 1e-4]])
    return torch.cat([decisive, tied])


def test_near_tied_flips_are_not_counted_against_a_backend():
    reference = _logits_with_ties()
    logits = reference.clone()
    logits[6, :2] = logits[6, :2].flip(-1)  # rounding-sized swaps of the tied pairs only
    logits[7, 1:] = logits[7, 1:].flip(-1)
    result = compare_logits(reference, logits, threshold=0.99)
    assert result.n_obs == 8
    assert result.n_decisive == 6
    assert result.action_agreement == 1.0
    assert result.action_agreement_all == 0.75
    assert result.refusal() is None
    metrics = result.metrics()
    assert metrics["decisive_obs"].value == 6
    assert metrics["action_agreement_all"].value == 0.75


def test_a_backend_that_flips_decisive_actions_is_refused():
    reference = _logits_with_ties()
    logits = reference.clone()
    logits[0] = logits[0].flip(-1)  # one clear decision reversed
    result = compare_logits(reference, logits, threshold=0.99)
    assert result.action_agreement == 5 / 6
    why = result.refusal()
    assert why.startswith("disagrees with eager: 83.3% of decisive actions (threshold 99%)")
    assert "6 of 8 observations decisive" in why
    assert "max |dlogit| = 2" in why


def test_a_backend_whose_logits_drift_is_refused_even_when_actions_agree():
    reference = _logits_with_ties()
    result = compare_logits(reference, 3.0 * reference, threshold=0.99)
    assert result.action_agreement == 1.0
    assert result.relative_logit_diff > LOGIT_TOLERANCE
    assert "logit error beyond 1 std" in result.refusal()


def test_flat_logits_leave_action_agreement_unavailable():
    import torch

    flat = torch.zeros(4, 3)
    result = compare_logits(flat, flat, threshold=0.99)
    assert result.n_decisive == 0
    assert result.action_agreement is None
    assert result.refusal() is None
    assert "no observation's eager margin" in result.metrics()["action_agreement"].unavailable


def test_a_disagreeing_backend_gets_an_unavailable_latency_with_the_reason(monkeypatch):
    """The suite's own path: a real policy, a backend that negates its logits, no timing."""
    import torch

    from archbench.instrument.record import Record
    from ppo_core.config import NetworkConfig
    from ppo_core.network import ActorCritic

    suite = _bench_module(monkeypatch, "test_inference_latency")
    network = NetworkConfig(n_features=4, lookback=8, hidden_dims=(32, 16))
    torch.manual_seed(0)
    policy = ActorCritic(network).eval()
    obs = torch.randn(64, network.obs_dim)

    def negated(x):
        return -policy(x)[0]

    agreement = suite._agreement(negated, policy, obs, batch=16)
    why = agreement.refusal()
    assert why is not None
    assert why.startswith("disagrees with eager: ")
    base = Record(
        suite="infer",
        device="cpu",
        profile="quick",
        preset=None,
        hidden_dims=network.hidden_dims,
        trunk=network.trunk,
        obs_dim=network.obs_dim,
        params=1,
        case={"batch": 16, "backend": "negated"},
    )
    record = suite._unavailable(base, 1, why, 1e-6, agreement.metrics())
    assert record.metrics["latency_p50_s"].value is None
    assert record.metrics["latency_p50_s"].unavailable == why
    assert record.metrics["latency_p99_s"].unavailable == why
    assert record.metrics["action_agreement"].value < 0.99  # recorded although not timed
    assert record.metrics["max_abs_logit_diff"].value > 0


def test_train_ceiling_after_the_case_falls_back_to_the_session_on_oom(monkeypatch):
    from types import SimpleNamespace

    suite = _bench_module(monkeypatch, "test_train_throughput")

    def out_of_memory(device, quick):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8")

    ceiling, metrics = suite.case_ceiling("cpu", 5e10, measure=out_of_memory)
    assert ceiling == 5e10
    assert metrics["matmul_ceiling_flops_per_s"].samples == (5e10,)
    after = metrics["matmul_ceiling_after_case_flops_per_s"]
    assert after.value is None
    assert "out of memory" in after.unavailable
    assert "session's ceiling is used" in after.unavailable

    def faster(device, quick):
        return SimpleNamespace(
            matmul_flops_per_s=6e10,
            matmul_flops_per_s_by_dtype={"fp32": 6e10, "tf32": 4e11, "bf16": None},
            unavailable={"bf16": "bf16 needs compute capability 8.0+"},
        )

    ceiling, metrics = suite.case_ceiling("cpu", 5e10, measure=faster)
    assert ceiling == 6e10  # the best rate seen
    assert metrics["matmul_ceiling_after_case_flops_per_s"].value == 6e10
    # A tf32 case is judged against the TF32 ceiling, never the fp32 one.
    ceiling, metrics = suite.case_ceiling("cuda:0", 3e11, measure=faster, precision="tf32")
    assert ceiling == 4e11
    # No bf16 ceiling after the case: the session's is used and the record says why.
    ceiling, metrics = suite.case_ceiling("cuda:0", 7e11, measure=faster, precision="bf16")
    assert ceiling == 7e11
    assert "compute capability" in metrics["matmul_ceiling_after_case_flops_per_s"].unavailable

    def broken(device, quick):
        raise ValueError("not an OOM")

    with pytest.raises(ValueError, match="not an OOM"):
        suite.case_ceiling("cpu", 5e10, measure=broken)


def test_memory_errors_have_one_sign_and_the_context_is_measured(monkeypatch):
    import importlib.util

    # By path: tests/test_memory.py already holds the module name test_memory in a full run.
    monkeypatch.syspath_prepend(str(bench_dir()))
    spec = importlib.util.spec_from_file_location(
        "bench_test_memory", bench_dir() / "test_memory.py"
    )
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    # (measured - predicted) / predicted: positive when the process needed more than predicted.
    assert suite.error_pct(110.0, 100.0) == pytest.approx(10.0)
    assert suite.error_pct(90.0, 100.0) == pytest.approx(-10.0)
    measured = {"memory": {"process_used_bytes": 1_500, "reserved_bytes": 700}}
    assert suite.cuda_context_of(measured) == 800  # NVML per process minus torch reserved
    assert (
        suite.cuda_context_of({"memory": {"process_used_bytes": None, "reserved_bytes": 7}}) is None
    )
    assert suite.cuda_context_of({"memory": None}) is None


def test_a_latency_below_its_floor_is_flagged_as_a_measurement_problem(monkeypatch):
    suite = _bench_module(monkeypatch, "test_inference_latency")
    assert suite.below_floor(2e-4, 1e-4, "memory bandwidth") is None
    assert suite.below_floor(None, 1e-4, "memory bandwidth") is None  # not timed
    why = suite.below_floor(0.5e-4, 1e-4, "last-level cache")
    assert why.startswith("p50 50.0 us is below its last-level cache floor 100.0 us")
