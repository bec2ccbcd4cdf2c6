"""Every table the terminal shows, in one place: sizes, checkpoints, evaluations, pick's
candidates and the run comparison. Built with rich; the command modules only pass data in.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ppo_core.presets import hidden_dims_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "diff_table",
    "estimate_table",
    "eval_table",
    "inspect_table",
    "observation_words",
    "print_comparison",
    "print_pick",
    "rich_console",
]


def rich_console():  # -> rich.console.Console
    import os

    from rich.console import Console

    # COLUMNS, when set, is the width asked for, terminal or not; else a terminal's own width;
    # else (a pipe, a file, a test) wide enough that no figure is wrapped.
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return Console(file=sys.stdout, width=int(columns))
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


def _new_table(**options):  # -> rich.table.Table
    from rich.table import Table

    return Table(**options)


def estimate_table(estimates, title: str):  # estimates: list[sizing.SizingEstimate]
    """`archbench estimate`: exact sizes, bytes and FLOPs per size."""
    from ppo_core.presets import preset_name

    table = _new_table(title=title)
    for header in ("size", "hidden_dims", "params", "first layer"):
        table.add_column(header, justify="left" if header != "params" else "right", no_wrap=True)
    for header in (
        "fp32 MB",
        "ckpt MB +Adam",
        "ckpt MB weights",
        "MFLOP/sample fwd",
        "MFLOP/sample fwd+bwd",
        "train MB",
    ):
        table.add_column(header, justify="right", no_wrap=True)
    for e in estimates:
        dims = e.config.hidden_dims
        table.add_row(
            preset_name(dims),
            hidden_dims_text(dims),
            f"{e.params:,}",
            f"{e.first_layer_share:.1%}",
            f"{e.weight_bytes['fp32'] / 1e6:.1f}",
            f"{e.checkpoint_bytes / 1e6:.1f}",
            f"{e.checkpoint_bytes_no_optimizer / 1e6:.1f}",
            f"{e.forward_flops_per_sample / 1e6:.1f}",
            f"{e.train_flops_per_sample / 1e6:.1f}",
            f"{e.train_bytes / 1e6:.1f}",
        )
    return table


def inspect_table(info):  # info: checkpoint.CheckpointInfo
    """`archbench inspect`: one checkpoint's architecture, size and provenance."""
    table = _new_table(title=f"checkpoint {info.path}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    rows = {
        "hidden_dims": hidden_dims_text(info.hidden_dims),
        "trunk": info.trunk,
        "obs_dim": observation_words(info),
        "n_actions": str(info.n_actions),
        "activation": info.activation + (" + LayerNorm" if info.layer_norm else ""),
        "params": f"{info.params:,}",
        "file size": f"{info.file_bytes:,} B (sizing model predicts {info.predicted_bytes:,})",
        "optimizer state": "yes" if info.has_optimizer_state else "no",
        "obs normalisation": "yes" if info.has_obs_norm else "no",
        "created": info.created or "unknown",
        "written by": f"ppo-archbench {info.archbench_version}, torch {info.torch_version}",
        "git commit": info.git_commit or "unknown",
        "training": _training_words(info.training, info.progress),
        "data": _data_words(info.data),
        "weights": "all finite"
        if not info.non_finite
        else f"{info.non_finite:,} NaN or inf: diverged, cannot be evaluated or exported",
    }
    for field, value in rows.items():
        table.add_row(field, value)
    return table


def _training_words(training: dict | None, progress: dict | None) -> str:
    """inspect's line for the run config a checkpoint records (gamma, cost, lr, budget...)."""
    if training is None:
        return "not recorded (saved with the network alone)"
    t = training
    budget = f"{t['total_timesteps']:,} steps"
    if progress is not None:
        iterations = max(1, t["total_timesteps"] // (t["n_envs"] * t["n_steps"]))
        budget += f", {progress['global_step']:,} done (iteration {progress['iteration']} of "
        budget += f"{iterations})"
    return (
        f"{budget}; {t['n_envs']} envs x {t['n_steps']} steps, {t['n_epochs']} epochs, "
        f"minibatch {t['minibatch_size']}; lr {t['learning_rate']:g}"
        f"{' annealed' if t['anneal_lr'] else ''}, gamma {t['gamma']}, gae_lambda "
        f"{t['gae_lambda']}, clip {t['clip_coef']}, ent_coef {t['ent_coef']}; cost "
        f"{t['env']['cost_bps']:g} bp, episodes of {t['env']['episode_bars']} bars; seed "
        f"{t['seed']}, precision {t['precision']}"
    )


def _data_words(data: dict | None) -> str:
    """inspect's line for the training data a checkpoint records: what, where from, which bars."""
    if data is None:
        return "not recorded (written before archbench recorded it; pass --data to evaluate)"
    origin = data.get("origin") or {}
    source = ", ".join(f"{k} {v}" for k, v in origin.items() if k != "spec" and v is not None)
    spec = origin.get("spec", data.get("name"))
    when = [str(data.get(k, "?")).split(".")[0].replace("T", " ") for k in ("first", "last")]
    return (
        f"{data.get('name')} ({spec}{'; ' + source if source else ''}): {data.get('n_bars', 0):,} "
        f"bars {when[0]} .. {when[1]}, sha256 {str(data.get('sha256'))[:16]}"
    )


def observation_words(info) -> str:  # a NetworkConfig or a checkpoint.CheckpointInfo
    """'5304 (53 features x 100 bars + 3 account inputs at gain 72.8 + 1 zero)'."""
    parts = [f"{info.n_features} features x {info.lookback} bars"]
    if info.account_dim:
        if info.account_gain == 1.0:
            parts.append(f"{info.account_dim} raw account inputs")
        else:
            parts.append(f"{info.account_dim} account inputs at gain {info.account_gain:.1f}")
    if info.pad_dim:
        parts.append(f"{info.pad_dim} zero{'s' if info.pad_dim > 1 else ''}")
    return f"{info.obs_dim} ({' + '.join(parts)})"


def diff_table(rows):  # rows: [(field, a, b), ...]
    """`archbench diff`: the fields that differ between two checkpoints."""
    table = _new_table()
    for header in ("field", "a", "b"):
        table.add_column(header)
    for field, a, b in rows:
        table.add_row(field, str(a), str(b))
    return table


def eval_table(title: str, results: dict, context=None) -> None:  # context: EvalContext
    """The policy beside its baselines, then (with `context`) the cost, period, annualisation
    and Sharpe standard error the figures must be read with, and what each baseline trades."""
    table = _new_table(title=title)
    for column in ("policy", "log return", "Sharpe", "max drawdown", "turnover", "hit rate"):
        table.add_column(column, justify="right" if column != "policy" else "left")
    for name, r in results.items():
        spread = getattr(r, "sharpe_sd", None)  # a random policy: the draws' spread
        table.add_row(
            name,
            f"{r.total_log_return:+.4f}",
            f"{r.sharpe:+.2f}" + (f" (sd {spread:.2f})" if spread is not None else ""),
            f"{r.max_drawdown:.4f}",
            f"{r.turnover:.3f}",
            "-" if r.hit_rate is None else f"{r.hit_rate:.3f}",
        )
    console = rich_console()
    console.print(table)
    for line in [] if context is None else _context_lines(context, results):
        console.print(line, highlight=False)


def _context_lines(context, results: dict) -> list[str]:  # context: evaluation.EvalContext
    cost = context.cost
    lines = [
        f"cost: {cost.bps:g} bp per unit of position change ({cost.source})",
        f"period: {context.first_bar} .. {context.last_bar}, {context.n_bars:,} bars = "
        f"{context.years:.2f} years at {context.bars_per_year:,.0f} bars per year",
        f"policy Sharpe standard error: +-{context.sharpe_standard_error:.2f} "
        "(iid bars: ~1 / sqrt(years))",
    ]
    lines += [f"{name}: {note}" for name, note in context.baselines.items() if name in results]
    return lines


_BASIS_TAGS = {
    "measured": "measured",
    "measured (other settings)": "measured*",
    "extrapolated": "extrapolated",
    "roofline estimate": "roofline",
    "floor": "floor",
    "heuristic": "heuristic",
    "unavailable": "-",
}


def _figure_text(figure, fmt) -> str:  # figure: pick.Figure
    if figure.value is None:
        return "-"
    return f"{fmt(figure.value)} [dim]{_BASIS_TAGS[figure.basis]}[/dim]"


def _context_text(device) -> str:  # device: datasheets.GpuSpec
    """The CUDA context pick adds on a GPU, in the unit of the line it stands on."""
    from ppo_core.sizing import CUDA_CONTEXT_BYTES

    return "" if device.is_cpu else f" + {CUDA_CONTEXT_BYTES / 2**30:.2f} GiB CUDA context"


def print_pick(result) -> None:  # result: pick.PickResult
    from rich.markup import escape

    console = rich_console()
    device = result.device
    if result.decision is None and not result.notes:
        console.print("[bold yellow]no measurements: the tier table's prior[/bold yellow]")
    variant = f" ({device.variant})" if device.variant else ""
    console.print(f"[bold]{escape(device.name)}{escape(variant)}[/bold]: {device.source}")
    rec = result.recommended
    if rec is None:
        console.print(f"[bold red]no recommendation[/bold red] for {result.use_case!r}")
    else:
        dims = hidden_dims_text(rec.hidden_dims)
        console.print(
            f"[bold green]recommended:[/bold green] hidden_dims {dims} ({rec.label}), "
            f"n_envs {result.n_envs}, minibatch {result.minibatch}"
        )
    for line in result.why:
        console.print(f"  - {escape(line)}")

    title = (
        f"candidates on {device.name}: n_envs {result.n_envs} x n_steps {result.n_steps}, "
        f"minibatch {result.minibatch}, {result.precision}, {result.obs_buffer} rollout buffer"
    )
    table = _new_table(title=title)
    for column in (
        "size",
        "hidden_dims",
        "params",
        f"memory (of {result.budget_bytes / 2**30:.2f} GiB)",
        "rollout env steps/s",
        "update samples/s",
        "train steps/s",
        "batch-1 latency p50 / p99 (fastest agreeing backend)",
        "Sharpe gap / data",
        "excluded because",
    ):
        left = column in ("size", "Sharpe gap / data", "excluded because")
        table.add_column(column, justify="left" if left else "right")
    for c in result.candidates:
        style = "bold green" if rec is not None and c.hidden_dims == rec.hidden_dims else None
        if c.overfit.value is None:
            overfit = "-"
        elif c.overfit.basis == "heuristic":
            overfit = f"{c.overfit_risk}: {c.overfit.value:,.0f} params/bar [dim]heuristic[/dim]"
        else:
            overfit = f"gap {c.overfit.value:+.2f} [dim]measured[/dim]"
        latency = _figure_text(c.latency_p50_s, lambda v: f"{v * 1e3:.3g} ms")
        if c.latency_p99_s.value is not None:
            latency += f" / {c.latency_p99_s.value * 1e3:.3g} ms"
        table.add_row(
            c.label,
            hidden_dims_text(c.hidden_dims),
            f"{c.params:,}",
            f"{c.need_bytes / 2**30:.2f} GiB " + ("fits" if c.fits else "[red]too big[/red]"),
            _figure_text(c.env_steps_per_s, lambda v: f"{v:,.0f}"),
            _figure_text(c.update_samples_per_s, lambda v: f"{v:,.0f}"),
            _figure_text(c.train_steps_per_s, lambda v: f"{v:,.0f}"),
            latency,
            overfit,
            "; ".join(c.excluded),
            style=style,
        )
    console.print(table)
    context = _context_text(device)
    console.print(
        f"train memory: sizing model{context}, against {device.memory_gib:.1f} GiB minus a "
        f"{result.safety_margin:.0%} safety margin. train steps/s: rollout plus "
        f"{result.n_epochs} update epochs per step."
    )
    basis_notes = {}
    for c in result.candidates:
        for figure in (c.env_steps_per_s, c.update_samples_per_s, c.latency_p50_s, c.overfit):
            basis_notes.setdefault(figure.basis, figure.note)
    for basis, note in basis_notes.items():
        tag = "unavailable (-)" if basis == "unavailable" else _BASIS_TAGS[basis]
        console.print(f"[dim]{tag}: e.g. {escape(note)}[/dim]")
    for note in result.notes:
        console.print(f"note: {escape(note)}")


def print_comparison(table: pd.DataFrame, console=None, *, show_all: bool = False) -> None:
    """The comparison as a rich table on the terminal: the changed rows, or all of them."""
    import pandas as pd
    from rich.markup import escape

    from archbench.reports.compare import devices_note, setup_note
    from archbench.reports.compare_text import cell_text, number_text, ratio_text, verdict_text
    from archbench.reports.compare_verdicts import VERDICTS

    console = console or rich_console()
    run_a, run_b = table.attrs.get("runs", ("A", "B"))
    load = table.attrs.get("host_load")
    if load is not None:
        style = "bold yellow" if load.loaded else "dim"
        console.print(f"[{style}]{escape(load.describe())}[/]")
    if devices_note(table):
        console.print(f"[bold cyan]{escape(devices_note(table))}[/]")
    shift = table.attrs.get("run_shift")
    if shift is not None:
        console.print(
            f"[{'dim' if shift.within_drift else 'bold yellow'}]{escape(shift.describe())}[/]"
        )
    if setup_note(table):
        console.print(f"[bold cyan]{escape(setup_note(table))}[/]")
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    by_tolerance = int((table["decided_by"] == "tolerance").sum())
    tested = int((table["decided_by"] == "test").sum())
    summary += (
        f" ({tested} rows tested, Benjamini-Hochberg q <= {table.attrs.get('alpha', 0.05):g};"
        f" {by_tolerance} decided by the tolerance, too few samples for a test)"
    )
    if not show_all:
        table = table[table["verdict"].isin(["improved", "regressed"])]
        if table.empty:
            console.print(f"A={run_a}  B={run_b}: no significant change. {summary}")
            return
    out = _new_table(title=f"archbench compare: A={run_a}  B={run_b}", show_lines=False)
    columns = ("suite", "preset", "case", "metric", "statistic", "A", "B", "B/A", "q", "verdict")
    for column in columns:
        out.add_column(column, justify="right" if column in ("A", "B", "B/A", "q") else "left")
    styles = {"improved": "green", "regressed": "bold red", "same": "dim"}
    for row in table.to_dict("records"):
        verdict = row["verdict"]
        out.add_row(
            row["suite"],
            row["preset"],
            row["case"],
            row["metric"],
            cell_text(row["statistic"]),
            number_text(row["a"]),
            number_text(row["b"]),
            ratio_text(row),
            "" if pd.isna(row["q_value"]) else f"{row['q_value']:.3f}",
            f"[{styles.get(verdict, 'yellow')}]{escape(verdict_text(row))}[/]",
        )
    console.print(out)
    console.print(summary + ("" if show_all else " (only changed rows shown; --all shows all)"))
