"""The HTML report page: the tables (archbench_reports.tables) and charts
(archbench_reports.charts) in one file, written atomically, with plotly.js inlined once or
loaded from a CDN (a small file).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from archbench_reports.charts import CHARTS, TITLES, build_charts
from archbench_reports.load import ReportError, load_runs
from archbench_reports.tables import (
    backend_table,
    header_table,
    missing_note,
    recommendations_table,
    sizing_table,
    unavailable_table,
    use_case_table,
)
from archbench_reports.use_cases import Limits, recommend
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
    figures = build_charts(df)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ppo-archbench report: {html.escape(', '.join(runs))}</title>",
        f"<style>{_CSS}</style>",
        _plotly_script(plotlyjs),
        "</head><body>",
        "<h1>ppo-archbench report</h1>",
        f"<p class='note'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} "
        f"from {len(runs)} run(s).</p>",
        header_table(df),
        _incomplete_note(df),
        missing_note(df),
        "<h2>Recommended hidden_dims</h2>",
        recommendations_table(recommendations, devices),
        use_case_table(budgets),
        "<h2>Sizing: predicted vs measured</h2>",
        sizing_table(df),
        "<h2>Fastest agreeing backend for a live decision (batch 1)</h2>",
        backend_table(df),
    ]
    for name in CHARTS:
        parts.append(f"<h2>{html.escape(TITLES[name])}</h2>")
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
        unavailable_table(df),
        "</body></html>",
    ]
    return "\n".join(parts)


def _incomplete_note(df: pd.DataFrame) -> str:
    """A run the sweep did not finish (stopped, or cases lost), or whose shards differ, says
    so at the top."""
    if "lost_cases" not in df:
        return ""
    runs = df.drop_duplicates("run").dropna(subset=["lost_cases"])
    lines = [
        f"incomplete: run {html.escape(str(row.run))} lacks {int(row.lost_cases)} case(s) "
        f"(archbench_run.lost in its JSON); `archbench sweep --resume {html.escape(row.path)}` "
        "completes it"
        for row in runs.itertuples()
    ]
    lines += [
        f"shards of run {html.escape(str(row.run))} differ: {html.escape(str(row.shard_mismatch))}"
        for row in df.drop_duplicates("run").dropna(subset=["shard_mismatch"]).itertuples()
    ]
    return "".join(f"<p class='warn'>{line}</p>" for line in lines)


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
