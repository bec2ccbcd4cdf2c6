"""Stopping a sweep cleanly: SIGINT, SIGTERM and SIGHUP noted rather than fatal, a stop sent
to pytest's whole process group, and pytest told to stop if the sweep itself dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from archbench.instrument.stopping import StopGuard

__all__ = ["STOP_GRACE_S", "Stopper", "parent_death_signal", "signal_group"]

STOP_GRACE_S = 60.0
"""How long pytest gets to finish the JSON after the first stop signal before it is killed (a
case inside a long CUDA call only sees the interrupt when the call returns)."""


Stopper = StopGuard
"""The sweep's guard: SIGINT, SIGTERM and SIGHUP noted instead of ending the sweep, so it can
stop pytest and still write what finished (the one guard, `archbench.instrument.stopping`)."""


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the sweep dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG); None where that does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


def signal_group(child: subprocess.Popen, signum: int) -> None:
    """`signum` to the child's process group: pytest and every process it started."""
    try:
        os.killpg(child.pid, signum)
    except OSError:  # the group is already gone
        pass
