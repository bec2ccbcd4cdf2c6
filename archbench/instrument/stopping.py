"""The one stop-signal guard: while active, SIGINT, SIGTERM and SIGHUP are noted (and handed to
a callback) instead of ending the process, so a run can stop cleanly and keep what finished.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["STOP_SIGNALS", "StopGuard"]

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that ask a run to stop: a terminal's Ctrl-C, a scheduler's kill, a lost terminal
(SIGHUP does not exist on Windows)."""


class StopGuard:
    """While active, each of `signals` is appended to `received` and passed to `on_signal`
    (which may raise, e.g. KeyboardInterrupt, to stop at once) instead of its usual handler;
    the previous handlers come back on exit. Outside the main thread it notes nothing (Python
    lets only the main thread set handlers)."""

    def __init__(
        self,
        signals: Sequence[int] = STOP_SIGNALS,
        on_signal: Callable[[int], None] | None = None,
    ) -> None:
        self.received: list[int] = []
        """The stop signals received while active, in order."""
        self._signals = tuple(signals)
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}

    @property
    def signum(self) -> int | None:
        """The first stop signal received, if any."""
        return self.received[0] if self.received else None

    def _note(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        if self._on_signal is not None:
            self._on_signal(signum)

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
