"""Options, fixtures and pytest-benchmark hooks shared by every suite in bench/.

Every case hands one archbench/1 record to the `emit` fixture; this file puts it into
`benchmark.extra_info`, streams it to --archbench-records, and keeps it in the JSON even when
the case measured nothing (OOM, unavailable backend) or the session was interrupted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from _cases import (
    BUDGETS,
    OPTIONS_KEY,
    SMOKE,
    BenchOptions,
    session_ceilings,
    sizes_for,
)

from archbench.instrument.sweep.options import SWEEP_OPTIONS, SweepOptions

_OPTIONS = OPTIONS_KEY
_STATE = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("archbench", "ppo-archbench sweep")
    # The same flags, help and parsers as `archbench sweep`
    # (archbench.instrument.sweep.options.SWEEP_OPTIONS).
    for option in SWEEP_OPTIONS:
        option.declare(group.addoption)
    group.addoption(
        "--archbench-records",
        default=None,
        metavar="PATH",
        help="append one JSON line per finished case (progress and partial results)",
    )
    group.addoption(
        "--archbench-shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (0-based); whole sizes per shard (archbench sweep --devices)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from ppo_core.device import resolve_device
    from ppo_core.errors import ArchbenchError

    try:
        parsed = SweepOptions.parse(config.getoption)
        smoke = bool(config.getoption("benchmark_disable"))
        budget = SMOKE if smoke else BUDGETS[parsed.profile]
        options = BenchOptions(
            presets=parsed.presets,
            hidden_dims=parsed.hidden_dims,
            profile=parsed.profile,
            device=resolve_device(parsed.device).device,
            data=parsed.data,
            smoke=smoke,
            budget=budget,
            lookback=parsed.lookback or BenchOptions.lookback,
            cost_bps=parsed.cost_bps,  # the user's market's cost, recorded in each case
        )
    except (ArchbenchError, ValueError) as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[_OPTIONS] = options
    records = config.getoption("archbench_records")
    config.stash[_STATE] = {
        "records": {},  # nodeid -> record dict
        "data": {},  # (spec, bars, seed) -> PreparedData
        "records_path": Path(records) if records else None,
        "interrupted": False,  # Ctrl-C: the running case will never emit
    }
    config.pluginmanager.register(_Recorder(config), "archbench-recorder")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # tryfirst: the size leads every id (test_inference_latency[tiny-batch1-eager]).
    if "size" in metafunc.fixturenames:
        suite = metafunc.module.SUITE
        sizes = sizes_for(suite, metafunc.config.stash[_OPTIONS])
        metafunc.parametrize("size", sizes, ids=[s.name for s in sizes])


@pytest.hookimpl(trylast=True)  # after -k/-m: shards split the cases that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("archbench_shard")
    if shard:
        from archbench.instrument.sweep.shards import shard_items
        from ppo_core.errors import ArchbenchError

        try:
            keep = shard_items(items, shard)
        except ArchbenchError as error:
            raise pytest.UsageError(str(error)) from None
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def options(pytestconfig: pytest.Config) -> BenchOptions:
    """The parsed bench options (profile, device, budget, ...)."""
    return pytestconfig.stash[_OPTIONS]


@pytest.fixture(scope="session")
def market(pytestconfig: pytest.Config):
    """`market(bars=None, seed=0)` -> PreparedData of --data, cached per (dataset, bars, seed)."""
    from ppo_core.data import prepare
    from ppo_core.loaders import is_generated, load_market_data

    opts = pytestconfig.stash[_OPTIONS]
    cache = pytestconfig.stash[_STATE]["data"]

    def get(bars: int | None = None, seed: int = 0):
        if not is_generated(opts.data):
            bars, seed = None, 0  # a real dataset is used whole; it has no seed
        key = (opts.data, bars, seed)
        if key not in cache:
            market = load_market_data(opts.data, bars=bars, seed=key[2])
            cache[key] = prepare(market, lookback=opts.lookback)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ceilings(options: BenchOptions):
    """This machine's measured matmul and bandwidth ceilings, measured once per session."""
    return session_ceilings(options)


@pytest.fixture(autouse=True)
def _release_device_memory(options: BenchOptions):
    """After each case, free what it left (an OOM's tensors too) so the next starts clean."""
    yield
    if options.cuda:
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


@pytest.fixture
def emit(request: pytest.FixtureRequest, benchmark: Any):
    """`emit(record)`: the case's one archbench/1 record, into extra_info and the records file."""
    state = request.config.stash[_STATE]
    nodeid = request.node.nodeid
    emitted: list[dict[str, Any]] = []

    def _emit(record: Any) -> None:
        if emitted:
            raise RuntimeError(f"{nodeid} emitted a second record; each case writes exactly one")
        data = _with_workload(_with_host_load(record), state, options_of(request)).to_dict()
        benchmark.extra_info["archbench"] = data
        state["records"][nodeid] = {
            "name": request.node.name,
            "param": getattr(getattr(request.node, "callspec", None), "id", None),
            "record": data,
        }
        emitted.append(data)

    yield _emit
    if emitted and not getattr(benchmark, "_mode", None):
        # The record says why nothing was timed (a backend that is not installed, an OOM);
        # pytest-benchmark's "fixture was not used" warning would only repeat it, as noise.
        benchmark.skipped = True
    finished = not state["interrupted"] and not getattr(request.node, "_archbench_failed", False)
    if not emitted and finished:
        pytest.fail(f"{nodeid} finished without emitting its archbench record")


# -- hooks ----------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and not report.passed:
        # A failed or skipped case has already said why; the emit check would only add noise.
        item._archbench_failed = True


class _Recorder:
    """Streams finished cases to --archbench-records and guards the JSON on Ctrl-C."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # The run's header goes first, so a sweep killed before pytest-benchmark writes its JSON
        # can still be rebuilt whole from this stream
        # (archbench.instrument.sweep.rebuild.rebuild_run).
        if self.config.stash[_STATE]["records_path"] is None:
            return
        opts = self.config.stash[_OPTIONS]
        _append_line(
            self.config,
            {
                "event": "collected",
                "count": len(session.items),
                "device": opts.device,
                "profile": opts.profile,
                "machine_info": _machine_info(self.config),
                "commit_info": _commit_info(),
            },
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # One line per finished case: after its call, or after a setup that failed or skipped.
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        entry = self.config.stash[_STATE]["records"].get(report.nodeid)
        _append_line(
            self.config,
            {
                "event": "case",
                "nodeid": report.nodeid,
                "outcome": report.outcome,
                "duration_s": report.duration,
                "record": entry["record"] if entry else None,
                "message": None if report.passed else _why(report),
            },
        )

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo) -> None:
        # pytest-benchmark registers a case's stats before its rounds run, so an interrupted
        # case has partial stats and no record. Marking it failed keeps it out of the JSON that
        # pytest-benchmark still writes at session end, which then holds the finished cases.
        self.config.stash[_STATE]["interrupted"] = True
        session = getattr(self.config, "_benchmarksession", None)
        if session is None:
            return
        records = self.config.stash[_STATE]["records"]
        for bench in session.benchmarks:
            if bench.fullname not in records or not bench.stats.data:
                bench.fixture.has_error = True


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info.update(_archbench_machine_info(config))


def _archbench_machine_info(config: pytest.Config) -> dict[str, Any]:
    from archbench.instrument.device.machine import device_info

    opts = config.stash[_OPTIONS]
    return {
        "archbench": device_info(opts.device).to_dict(),
        "archbench_profile": opts.profile,
        "archbench_smoke": opts.smoke,  # --benchmark-disable: figures are not for use
        "archbench_device": opts.device,
    }


def _machine_info(config: pytest.Config) -> dict[str, Any]:
    """The part of pytest-benchmark's machine_info the reports read, for the records stream."""
    import platform

    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "system": platform.system(),
        **_archbench_machine_info(config),
    }


def _commit_info() -> dict[str, Any]:
    try:
        from pytest_benchmark.utils import get_commit_info

        return get_commit_info()
    except Exception as error:  # the report shows the commit as unknown, with the reason
        return {"id": None, "error": f"{type(error).__name__}: {error}"}


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list, output_json: dict
) -> None:
    # Cases that measured nothing (OOM while building, an uninstalled backend) have a record but
    # no pytest-benchmark stats; they belong in the run all the same.
    from archbench.instrument.runfile import record_entry

    present = {bench["fullname"] for bench in output_json["benchmarks"]}
    for nodeid, entry in config.stash[_STATE]["records"].items():
        if nodeid not in present:
            output_json["benchmarks"].append(
                record_entry(nodeid, entry["record"], name=entry["name"], param=entry["param"])
            )


def _append_line(config: pytest.Config, data: dict[str, Any]) -> None:
    path = config.stash[_STATE]["records_path"]
    if path is None:
        return
    data = {"time": time.time(), **data}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(data, default=str) + "\n")
        handle.flush()


def _why(report: pytest.TestReport) -> str:
    """One readable line: a skip's reason (its longrepr is a (path, line, reason) tuple), or
    the last line of a failure."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return _short(report.longreprtext)


def _short(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def options_of(request: pytest.FixtureRequest) -> BenchOptions:
    return request.config.stash[_OPTIONS]


def _with_workload(record: Any, state: dict, options: BenchOptions) -> Any:
    """The record plus its workload identity (issue 23): what task it measured, so reports
    never pool two tasks, and the commit and torch threads it was measured at."""
    import torch

    from ppo_core.config import EnvConfig, NetworkConfig, PPOConfig
    from ppo_core.loaders import is_generated
    from ppo_core.synthetic import DEFAULT_SIGNAL_STRENGTH

    net, case = NetworkConfig(), record.case
    observation = {
        "market_dim": net.n_features * net.lookback,
        "account_state": case.get("account_state", net.account_state),
        "scale_account": net.scale_account,
        "input_multiple": net.input_multiple,
        "obs_dim": record.obs_dim,
    }
    if is_generated(options.data):
        market = {"name": options.data, "seed": case.get("seed", 0), "bars": case.get("bars"),
                  "signal": case.get("signal_strength", DEFAULT_SIGNAL_STRENGTH)}  # fmt: skip
    else:
        market = {"name": options.data, "sha256": _file_sha256(options.data, state)}
    budget = {k: case[k] for k in ("timesteps", "train_env_steps") if k in case}
    if "commit" not in state:
        state["commit"] = _commit_info().get("id")
    workload = {
        "observation": observation,
        "market": market,
        "gamma": case.get("gamma", PPOConfig.gamma),
        "cost_bps": case.get("cost_bps", EnvConfig.cost_bps),
        "budget": budget or {"iterations": options.budget.train_iterations},
        "commit": state["commit"],
        "torch_threads": torch.get_num_threads(),
    }
    return record.replace(workload=workload)


def _file_sha256(data: str, state: dict) -> str | None:
    """The data file's hash (once per session); None for a named dataset with no file here."""
    import hashlib

    hashes = state.setdefault("data_sha256", {})
    if data not in hashes:
        path = Path(data)
        hashes[data] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return hashes[data]


def _with_host_load(record: Any) -> Any:
    """The record plus the host's 1-minute load per core when it was written: CPU figures
    taken while other work held the cores (load per core near or above 1) are not comparable."""
    import os

    from archbench.instrument.record import Metric

    try:
        load = os.getloadavg()[0]
    except OSError:
        metric = Metric.unavailable_because("os.getloadavg is not available here", "ratio")
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        metric = Metric.measured(load / (cores or 1), "ratio", None)
    return record.replace(metrics={**record.metrics, "host_load_per_core": metric})
