"""This machine's peaks: dense matmul FLOP/s per precision and memory bandwidth.

Measured in the same session as the other suites, so the report can state every throughput
as a fraction of the ceiling of the very machine (and moment) it was measured on.
"""

from __future__ import annotations

import statistics

from _cases import session_ceilings

from archbench.instrument.record import Metric, Record

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


# The first layer holds most of every preset's FLOPs. With the account state the observation's
# content is 5,303 floats wide (NetworkConfig(input_multiple=1).obs_dim), so unpadded its rows
# (and the first weight's) are not 16-byte aligned and GEMM kernels that need aligned rows fall
# back to slower ones. Measured on 2 EPYC cores (torch 2.13, batch 2048, out 256): the
# weight-gradient GEMM ran at 109 GFLOP/s at 5,303 and 153 at 5,304, and a whole tiny update
# step 13% faster; hence NetworkConfig.input_multiple = 8 zero-pads the observation to 5,304.
# This case keeps measuring the unpadded width against the padded one on every device.
FIRST_WIDTHS = (256, 2048)
"""Output widths of the first layer timed: tiny's and large's."""


def test_input_alignment(benchmark, emit, options):
    import torch

    from archbench.instrument.timing import time_callable
    from ppo_core.config import NetworkConfig
    from ppo_core.device import matmul_precision, resolve_precision

    width = NetworkConfig(input_multiple=1).obs_dim  # (batch, width): market + account, unpadded
    padded = NetworkConfig().obs_dim  # the observation as the trainer feeds it
    batch = options.budget.big_minibatch
    precision = resolve_precision("auto", options.device)  # what training runs there
    repeats, warmup = (20, 3) if options.profile == "full" else (6, 2)
    generator = torch.Generator(device="cpu").manual_seed(0)

    def gemms(k: int, out: int):
        x = torch.randn(batch, k, generator=generator).to(options.device)  # (batch, k)
        w = torch.randn(out, k, generator=generator).to(options.device)  # (out, k)
        g = torch.randn(batch, out, generator=generator).to(options.device)  # dL/d(x w^T)
        return lambda: (x @ w.t(), g.t() @ x)  # forward; the weight gradient (no input grad)

    samples: dict[tuple[int, int], list[float]] = {}

    def measure() -> None:
        with matmul_precision(precision):
            for out in FIRST_WIDTHS:
                calls = {k: gemms(k, out) for k in (width, padded)}
                for call in calls.values():
                    time_callable(call, repeats=1, warmup=warmup, device=options.device)
                # Interleaved, so drift in the machine's speed falls on both widths alike.
                for _ in range(repeats):
                    for k, call in calls.items():
                        seconds = time_callable(call, repeats=1, warmup=0, device=options.device)
                        samples.setdefault((k, out), []).extend(seconds)

    benchmark.pedantic(measure, rounds=1)
    metrics = {}
    for out in FIRST_WIDTHS:
        flops = 4 * batch * width * out  # useful FLOPs: forward + weight gradient at `width`
        narrow = [flops / s for s in samples[(width, out)]]
        wide = [flops / s for s in samples[(padded, out)]]
        metrics[f"first_layer_flops_per_s_out{out}"] = Metric.measured(
            statistics.median(narrow), "FLOP/s", "higher", narrow
        )
        metrics[f"first_layer_flops_per_s_out{out}_padded"] = Metric.measured(
            statistics.median(wide), "FLOP/s", "higher", wide
        )
        ratios = [b / a for a, b in zip(narrow, wide, strict=True)]
        metrics[f"padded_speedup_out{out}"] = Metric.measured(
            statistics.median(ratios), "ratio", None, ratios
        )
    emit(
        Record(
            suite=SUITE,
            device=options.device,
            profile=options.profile,
            precision=precision,
            case={
                "kind": "input_alignment",
                "width": width,
                "padded_width": padded,
                "batch": batch,
                "out_widths": list(FIRST_WIDTHS),
            },
            metrics=metrics,
        )
    )
