"""``servesim report``: one self-contained HTML page (plotly) and a markdown summary beside it.

``write_report(path, out)`` reads a run's output folder or a sweep's
(``servesim.report.sources``), builds the charts (``servesim.report.charts``,
``servesim.report.sweep_charts``)
and writes ``out`` (default ``PATH/report.html``) and ``out`` with suffix
``.md``.  The page holds plotly.js itself (inlined once in ``<head>``), so
it opens offline; each chart is a ``<div>`` with the chart's key as id and
a script that draws it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from servesim.errors import ConfigError
from servesim.report import charts, markdown, sweep_charts
from servesim.report.sources import OPTIONAL_TABLES, RunData, SweepData, load

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; } .note { color: #666; font-size: 0.85rem; margin: 0 0 1.5rem 0.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tr.pareto td { background: #fdecea; font-weight: 600; } tr.failed td { background: #fff4e5; }
.scroll { overflow-x: auto; } pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
"""
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def write_report(path: str | Path, out: str | Path | None = None,
                 compare: str | Path | None = None) -> tuple[Path, Path]:
    """Write the report of the run or sweep at ``path``; returns (html path, markdown path).
    ``compare``: a replay's folder of the same workload, compared with the run at ``path`` in a
    section of its own (``servesim.live.compare``).

    ``ConfigError`` (one line) for a PATH that is neither, a ``compare`` folder that is not a
    replay of the same workload, or an ``out`` that cannot be written.
    """
    data = load(path)
    html_path = Path(out) if out is not None else Path(path) / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"option --out {html_path}: must name an .html file")
    md_path = html_path.with_suffix(".md")
    if compare is not None and not isinstance(data, RunData):
        raise ConfigError(f"option --compare {compare}: compares a run with a replay, and {path} is a {data.kind}")
    if isinstance(data, RunData):
        comparison = None
        if compare is not None:
            from servesim.live.compare import compare_folders
            from servesim.report.sources import load_run

            found = compare_folders(path, compare)  # checks both folders first
            comparison = (load_run(Path(compare)), found)
        page = run_page(data, comparison)
        text = markdown.run_markdown(data, html_path.name, comparison[1] if comparison else None)
    else:
        page, text = sweep_page(data), markdown.sweep_markdown(data, html_path.name)
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(page, encoding="utf-8")
        md_path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"option --out {html_path}: cannot write: {err.strerror or err}") from None
    return html_path, md_path


def run_page(run: RunData, comparison: tuple[RunData, Any] | None = None) -> str:
    """The HTML page of one run (or replay); with ``comparison`` (the replay's folder and the
    ``servesim.live.compare.Comparison``) a section comparing the two."""
    s = run.summary
    kind = markdown.run_kind(s)
    body = [f"<h1>servesim {kind}: {_e(run.name)}</h1>", f"<p class='sub'>{_e(str(run.path))}</p>",
            _table(["", "value"], [list(r) for r in markdown.headline_rows(s) + markdown.replay_rows(s)]),
            "<h2>Latency</h2>", _table(markdown.LATENCY_HEADER, markdown.latency_rows(s))]
    if comparison is not None:
        body += _comparison_section(run, *comparison)
    built = charts.run_charts(run)
    body += _chart_section("Latency distributions", [c for c in built if c.key in ("chart-latency-cdf", "chart-programs")])
    body += _chart_section("Load over time", [c for c in built if c.key in (
        "chart-arrivals", "chart-queue", "chart-kv", "chart-replicas", "chart-power", "chart-prefix-cache")])
    body.append("<h2>SLO, cost and energy</h2>")
    if not any(c.key == "chart-slo" for c in built):
        body.append("<p class='note'>No SLO targets set (slo.ttft_s, slo.tpot_s, slo.e2e_s): no attainment chart.</p>")
    body += _charts_html([c for c in built if c.key in ("chart-slo", "chart-cost-energy")])
    missing = [f"{stem}.parquet" for stem in OPTIONAL_TABLES if stem not in run.tables]
    body.append(f"<p class='note'>Optional files not in this run (their charts are left out): "
                f"{_e(', '.join(missing) or 'none')}.</p>")
    if run.config is not None:
        import yaml

        body.append("<details><summary>Resolved scenario (config.yaml)</summary><pre>"
                    + _e(yaml.safe_dump(run.config, sort_keys=False)) + "</pre></details>")
    return _page(f"servesim {kind}: {run.name}", body)


def sweep_page(sweep: SweepData) -> str:
    """The HTML page of a sweep or search."""
    done = sum(1 for r in sweep.runs if r.get("status") == "done")
    body = [f"<h1>servesim {_e(sweep.kind)}: {_e(sweep.name)}</h1>", f"<p class='sub'>{_e(str(sweep.path))}</p>",
            f"<p>{len(sweep.runs)} runs: {done} done, {len(sweep.runs) - done} failed.</p>"]
    if sweep.trials is not None:
        best = markdown.best_rows(sweep)
        body.append("<h2>Best feasible deployment</h2>")
        body.append(_table(["", "value"], [list(r) for r in best]) if best else "<p>No feasible trial.</p>")
        body += _chart_section("Pareto fronts", sweep_charts.search_charts(sweep))
        header, rows = markdown.trial_table(sweep)
        body.append("<h2>Trials</h2>")
        body.append(_table(header, rows, ["pareto" if r[-1] == "yes" else "" for r in rows]))
    body += _chart_section("Metrics across runs", sweep_charts.sweep_charts(sweep))
    header, rows = markdown.run_table(sweep)
    body.append("<h2>Runs</h2>")
    body.append(_table(header, rows, ["failed" if r[1] != "done" else "" for r in rows]))
    header, rows = markdown.failed_table(sweep)
    body.append("<h2>Failed runs</h2>")
    body.append(_table(header, rows) if rows else "<p>None.</p>")
    if sweep.spec is not None:
        body.append("<details><summary>Spec</summary><pre>" + _e(json.dumps(sweep.spec, indent=2)) + "</pre></details>")
    return _page(f"servesim {sweep.kind}: {sweep.name}", body)


# ---------------------------------------------------------------- assembly
def _comparison_section(run: RunData, real: RunData, comparison: Any) -> list[str]:
    from servesim.live.compare import COMPARISON_HEADER, comparison_rows

    section = ["<h2>Simulation vs replay</h2>", f"<p class='sub'>replay: {_e(str(real.path))}</p>",
               _table(["", "value"], [list(r) for r in markdown.replay_rows(real.summary)]),
               _table(COMPARISON_HEADER, comparison_rows(comparison)),
               f"<p class='note'>Errors are (sim - real) / real. Requests in system over time: mean |sim - real| "
               f"{_e(markdown.fmt(comparison.in_system_mean_abs_diff))} requests over {len(comparison.grid_s)} "
               "instants.</p>"]
    return section + _charts_html(charts.comparison_charts(run, real, comparison))


def _chart_section(heading: str, built: Sequence[charts.Chart]) -> list[str]:
    return [f"<h2>{_e(heading)}</h2>", *_charts_html(built)] if built else []


def _charts_html(built: Sequence[charts.Chart]) -> list[str]:
    out = []
    for chart in built:
        out.append(chart.figure.to_html(full_html=False, include_plotlyjs=False, div_id=chart.key,
                                        config=_PLOT_CONFIG))
        if chart.note:
            out.append(f"<p class='note'>{_e(chart.note)}</p>")
    return out


def _page(title: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'>", "<head>", "<meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>", f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>", f"<script type='text/javascript'>{get_plotlyjs()}</script>", "</head>",
        "<body>", *body, "</body>", "</html>", ""])


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        cells = "".join(f"<td>{_e(c)}</td>" for c in row)
        lines.append(f"<tr class='{cls}'>{cells}</tr>" if cls else f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table></div>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
