"""The pytest plugin every sweep loads into its pytest (`-p archbench.instrument.sweep.plugin`):
which cases run (a shard's share, minus those an earlier attempt finished), and what runs now.

It appends two events to the suites' records stream (--archbench-records): `plan`, the node
ids this pytest will run (so an interrupted run can name the cases it never ran), and `start`
before each case (so the driver knows what is running and how long). A case past
--archbench-case-timeout fails with that reason and the session goes on.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CASE_TIMEOUT_S", "CaseTimeout"]

CASE_TIMEOUT_S = {"quick": 900.0, "full": 7200.0}
"""Default per-case timeout by profile: several times the longest case seen at that profile's
budget (a quick overfitting case on a 2-core CPU, a full one on a CPU), so only a hang hits it."""


_COLLECTED = pytest.StashKey[list[str]]()


class CaseTimeout(Exception):
    """A case ran past --archbench-case-timeout."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("archbench-sweep", "set by archbench sweep")
    group.addoption(
        "--archbench-split",
        default=None,
        metavar="I/N",
        help="run only shard I of N (0-based), cases balanced by their cost",
    )
    group.addoption(
        "--archbench-skip",
        default=None,
        metavar="PATH",
        help="a JSON list of node ids not to run (finished by an earlier attempt of this shard)",
    )
    group.addoption(
        "--archbench-case-timeout",
        default=None,
        type=float,
        metavar="S",
        help="fail a case that runs longer than S seconds (0: no limit)",
    )


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: a shard splits what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from archbench.instrument.sweep.shards import shard_items
    from ppo_core.errors import ArchbenchError

    keep = list(items)
    try:
        if config.getoption("archbench_split"):
            keep = shard_items(keep, config.getoption("archbench_split"))
        skip_path = config.getoption("archbench_skip")
        if skip_path:  # after the split, so a retried shard keeps its own share
            done = set(json.loads(Path(skip_path).read_text(encoding="utf-8")))
            keep = [item for item in keep if item.nodeid not in done]
    except (ArchbenchError, OSError, ValueError) as error:
        raise pytest.UsageError(f"archbench sweep plugin: {error}") from None
    config.stash[_COLLECTED] = [item.nodeid for item in items]
    if len(keep) != len(items):
        kept = {id(item) for item in keep}
        config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    planned = [item.nodeid for item in session.items]
    # Every case this node collected, before the split: shards on nodes that collect different
    # cases (an extra missing on one) would otherwise drop some without a word.
    collected = session.config.stash.get(_COLLECTED, planned)
    _append(session.config, {"event": "plan", "nodeids": planned, "collected": collected})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _append(item.config, {"event": "start", "nodeid": item.nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    limit = _case_timeout(item.config)
    armed = limit > 0 and hasattr(signal, "setitimer")
    armed = armed and threading.current_thread() is threading.main_thread()
    if armed:

        def expire(_signum: int, _frame: Any) -> None:
            raise CaseTimeout(
                f"case timed out after {limit:.0f} s (archbench sweep --case-timeout)"
            )

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _case_timeout(config: pytest.Config) -> float:
    value = config.getoption("archbench_case_timeout")
    if value is None:
        profile = str(config.getoption("profile", "quick") or "quick").lower()
        return CASE_TIMEOUT_S.get(profile, CASE_TIMEOUT_S["quick"])
    return float(value)


def _append(config: pytest.Config, event: dict[str, Any]) -> None:
    path = config.getoption("archbench_records", None)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": time.time(), **event}) + "\n")
