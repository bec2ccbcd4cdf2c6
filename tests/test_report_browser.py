"""The report in a real browser: headless Chromium loads it offline, no JavaScript errors,
every chart drawn (plotly SVG nodes counted in the rendered DOM), and a screenshot saved.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from archbench.reports.charts import CHARTS
from archbench.reports.render import render_report

FIXTURES = Path(__file__).parent / "fixtures"
RUNS = [FIXTURES / "run-cpu-quick.json", FIXTURES / "run-cpu-quick-b.json"]
FOLDS = FIXTURES / "overfit-folds-quick.json"
"""An overfit run with learning curves (the two runs above predate them)."""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt chromium)"),
]

# Injected first in <head>: collects errors from the moment parsing starts, and after the
# page has loaded (and plotly has drawn) writes them into a node the DOM dump will contain.
_COLLECTOR = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('unhandledrejection', function (e) {
  window.__errors.push('unhandled rejection: ' + String(e.reason)); });
window.addEventListener('load', function () { setTimeout(function () {
  var out = document.createElement('pre');
  out.id = 'js-errors';
  out.setAttribute('data-count', String(window.__errors.length));
  out.textContent = window.__errors.join('\\n');
  document.body.appendChild(out); }, 1000); });
</script>"""

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _ChartSvgCounter(HTMLParser):
    """Counts <svg class="main-svg"> inside each <div id="chart-NAME"> of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.errors: tuple[int, str] | None = None
        self._stack: list[str | None] = []  # the chart each open element belongs to
        self._in_errors = False
        self._error_text: list[str] = []
        self._error_count = -1

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        chart = self._stack[-1] if self._stack else None
        element_id = attrs.get("id") or ""
        if element_id.startswith("chart-"):
            chart = element_id.removeprefix("chart-")
            self.counts.setdefault(chart, 0)
        if tag == "svg" and chart and "main-svg" in (attrs.get("class") or "").split():
            self.counts[chart] += 1
        if element_id == "js-errors":
            self._in_errors = True
            self._error_count = int(attrs.get("data-count", "-1"))
        if tag not in _VOID:
            self._stack.append(chart)

    def handle_endtag(self, tag):
        if tag == "pre" and self._in_errors:
            self._in_errors = False
            self.errors = (self._error_count, "".join(self._error_text))
        if tag not in _VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._in_errors:
            self._error_text.append(data)


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={user_data}",
        "--virtual-time-budget=15000", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_headless_chromium_without_errors(tmp_path):
    report = render_report([*RUNS, FOLDS], tmp_path / "report.html")
    page = report.read_text(encoding="utf-8")
    page = page.replace("<head>", "<head>" + _COLLECTOR, 1)
    probed = tmp_path / "probed.html"
    probed.write_text(page, encoding="utf-8")

    dump = _chromium("--dump-dom", probed.as_uri(), user_data=tmp_path / "profile-dom")
    assert dump.returncode == 0, dump.stderr[-2000:]
    parser = _ChartSvgCounter()
    parser.feed(dump.stdout)
    assert parser.errors is not None, "the error collector never ran: page did not finish loading"
    count, text = parser.errors
    assert count == 0, f"JavaScript errors in the report: {text}"
    for name in CHARTS:
        assert parser.counts.get(name, 0) >= 1, (
            f"chart {name!r} drew no plotly SVG: {parser.counts}"
        )

    screenshot = Path(os.environ.get("ARCHBENCH_SCREENSHOT_DIR", tmp_path)) / "report.png"
    shot = _chromium(
        f"--screenshot={screenshot}", "--window-size=1400,6000", report.as_uri(),
        user_data=tmp_path / "profile-shot",
    )  # fmt: skip
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a blank page compresses to a few kB


def test_at_800_px_no_table_scrolls_sideways(tmp_path):
    report = render_report(RUNS, tmp_path / "report.html", plotlyjs="cdn")
    probe = """<script>window.addEventListener('load', function () {
      var wide = [];
      document.querySelectorAll('div.wide').forEach(function (box, i) {
        if (box.scrollWidth > box.clientWidth + 1) { wide.push(i + ':' + box.scrollWidth); } });
      var out = document.createElement('pre'); out.id = 'too-wide';
      out.setAttribute('data-page', String(document.documentElement.scrollWidth));
      out.textContent = wide.join(','); document.body.appendChild(out); });</script>"""
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", probe + "</body>"))
    dump = _chromium(
        "--window-size=800,2000", "--dump-dom", probed.as_uri(), user_data=tmp_path / "p800"
    )
    assert dump.returncode == 0, dump.stderr[-2000:]
    found = re.search(r"<pre id=\"too-wide\" data-page=\"(\d+)\">([^<]*)</pre>", dump.stdout)
    assert found, "the probe never ran"
    assert int(found.group(1)) <= 800
    assert found.group(2) == "", f"tables wider than the window: {found.group(2)}"
