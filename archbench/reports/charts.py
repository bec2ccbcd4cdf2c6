"""The report's plotly figures: throughput, latency, memory, overfitting and the Pareto front,
each built from the loaded runs, or the reason it has no data.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from archbench.reports.evidence import RunSummary, device_label, summary_of
from archbench.reports.stats import mean_ci
from archbench.reports.tables import record_predicted

__all__ = ["CHARTS", "TITLES", "build_charts"]

CHARTS = ("throughput", "latency", "memory", "overfit", "curves", "pareto")
"""The charts in page order; each is the div with id 'chart-NAME'."""

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

TITLES = {
    "throughput": "Training throughput vs parameters",
    "latency": "Inference latency p50 / p99 per preset and backend",
    "memory": "Training memory by component: predicted vs measured",
    "overfit": "Overfitting: Sharpe gap (train - validation) per dataset length",
    "curves": "Learning curves: train vs validation Sharpe per size, at the chosen step size",
    "pareto": "Pareto front: batch-1 p99 latency vs out-of-sample Sharpe",
}
"""The heading each chart gets on the page."""


def build_charts(
    df: pd.DataFrame, summaries: dict[str, RunSummary] | None = None
) -> dict[str, go.Figure | str]:
    """Each of CHARTS: its figure, or why there is no data for it.

    summaries: evidence.run_summaries(df), when the caller has them already."""
    by_device = _runs_by_device(df)
    return {
        "throughput": _throughput_figure(by_device),
        "latency": _latency_figure(by_device),
        "memory": _memory_figure(by_device, summaries),
        "overfit": _overfit_figure(by_device),
        "curves": _curves_figure(by_device),
        "pareto": _pareto_figure(by_device, summaries),
    }


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


def _label(run: str, preset: str, many_runs: bool) -> str:
    return f"{run}: {preset}" if many_runs else preset


_THROUGHPUT_METRICS = (
    "train_env_steps_per_s",
    "rollout_env_steps_per_s",
    "env_steps_per_s",
    "update_samples_per_s",
)
"""The train suite's rates: the whole iteration (what the engine ranks), the rollout alone
(`env_steps_per_s` in runs written before the suite measured the whole iteration) and the
update."""


def _throughput_figure(df: pd.DataFrame) -> go.Figure | str:
    m = df[(df["suite"] == "train") & (df["value"].notna()) & df["params"].notna()]
    m = m[m["metric"].isin(_THROUGHPUT_METRICS)]
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


def _memory_figure(df: pd.DataFrame, summaries: dict | None = None) -> go.Figure | str:
    rows = _memory_rows(df, summaries)
    if not rows:
        return "no memory suite results and no predicted breakdown in any run"
    many = len({r[0] for r in rows}) > 1
    x = [_label(run, preset, many) for run, preset, *_ in rows]
    fig = go.Figure()
    _add_predicted_bars(fig, x, rows)
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


def _memory_rows(df: pd.DataFrame, summaries: dict | None) -> list[tuple]:
    """(run, preset, predicted breakdown, measured bytes or None, its source) per size that has
    either."""
    rows = []
    for run, frame in df.groupby("run", sort=False):
        summary = summary_of(run, frame, summaries).table
        for _, s in summary.iterrows():
            predicted = record_predicted(frame[frame["preset"] == s["preset"]])
            measured = s.get("memory_check_bytes")
            measured = None if measured is None or pd.isna(measured) else measured
            if not any(k in predicted for k in _COMPONENTS) and measured is None:
                continue
            rows.append((run, s["preset"], predicted, measured, s.get("memory_check_source")))
    return rows


def _add_predicted_bars(fig: go.Figure, x: list[str], rows: list[tuple]) -> None:
    """The sizing model's breakdown, one stacked bar per component that is not zero."""
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


def _curves_figure(df: pd.DataFrame) -> go.Figure | str:
    """One panel per dataset and length: per size, the mean validation (solid) and training
    (dotted) Sharpe over seeds and folds at each point of the budget, with 95% t intervals; the
    legend says which step size(s) validation chose for that size."""
    m = df[(df["suite"] == "overfit") & (df["metric"] == "val_sharpe")]
    m = m[m["series"].map(lambda s: bool(s.get("curve_val_sharpe")))]
    if m.empty:
        return "no learning curve in any run (overfit records written before the curves)"
    dataset = m["case_dataset"] if "case_dataset" in m else pd.Series("data", index=m.index)
    m = m.assign(setting=dataset.fillna("data") + " " + m["case_length"].fillna("").astype(str))
    settings = list(dict.fromkeys(m["setting"]))
    fig = make_subplots(rows=1, cols=len(settings), subplot_titles=settings)
    many = m["run"].nunique() > 1
    for col, setting in enumerate(settings, start=1):
        rows = m[m["setting"] == setting]
        for i, ((run, preset), group) in enumerate(rows.groupby(["run", "preset"], sort=False)):
            name = f"{_label(run, preset, many)} (lr {_chosen_rates(group)})"
            for key, split in (("curve_val_sharpe", "validation"), ("curve_train_sharpe", "train")):
                trace = _curve_trace(group, key, name, split, _PALETTE[i % len(_PALETTE)])
                trace.showlegend = split == "validation" and col == 1
                fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(title="env steps", row=1, col=col)
    fig.update_yaxes(title="Sharpe (solid validation, dotted train)", row=1, col=1)
    return fig


def _curve_trace(group: pd.DataFrame, key: str, name: str, split: str, color: str) -> go.Scatter:
    x, mean, low, high = _curve_band(group, key)
    return go.Scatter(
        x=x,
        y=mean,
        mode="lines+markers",
        legendgroup=name,
        name=name if split == "validation" else f"{name} train",
        line={"color": color, "dash": None if split == "validation" else "dot"},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": np.nan_to_num(high - mean),
            "arrayminus": np.nan_to_num(mean - low),
        },
        hovertemplate=f"{split}<br>%{{x:,}} env steps<br>Sharpe %{{y:.2f}}<extra></extra>",
    )


def _curve_band(group: pd.DataFrame, key: str) -> tuple[np.ndarray, ...]:
    """x (env steps of the first record) and the mean with its 95% t interval over records at
    each point; records of another length of curve are left out rather than misaligned."""
    curves = [(s["curve_env_steps"], s[key]) for s in group["series"] if key in s]
    steps = curves[0][0]
    values = np.array([v for x, v in curves if len(x) == len(steps)])  # (records, points)
    stats = [mean_ci(values[:, j]) for j in range(values.shape[1])]
    mean, low, high = (np.array(v, dtype=float) for v in zip(*stats, strict=True))
    return np.array(steps), mean, low, high


def _chosen_rates(group: pd.DataFrame) -> str:
    """'0.001 x3, 0.003 x1': the step sizes validation chose, with how many seed-folds each."""
    rates = group["series"].map(lambda s: s.get("lr_sweep_learning_rate"))
    best = group["series"].map(lambda s: s.get("lr_sweep_best_val_sharpe"))
    chosen = [r[int(np.argmax(b))] for r, b in zip(rates, best, strict=True) if r and b]
    counts = pd.Series(chosen, dtype=float).value_counts().sort_index()
    return ", ".join(f"{rate:g} x{n}" for rate, n in counts.items()) or "not recorded"


def _pareto_figure(df: pd.DataFrame, summaries: dict | None = None) -> go.Figure | str:
    points = []
    for run, frame in df.groupby("run", sort=False):
        summary = summary_of(run, frame, summaries).table
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
