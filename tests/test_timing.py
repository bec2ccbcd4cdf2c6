"""Timer and Latency: statistics against hand-computed values, warm-up and GC handling."""

from __future__ import annotations

import gc
import json
import math
import random
import time

import numpy as np
import pytest

from archbench.instrument.timing import Latency, Timer, percentile, time_callable

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


def test_latency_of_five_samples_with_an_outlier():
    lat = Latency.from_samples([1, 2, 3, 4, 100])
    assert lat.count == 5
    assert lat.mean == 22.0
    assert lat.median == 3.0
    # positions (n-1)*q: p90 at 3.6 -> 4 + 0.6 * (100 - 4); p99 at 3.96 -> 4 + 0.96 * 96
    assert lat.p90 == pytest.approx(61.6)
    assert lat.p99 == pytest.approx(96.16)
    assert lat.iqr == 2.0  # p75 = 4 (position 3), p25 = 2 (position 1)
    # deviations -21, -20, -19, -18, 78: squares sum to 7610, / (n - 1) = 1902.5
    assert lat.stdev == pytest.approx(math.sqrt(1902.5))
    assert lat.cv == pytest.approx(math.sqrt(1902.5) / 22.0)
    assert lat.noisy  # IQR / median = 2 / 3
    assert lat.samples == (1.0, 2.0, 3.0, 4.0, 100.0)


def test_latency_of_an_even_count_interpolates():
    lat = Latency.from_samples([4, 1, 3, 2])
    assert lat.median == 2.5
    assert lat.iqr == pytest.approx(3.25 - 1.75)
    assert lat.samples == (4.0, 1.0, 3.0, 2.0)  # order of taking kept


def test_quiet_samples_are_not_noisy():
    lat = Latency.from_samples([10.0, 10.1, 10.2, 9.9, 10.0])
    assert lat.iqr == pytest.approx(0.1)
    assert not lat.noisy  # 0.1 / 10 = 1% < 10%


def test_single_sample_has_no_spread_figures():
    lat = Latency.from_samples([0.5])
    assert (lat.median, lat.p99, lat.iqr) == (0.5, 0.5, 0.0)
    assert lat.stdev is None
    assert lat.cv is None
    assert not lat.noisy


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_latency_rejects_empty_and_non_finite(bad):
    with pytest.raises(ValueError, match=r"Latency\.from_samples"):
        Latency.from_samples(bad)


def test_percentile_matches_numpy_linear():
    rng = random.Random(0)
    for n in (1, 2, 7, 100):
        data = sorted(rng.uniform(0, 10) for _ in range(n))
        for q in (0, 10, 25, 50, 90, 99, 100):
            assert percentile(data, q) == pytest.approx(np.percentile(data, q))


def test_latency_to_dict_is_json():
    data = json.loads(json.dumps(Latency.from_samples([3, 1, 2]).to_dict()))
    assert data["median"] == 2.0
    assert data["samples"] == [3.0, 1.0, 2.0]
    assert data["stdev"] == pytest.approx(1.0)


def test_timer_region_covers_the_work():
    with Timer() as timer:
        time.sleep(0.02)
    assert timer.elapsed_s >= 0.02
    assert timer.samples == [timer.elapsed_s]


def test_timer_disables_gc_only_inside_and_restores_it():
    assert gc.isenabled()
    with Timer(disable_gc=True):
        assert not gc.isenabled()
    assert gc.isenabled()
    with Timer(disable_gc=False):
        assert gc.isenabled()
    gc.disable()
    try:
        with Timer():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_timer_restores_gc_when_the_region_raises():
    timer = Timer()
    with pytest.raises(RuntimeError), timer:
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert timer.samples == []  # a failed call is not a latency sample


def test_timer_wraps_a_callable():
    timer = Timer()
    double = timer(lambda x: 2 * x)
    assert [double(1), double(2), double(3)] == [2, 4, 6]
    assert len(timer.samples) == 3
    assert timer.elapsed_s == timer.samples[-1]


def test_time_callable_never_records_warmup():
    calls = []

    def fn():
        calls.append(None)
        if len(calls) <= 2:  # the two warm-up calls are slow (first-call costs)
            time.sleep(0.2)

    samples = time_callable(fn, repeats=4, warmup=2)
    assert len(calls) == 6
    assert len(samples) == 4
    assert max(samples) < 0.2


def test_time_callable_validates_counts():
    with pytest.raises(ValueError, match="repeats"):
        time_callable(lambda: None, repeats=0, warmup=0)
    with pytest.raises(ValueError, match="warmup"):
        time_callable(lambda: None, repeats=1, warmup=-1)


@pytest.mark.gpu
@needs_cuda
def test_cuda_timer_waits_for_queued_kernels():
    a = torch.randn(4096, 4096, device="cuda")
    torch.mm(a, a)
    torch.cuda.synchronize()
    with Timer("cuda") as timer:
        for _i in range(20):
            a = torch.mm(a, a).clamp_(-1, 1)  # launches return at once; the kernels do not
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _i in range(20):
        a = torch.mm(a, a).clamp_(-1, 1)
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    assert 0.5 * wall < timer.elapsed_s < 2.0 * wall


def test_cuda_timer_syncs_then_reads_the_events(monkeypatch):
    """The CUDA path's order of calls, with the event helpers faked (runs without a GPU)."""
    from archbench.instrument.device import gpu

    calls = []
    monkeypatch.setattr(gpu, "cuda_synchronize", lambda device: calls.append(("sync", device)))
    monkeypatch.setattr(gpu, "start_cuda_events", lambda device: calls.append("start") or "ev")
    monkeypatch.setattr(gpu, "stop_cuda_events", lambda device, ev: calls.append(ev) or 0.125)
    with Timer("cuda:1") as timer:
        calls.append("work")
    assert calls == [("sync", "cuda:1"), "start", "work", "ev"]
    assert timer.elapsed_s == 0.125
