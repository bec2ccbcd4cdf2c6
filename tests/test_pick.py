"""`pick`: fit under a card's memory, measured vs extrapolated vs roofline figures, tier defaults.

The results file these tests read is made here by a real tiny measurement on this CPU (a few
PPO iterations of the tiny preset, batch-1 latency, the machine's ceilings), written in
pytest-benchmark's JSON layout with archbench/1 records.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from archbench.cli.main import main
from archbench.instrument.device.datasheets import cpu_spec, custom_spec, find_gpu
from archbench.instrument.device.tiers import config_for_gpu, gpu_tier
from archbench.reports.decision_types import USE_CASES
from archbench.reports.load import load_runs
from archbench.reports.pick import DEFAULT_SAFETY_MARGIN, pick, resolve_use_case
from ppo_core.config import NetworkConfig
from ppo_core.errors import ConfigError
from ppo_core.presets import PRESETS
from ppo_core.sizing import CUDA_CONTEXT_BYTES, estimate

TINY = PRESETS["tiny"]
FIXTURES = Path(__file__).parent / "fixtures"


RATES = ("env_steps_per_s", "update_samples_per_s")
_STATS = {"env_steps_per_s": "rollout_env_steps_per_s"}


def _median_metric(samples: list[float]):
    from archbench.instrument.record import Metric

    return Metric.measured(statistics.median(samples), "1/s", "higher", samples)


def _bench(name: str, record, seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    stats = {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
        "median": ordered[len(ordered) // 2],
        "rounds": len(ordered),
        "data": list(seconds),
    }
    return {
        "group": record.suite,
        "name": name,
        "fullname": f"tests/test_pick.py::{name}",
        "params": None,
        "stats": stats,
        "extra_info": {"archbench": record.to_dict()},
    }


def _small_ceilings():
    """This CPU's fp32 GEMM and copy rates, measured as machine.measure_ceilings does but on
    smaller buffers (1024^2 GEMM, 64 MiB copy) so the fixture takes a second, not fifteen."""
    import torch

    from archbench.instrument.device.machine import Ceilings
    from archbench.instrument.timing import time_callable

    n, n_bytes = 1024, 64 * 2**20
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    matmul = [2.0 * n**3 / s for s in time_callable(lambda: torch.mm(a, b, out=c), repeats=5,
                                                   warmup=1)]  # fmt: skip
    src = torch.ones(n_bytes // 4)
    dst = torch.zeros_like(src)
    copy = [2.0 * n_bytes / s for s in time_callable(lambda: dst.copy_(src), repeats=5, warmup=1)]
    return Ceilings(
        device="cpu",
        matmul_flops_per_s=statistics.median(matmul),
        matmul_flops_per_s_by_dtype={
            "fp32": statistics.median(matmul),
            "tf32": None,
            "bf16": None,
            "fp16": None,
        },
        bandwidth_bytes_per_s=statistics.median(copy),
        samples={"matmul_fp32": tuple(matmul), "bandwidth": tuple(copy)},
        unavailable={"tf32": "CPU", "bf16": "not measured here", "fp16": "not measured here"},
        matmul_n=n,
        copy_bytes=n_bytes,
        threads=torch.get_num_threads(),
    )


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """(path of a real results JSON from this CPU, the ceilings measured, the CPU model)."""
    import torch

    from archbench.instrument.device.machine import device_info
    from archbench.instrument.record import Metric, Record
    from archbench.instrument.timing import Latency, time_callable
    from ppo_core.config import EnvConfig, PPOConfig
    from ppo_core.data import min_bars, prepare
    from ppo_core.env import TradingEnv
    from ppo_core.synthetic import make_synthetic
    from ppo_core.trainer import PPOTrainer

    torch.manual_seed(0)
    network = NetworkConfig(hidden_dims=TINY)  # the reference 53 x 100 input
    config = PPOConfig(
        total_timesteps=3 * 4 * 16,
        n_envs=4,
        n_steps=16,
        n_epochs=1,
        minibatch_size=32,
        device="cpu",
        network=network,
        env=EnvConfig(episode_bars=32),
    )
    data = prepare(make_synthetic(bars=min_bars(100) + 200, seed=0), lookback=100)
    trainer = PPOTrainer(TradingEnv(data, "train", config.n_envs, config.env, seed=0), config)
    stats = [trainer.train_iteration() for _ in range(3)][1:]  # the first one warms up
    case = {"n_envs": config.n_envs, "n_steps": config.n_steps, "minibatch": 32}
    train = Record(
        suite="train",
        device="cpu",
        profile="quick",
        preset="tiny",
        hidden_dims=TINY,
        trunk="shared",
        obs_dim=network.obs_dim,
        params=sum(p.numel() for p in trainer.policy.parameters()),
        case=case,
        # The trainer calls the rollout-only rate rollout_env_steps_per_s; records before
        # issue 15 (which pick reads here) called it env_steps_per_s.
        metrics={
            name: _median_metric([getattr(s, _STATS.get(name, name)) for s in stats])
            for name in RATES
        },
    )
    policy = trainer.policy.eval()
    obs = torch.randn(1, network.obs_dim)
    with torch.no_grad():
        seconds = time_callable(lambda: policy(obs), repeats=30, warmup=5)
    latency = Latency.from_samples(seconds)
    infer = Record(
        suite="infer",
        device="cpu",
        profile="quick",
        preset="tiny",
        hidden_dims=TINY,
        trunk="shared",
        obs_dim=network.obs_dim,
        case={"batch": 1, "backend": "eager"},
        metrics={
            "latency_p50_s": Metric.measured(latency.median, "s", "lower", seconds),
            "latency_p99_s": Metric.measured(latency.p99, "s", "lower", seconds),
        },
    )
    ceilings = _small_ceilings()
    ceiling = Record(suite="ceiling", device="cpu", profile="quick", metrics=ceilings.to_metrics())
    info = device_info("cpu")
    document = {
        "machine_info": {
            "node": platform.node(),
            "archbench": info.to_dict(),
            "archbench_device": "cpu",
            "archbench_profile": "quick",
        },
        "commit_info": {},
        "benchmarks": [
            _bench("test_train[tiny]", train, [s.rollout_s + s.update_s for s in stats]),
            _bench("test_infer[tiny-1-eager]", infer, seconds),
            _bench("test_ceiling", ceiling, [1.0 / r for r in ceilings.samples["matmul_fp32"]]),
        ],
        "datetime": datetime.now(timezone.utc).isoformat(),
        "version": "5.1.0",
    }
    path = tmp_path_factory.mktemp("results") / "cpu-run.json"
    path.write_text(json.dumps(document))
    return path, ceilings, info.cpu_model


def _this_cpu(cpu_run):
    _, ceilings, model = cpu_run
    return cpu_spec(ceilings, model, 64 * 2**30)


def _by_label(result):
    return {c.label: c for c in result.candidates}


@pytest.mark.parametrize(
    ("card", "dims"),
    [
        ("H100", (1024, 512, 256)),
        ("A100-80GB", (1024, 512, 256)),
        ("A100-40GB", (512, 256, 128)),
        ("RTX 3090", (512, 256, 128)),
        ("RTX 4090", (512, 256, 128)),
        ("T4", (256, 128, 64)),
    ],
)
def test_without_results_or_flags_the_tier_defaults_come_out(card, dims):
    device = find_gpu(card)
    result = pick(device)
    tier = gpu_tier(device.name, device.memory_gib)
    expected = config_for_gpu(device.name, device.memory_gib)
    assert result.recommended.hidden_dims == dims == expected.network.hidden_dims
    assert (result.n_envs, result.minibatch) == (tier.n_envs, tier.minibatch_size)
    assert (result.n_envs, result.minibatch) == (expected.n_envs, expected.minibatch_size)
    for c in result.candidates:
        assert c.update_samples_per_s.basis == "roofline estimate"
        assert c.latency_p50_s.basis == "floor"
        assert c.overfit_risk is None


def test_a_16gb_card_with_a_huge_rollout_excludes_what_does_not_fit():
    device = find_gpu("Tesla T4")
    n_envs, n_steps = 1024, 512
    minibatch = n_envs * n_steps  # one full-batch minibatch: activations grow with the width
    result = pick(device, n_envs=n_envs, n_steps=n_steps, minibatch=minibatch)
    budget = device.memory_gib * 2**30 * (1 - DEFAULT_SAFETY_MARGIN)
    fits = {}
    for c in result.candidates:
        size = estimate(NetworkConfig(hidden_dims=c.hidden_dims), n_envs, n_steps, minibatch)
        assert c.need_bytes == size.train_bytes + CUDA_CONTEXT_BYTES
        fits[c.label] = c.need_bytes <= budget
        assert c.fits is fits[c.label]
        assert ("does not fit" in c.excluded) is not fits[c.label]
    assert any(fits.values())
    assert not all(fits.values())
    assert result.recommended.fits
    # An 80 GB card fits strictly more of the same sizes.
    roomy = pick(find_gpu("H100"), n_envs=n_envs, n_steps=n_steps, minibatch=minibatch)
    assert sum(c.fits for c in roomy.candidates) > sum(fits.values())


def test_results_from_this_device_turn_estimates_into_measurements(cpu_run):
    path, _, _ = cpu_run
    device = _this_cpu(cpu_run)
    before = _by_label(pick(device))
    assert before["tiny"].update_samples_per_s.basis == "roofline estimate"
    assert before["tiny"].latency_p50_s.basis == "floor"

    runs = load_runs([path])
    # The run's own settings (tests/test_pick.py cpu_run: n_envs 4, n_steps 16, minibatch 32).
    result = pick(device, runs=runs, n_envs=4, n_steps=16, minibatch=32)
    tiny = _by_label(result)["tiny"]
    recorded = runs[(runs["suite"] == "train") & (runs["metric"] == "update_samples_per_s")]
    assert tiny.update_samples_per_s.basis == "measured"
    assert tiny.update_samples_per_s.value == recorded["value"].iloc[0]
    assert tiny.env_steps_per_s.basis == "measured"
    assert tiny.latency_p50_s.basis == tiny.latency_p99_s.basis == "measured"
    assert tiny.latency_p99_s.value >= tiny.latency_p50_s.value
    # Sizes this run did not measure are scaled from tiny on the same device, by train FLOPs.
    small = _by_label(result)["small"]
    assert small.update_samples_per_s.basis == "extrapolated"
    flops = {k: estimate(NetworkConfig(hidden_dims=PRESETS[k])).train_flops_per_sample
             for k in ("tiny", "small")}  # fmt: skip
    assert small.update_samples_per_s.value == pytest.approx(
        tiny.update_samples_per_s.value * flops["tiny"] / flops["small"]
    )
    assert any("same device" in note for note in result.notes)


def test_same_size_at_other_settings_is_not_labelled_measured(cpu_run):
    path, _, _ = cpu_run
    runs = load_runs([path])
    result = pick(_this_cpu(cpu_run), runs=runs, n_envs=8, n_steps=16, minibatch=64)
    figure = _by_label(result)["tiny"].update_samples_per_s
    recorded = runs[(runs["suite"] == "train") & (runs["metric"] == "update_samples_per_s")]
    assert figure.basis == "measured (other settings)"
    assert figure.value == recorded["value"].iloc[0]  # the real figure, not rescaled
    assert "measured at n_envs=4, minibatch=32" in figure.note
    assert "asked for n_envs=8, minibatch=64" in figure.note


def test_results_from_another_device_stay_extrapolated(cpu_run):
    path, ceilings, _ = cpu_run
    device = find_gpu("T4")
    runs = load_runs([path])
    result = pick(device, runs=runs)
    tiny = _by_label(result)["tiny"]
    measured = runs[(runs["suite"] == "train") & (runs["metric"] == "update_samples_per_s")]
    assert tiny.update_samples_per_s.basis == "extrapolated"
    ratio = device.matmul_flops_per_s("fp32") / ceilings.matmul_flops_per_s
    assert tiny.update_samples_per_s.value == pytest.approx(measured["value"].iloc[0] * ratio)
    env = runs[(runs["suite"] == "train") & (runs["metric"] == "env_steps_per_s")]
    bw_ratio = device.bandwidth_bytes_per_s / ceilings.bandwidth_bytes_per_s
    assert tiny.env_steps_per_s.value == pytest.approx(env["value"].iloc[0] * bw_ratio)
    # Latency is never carried across devices: the T4's own bandwidth floor is shown.
    assert tiny.latency_p50_s.basis == "floor"
    assert result.notes
    assert "used only to extrapolate" in result.notes[0]


def test_measured_overfit_gaps_replace_the_heuristic():
    # A real quick run (tests/make_report_fixtures.py): the overfit suite at its shortest length.
    runs = load_runs([FIXTURES / "run-cpu-quick.json"])
    overfit = runs[(runs["suite"] == "overfit") & (runs["metric"] == "sharpe_gap")]
    bars = int(overfit["case_bars"].min())
    device = find_gpu("H100")
    heuristic = _by_label(pick(device, data_bars=bars))["tiny"]
    assert heuristic.overfit.basis == "heuristic"
    tiny_params = estimate(NetworkConfig(hidden_dims=PRESETS["tiny"])).params
    assert heuristic.overfit.value == pytest.approx(tiny_params / bars)
    tiny = _by_label(pick(device, runs=runs, data_bars=bars))["tiny"]
    gaps = overfit[(overfit["preset"] == "tiny") & (overfit["case_bars"] == bars)]["value"]
    assert len(gaps)
    assert tiny.overfit.basis == "measured"
    assert tiny.overfit.value == pytest.approx(gaps.mean())
    assert tiny.overfit_risk is None  # shown, never decisive: the engine ranks on val Sharpe


def test_latency_budget_excludes_sizes_whose_floor_is_over_it():
    device = find_gpu("T4")
    result = pick(device, use_case="live", latency_budget_s=2e-4)
    assert result.use_case == "live trading"
    for c in result.candidates:
        floor = estimate(NetworkConfig(hidden_dims=c.hidden_dims)).weight_bytes["fp32"] / (
            device.bandwidth_bytes_per_s
        )
        assert c.latency_p50_s.value == pytest.approx(floor)
        assert any("latency" in why for why in c.excluded) is (floor > 2e-4)
    # No results: the tier table's prior, among the sizes whose floor is inside the budget.
    assert result.why[0].startswith("no measurements: the tier table's prior")
    assert not result.recommended.excluded
    assert result.decision is None


def test_a_card_given_only_by_memory_gets_the_memory_tier_and_no_invented_rates():
    result = pick(custom_spec("GPU with 24 GiB", 24, "--vram-gb"))
    assert result.recommended.hidden_dims == (512, 256, 128)
    assert result.tier.name == "20-40gb"
    tiny = _by_label(result)["tiny"]
    assert tiny.update_samples_per_s.value is None
    assert tiny.update_samples_per_s.basis == "unavailable"
    assert "--gpu" in tiny.update_samples_per_s.note


def test_use_cases_are_the_reports_use_cases():
    from ppo_core.presets import TRAINING_MODES

    assert all(u.training_mode in TRAINING_MODES for u in USE_CASES)
    assert resolve_use_case("limited-data") == "limited data (< 1 year of bars)"
    assert resolve_use_case("Quick Iteration") == "quick iteration"
    assert resolve_use_case(None) == "standard production"
    with pytest.raises(ConfigError, match="unknown use case 'scalping'"):
        resolve_use_case("scalping")
    extended = pick(find_gpu("H100"), use_case="extended")
    assert (extended.training_mode, extended.n_steps) == ("extended", 512)
    quick = pick(find_gpu("H100"), use_case="quick")
    # A roofline is a model, not a measurement: without results the tier table decides.
    assert quick.why[0].startswith("no measurements: the tier table's prior")


def test_extra_candidates_join_the_table_in_parameter_order():
    result = pick(find_gpu("A10G"), extra_dims=[(768, 384, 192)])
    labels = [c.label for c in result.candidates]
    assert labels.index("768x384x192") == labels.index("small") + 1
    params = [c.params for c in result.candidates]
    assert params == sorted(params)


def test_cli_json_parses_and_unknown_names_list_the_known_ones(capsys):
    assert main(["pick", "--gpu", "NVIDIA A100-SXM4-80GB", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recommended"]["hidden_dims"] == [1024, 512, 256]
    assert data["device"]["name"] == "A100-80GB"
    assert len(data["candidates"]) == len(PRESETS)
    assert all(math.isfinite(c["params"]) for c in data["candidates"])

    assert main(["pick", "--gpu", "Voodoo 5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown GPU 'Voodoo 5'" in err
    assert "H100-80GB" in err
    assert "--vram-gb" in err
    assert len(err.splitlines()) == 1


def test_cli_names_a_malformed_results_file_in_one_line(capsys):
    bad = FIXTURES / "not-benchmark.json"
    assert main(["pick", "--gpu", "t4", "--results", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err
    assert len(err.splitlines()) == 1


def test_cli_table_shows_the_recommendation_and_every_candidate(capsys):
    assert main(["pick", "--gpu", "rtx4090", "--data-bars", "20000"]) == 0
    out = capsys.readouterr().out
    assert "recommended: hidden_dims 512,256,128" in out
    for name in PRESETS:
        assert name in out
    assert "roofline" in out
    assert "heuristic" in out
    assert "safety margin" in out


def test_a_measured_out_of_memory_on_this_device_overrides_the_sizing_model():
    # all-oom.json: a real quick CPU run (tests/make_report_fixtures.py) with every per-size case
    # then marked out of memory; a CPU target of the same model reads them as this device's.
    path = FIXTURES / "all-oom.json"
    model = json.loads(path.read_text())["machine_info"]["archbench"]["cpu_model"]
    device = cpu_spec(_small_ceilings(), model, 64 * 2**30)
    result = pick(device, runs=load_runs([path]))
    by_label = _by_label(result)
    for label in ("tiny", "small"):
        assert not by_label[label].fits
        assert "out of memory in run all-oom" in by_label[label].fit_note
    assert by_label["medium"].fits  # not measured there: the sizing model decides
    # Every measured case went OOM and the rest were never measured: nothing is recommended,
    # in one line that says which suite's figures are missing.
    assert result.recommended is None
    assert "every overfit case was OOM or failed" in result.why[0]


def test_roofline_estimates_follow_their_stated_formula():
    from archbench.reports.estimates import (
        ASSUMED_MATMUL_EFFICIENCY,
        ASSUMED_OP_OVERHEAD_S,
        UPDATE_BYTES_PER_PARAM,
    )

    device = find_gpu("T4")
    result = pick(device)
    medium = _by_label(result)["medium"]
    size = estimate(NetworkConfig(hidden_dims=PRESETS["medium"]), result.n_envs,
                    result.n_steps, result.minibatch)  # fmt: skip
    achievable = ASSUMED_MATMUL_EFFICIENCY * 8.1e12
    ops = 2 * 3 + 6  # a kernel per Linear and per activation: 3 trunk layers, 2 two-layer heads
    update_s = max(
        result.minibatch * size.train_flops_per_sample / achievable,
        UPDATE_BYTES_PER_PARAM * size.params / 320e9,
    )
    update_s += 3 * ops * ASSUMED_OP_OVERHEAD_S
    assert medium.update_samples_per_s.value == pytest.approx(result.minibatch / update_s)
    step_s = max(size.weight_bytes["fp32"] / 320e9,
                 result.n_envs * size.forward_flops_per_sample / achievable)  # fmt: skip
    step_s += ops * ASSUMED_OP_OVERHEAD_S
    assert medium.env_steps_per_s.value == pytest.approx(result.n_envs / step_s)
    per_env_step = 1 / medium.env_steps_per_s.value + 10 / medium.update_samples_per_s.value
    assert medium.train_steps_per_s.value == pytest.approx(1 / per_env_step)
    assert "50% of the fp32 peak" in medium.update_samples_per_s.note


def test_overfit_gaps_pool_seeds_within_one_dataset_only():
    runs = load_runs([FIXTURES / "run-cpu-quick.json"])
    gap_rows = (runs["suite"] == "overfit") & (runs["metric"] == "sharpe_gap")
    other = runs[gap_rows].assign(case_dataset="other-market", value=runs[gap_rows]["value"] + 100)
    both = pd.concat([runs, other], ignore_index=True)
    bars = int(runs[gap_rows]["case_bars"].min())
    tiny = _by_label(pick(find_gpu("H100"), runs=both, data_bars=bars))["tiny"]
    own = runs[gap_rows & (runs["preset"] == "tiny") & (runs["case_bars"] == bars)]["value"]
    candidates = {own.mean(), own.mean() + 100}
    assert tiny.overfit.value in candidates  # one dataset's seeds, never a blend of the two


@pytest.mark.parametrize(
    ("widths", "layout"),
    [
        ([5300, 5300], (False, 1)),  # before the account state (tests/fixtures/h100)
        ([5303], (True, 1)),  # with the account state, before the padding
        ([5304], (True, 8)),  # today's default
        ([5300, 5304], (True, 8)),  # mixed: the default
    ],
)
def test_sizes_follow_the_observation_layout_the_results_were_measured_in(widths, layout):
    """Records carry obs_dim, not input_multiple: sizes for old runs (5,300 or 5,303 inputs,
    no padding) must be computed in that layout or no measured row would match them."""
    from archbench.reports.pick import _network_of

    network = _network_of(pd.DataFrame({"obs_dim": [*widths, None]}))
    assert (network.account_state, network.input_multiple) == layout
    assert network.obs_dim == max(widths)


def test_h100_results_measured_before_the_padding_still_count_as_measured(tmp_path):
    """tests/fixtures/h100 was measured on 5,300-wide observations and its records say nothing
    of input_multiple: pick must still read their figures as measurements on an H100."""
    import gzip

    path = tmp_path / "full-perf-cuda.json"
    path.write_bytes(gzip.decompress((FIXTURES / "h100" / "full-perf-cuda.json.gz").read_bytes()))
    assert "input_multiple" not in path.read_text()
    runs = load_runs([path])
    result = pick(find_gpu("H100"), runs=runs)
    assert "measured" in _by_label(result)["medium"].update_samples_per_s.basis


# -- what pick prints says what it did (issue 25's pick bullets, issue 23's one figure) ----------

H200 = Path(__file__).parents[1] / "docs" / "measurements" / "h200-2026-11-26"


@pytest.fixture(scope="module")
def h200_perf(tmp_path_factory):
    """The three H200 perf runs (one observation layout: 5,300 inputs), unzipped."""
    import gzip

    folder = tmp_path_factory.mktemp("h200")
    paths = []
    for name in ("quick-cuda", "issue15-targets-cuda", "captured-update-large-xlarge"):
        path = folder / f"{name}.json"
        path.write_bytes(gzip.decompress((H200 / f"{name}.json.gz").read_bytes()))
        paths.append(path)
    return load_runs(paths)


def test_pick_prints_one_figure_per_size_in_one_unit(h200_perf, capsys):
    from archbench.cli.tables import print_pick

    device = find_gpu("h200", None)
    result = pick(device, use_case="quick iteration", runs=h200_perf)
    chosen = result.decision.size
    why = "\n".join(result.why)
    assert "given budget" not in why  # no budget was given: the device's memory is
    assert " GB" not in why  # GiB beside GiB, never GB
    # the training line is the engine's figure on the case it compared, not another case's
    training = next(line for line in result.why if line.startswith("training "))
    assert f"{chosen.throughput.value:,.0f} env steps/s" in training
    assert "update=captured" in training or "update=eager" in training
    # the recommended settings are the measured case's
    assert (result.n_envs, result.minibatch) == (1024, 4096)
    assert "the case measured on this device" in why
    print_pick(result)
    out = capsys.readouterr().out
    assert "0.5 GB" not in out  # the footer's CUDA context is the sizing model's
    assert f"{CUDA_CONTEXT_BYTES / 2**30:.2f} GiB CUDA context" in out


def test_pick_latency_is_the_backend_the_engine_reads(h200_perf):
    from archbench.reports.use_cases import evidence_from_frame

    device = find_gpu("h200", None)
    result = pick(device, use_case="live trading", runs=h200_perf)
    sizes = {s.label: s for s in evidence_from_frame(h200_perf).sizes}
    compared = 0
    for candidate in result.candidates:
        size = sizes.get(candidate.label)
        if size is None or size.latency is None or candidate.latency_p99_s.basis != "measured":
            continue
        assert candidate.latency_p99_s.value == pytest.approx(size.latency.value)
        assert f"{size.latency_note} backend" in candidate.latency_p99_s.note
        compared += 1
    assert compared >= 2  # medium and large were measured at batch 1 on this H200
