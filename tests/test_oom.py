"""A host or device out-of-memory error is recognised as one, whoever raised it.

torch's CPU allocator raises a plain RuntimeError, so the bench suites must not re-raise it.
"""

from __future__ import annotations

import pytest

from archbench.instrument.memory import current_rss_bytes, measure_isolated
from ppo_core.errors import is_out_of_memory

MiB = 2**20


def host_oom() -> None:
    """Ask torch's CPU allocator for 2**50 floats (4 PiB): more than any address space holds,
    so malloc refuses at once and not one page is touched."""
    import torch

    torch.empty(2**50)


def _raised_by(fn) -> BaseException:
    try:
        fn()
    except Exception as error:
        return error
    raise AssertionError(f"{fn.__name__} did not raise")


def test_torch_host_oom_is_a_plain_runtime_error_and_is_recognised():
    import torch  # noqa: F401  (imported before the baseline, so only the call is measured)

    before = current_rss_bytes()
    error = _raised_by(host_oom)
    assert current_rss_bytes() - before < 64 * MiB  # refused up front, nothing allocated
    assert type(error) is RuntimeError  # not torch.OutOfMemoryError: the type alone misses it
    assert "out of memory" not in str(error).lower()
    assert is_out_of_memory(error)


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError / torch.cuda.OutOfMemoryError (matched by name)."""


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        OutOfMemoryError("CUDA error: something"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"),
        RuntimeError("[enforce fail] not enough memory: you tried to allocate 1 GiB"),
    ],
    ids=repr,
)
def test_out_of_memory_errors_are_recognised(error):
    assert is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        ValueError("out of memory"),  # only RuntimeErrors are read by their message
        KeyboardInterrupt(),
    ],
    ids=repr,
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


def test_bench_cases_use_the_shared_check(monkeypatch):
    from archbench.instrument.sweep.runner import bench_dir

    monkeypatch.syspath_prepend(str(bench_dir()))
    from _cases import is_oom

    assert is_oom(_raised_by(host_oom))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_isolated_child_reports_a_host_oom_as_oom():
    """The memory suite's path: a workload that runs out of host memory gives an oom record."""
    out = measure_isolated(f"{__name__}:host_oom", {}, timeout_s=120)
    assert out["status"] == "oom", out["reason"]
    assert out["reason"].startswith("RuntimeError: ")
    assert "can't allocate memory" in out["reason"]
