"""The HTML report: header, recommendations, sizing check, charts and every missing figure.

One self-contained file (plotly.js inlined once) or a small one that loads plotly.js from a CDN.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots

from ppo_core.atomic import atomic_path
from reports.evidence import MEMORY_SAFETY_MARGIN, device_label, preset_summary
from reports.load import ReportError, load_runs, missing_suites, run_info
from reports.stats import mean_ci
from reports.use_cases import USE_CASES, Decision, Limits, recommend

__all__ = ["CHARTS", "render_html", "render_report", "write_section"]

CHARTS = ("throughput", "latency", "memory", "overfit", "pareto")
_COMPONENTS = (
    "weights",
    "grads",
    "adam",
    "adam_step",
    "activations",
    "minibatch",
    "rollout",
    "data",
    "index",
    "workspace",
    "host_slack",
)
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}
h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9em}
.nodata{color:#a33;font-style:italic;padding:12px;border:1px dashed #c99}
.warn{background:#fff4e0;padding:8px;border-left:4px solid #f0a030}
.bad{color:#b00}.good{color:#070}
"""


def render_report(
    source: pd.DataFrame | Iterable[str | Path],
    out_path: str | Path,
    *,
    plotlyjs: str = "inline",
    budgets: Limits | None = None,
    compare_html: str | None = None,
) -> Path:
    """Write the HTML report for one or more runs to out_path (atomically); returns the path."""
    df = source if isinstance(source, pd.DataFrame) else load_runs(source)
    page = render_html(df, plotlyjs=plotlyjs, budgets=budgets, compare_html=compare_html)
    return _write_atomic(Path(out_path), page)


def render_html(
    df: pd.DataFrame,
    *,
    plotlyjs: str = "inline",
    budgets: Limits | None = None,
    compare_html: str | None = None,
) -> str:
    """The report page as a string (see render_report)."""
    if plotlyjs not in ("inline", "cdn"):
        raise ReportError(f"plotlyjs must be 'inline' or 'cdn', got {plotlyjs!r}")
    budgets = budgets or Limits()
    recommendations = recommend(df, budgets)
    runs = list(dict.fromkeys(df["run"]))
    devices = list(dict.fromkeys(d.device for d in recommendations))
    by_device = _runs_by_device(df)
    figures = {
        "throughput": _throughput_figure(by_device),
        "latency": _latency_figure(by_device),
        "memory": _memory_figure(by_device),
        "overfit": _overfit_figure(by_device),
        "pareto": _pareto_figure(by_device),
    }
    titles = {
        "throughput": "Training throughput vs parameters",
        "latency": "Inference latency p50 / p99 per preset and backend",
        "memory": "Training memory by component: predicted vs measured",
        "overfit": "Overfitting: Sharpe gap (train - validation) per dataset length",
        "pareto": "Pareto front: batch-1 p99 latency vs out-of-sample Sharpe",
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ppo-archbench report: {html.escape(', '.join(runs))}</title>",
        f"<style>{_CSS}</style>",
        _plotly_script(plotlyjs),
        "</head><body>",
        "<h1>ppo-archbench report</h1>",
        f"<p class='note'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} "
        f"from {len(runs)} run(s).</p>",
        _header(df),
        _missing_note(df),
        "<h2>Recommended hidden_dims</h2>",
        _recommendations_table(recommendations, devices),
        _use_case_table(budgets),
        "<h2>Sizing: predicted vs measured</h2>",
        _sizing_table(df),
        "<h2>Fastest agreeing backend for a live decision (batch 1)</h2>",
        _backend_table(df),
    ]
    for name in CHARTS:
        parts.append(f"<h2>{html.escape(titles[name])}</h2>")
        figure = figures[name]
        if isinstance(figure, str):
            parts.append(
                f"<div class='nodata' id='chart-{name}' data-chart='{name}' data-empty='1'>"
                f"no data: {html.escape(figure)}</div>"
            )
        else:
            figure.update_layout(template="plotly_white", margin={"t": 40, "b": 40})
            parts.append(
                figure.to_html(
                    full_html=False,
                    include_plotlyjs=False,
                    div_id=f"chart-{name}",
                    config={"displaylogo": False, "responsive": True},
                )
            )
    if compare_html:
        parts += ["<h2>Comparison</h2>", compare_html]
    parts += [
        "<h2>Figures that could not be measured</h2>",
        _unavailable_table(df),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_section(body_html: str, out_path: str | Path, *, title: str) -> Path:
    """A standalone page (report styles, no charts) around one section, written atomically."""
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return _write_atomic(Path(out_path), page)


def _plotly_script(mode: str) -> str:
    """plotly.js once, in the head: inlined (works offline) or from the CDN (small file)."""
    if mode == "inline":
        return f"<script type='text/javascript'>{get_plotlyjs()}</script>"
    return f"<script src='https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js'></script>"


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "&ndash;"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric=()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = " class='num'" if i in numeric else ""
            text = cell if isinstance(cell, _Raw) else _e(cell)
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Cell content that is already HTML."""


def _runs_by_device(df: pd.DataFrame) -> pd.DataFrame:
    """The rows, with a run merged from shards on several kinds of device split into one
    'run (device)' per kind, so that no chart line joins two GPUs' figures."""
    parts = []
    for run, rows in df.groupby("run", sort=False):
        kinds = list(rows.groupby([rows["gpu"].astype(str), rows["cpu_model"].astype(str)]))
        if len(kinds) == 1:
            parts.append(rows)
            continue
        for _, part in kinds:
            parts.append(part.assign(run=f"{run} ({device_label(part)})"))
    return pd.concat(parts) if parts else df


def _header(df: pd.DataFrame) -> str:
    info = run_info(df)
    # A merged multi-device run has these per record: show every value it holds.
    per_record = ("machine", "gpu", "gpu_memory_bytes", "cpu_model", "device")
    fields = [
        ("machine", "machine"),
        ("GPU", "gpu"),
        ("GPU memory", "gpu_memory_bytes"),
        ("CPU", "cpu_model"),
        ("device", "device"),
        ("torch", "torch_version"),
        ("CUDA", "cuda_version"),
        ("driver", "driver_version"),
        ("commit", "commit"),
        ("date", "datetime"),
        ("profile", "profile"),
    ]
    rows = []
    for label, column in fields:
        cells: list[object] = [label]
        for _, run in info.iterrows():
            value = run[column]
            if column in per_record:
                values = df.loc[df["run"] == run["run"], column].dropna().unique().tolist()
                if column == "gpu_memory_bytes":
                    values = [f"{v / 2**30:.1f} GiB" for v in values]
                value = ", ".join(str(v) for v in values) if values else None
            if column == "commit" and isinstance(value, str):
                value = value[:12] + (" (dirty)" if run["dirty"] else "")
            if column == "cuda_version" and value is None:
                value = "none (CPU run)" if run["gpu"] == "no GPU" else None
            cells.append(value)
        rows.append(cells)
    return _table(["", *info["run"]], rows)


def _missing_note(df: pd.DataFrame) -> str:
    missing = {run: suites for run, suites in missing_suites(df).items() if suites}
    if not missing:
        return "<p class='note'>Every suite recorded results.</p>"
    items = "".join(
        f"<li><b>{_e(run)}</b>: no {_e(', '.join(suites))} suite(s); the figures that need "
        "them say 'no data'.</li>"
        for run, suites in missing.items()
    )
    return f"<div class='warn'>Missing suites:<ul>{items}</ul></div>"


def _recommendations_table(decisions: list[Decision], devices: list[str]) -> str:
    """One column per device (its runs combined per suite), one row per use case."""
    by_key = {(d.device, d.use_case.name): d for d in decisions}
    rows = []
    for use in USE_CASES:
        cells: list[object] = [use.name]
        for device in devices:
            decision = by_key[(device, use.name)]
            details = "".join(f"<li>{_e(line)}</li>" for line in decision.details)
            more = f"<details><summary>why</summary><ul>{details}</ul></details>"
            if decision.size is None:
                cells.append(_Raw(f"<span class='note'>{_e(decision.summary)}</span>{more}"))
                continue
            noise = {
                True: "<br><b>within noise</b>: the cheaper size wins the tie",
                False: "<br>beats every cheaper size beyond the measurement noise",
                None: "",
            }[decision.within_noise]
            cells.append(
                _Raw(
                    f"<b>{_e(decision.size.label)}</b> [{_e(decision.size.hidden_dims)}]<br>"
                    f"<span class='note'>{_e(decision.summary)}</span>{noise}{more}"
                )
            )
        rows.append(cells)
    return _table(["use case", *devices], rows)


def _use_case_table(budgets: Limits) -> str:
    rows = [(u.name, u.rule) for u in USE_CASES]
    memory = (
        "the run's GPU memory minus a "
        f"{MEMORY_SAFETY_MARGIN:.0%} safety margin, the CUDA context counted (none on a CPU run)"
        if budgets.memory_bytes is None
        else f"{budgets.memory_bytes / 2**30:.1f} GiB"
    )
    limited = (
        "less than one year of bars (bars / the dataset's bars per year)"
        if budgets.limited_data_bars is None
        else f"<= {budgets.limited_data_bars} bars"
    )
    stated = (
        f"Limits: batch-1 p99 latency {budgets.latency_p99_s * 1e3:g} ms; memory {memory}; "
        f"a usable rate is >= {budgets.min_throughput_fraction:.0%} of the fastest size's "
        f"whole-iteration throughput; limited data means {limited}. Every score carries a 95% "
        "interval: throughput by a bootstrap of the median iteration, p99 latency by a bootstrap "
        "of the p99, out-of-sample Sharpe by resampling seeds and (where the records carry "
        "per-bar returns) a circular block bootstrap over the validation bars, paired across "
        "sizes. The best size must beat a cheaper one beyond that interval (and for throughput "
        f"by at least {budgets.min_throughput_effect:.0%}), or the cheaper one wins. A size "
        "missing a figure its use case needs is 'not measured' and never chosen. Runs on one "
        "device combine per suite: each suite's figures come from the newest run that has it."
    )
    return (
        "<details><summary>How each use case is decided</summary>"
        + _table(["use case", "rule"], rows)
        + f"<p class='note'>{html.escape(stated)}</p></details>"
    )


def _pct_error(predicted: float | None, measured: float | None) -> str | None:
    if predicted is None or measured is None or not measured or pd.isna(predicted):
        return None
    return f"{(predicted - measured) / measured * 100:+.1f}%"


def _sizing_table(df: pd.DataFrame) -> str:
    rows = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame)
        for _, s in summary.iterrows():
            rows_p = frame[frame["preset"] == s["preset"]]
            predicted = _record_predicted(rows_p)
            ckpt = rows_p[(rows_p["metric"] == "checkpoint_bytes") & rows_p["value"].notna()]
            ckpt_measured = float(ckpt["value"].iloc[0]) if len(ckpt) else None
            ckpt_predicted = predicted.get("checkpoint_bytes")
            check_predicted = s.get("memory_check_predicted")
            if check_predicted is None or pd.isna(check_predicted):
                check_predicted = predicted.get("train_bytes")
            check = s.get("memory_check_bytes")
            check = None if check is None or pd.isna(check) else check
            # The memory suite measures what any size costs the runtime (an 8-wide network's
            # peak minus its model); the model does not claim to count that part.
            overhead = rows_p[
                (rows_p["metric"] == "runtime_overhead_bytes") & rows_p["value"].notna()
            ]["value"]
            net = check - float(overhead.iloc[0]) if check is not None and len(overhead) else None
            rows.append(
                [
                    run,
                    s["preset"],
                    s["hidden_dims"],
                    _count(predicted.get("params")),
                    _count(s["params"]),
                    _mb(ckpt_predicted),
                    _mb(ckpt_measured),
                    _pct_error(ckpt_predicted, ckpt_measured),
                    _mb(check_predicted),
                    _mb(check),
                    s.get("memory_check_source") if check is not None else None,
                    _pct_error(check_predicted, check),
                    _mb(float(overhead.iloc[0])) if len(overhead) else None,
                    _pct_error(check_predicted, net) if net and net > 0 else None,
                    "OOM" if s["oom"] else "ok",
                ]
            )
    if not rows:
        return "<div class='nodata'>no data: no per-preset records in any run</div>"
    headers = [
        "run", "preset", "hidden_dims", "params predicted", "params counted",
        "checkpoint MB predicted", "checkpoint MB measured", "error",
        "train memory MB predicted", "train memory MB measured", "measured by", "error",
        "runtime MB", "error net of runtime", "status",
    ]  # fmt: skip
    return _table(headers, rows, numeric=range(3, 14)) + (
        "<p class='note'>error = (predicted - measured) / measured. runtime = the peak any size "
        "costs beyond the model (an 8-wide network's measured peak minus its prediction: "
        "interpreter, torch, BLAS buffers, allocator slack), which the model does not count. "
        "MB = 10<sup>6</sup> bytes.</p>"
    )


def _record_predicted(rows: pd.DataFrame) -> dict:
    merged: dict = {}
    for predicted in rows["record_predicted"]:
        if isinstance(predicted, dict):
            merged.update({k: v for k, v in predicted.items() if v is not None})
    return merged


def _count(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{int(value):,}"


def _mb(value: object) -> str | None:
    return None if value is None or pd.isna(value) else f"{float(value) / 1e6:,.1f}"


AGREEMENT_THRESHOLD = 0.99
"""A backend whose greedy actions match eager's on fewer held-out observations than this is
not a candidate, however fast (the bench gates timing on the same figure)."""


def _backend_table(df: pd.DataFrame) -> str:
    """Per run and preset: the backend with the lowest batch-1 p99 among those that agree with
    eager, its p99 next to eager's and to the weight-bytes/bandwidth floor."""
    infer = df[(df["suite"] == "infer") & (df["status"] == "ok")]
    if infer.empty or "case_batch" not in infer:
        return "<p class='note'>no data: the infer suite is missing from every run.</p>"
    infer = infer[infer["case_batch"] == 1]
    rows = []
    for (run, preset), group in infer.groupby(["run", "preset"], sort=False):
        wide = group.pivot_table(
            index="case_backend", columns="metric", values="value", aggfunc="first"
        )
        if "latency_p99_s" not in wide:
            continue
        timed = wide[wide["latency_p99_s"].notna()]
        if "action_agreement" in timed:
            timed = timed[timed["action_agreement"].fillna(1.0) >= AGREEMENT_THRESHOLD]
        if timed.empty:
            continue
        best = timed["latency_p99_s"].idxmin()
        # The floor is the prediction the suite puts beside the p50 (one forward's bytes).
        floor = group[group["metric"] == "latency_p50_s"]["predicted"].dropna()
        floor_s = float(floor.iloc[0]) if len(floor) else None
        p99 = float(timed.loc[best, "latency_p99_s"])
        eager = wide["latency_p99_s"].get("eager")
        rows.append(
            (
                run,
                preset,
                best,
                f"{p99 * 1e3:.3f}",
                "-" if eager is None or pd.isna(eager) else f"{eager * 1e3:.3f}",
                "-" if floor_s is None else f"{floor_s * 1e3:.3f}",
                "-" if not floor_s else f"{p99 / floor_s:.2f}x",
            )
        )
    if not rows:
        return "<p class='note'>no data: no backend was timed at batch 1.</p>"
    headers = ["run", "preset", "fastest agreeing backend", "p99 ms", "eager p99 ms",
               "floor ms", "p99 / floor"]  # fmt: skip
    return _table(headers, rows, numeric=(3, 4, 5, 6))


def _unavailable_table(df: pd.DataFrame) -> str:
    unavailable = df[df["unavailable"].notna()]
    failed = df[df["status"] != "ok"].drop_duplicates(["run", "suite", "preset", "case"])
    rows = [
        (r.run, r.suite, r.preset, r.case, r.metric, r.unavailable)
        for r in unavailable.itertuples()
    ] + [
        (r.run, r.suite, r.preset, r.case, r.status.upper(), r.reason) for r in failed.itertuples()
    ]
    if not rows:
        return "<p class='note'>Every figure was measured.</p>"
    return _table(["run", "suite", "preset", "case", "metric", "why"], rows)


def _label(run: str, preset: str, many_runs: bool) -> str:
    return f"{run}: {preset}" if many_runs else preset


def _throughput_figure(df: pd.DataFrame) -> go.Figure | str:
    m = df[(df["suite"] == "train") & (df["value"].notna()) & df["params"].notna()]
    m = m[m["metric"].isin(["env_steps_per_s", "update_samples_per_s"])]
    if m.empty:
        return "no training throughput in any run (train suite missing or every case OOM)"
    fig = go.Figure()
    for i, ((run, metric), rows) in enumerate(m.groupby(["run", "metric"], sort=False)):
        best = rows.loc[rows.groupby("preset")["value"].idxmax()].sort_values("params")
        lows = [min(s) if s else v for s, v in zip(best["samples"], best["value"], strict=True)]
        highs = [max(s) if s else v for s, v in zip(best["samples"], best["value"], strict=True)]
        fig.add_trace(
            go.Scatter(
                x=best["params"].astype(float),
                y=best["value"],
                mode="lines+markers+text",
                text=best["preset"],
                textposition="top center",
                name=f"{run}: {metric}",
                line={"color": _PALETTE[i % len(_PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": np.array(highs) - best["value"].to_numpy(),
                    "arrayminus": best["value"].to_numpy() - np.array(lows),
                },
                customdata=best["case"],
                hovertemplate="%{text}<br>%{x:,} params<br>%{y:,.0f}/s<br>best case: "
                "%{customdata}<extra></extra>",
            )
        )
    fig.update_xaxes(title="parameters", type="log")
    fig.update_yaxes(title="samples per second (best case; bars: min-max)", type="log")
    return fig


def _latency_figure(df: pd.DataFrame) -> go.Figure | str:
    m = df[(df["suite"] == "infer") & df["value"].notna()]
    m = m[m["metric"].isin(["latency_p50_s", "latency_p99_s"])]
    if m.empty or "case_batch" not in m:
        return "no inference latency in any run (infer suite missing or every backend unavailable)"
    batches = sorted(int(b) for b in m["case_batch"].dropna().unique())
    fig = make_subplots(rows=1, cols=len(batches), subplot_titles=[f"batch {b}" for b in batches])
    many = m["run"].nunique() > 1
    colours: dict[str, str] = {}
    for col, batch in enumerate(batches, start=1):
        rows_b = m[m["case_batch"] == batch]
        for (run, backend), rows in rows_b.groupby(["run", "case_backend"], sort=False):
            wide = rows.pivot_table(index="preset", columns="metric", values="value", sort=False)
            floor = rows.groupby("preset", sort=False)["predicted"].first()
            if "latency_p50_s" not in wide:
                continue
            presets = list(wide.index)
            x = [_label(run, p, many) for p in presets]
            name = f"{run}: {backend}" if many else str(backend)
            colour = colours.setdefault(name, _PALETTE[len(colours) % len(_PALETTE)])
            p50 = wide["latency_p50_s"] * 1e3
            p99 = wide.get("latency_p99_s", p50 / 1e3) * 1e3
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=p50,
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    marker_color=colour,
                    offsetgroup=name,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": p99 - p50,
                        "arrayminus": [0] * len(p50),
                    },
                    hovertemplate="%{x}<br>p50 %{y:.3f} ms<br>p99 (whisker top) "
                    "%{customdata:.3f} ms<extra>" + html.escape(name) + "</extra>",
                    customdata=p99,
                ),
                row=1,
                col=col,
            )
            fl = floor.reindex(presets) * 1e3
            if fl.notna().any():
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=fl,
                        mode="markers",
                        marker={
                            "symbol": "line-ew-open",
                            "size": 22,
                            "line": {"width": 3},
                            "color": "black",
                        },
                        name="floor: weight bytes / bandwidth",
                        legendgroup="floor",
                        showlegend=col == 1 and "floor" not in colours,
                        offsetgroup=name,
                        hovertemplate="floor %{y:.4f} ms<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
                colours.setdefault("floor", "black")
    fig.update_layout(barmode="group", scattermode="group")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="ms (bar p50, whisker p99)", row=1, col=1)
    return fig


def _memory_figure(df: pd.DataFrame) -> go.Figure | str:
    rows = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame)
        for _, s in summary.iterrows():
            predicted = _record_predicted(frame[frame["preset"] == s["preset"]])
            measured = s.get("memory_check_bytes")
            measured = None if measured is None or pd.isna(measured) else measured
            if not any(k in predicted for k in _COMPONENTS) and measured is None:
                continue
            rows.append((run, s["preset"], predicted, measured, s.get("memory_check_source")))
    if not rows:
        return "no memory suite results and no predicted breakdown in any run"
    many = len({r[0] for r in rows}) > 1
    x = [_label(run, preset, many) for run, preset, *_ in rows]
    fig = go.Figure()
    base = np.zeros(len(rows))
    for i, component in enumerate(_COMPONENTS):
        values = np.array([float(p.get(component) or 0) / 1e6 for _, _, p, _, _ in rows])
        if not values.any():
            continue
        fig.add_trace(
            go.Bar(
                x=x,
                y=values,
                base=base.copy(),
                name=f"predicted: {component}",
                offsetgroup="predicted",
                marker_color=_PALETTE[i % len(_PALETTE)],
                hovertemplate="%{x}<br>" + component + " %{y:,.1f} MB<extra></extra>",
            )
        )
        base += values
    measured = [None if m is None or pd.isna(m) else m / 1e6 for _, _, _, m, _ in rows]
    if any(v is not None for v in measured):
        fig.add_trace(
            go.Bar(
                x=x,
                y=measured,
                name="measured peak",
                offsetgroup="measured",
                marker_color="#444",
                customdata=[src for *_, src in rows],
                hovertemplate="%{x}<br>measured %{y:,.1f} MB (%{customdata})<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="MB (10^6 bytes)")
    return fig


def _overfit_figure(df: pd.DataFrame) -> go.Figure | str:
    m = df[(df["suite"] == "overfit") & (df["metric"] == "sharpe_gap") & df["value"].notna()]
    if m.empty or "case_bars" not in m:
        return "no Sharpe gap in any run (overfit suite missing or every case failed)"
    fig = go.Figure()
    many = m["run"].nunique() > 1
    dataset = m["case_dataset"] if "case_dataset" in m else pd.Series("data", index=m.index)
    m = m.assign(dataset=dataset.fillna("data"))
    for i, ((run, preset, data), rows) in enumerate(
        m.groupby(["run", "preset", "dataset"], sort=False)
    ):
        points = []
        for bars, per_bars in rows.groupby("case_bars"):
            mean, low, high = mean_ci(per_bars["value"].to_numpy())
            points.append((int(bars), mean, low, high, len(per_bars)))
        bars_, mean_, low_, high_, n_ = (np.array(v) for v in zip(*points, strict=True))
        fig.add_trace(
            go.Scatter(
                x=bars_,
                y=mean_,
                mode="lines+markers",
                name=f"{_label(run, preset, many)} ({data})",
                line={"color": _PALETTE[i % len(_PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": np.nan_to_num(high_ - mean_),
                    "arrayminus": np.nan_to_num(mean_ - low_),
                },
                customdata=n_,
                hovertemplate="%{x} bars<br>mean gap %{y:.2f}<br>%{customdata} seeds"
                "<extra></extra>",
            )
        )
    fig.update_xaxes(title="dataset length (bars)", type="log")
    fig.update_yaxes(title="train - validation Sharpe (mean, 95% t CI over seeds)")
    return fig


def _pareto_figure(df: pd.DataFrame) -> go.Figure | str:
    points = []
    for run, frame in df.groupby("run", sort=False):
        summary = preset_summary(frame)
        for column in ("latency_p99", "val_sharpe"):
            if column not in summary:
                summary[column] = np.nan
        ok = summary[summary["latency_p99"].notna() & summary["val_sharpe"].notna()]
        points += [(run, r.preset, r.latency_p99, r.val_sharpe) for r in ok.itertuples()]
    if not points:
        return "needs both batch-1 latency (infer suite) and validation Sharpe (overfit suite)"
    fig = go.Figure()
    many = len({p[0] for p in points}) > 1
    for i, run in enumerate(dict.fromkeys(p[0] for p in points)):
        pts = sorted((p for p in points if p[0] == run), key=lambda p: p[2])
        front, best = [], -np.inf
        for p in pts:
            if p[3] > best:
                front.append(p)
                best = p[3]
        colour = _PALETTE[i % len(_PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=[p[2] * 1e3 for p in pts],
                y=[p[3] for p in pts],
                mode="markers+text",
                text=[p[1] for p in pts],
                textposition="top center",
                marker={"size": 11, "color": colour},
                name=f"{run}: presets" if many else "presets",
                hovertemplate="%{text}<br>p99 %{x:.3f} ms<br>val Sharpe %{y:.2f}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[p[2] * 1e3 for p in front],
                y=[p[3] for p in front],
                mode="lines",
                line={"dash": "dash", "color": colour},
                name=f"{run}: Pareto front" if many else "Pareto front",
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(title="batch-1 p99 latency, ms (best backend)", type="log")
    fig.update_yaxes(title="mean validation Sharpe (longest dataset)")
    return fig
