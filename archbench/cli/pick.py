"""`archbench pick`: the hidden_dims for a GPU (this one, a named one, or a stated memory),
from measured runs when given, else from the tier table."""

from __future__ import annotations

import argparse
import sys

from archbench.cli._common import default, print_json
from archbench.cli.tables import print_pick
from ppo_core.config import PPOConfig
from ppo_core.device import PRECISION_CHOICES
from ppo_core.errors import ConfigError

__all__ = ["add_commands"]


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    pick = subcommands.add_parser(
        "pick",
        help="choose hidden_dims, n_envs and minibatch for a GPU and a use case",
        description="Judge every preset (and any --hidden-dims) on one device: does training "
        "fit (sizing model + CUDA context under the memory, minus a safety margin), how fast "
        "it trains (measured from a results file made on this device; else scaled from the "
        "nearest measured run by matmul-rate and bandwidth ratios, 'extrapolated'; else a "
        "roofline estimate), batch-1 latency (measured, or the weights/bandwidth floor) and "
        "overfitting risk for --data-bars (measured Sharpe gap, or a params-per-bar heuristic). "
        "Prints the recommendation with its reasons, then every candidate. Exit status: 0 with "
        "a recommendation, 1 when no size qualifies, 2 on bad input, 3 when sizes were measured "
        "out of sample but none beat flat and buy-and-hold beyond the noise (no skill).",
    )
    _device_options(pick.add_argument_group("device"))
    _evidence_options(pick)
    _setting_options(pick)
    pick.add_argument("--json", action="store_true", help="print the whole result as JSON")
    pick.set_defaults(handler=_pick)


def _device_options(where: argparse._ArgumentGroup) -> None:
    where.add_argument(
        "--gpu",
        default="auto",
        metavar="auto|NAME",
        help="'auto' (detect; the default), 'cpu', or a card: T4, L4, A10G, 'RTX 4090', "
        "A100-80GB, 'NVIDIA H100 80GB HBM3', ... (spelling is loose)",
    )
    where.add_argument(
        "--vram-gb",
        type=float,
        metavar="N",
        help="device memory in GiB: sizes an unlisted card, or overrides a named one's "
        "(a MIG slice, or to tell A100 40GB from 80GB)",
    )


def _evidence_options(pick: argparse.ArgumentParser) -> None:
    """What to judge on: the use case, the measured runs, the data and the latency budget."""
    pick.add_argument(
        "--use-case",
        metavar="NAME",
        help="quick iteration, standard production (default), live trading, complex / volatile "
        "symbols, limited data, extended training (loose: 'live', 'limited-data')",
    )
    pick.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="RUN.json",
        help="benchmark JSON from `pytest bench/ --benchmark-json` (repeatable); runs from "
        "another device are used only for extrapolation",
    )
    pick.add_argument(
        "--allow-loaded",
        action="store_true",
        help="with --results: use timings taken on a loaded host (by default they are left "
        "out, and the answer says so; the rule report and compare use)",
    )
    pick.add_argument("--data-bars", type=int, metavar="N", help="bars of training data")
    pick.add_argument(
        "--latency-budget-ms",
        type=float,
        metavar="X",
        help="batch-1 p99 latency budget (live trading defaults to reports' 1 ms)",
    )


def _setting_options(pick: argparse.ArgumentParser) -> None:
    """The training settings sized: rollout shape, extra sizes, precision, layout, margin."""
    pick.add_argument("--n-envs", type=int, metavar="N", help="environments (default: tier's)")
    pick.add_argument(
        "--n-steps", type=int, metavar="N", help="steps per env per rollout (default: mode's)"
    )
    pick.add_argument(
        "--minibatch", type=int, metavar="N", help="samples per update (default: tier's)"
    )
    pick.add_argument(
        "--hidden-dims",
        action="append",
        default=[],
        metavar="W,W,...",
        help="an extra candidate size, e.g. 768,384,192 (repeatable)",
    )
    pick.add_argument(
        "--precision",
        choices=list(PRECISION_CHOICES),
        default="auto",
        help="training precision: auto (the default) ranks measured sizes at the precision each "
        "ran fastest and models tf32 where the card has it (as train's auto); fp32, tf32 or "
        "bf16 rank only cases trained in it",
    )
    pick.add_argument(
        "--obs-buffer",
        choices=["indices", "observations"],
        default=default(PPOConfig, "obs_buffer"),
        help="rollout layout sized: bar indices (the trainer's default) or full observation rows",
    )
    pick.add_argument(
        "--safety-margin",
        type=float,
        default=0.10,
        metavar="F",
        help="share of device memory kept free (default 0.10)",
    )


def _pick_device(gpu: str, vram_gb: float | None):  # -> datasheets.GpuSpec
    import dataclasses

    from archbench.instrument.device import datasheets

    wanted = gpu.strip().lower()
    if wanted == "auto" and vram_gb is not None:
        return datasheets.custom_spec(f"GPU with {vram_gb:g} GiB", vram_gb, "--vram-gb; no rates")
    if wanted == "auto":
        from archbench.instrument.device.gpu import with_memory
        from ppo_core.device import resolve_device

        found = with_memory(resolve_device("auto"))
        name, memory_gb = found.name, found.memory_gib
        if name is not None and not memory_gb:
            raise ConfigError(f"detected {name!r} but not its memory; give --vram-gb N")
        if name is not None:
            spec = datasheets.find_gpu(name, memory_gb) or datasheets.custom_spec(
                name, memory_gb, "detected; not in the GPU table, so no rates"
            )
            # Detected memory is what this device really offers (a MIG slice, reserved memory).
            return dataclasses.replace(spec, memory_gib=memory_gb)
    elif wanted != "cpu":
        spec = datasheets.find_gpu(gpu, vram_gb)
        if spec is None:
            raise ConfigError(
                f"unknown GPU {gpu!r}; known: {', '.join(datasheets.known_names())}; "
                "for another card give its memory with --vram-gb N"
            )
        return dataclasses.replace(spec, memory_gib=vram_gb) if vram_gb else spec
    elif vram_gb is not None:
        raise ConfigError("--vram-gb is for a GPU; --gpu cpu uses this machine's RAM")
    import psutil

    from archbench.instrument.device.machine import device_info, measure_ceilings

    print("measuring this CPU's matmul and copy rates (a few seconds)...", file=sys.stderr)
    ceilings = measure_ceilings("cpu")
    memory = psutil.virtual_memory().total
    return datasheets.cpu_spec(ceilings, device_info("cpu").cpu_model, memory)


def _pick(args: argparse.Namespace) -> int:
    from archbench.reports.pick import pick
    from ppo_core.presets import parse_hidden_dims

    runs, loaded = None, []
    if args.results:
        from archbench.reports.host_load import decision_rows, run_loads
        from archbench.reports.load import load_runs

        runs = load_runs(args.results)
        loaded = [load for load in run_loads(runs) if load.loaded or load.loaded_records]
        runs = decision_rows(runs, allow_loaded=args.allow_loaded)
    device = _pick_device(args.gpu, args.vram_gb)
    result = pick(
        device,
        use_case=args.use_case,
        runs=runs,
        data_bars=args.data_bars,
        latency_budget_s=None if args.latency_budget_ms is None else args.latency_budget_ms / 1e3,
        n_envs=args.n_envs,
        n_steps=args.n_steps,
        minibatch=args.minibatch,
        extra_dims=[parse_hidden_dims(d) for d in args.hidden_dims],
        precision=args.precision,
        obs_buffer=args.obs_buffer,
        safety_margin=args.safety_margin,
    )
    used = "used anyway (--allow-loaded)" if args.allow_loaded else "left out (--allow-loaded)"
    host = [f"{load.describe()}; its timings {used}" for load in loaded]
    if args.json:
        print_json({**result.to_dict(), "loaded_host": host})
    else:
        print_pick(result)
        for line in host:
            print(f"taken on a loaded host: {line}")
    if result.recommended is not None:
        return 0
    # 3: measured, but no size beat flat and buy-and-hold beyond the noise
    return 3 if result.decision is not None and result.decision.skill_shown is False else 1
