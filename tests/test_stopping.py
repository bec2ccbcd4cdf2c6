"""The one stop-signal guard (train, the sweep and the multi-device driver all use it): signals
noted instead of fatal, a callback that may stop at once, the previous handlers restored."""

import os
import signal
import threading

import pytest

from archbench.instrument.stopping import STOP_SIGNALS, StopGuard

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


def test_signals_are_noted_in_order_and_the_old_handlers_come_back():
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    with StopGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGHUP)
        assert guard.received == [signal.SIGTERM, signal.SIGHUP]
        assert guard.signum == signal.SIGTERM
    assert {number: signal.getsignal(number) for number in STOP_SIGNALS} == before


def test_the_callback_sees_each_signal_and_may_stop_at_once():
    seen = []

    def second_stops(signum: int) -> None:
        seen.append(signum)
        if len(seen) > 1:
            raise KeyboardInterrupt

    with StopGuard([signal.SIGTERM], second_stops) as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGTERM, signal.SIGTERM]


def test_only_the_listed_signals_are_guarded():
    before = signal.getsignal(signal.SIGINT)
    with StopGuard([signal.SIGTERM]):
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL


def test_outside_the_main_thread_it_changes_nothing():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def worker() -> None:
        with StopGuard() as guard:
            seen.append((signal.getsignal(signal.SIGTERM), guard.signum))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [(before, None)]
