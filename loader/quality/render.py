"""The report files: quality.json (status per check) and a self-contained quality.html."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from loader.quality.results import jsonable, worst

if TYPE_CHECKING:
    from loader.quality.report import QualityReport

CATEGORY_ORDER = (
    "schema",
    "referential integrity",
    "business rules",
    "duplicates",
    "reconciliation",
    "completeness",
    "freshness",
    "profiling",
    "anomaly",
)


def to_json(report: QualityReport, history: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Everything the HTML shows, as plain JSON; `status` per check and overall."""
    return jsonable(
        {
            "run_id": report.run_id,
            "generated_at": report.generated_at,
            "seconds": round(report.seconds, 2),
            "status": worst([c.status for c in report.checks]),
            "summary": report.counts,
            "checks": [c.as_dict() for c in report.checks],
            "profiles": [p.__dict__ for p in report.profiles],
            "history": history,
        }
    )


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
                f"<title>{p['day']}: expected {_fmt(p['lower'])} .. {_fmt(p['upper'])}</title>"
                "</rect>"
            )
    segment: list[str] = []
    for i, p in enumerate(points):
        if p["value"] is None:
            if len(segment) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="#2f5d9c" stroke-width="1.5" '
                    f'points="{" ".join(segment)}"/>'
                )
            segment = []
            continue
        segment.append(f"{x(i):.1f},{y(p['value']):.1f}")
    if len(segment) > 1:
        parts.append(
            f'<polyline fill="none" stroke="#2f5d9c" stroke-width="1.5" '
            f'points="{" ".join(segment)}"/>'
        )
    for i, p in enumerate(points):
        if p["value"] is None:
            continue
        bad = p.get("is_anomaly")
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p["value"]):.1f}" r="{4 if bad else 1.8}" '
            f'fill="{"#c62828" if bad else "#2f5d9c"}"><title>{p["day"]}: {_fmt(p["value"])}'
            f"{' — anomaly, z ' + _fmt(p.get('z')) if bad else ''}</title></circle>"
        )
    for v in (lo, hi):
        parts.append(
            f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'class="axis">{_fmt(v)}</text>'
        )
    parts.append(f'<text x="{pad_l}" y="{height - 6}" class="axis">{points[0]["day"]}</text>')
    parts.append(
        f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end" '
        f'class="axis">{points[-1]["day"]}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def svg_bars(rows: list[tuple[str, float]], width: int = 620, unit: str = "s") -> Markup:
    """Horizontal bars (durations, category shares), inline SVG."""
    if not rows:
        return Markup('<p class="muted">nothing recorded yet</p>')
    top = max(v for _, v in rows) or 1
    bar_h, label_w = 18, 230
    height = bar_h * len(rows) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" class="chart">'
    ]
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


TEMPLATE = Path(__file__).with_name("templates") / "quality.html.j2"


def render_html(payload: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(
        fmt=_fmt,
        chart=svg_chart,
        bars=svg_bars,
        pct=lambda v: "–" if v is None else f"{100 * v:.1f}%",
    )
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in payload["checks"]:
        grouped[c["category"]].append(c)
    by_category = sorted(
        grouped.items(),
        key=lambda kv: CATEGORY_ORDER.index(kv[0]) if kv[0] in CATEGORY_ORDER else 99,
    )
    charts = [
        c for c in payload["checks"] if c["category"] == "anomaly" and c["details"].get("points")
    ]
    charts.sort(key=lambda c: (c["status"] == "pass", c["check_id"]))
    profiles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in payload["profiles"]:
        profiles[f"{p['schema_name']}.{p['table_name']}"].append(p)
    history = payload["history"]
    dbt_bars = [
        (f"{(i['finished_at'] or '')[:16]} {i['command']}", i["seconds"] or 0.0)
        for i in reversed(history["dbt_invocations"][:12])
    ]
    model_bars = [
        (m["node_name"], m["execution_seconds"] or 0.0) for m in history["slowest_models"]
    ]
    return env.from_string(TEMPLATE.read_text()).render(
        r=payload,
        by_category=by_category,
        attention=[c for c in payload["checks"] if c["status"] in ("fail", "error", "warn")],
        charts=charts,
        profiles=list(profiles.items()),
        dbt_bars=dbt_bars,
        model_bars=model_bars,
    )
