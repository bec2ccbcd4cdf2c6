"""This machine's peaks: dense matmul FLOP/s per precision and memory bandwidth.

Measured in the same session as the other suites, so the report can state every throughput
as a fraction of the ceiling of the very machine (and moment) it was measured on.
"""

from __future__ import annotations

from _cases import session_ceilings

from archbench_instrument.record import Record

SUITE = "ceiling"


def test_ceilings(benchmark, emit, options):
    # The pedantic round is the measurement itself (once per session, shared with the
    # throughput suite's fractions); its samples are the GEMM and copy repeats inside it.
    ceilings = benchmark.pedantic(lambda: session_ceilings(options), rounds=1)
    emit(
        Record(
            suite=SUITE,
            device=options.device,
            profile=options.profile,
            case={
                "matmul_n": ceilings.matmul_n,
                "copy_bytes": ceilings.copy_bytes,
                "threads": ceilings.threads,
            },
            metrics=ceilings.to_metrics(),
        )
    )
