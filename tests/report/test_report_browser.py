"""The HTML reports in headless Chromium: no console errors, every chart drawn with a title and traces.

Skipped where no Chromium is installed (Debian: ``apt-get install chromium``); see tests/headless.py.
"""

from __future__ import annotations

import re

import pytest
from headless import find_chromium, inspect_page
from report_fixtures import RUN_SCENARIO, make_search

import servesim
from servesim.report.html import write_report

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (apt-get install chromium)")

# Each chart div: drawn by plotly (its class), with an SVG, at least one trace and a title.
CHARTS_JS = """(() => {
  const charts = [...document.querySelectorAll('div[id^="chart-"]')].map(d => ({
    id: d.id, plotly: d.classList.contains('js-plotly-plot'), svg: d.querySelectorAll('.main-svg').length,
    traces: d.querySelectorAll('.trace').length, title: (d.querySelector('.gtitle') || {}).textContent || '',
    axes: [...d.querySelectorAll('.xtitle, .ytitle')].map(t => t.textContent)}));
  const drawn = c => c.plotly && c.svg > 0 && c.traces > 0 && c.title.length > 0;
  return {done: document.readyState === 'complete' && charts.length > 0 && charts.every(drawn),
          plotly: typeof Plotly !== 'undefined', charts: charts};
})()"""


def _check(html_path):
    report = inspect_page(html_path, CHARTS_JS, timeout_s=60)
    assert report.errors == []
    value = report.value
    expected = re.findall(r'<div id="(chart-[a-z0-9-]+)"', html_path.read_text())
    assert value["plotly"] and value["done"], value
    assert [c["id"] for c in value["charts"]] == expected
    for chart in value["charts"]:
        assert all(chart["axes"]), chart  # every axis titled
    return {c["id"]: c for c in value["charts"]}


def test_run_report_renders_in_chromium(tmp_path):
    servesim.simulate(RUN_SCENARIO).write(tmp_path / "run")
    charts = _check(write_report(tmp_path / "run")[0])
    assert set(charts) == {"chart-latency-cdf", "chart-arrivals", "chart-queue", "chart-kv", "chart-slo",
                           "chart-cost-energy"}
    assert charts["chart-latency-cdf"]["traces"] == 5  # TTFT, TPOT, E2E and the TTFT and TPOT targets


def test_search_report_renders_in_chromium(tmp_path):
    charts = _check(write_report(make_search(tmp_path / "search"))[0])
    assert {"chart-pareto-0", "chart-throughput-latency", "chart-axis-cluster-num-replicas"} <= set(charts)


def test_the_check_sees_console_errors_and_exceptions(tmp_path):
    # The check itself can fail: a page that logs an error and throws is reported, one line each.
    page = tmp_path / "bad.html"
    page.write_text("<html><body><div id='chart-x'></div><script>console.error('boom');"
                    "document.title = 'ran'; missingFunction();</script></body></html>")
    report = inspect_page(page, "document.title === 'ran'", timeout_s=20)
    assert report.value is True
    assert report.errors[0] == "console.error: boom"
    assert report.errors[1].startswith("exception: ReferenceError: missingFunction is not defined")
    assert len(report.errors) == 2
