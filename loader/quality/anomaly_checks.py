"""Anomaly checks: measure each monitor's days, store them, judge them against the history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

import psycopg2.extensions

from loader.quality import metrics
from loader.quality.anomalies import Detection, distribution_shift, windows, zscore_detect
from loader.quality.monitors import Monitor, QualityConfig
from loader.quality.results import CheckResult

# which way a metric going is bad; the others are judged both ways
DIRECTIONS = {"freshness_hours": "up", "null_pct": "up"}
LABELS = {
    "volume": "rows per day",
    "freshness_hours": "hours since the newest row, at each day's end",
    "null_pct": "% nulls per day",
    "average": "average per day",
    "distinct_count": "distinct values per day",
}


def _check_from_detection(
    m: Monitor,
    column: str,
    metric: str,
    detection: Detection,
    config: QualityConfig,
    extra: dict | None = None,
) -> CheckResult:
    target = f"{m.table}.{column}" if column else m.table
    label = LABELS.get(metric, metric)
    check_id = f"anomaly:{target}:{metric}"
    name = f"{target}: {label}"
    details = {"metric": metric, "column": column, **detection.as_dict(), **(extra or {})}
    if detection.skipped:
        return CheckResult(
            check_id,
            "anomaly",
            name,
            "skip",
            f"not judged: {detection.skipped}",
            table=m.table,
            details=details,
        )
    bad = detection.anomalies
    if not bad:
        judged = [p for p in detection.points if p.in_detection]
        return CheckResult(
            check_id,
            "anomaly",
            name,
            "pass",
            f"{len(judged)} detection day(s) within ±{config.anomaly.sensitivity:g}σ",
            table=m.table,
            details=details,
        )
    worst = max(bad, key=lambda p: abs(p.z or 0))
    z = "∞" if worst.z in (float("inf"), float("-inf")) else f"{worst.z:+.1f}"
    return CheckResult(
        check_id,
        "anomaly",
        name,
        config.anomaly.severity,
        f"{len(bad)} anomalous day(s); worst {worst.day}: {worst.value:.4g} "
        f"(expected {worst.expected:.4g}, z {z})",
        table=m.table,
        observed=worst.value,
        threshold=worst.upper,
        failing_rows=len(bad),
        details=details,
    )


def monitor_checks(
    conn: psycopg2.extensions.connection,
    run_id: str,
    config: QualityConfig,
    last_day: date | None = None,
    known_newest: Callable[[str, str], datetime | date | None] | None = None,
) -> list[CheckResult]:
    """Measure, store and judge every monitor of the config; one check per metric.
    `known_newest` passes on the newest timestamps the report has already read."""
    s = config.anomaly
    if last_day is None:
        last_day = metrics.data_clock(conn, config.monitors, known_newest)
    checks: list[CheckResult] = []
    if last_day is None:
        return [
            CheckResult(
                "anomaly:data",
                "anomaly",
                "anomaly monitors",
                "skip",
                "no monitored table has rows yet",
            )
        ]
    training_start, detection_start, _ = windows(last_day, s)
    for m in config.monitors:
        if not metrics.exists(conn, m.table):
            checks.append(
                CheckResult(
                    f"anomaly:{m.table}",
                    "anomaly",
                    f"{m.table}: monitors",
                    "error",
                    f"{m.table} does not exist",
                    table=m.table,
                )
            )
            continue
        rows = metrics.measure(conn, m, training_start, last_day)
        metrics.store(conn, run_id, rows, m, training_start, last_day)
        series = metrics.load_series(conn, m.table, training_start, last_day)
        wanted = (
            ([("", "volume")] if m.volume else [])
            + ([("", "freshness_hours")] if m.freshness else [])
            + [(c, metric) for c, ms in m.columns.items() for metric in ms]
        )
        for column, metric in wanted:
            detection = zscore_detect(
                series.get((column, metric), {}),
                last_day,
                s,
                seasonality=m.volume_seasonality if metric == "volume" else None,
                direction=DIRECTIONS.get(metric, "both"),
            )
            checks.append(_check_from_detection(m, column, metric, detection, config))
        for column in m.categories:
            counts: dict[date, dict[str, float]] = {}
            for (col, metric), by_day in series.items():
                if col != column or not metric.startswith(metrics.CATEGORY_PREFIX):
                    continue
                value = metric[len(metrics.CATEGORY_PREFIX) :]
                for day, n in by_day.items():
                    counts.setdefault(day, {})[value] = n or 0.0
            detection, reference, recent = distribution_shift(counts, last_day, s)
            checks.append(
                _check_from_detection(
                    m,
                    column,
                    "distribution_shift",
                    detection,
                    config,
                    {"training_mix": reference, "detection_mix": recent},
                )
            )
        for column in m.amounts:
            n, fences, sample = metrics.amount_outliers(
                conn,
                m,
                column,
                (training_start, detection_start),
                (detection_start, last_day),
                s.sensitivity,
            )
            target = f"{m.table}.{column}"
            status = "skip" if fences is None else (s.severity if n else "pass")
            checks.append(
                CheckResult(
                    f"anomaly:{target}:outliers",
                    "anomaly",
                    f"{target}: outlying amounts",
                    status,
                    "not judged: no positive amounts in the training period"
                    if fences is None
                    else f"{n} amount(s) outside {fences['lower']:.2f} .. {fences['upper']:.2f} "
                    f"in the detection period (training median {fences['median']:.2f})",
                    table=m.table,
                    observed=float(n),
                    failing_rows=n,
                    sample=sample,
                    details={
                        "metric": "outliers",
                        "column": column,
                        "fences": fences,
                        "detection_start": detection_start,
                        "last_day": last_day,
                    },
                )
            )
    conn.commit()
    return checks


def detection_window(last_day: date, config: QualityConfig) -> tuple[date, date]:
    start = last_day - timedelta(days=config.anomaly.detection_days - 1)
    return start, last_day
