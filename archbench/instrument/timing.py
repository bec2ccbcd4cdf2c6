"""Honest wall-clock timing: CUDA events on a GPU, perf_counter on a CPU, warm-up never kept.

`Latency.from_samples` is the one place that turns repeated timings into summary statistics.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from archbench.instrument.device import gpu

__all__ = ["NOISY_IQR_RATIO", "Latency", "Timer", "percentile", "time_callable"]

NOISY_IQR_RATIO = 0.10
"""A latency whose IQR exceeds this fraction of its median is flagged as noisy."""


class Timer:
    """Time a region (`with Timer(device) as t: ...; t.elapsed_s`) or every call of a function.

    On CUDA the region is bracketed by a pair of `torch.cuda.Event`s on the current stream,
    after a synchronize so earlier queued work is not counted, and the end event is waited for
    before reading. On CPU it is `time.perf_counter`. With `disable_gc` the garbage collector
    is off inside the region (and restored to its previous state after).
    """

    def __init__(self, device: Any = "cpu", disable_gc: bool = True) -> None:
        self.device = str(device)
        self.disable_gc = disable_gc
        self.elapsed_s: float = math.nan
        """Seconds of the last region or call; NaN before the first one ends."""
        self.samples: list[float] = []
        """Seconds of every region or call timed so far, in order."""
        self._cuda = self.device.startswith("cuda")
        self._gc_was_enabled = False
        self._start: Any = None

    def __enter__(self) -> Timer:
        self._gc_was_enabled = gc.isenabled()
        if self.disable_gc:
            gc.disable()
        if self._cuda:
            gpu.cuda_synchronize(self.device)
            self._start = gpu.start_cuda_events(self.device)
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._cuda:
                self.elapsed_s = gpu.stop_cuda_events(self.device, self._start)
            else:
                self.elapsed_s = time.perf_counter() - self._start
            if exc_info[0] is None:  # a region that raised did not do the work it times
                self.samples.append(self.elapsed_s)
        finally:
            if self._gc_was_enabled:
                gc.enable()

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap `fn` so that each call is timed into `elapsed_s` and `samples`."""

        @wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return timed


def time_callable(
    fn: Callable[[], Any],
    *,
    repeats: int,
    warmup: int,
    device: Any = "cpu",
    disable_gc: bool = True,
) -> list[float]:
    """Call `fn` `warmup` times untimed, then `repeats` times timed; return the seconds."""
    if repeats < 1:
        raise ValueError(f"time_callable: repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"time_callable: warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    gpu.cuda_synchronize(device)
    timer = Timer(device, disable_gc=disable_gc)
    timed = timer(fn)
    for _ in range(repeats):
        timed()
    return list(timer.samples)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted data, linearly interpolated between ranks.

    Position (n - 1) * q / 100 in the sorted data: numpy's default ('linear', Hyndman & Fan
    type 7). For [1, 2, 3, 4, 100]: p50 = 3, p90 = 4 + 0.6 * 96 = 61.6.
    """
    if not ordered:
        raise ValueError("percentile of no samples")
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Latency:
    """Summary statistics of repeated timings (seconds), or of any repeated measurement."""

    count: int
    """Number of samples."""
    mean: float
    """Arithmetic mean."""
    median: float
    """50th percentile."""
    p90: float
    """90th percentile (linear interpolation, see `percentile`)."""
    p99: float
    """99th percentile (linear interpolation)."""
    stdev: float | None
    """Sample standard deviation (n - 1); None for a single sample."""
    iqr: float
    """Interquartile range p75 - p25."""
    cv: float | None
    """Coefficient of variation stdev / mean; None for one sample or a zero mean."""
    noisy: bool
    """IQR / median > NOISY_IQR_RATIO: the machine was busy; compare with care."""
    samples: tuple[float, ...] = ()
    """The samples themselves, in the order they were taken."""

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> Latency:
        values = tuple(float(s) for s in samples)
        if not values:
            raise ValueError("Latency.from_samples needs at least one sample, got none")
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise ValueError(f"Latency.from_samples: non-finite sample {bad[0]!r}")
        ordered = sorted(values)
        median = percentile(ordered, 50)
        iqr = percentile(ordered, 75) - percentile(ordered, 25)
        mean = statistics.fmean(values)
        stdev = statistics.stdev(values) if len(values) > 1 else None
        cv = stdev / mean if stdev is not None and mean != 0 else None
        noisy = iqr / median > NOISY_IQR_RATIO if median != 0 else iqr > 0
        return cls(
            count=len(values),
            mean=mean,
            median=median,
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            stdev=stdev,
            iqr=iqr,
            cv=cv,
            noisy=noisy,
            samples=values,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "p99": self.p99,
            "stdev": self.stdev,
            "iqr": self.iqr,
            "cv": self.cv,
            "noisy": self.noisy,
            "samples": list(self.samples),
        }
