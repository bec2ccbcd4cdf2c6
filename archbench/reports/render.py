"""The HTML report page: the tables (archbench.reports.tables) and charts
(archbench.reports.charts) in one file, written atomically, with plotly.js inlined once or
loaded from a CDN (a small file).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath

import pandas as pd
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from archbench.reports.charts import CHARTS, TITLES, build_charts
from archbench.reports.decision_types import Limits
from archbench.reports.evidence import RunSummary, run_summaries
from archbench.reports.host_load import (
    HOST_LOAD_METRIC,
    RunLoad,
    decision_rows,
    mark_loaded,
    run_loads,
    timing_rows,
)
from archbench.reports.load import ReportError, case_label, load_runs, suite_verdict
from archbench.reports.tables import (
    aggregates_table,
    backend_table,
    env_table,
    header_table,
    missing_note,
    oos_table,
    peer_table,
    recommendations_table,
    sizing_table,
    unavailable_table,
    use_case_table,
)
from archbench.reports.use_cases import recommend
from ppo_core.atomic import atomic_path

__all__ = ["render_html", "render_report", "write_section"]

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
.wide{max-width:100%;overflow-x:auto}
.wide table{font-size:.85em}
pre{white-space:pre-wrap;background:#f8f8f8;padding:8px;font-size:.85em}
@media (max-width:900px){body{margin:8px;padding:0 4px}
th,td{padding:2px 4px;overflow-wrap:break-word;hyphens:auto}table{font-size:.8em}
.sizing th,.sizing td{overflow-wrap:anywhere}}
"""
# Charts whose figures are timings: a loaded host moves them (host_load).
_TIMING_CHARTS = {"throughput": ("train",), "latency": ("infer",), "pareto": ("infer",)}


def render_report(
    source: pd.DataFrame | Iterable[str | Path],
    out_path: str | Path,
    *,
    plotlyjs: str = "inline",
    budgets: Limits | None = None,
    compare_html: str | None = None,
    allow_loaded: bool = False,
    notes: Sequence[str] = (),
) -> Path:
    """Write the HTML report for one or more runs to out_path (atomically); returns the path."""
    df = source if isinstance(source, pd.DataFrame) else load_runs(source)
    page = render_html(
        df,
        plotlyjs=plotlyjs,
        budgets=budgets,
        compare_html=compare_html,
        allow_loaded=allow_loaded,
        notes=notes,
    )
    return _write_atomic(Path(out_path), page)


def render_html(
    df: pd.DataFrame,
    *,
    plotlyjs: str = "inline",
    budgets: Limits | None = None,
    compare_html: str | None = None,
    allow_loaded: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """The report page as a string (see render_report).

    Timings taken on a loaded host (archbench.reports.host_load) are marked wherever shown
    and left out of the recommendations unless allow_loaded. `notes` are lines the caller
    puts at the top (e.g. that the run was rebuilt from its records stream)."""
    if plotlyjs not in ("inline", "cdn"):
        raise ReportError(f"plotlyjs must be 'inline' or 'cdn', got {plotlyjs!r}")
    budgets = budgets or Limits()
    df = mark_loaded(_shareable(df))
    decided = decision_rows(df, allow_loaded=allow_loaded)
    summaries = run_summaries(df)  # once: the engine, the sizing table and two charts read them
    # Timings left out of the decisions change the engine's rows: it then summarises its own.
    left_out = (df["value"].notna() & decided["value"].isna()).any()
    recommendations = recommend(decided, budgets, None if left_out else summaries)
    runs = list(dict.fromkeys(df["run"]))
    devices = list(dict.fromkeys(d.device for d in recommendations))
    loads = run_loads(df)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ppo-archbench report: {html.escape(', '.join(runs))}</title>",
        f"<style>{_CSS}</style>",
        _plotly_script(plotlyjs),
        "</head><body>",
        "<h1>ppo-archbench report</h1>",
        f"<p class='note'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} "
        f"from {len(runs)} run(s).</p>",
        *_top_notes(df, loads, notes, allow_loaded),
        _wrap(header_table(df)),
        missing_note(df),
        "<h2>Recommended hidden_dims</h2>",
        *_left_out_note(df, decided),
        _wrap(recommendations_table(recommendations, devices)),
        use_case_table(budgets),
        "<h2>Out of sample: each size beside buy-and-hold, the trend rule and the oracle</h2>",
        _wrap(oos_table(df)),
        *([_wrap(aggregates)] if (aggregates := aggregates_table(df)) else []),
        _suite_verdicts(df),
        "<h2>Sizing: predicted vs measured</h2>",
        _wrap(sizing_table(df, summaries), "sizing"),
        "<h2>Fastest agreeing backend for a live decision (batch 1)</h2>",
        _wrap(backend_table(df)),
        *_chart_parts(df, summaries),
        "<h2>Environment steps (env suite)</h2>",
        _wrap(env_table(df)),
        "<h2>ppo_core against Stable-Baselines3 (peer suite)</h2>",
        _wrap(peer_table(df)),
    ]
    if compare_html:
        parts += ["<h2>Comparison</h2>", _wrap(compare_html)]
    parts += [
        "<h2>Figures that could not be measured</h2>",
        _wrap(unavailable_table(df)),
        "</body></html>",
    ]
    return "\n".join(parts)


def _wrap(table_html: str, name: str = "") -> str:
    """A wide table scrolls inside its own box, never the page (an 800 px window)."""
    return f"<div class='{f'wide {name}'.strip()}'>{table_html}</div>"


def _chart_parts(df: pd.DataFrame, summaries: dict[str, RunSummary]) -> list[str]:
    figures = build_charts(df, summaries)
    parts = []
    for name in CHARTS:
        parts.append(f"<h2>{html.escape(TITLES[name])}</h2>")
        if not isinstance(figures[name], str):
            parts += _loaded_chart_note(df, _TIMING_CHARTS.get(name, ()))
        figure = figures[name]
        if isinstance(figure, str):
            parts.append(
                f"<div class='nodata' id='chart-{name}' data-chart='{name}' data-empty='1'>"
                f"no data: {html.escape(figure)}</div>"
            )
            continue
        figure.update_layout(template="plotly_white", margin={"t": 40, "b": 40})
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"chart-{name}",
                config={"displaylogo": False, "responsive": True},
            )
        )
    return parts


def _loaded_chart_note(df: pd.DataFrame, suites: tuple[str, ...]) -> list[str]:
    """A warning above a chart whose timings include some taken on a loaded host."""
    rows = df[df["suite"].isin(suites) & df["loaded_host"] & timing_rows(df)]
    if rows.empty:
        return []
    runs = ", ".join(
        f"{run} ({group['case'].nunique()} case(s), up to {group['host_load'].max():.2f} per core)"
        for run, group in rows.groupby("run", sort=False)
    )
    return [
        f"<p class='warn loaded'>Timings here from {html.escape(runs)} were taken on a loaded "
        "host: they measure the other work on the machine as much as the network.</p>"
    ]


def _top_notes(
    df: pd.DataFrame, loads: list[RunLoad], notes: Sequence[str], allow_loaded: bool
) -> list[str]:
    """What a reader must know before any figure: an incomplete run, a loaded host, how the
    run file came to be."""
    parts = [f"<p class='warn'>{html.escape(note)}</p>" for note in notes]
    for run, state in _run_states(df):
        for mismatch in state.get("mismatch", []):
            parts.append(f"<p class='warn'>{html.escape(run)}: {html.escape(mismatch)}</p>")
        if not state.get("incomplete"):
            continue
        lost = "".join(
            f"<li>{html.escape(x['case'])}: {html.escape(x['reason'])}</li>" for x in state["lost"]
        )
        detail = f"<ul>{lost}</ul>" if lost else " It does not list which cases were lost."
        path = df.loc[df["run"] == run, "path"].iloc[0]
        parts.append(
            f"<div class='warn incomplete'><b>{html.escape(run)} is incomplete</b>: the sweep "
            f"stopped before every case ran ({len(state['lost'])} case(s) lost); "
            f"<code>archbench sweep --resume {html.escape(str(path))}</code> completes it. "
            f"What is lost:{detail}</div>"
        )
    loaded = [load for load in loads if load.loaded or load.loaded_records]
    if loaded:
        use = (
            "They are used in the recommendations anyway (--allow-loaded)."
            if allow_loaded
            else "They are left out of the recommendations (--allow-loaded uses them)."
        )
        items = "".join(f"<li>{html.escape(_load_line(df, load))}</li>" for load in loaded)
        parts.append(
            "<div class='warn loaded'><b>Taken on a loaded host</b>: these timings "
            f"shared the cores with other work and are marked where shown. {use}"
            f"<ul>{items}</ul></div>"
        )
    return parts


def _left_out_note(df: pd.DataFrame, decided: pd.DataFrame) -> list[str]:
    """Says that loaded timings were left out, so that 'not measured' below is understood."""
    left_out = int((df["value"].notna() & decided["value"].isna()).sum())
    if not left_out:
        return []
    return [
        f"<p class='warn loaded'>{left_out} timings taken on a loaded host are left out of "
        "these decisions, so a use case that needs them says 'not measured' "
        "(--allow-loaded uses them).</p>"
    ]


def _load_line(df: pd.DataFrame, load: RunLoad) -> str:
    """The run's load, and which records were above the rule when the run as a whole is not."""
    if load.loaded:
        return load.describe()
    rows = df[(df["run"] == load.run) & df["loaded_host"] & (df["metric"] == HOST_LOAD_METRIC)]
    cases = [f"{suite} {preset or ''} {case}".replace("  ", " ") for suite, preset, case
             in rows[["suite", "preset", "case"]].itertuples(index=False)]  # fmt: skip
    more = f" and {len(cases) - 4} more" if len(cases) > 4 else ""
    return f"{load.describe()}: {'; '.join(cases[:4])}{more}"


def _run_states(df: pd.DataFrame) -> list[tuple[str, dict]]:
    if "run_state" not in df:
        return []
    first = df.drop_duplicates("run")
    return [(run, state) for run, state in zip(first["run"], first["run_state"], strict=True)
            if isinstance(state, dict)]  # fmt: skip


def _suite_verdicts(df: pd.DataFrame) -> str:
    """The overfitting suite's own verdict per run, as its pytest log printed it."""
    if not (df["suite"] == "overfit").any():
        return ""
    parts = ["<h3>The overfitting suite's own verdict</h3>"]
    for run, path in df.drop_duplicates("run")[["run", "path"]].itertuples(index=False):
        if not (df.loc[df["run"] == run, "suite"] == "overfit").any():
            continue
        lines = suite_verdict(path) if isinstance(path, str) else None
        if lines is None:
            parts.append(
                f"<p class='note'>{html.escape(run)}: the suite prints its verdict in the "
                f"pytest log ({html.escape(run)}.log beside the run), which is not there.</p>"
            )
            continue
        parts.append(
            f"<p><b>{html.escape(run)}</b></p><pre>{html.escape(chr(10).join(lines))}</pre>"
        )
    return "\n".join(parts)


def _shareable(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with a dataset given as a local path (--data /home/me/x.csv) named by its file
    name: the page is meant to be shared, and a path says nothing to its readers."""
    if "case_dataset" not in df:
        return df
    paths = df["case_dataset"].map(lambda v: isinstance(v, str) and ("/" in v or "\\" in v))
    if not paths.any():
        return df
    out = df.copy()
    out.loc[paths, "case_dataset"] = out.loc[paths, "case_dataset"].map(_file_name)
    out.loc[paths, "case_dict"] = [
        {**case, "dataset": _file_name(case["dataset"])} if "dataset" in case else case
        for case in out.loc[paths, "case_dict"]
    ]
    out.loc[paths, "case"] = out.loc[paths, "case_dict"].map(case_label)
    return out


def _file_name(value: object) -> object:
    return PureWindowsPath(value).name if isinstance(value, str) else value


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
