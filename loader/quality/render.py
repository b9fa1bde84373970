"""The report files: quality.json (status per check) and a self-contained quality.html."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from loader.quality.results import jsonable, worst

if TYPE_CHECKING:
    from loader.quality.report import QualityReport

CATEGORY_ORDER = (
    "schema", "referential integrity", "business rules", "duplicates", "reconciliation",
    "completeness", "freshness", "profiling", "anomaly",
)


def to_json(report: QualityReport, history: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Everything the HTML shows, as plain JSON; `status` per check and overall."""
    return jsonable({
        "run_id": report.run_id,
        "generated_at": report.generated_at,
        "seconds": round(report.seconds, 2),
        "status": worst([c.status for c in report.checks]),
        "summary": report.counts,
        "checks": [c.as_dict() for c in report.checks],
        "profiles": [p.__dict__ for p in report.profiles],
        "history": history,
    })


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def svg_chart(points: list[dict[str, Any]], width: int = 620, height: int = 170) -> Markup:
    """A line chart of a metric's days: the detection days shaded, the expected range of each
    judged day as a green bar, anomalous days as red dots with a tooltip. Inline SVG."""
    vals = [p["value"] for p in points if p["value"] is not None]
    bands = [b for p in points for b in (p.get("lower"), p.get("upper")) if b is not None]
    if not vals:
        return Markup('<p class="muted">no data points</p>')
    lo, hi = min(vals + bands), max(vals + bands)
    if math.isclose(lo, hi):
        lo, hi = lo - 1, hi + 1
    pad_l, pad_r, pad_t, pad_b = 56, 10, 10, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(len(points) - 1, 1)

    def x(i: float) -> float:
        return pad_l + w * i / n

    def y(v: float) -> float:
        return pad_t + h * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" class="chart">'
    ]
    first_det = next((i for i, p in enumerate(points) if p.get("in_detection")), None)
    if first_det is not None:
        parts.append(
            f'<rect x="{x(first_det - 0.5):.1f}" y="{pad_t}" '
            f'width="{x(len(points) - 0.5) - x(first_det - 0.5):.1f}" height="{h}" '
            'fill="#eef1f6"><title>detection period</title></rect>'
        )
    for i, p in enumerate(points):
        if p.get("lower") is not None and p.get("upper") is not None:
            top, bottom = y(min(p["upper"], hi)), y(max(p["lower"], lo))
            parts.append(
                f'<rect x="{x(i) - 4:.1f}" y="{top:.1f}" width="8" '
                f'height="{max(bottom - top, 1):.1f}" fill="#bfe3c6">'
                f'<title>{p["day"]}: expected {_fmt(p["lower"])} .. {_fmt(p["upper"])}</title>'
                "</rect>"
            )
    segment: list[str] = []
    for i, p in enumerate(points):
        if p["value"] is None:
            if len(segment) > 1:
                parts.append(f'<polyline fill="none" stroke="#2f5d9c" stroke-width="1.5" '
                             f'points="{" ".join(segment)}"/>')
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(p['value']):.1f}")
    if len(segment) > 1:
        parts.append(f'<polyline fill="none" stroke="#2f5d9c" stroke-width="1.5" '
                     f'points="{" ".join(segment)}"/>')
    for i, p in enumerate(points):
        if p["value"] is None:
            continue
        bad = p.get("is_anomaly")
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p["value"]):.1f}" r="{4 if bad else 1.8}" '
            f'fill="{"#c62828" if bad else "#2f5d9c"}"><title>{p["day"]}: {_fmt(p["value"])}'
            f'{" — anomaly, z " + _fmt(p.get("z")) if bad else ""}</title></circle>'
        )
    for v in (lo, hi):
        parts.append(f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'class="axis">{_fmt(v)}</text>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}" class="axis">{points[0]["day"]}</text>')
    parts.append(f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end" '
                 f'class="axis">{points[-1]["day"]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def svg_bars(rows: list[tuple[str, float]], width: int = 620, unit: str = "s") -> Markup:
    """Horizontal bars (durations, category shares), inline SVG."""
    if not rows:
        return Markup('<p class="muted">nothing recorded yet</p>')
    top = max(v for _, v in rows) or 1
    bar_h, label_w = 18, 230
    height = bar_h * len(rows) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" class="chart">']
    for i, (label, v) in enumerate(rows):
        bw = (width - label_w - 70) * v / top
        yy = i * bar_h + 2
        parts.append(
            f'<text x="{label_w - 6}" y="{yy + 13}" text-anchor="end" class="axis">'
            f"{jinja2.utils.markupsafe.escape(label[:36])}</text>"
            f'<rect x="{label_w}" y="{yy}" width="{max(bw, 1):.1f}" height="{bar_h - 4}" '
            f'fill="#6b8fc7"/><text x="{label_w + bw + 4:.1f}" y="{yy + 13}" class="axis">'
            f"{_fmt(v)}{unit}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data quality report · {{ r.generated_at[:19] }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 2rem 3rem; color: #1d2430; }
h1 { margin: 1.2rem 0 .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dde2ea; }
.muted, .axis { color: #6a7383; fill: #6a7383; font-size: 11px; }
.cards { display: flex; gap: .8rem; flex-wrap: wrap; margin: 1rem 0; }
.card { border-radius: 8px; padding: .6rem 1rem; min-width: 7rem; background: #f3f5f8; }
.card b { display: block; font-size: 1.6rem; }
.pass { color: #1b7a3a; } .warn { color: #a86400; } .fail, .error { color: #c62828; }
.skip { color: #6a7383; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 4px; font-weight: 600;
         font-size: 12px; background: #f3f5f8; text-transform: uppercase; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #e7eaf0;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
details > summary { cursor: pointer; color: #2f5d9c; }
.sample { font-size: 12px; max-width: 70rem; overflow-x: auto; display: block; }
.filters button { margin-right: .3rem; border: 1px solid #ccd3de; background: #fff;
                  border-radius: 4px; padding: .15rem .6rem; cursor: pointer; }
.filters button.on { background: #2f5d9c; color: #fff; }
.checks td:nth-child(2) { max-width: 30rem; overflow-wrap: anywhere; }
.checks td:nth-child(3) { max-width: 45rem; overflow-wrap: anywhere; }
.anomaly { display: inline-block; margin: 0 1.5rem 1rem 0; vertical-align: top; }
</style>
</head>
<body>
<h1>Data quality report</h1>
<p class="muted">run {{ r.run_id }} · generated {{ r.generated_at[:19] }} UTC in
{{ r.seconds }} s · overall <span class="badge {{ r.status }}">{{ r.status }}</span></p>

<div class="cards" id="summary">
{% for s in ["pass", "warn", "fail", "error", "skip"] %}
  <div class="card"><span class="{{ s }}">{{ {"pass": "passed", "warn": "warned",
    "fail": "failed", "error": "errored", "skip": "skipped"}[s] }}</span>
    <b class="{{ s }}" data-count="{{ s }}">{{ r.summary[s] }}</b></div>
{% endfor %}
  <div class="card">checks<b>{{ r.checks | length }}</b></div>
</div>

{% if attention %}
<h2 id="attention">Needs attention</h2>
<table class="attention">
<thead><tr><th>status</th><th>category</th><th>check</th><th>result</th></tr></thead><tbody>
{% for c in attention %}<tr><td><span class="badge {{ c.status }}">{{ c.status }}</span></td>
<td>{{ c.category }}</td><td><a href="#{{ c.check_id | replace(':', '-') }}">{{ c.name }}</a></td>
<td>{{ c.message }}</td></tr>{% endfor %}
</tbody></table>
{% endif %}

<h2 id="checks">Checks</h2>
<p class="filters">show:
  <button type="button" data-filter="all" class="on">all</button>
  {% for s in ["fail", "error", "warn", "pass", "skip"] %}
  <button type="button" data-filter="{{ s }}">{{ s }}</button>{% endfor %}
</p>
{% for category, items in by_category %}
<h3>{{ category }} <span class="muted">({{ items | length }})</span></h3>
<table class="checks">
<thead><tr><th>status</th><th>check</th><th>result</th><th class="num">failing rows</th></tr></thead>
<tbody>
{% for c in items %}
<tr class="check" id="{{ c.check_id | replace(':', '-') }}" data-status="{{ c.status }}" data-check-id="{{ c.check_id }}">
  <td><span class="badge {{ c.status }}">{{ c.status }}</span></td>
  <td>{{ c.name }}</td>
  <td>{{ c.message }}
  {% if c.sample %}
    <details><summary>{{ c.sample | length }} sample row(s)</summary>
    <table class="sample"><thead><tr>{% for k in c.sample[0].keys() %}<th>{{ k }}</th>{% endfor %}</tr></thead>
    <tbody>{% for row in c.sample %}<tr>{% for v in row.values() %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
    </details>
  {% endif %}
  </td>
  <td class="num">{{ fmt(c.failing_rows) }}</td>
</tr>
{% endfor %}
</tbody></table>
{% endfor %}

<h2 id="anomalies">Anomaly detection</h2>
<p class="muted">Each chart shows the training days and the detection days (shaded); green bars
are the expected range (mean ± sensitivity × σ of the training days, the same weekday where
seasonal); red dots are anomalies.</p>
{% for c in charts %}
<div class="anomaly" data-check-id="{{ c.check_id }}">
  <div><span class="badge {{ c.status }}">{{ c.status }}</span> <b>{{ c.name }}</b></div>
  {{ chart(c.details.points) }}
  {% if c.details.get("training_mix") %}
  <table><thead><tr><th>category</th><th class="num">training</th><th class="num">detection</th></tr></thead>
  <tbody>{% for k in (c.details.training_mix.keys() | list + c.details.detection_mix.keys() | list) | unique | sort %}
  <tr><td>{{ k }}</td><td class="num">{{ pct(c.details.training_mix.get(k)) }}</td>
  <td class="num">{{ pct(c.details.detection_mix.get(k)) }}</td></tr>{% endfor %}</tbody></table>
  {% endif %}
</div>
{% endfor %}

<h2 id="profiles">Profiles</h2>
{% for table, cols in profiles %}
<details{% if loop.first %} open{% endif %}><summary><b>{{ table }}</b> · {{ fmt(cols[0].row_count) }} rows</summary>
<table><thead><tr><th>column</th><th>type</th><th class="num">nulls</th><th class="num">null %</th>
<th class="num">distinct</th><th>min</th><th>max</th><th class="num">average</th></tr></thead><tbody>
{% for p in cols %}<tr><td>{{ p.column_name }}</td><td class="muted">{{ p.data_type }}</td>
<td class="num">{{ fmt(p.null_count) }}</td><td class="num">{{ fmt(p.null_pct) }}</td>
<td class="num">{{ fmt(p.distinct_count) }}</td><td>{{ (p.min_value or "–")[:32] }}</td>
<td>{{ (p.max_value or "–")[:32] }}</td><td class="num">{{ fmt(p.avg_value) }}</td></tr>{% endfor %}
</tbody></table></details>
{% endfor %}

<h2 id="history">Run history</h2>
<h3>dbt invocations</h3>
{{ bars(dbt_bars) }}
<table><thead><tr><th>finished</th><th>command</th><th class="num">seconds</th>
<th class="num">nodes</th><th class="num">warnings</th><th class="num">errors</th></tr></thead><tbody>
{% for i in r.history.dbt_invocations %}<tr><td>{{ (i.finished_at or "")[:19] }}</td><td>{{ i.command }}</td>
<td class="num">{{ fmt(i.seconds) }}</td><td class="num">{{ i.nodes }}</td>
<td class="num">{{ i.warnings }}</td><td class="num {{ 'fail' if i.errors else '' }}">{{ i.errors }}</td></tr>{% endfor %}
</tbody></table>
<h3>slowest models of the last build</h3>
{{ bars(model_bars) }}
<h3>quality runs</h3>
<table><thead><tr><th>run</th><th class="num">seconds</th><th class="num">passed</th>
<th class="num">warned</th><th class="num">failed</th><th class="num">errored</th></tr></thead><tbody>
{% for q in r.history.quality_runs %}<tr><td>{{ q.run_id }}</td><td class="num">{{ fmt(q.seconds) }}</td>
<td class="num">{{ q.passed }}</td><td class="num">{{ q.warned }}</td><td class="num">{{ q.failed }}</td>
<td class="num">{{ q.errored }}</td></tr>{% endfor %}
</tbody></table>
{% if r.history.pipeline_runs %}
<h3>pipeline runs</h3>
<table><thead><tr>{% for k in r.history.pipeline_runs[0].keys() %}<th>{{ k }}</th>{% endfor %}</tr></thead><tbody>
{% for row in r.history.pipeline_runs %}<tr>{% for v in row.values() %}<td>{{ fmt(v) }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% endif %}

<script>
(function () {
  var buttons = document.querySelectorAll(".filters button");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var wanted = button.getAttribute("data-filter");
      buttons.forEach(function (b) { b.classList.toggle("on", b === button); });
      document.querySelectorAll("tr.check").forEach(function (row) {
        row.style.display = wanted === "all" || row.dataset.status === wanted ? "" : "none";
      });
    });
  });
})();
</script>
</body>
</html>
"""


def render_html(payload: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(fmt=_fmt, chart=svg_chart, bars=svg_bars,
                       pct=lambda v: "–" if v is None else f"{100 * v:.1f}%")
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in payload["checks"]:
        grouped[c["category"]].append(c)
    by_category = sorted(
        grouped.items(),
        key=lambda kv: CATEGORY_ORDER.index(kv[0]) if kv[0] in CATEGORY_ORDER else 99,
    )
    charts = [c for c in payload["checks"]
              if c["category"] == "anomaly" and c["details"].get("points")]
    charts.sort(key=lambda c: (c["status"] == "pass", c["check_id"]))
    profiles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in payload["profiles"]:
        profiles[f"{p['schema_name']}.{p['table_name']}"].append(p)
    history = payload["history"]
    dbt_bars = [(f"{(i['finished_at'] or '')[:16]} {i['command']}", i["seconds"] or 0.0)
                for i in reversed(history["dbt_invocations"][:12])]
    model_bars = [(m["node_name"], m["execution_seconds"] or 0.0)
                  for m in history["slowest_models"]]
    return env.from_string(TEMPLATE).render(
        r=payload, by_category=by_category,
        attention=[c for c in payload["checks"] if c["status"] in ("fail", "error", "warn")], charts=charts, profiles=list(profiles.items()),
        dbt_bars=dbt_bars, model_bars=model_bars,
    )
