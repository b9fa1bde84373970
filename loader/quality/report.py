"""`elt report`: run every quality check, store the results by run, write the HTML and JSON."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loader.config import Settings
from loader.quality import checks as warehouse_checks
from loader.quality import store
from loader.quality.anomaly_checks import monitor_checks
from loader.quality.monitors import QualityConfig, for_environment, load_quality_config
from loader.quality.profiling import (
    LOADED_AT,
    PROFILE_COLUMNS,
    ColumnProfile,
    TableProfile,
    newest_loaded_at,
    profile_incrementally,
)
from loader.quality.render import render_html, to_json
from loader.quality.results import SEVERITY_ORDER, CheckResult


@dataclass
class QualityReport:
    """What the runner needs from a report: the counts, the checks and where the files are."""

    run_id: str
    generated_at: datetime
    checks: list[CheckResult]
    html_path: Path
    json_path: Path
    seconds: float = 0.0
    profiles: list[ColumnProfile] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(ch.status for ch in self.checks)
        return {s: c.get(s, 0) for s in SEVERITY_ORDER}

    @property
    def passed(self) -> int:
        return self.counts["pass"]

    @property
    def warned(self) -> int:
        return self.counts["warn"]

    @property
    def failed(self) -> int:
        return self.counts["fail"] + self.counts["error"]

    @property
    def ok(self) -> bool:
        """No check failed or errored (warnings and anomalies at warn do not count)."""
        return self.failed == 0

    def summary(self) -> str:
        c = self.counts
        return (
            f"{len(self.checks)} checks: {c['pass']} passed, {c['warn']} warned, "
            f"{c['fail']} failed, {c['error']} errored, {c['skip']} skipped"
        )


def _profile_message(t: TableProfile) -> str:
    """What the numbers of a table's profile cover."""
    first = t.columns[0]
    rows = (
        f"{len(t.columns)} columns, {t.row_count:,} rows" if t.row_count else "the table is empty"
    )
    if t.basis == "computed":
        return f"{rows}: profiled whole now ({t.reason})"
    when = f"{first.profiled_at:%Y-%m-%d %H:%M} UTC" if first.profiled_at else "an earlier run"
    return f"{rows} as of {when} (run {first.profiled_run_id}), carried forward: {t.reason}"


def _profile_checks(tables: list[TableProfile], config: QualityConfig) -> list[CheckResult]:
    by_table = {t.table: t for t in tables if t.columns}
    out = []
    for table in config.profiles:
        t = by_table.get(table)
        if t is None:
            out.append(
                CheckResult(
                    f"profile:{table}",
                    "profiling",
                    f"{table}: profiled",
                    "error",
                    f"{table} does not exist or has no columns",
                    table=table,
                )
            )
            continue
        first = t.columns[0]
        out.append(
            CheckResult(
                f"profile:{table}",
                "profiling",
                f"{table}: profiled",
                "pass" if t.row_count else "warn",
                _profile_message(t),
                table=table,
                observed=float(t.row_count),
                details={
                    "basis": t.basis,
                    "reason": t.reason,
                    "profiled_at": first.profiled_at,
                    "profiled_run_id": first.profiled_run_id,
                    "loaded_through": first.loaded_through,
                    "recent_rows": t.recent_rows,
                },
            )
        )
    return out


def known_newest(scans: warehouse_checks.TableScans) -> Callable[[str], Any]:
    """The newest _loaded_at of a table as the freshness scan read it, else queried."""

    def newest(table: str) -> Any:
        try:  # raw tables, stamped by the loader (_loaded_at), were read by that scan
            return scans.newest_value(table, LOADED_AT)
        except KeyError:
            schema, name = table.split(".", 1)
            return newest_loaded_at(scans.conn, schema, name)

    return newest


def _history(conn) -> dict[str, list[dict[str, Any]]]:
    invocations = store.fetch_dicts(
        conn,
        """select invocation_id, command, started_at, finished_at, nodes, errors, warnings,
                  extract(epoch from finished_at - started_at)::float8 as seconds
           from quality.dbt_invocations order by finished_at desc limit 30""",
    )
    slowest = store.fetch_dicts(
        conn,
        """select node_name, resource_type, status, execution_seconds, rows_affected
           from quality.dbt_results
           where invocation_id = (select invocation_id from quality.dbt_invocations
                                  where command in ('build', 'run')
                                  order by finished_at desc limit 1)
             and resource_type in ('model', 'snapshot', 'seed')
           order by execution_seconds desc limit 15""",
    )
    runs = store.fetch_dicts(
        conn,
        """select run_id, started_at, finished_at, passed, warned, failed, errored,
                  extract(epoch from finished_at - started_at)::float8 as seconds
           from quality.runs where finished_at is not null
           order by started_at desc limit 30""",
    )
    pipeline: list[dict[str, Any]] = []
    with conn.cursor() as cur:
        cur.execute("select to_regclass('ops.pipeline_runs') is not null")
        has_runner = cur.fetchone()[0]
    if has_runner:  # the runner's history, when it keeps one (issue 6)
        pipeline = store.fetch_dicts(
            conn, "select * from ops.pipeline_runs order by 1 desc limit 30"
        )
    return {
        "dbt_invocations": invocations,
        "slowest_models": slowest,
        "quality_runs": runs,
        "pipeline_runs": pipeline,
    }


def build_report(
    settings: Settings,
    *,
    output_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> QualityReport:
    """Run every check against the warehouse, store them under a new run id in the `quality`
    schema, apply retention, and write quality.html and quality.json to `output_dir`
    (ELT_REPORTS_DIR, default reports/). The caller decides what a failure means."""
    t0 = time.monotonic()
    q = settings.quality
    config = for_environment(load_quality_config(q.monitors_config), settings.env)
    out_dir = Path(output_dir or q.reports_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    started = datetime.now(UTC)
    conn = store.connect(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("set time zone 'UTC'")
        store.ensure_schema(conn)
        store.start_run(conn, run_id, started)
        progress("quality: dbt test results")
        checks = warehouse_checks.dbt_checks(conn, settings.env)
        progress("quality: reconciliation")
        recon, recon_rows = warehouse_checks.reconciliation_checks(conn, run_id)
        checks += recon
        store.insert_rows(
            conn,
            "quality.reconciliation",
            (
                "run_id",
                "load_id",
                "table_name",
                "source_rows",
                "raw_rows",
                "matched",
                "dead_letters",
                "checked_at",
            ),
            [
                (
                    r["run_id"],
                    r["load_id"],
                    r["table_name"],
                    r["source_rows"],
                    r["raw_rows"],
                    r["matched"],
                    r["dead_letters"],
                    r["checked_at"],
                )
                for r in recon_rows
            ],
        )
        progress("quality: completeness")
        scans = warehouse_checks.plan_scans(conn, settings, config)
        checks += warehouse_checks.completeness_checks(conn, config, scans)
        progress("quality: freshness")
        checks += warehouse_checks.freshness_checks(conn, settings, config, scans)
        progress("quality: profiles")
        tables: list[TableProfile] = []
        stored_rows = []
        for table in config.profiles:
            if warehouse_checks._exists(conn, table):
                t, ident = profile_incrementally(
                    conn, table, run_id, started, config.profiling, known_newest(scans)
                )
                tables.append(t)
                stored_rows += [
                    (run_id, ident.oid, ident.modifications, ident.stats_reset, *p.as_row())
                    for p in t.columns
                ]
        profiles: list[ColumnProfile] = [p for t in tables for p in t.columns]
        store.insert_rows(
            conn,
            "quality.profiles",
            ("run_id", "relation_oid", "modifications", "stats_reset", *PROFILE_COLUMNS),
            stored_rows,
        )
        checks += _profile_checks(tables, config)
        progress("quality: anomaly detection")
        checks += monitor_checks(conn, run_id, config, known_newest=scans.newest_value)
        checks.sort(key=lambda c: (SEVERITY_ORDER[c.status], c.category, c.check_id))
        store.insert_rows(
            conn,
            "quality.check_results",
            (
                "run_id",
                "check_id",
                "category",
                "check_name",
                "table_name",
                "status",
                "message",
                "observed",
                "threshold",
                "failing_rows",
                "sample",
                "details",
            ),
            [
                (
                    run_id,
                    c.check_id,
                    c.category,
                    c.name,
                    c.table,
                    c.status,
                    c.message,
                    _finite(c.observed),
                    _finite(c.threshold),
                    c.failing_rows,
                    c.sample,
                    c.details,
                )
                for c in checks
            ],
        )
        report = QualityReport(
            run_id,
            started,
            checks,
            out_dir / "quality.html",
            out_dir / "quality.json",
            profiles=profiles,
        )
        store.finish_run(conn, run_id, report.counts, str(report.html_path))
        store.apply_retention(
            conn, q.retention_days, config.anomaly.training_days + config.anomaly.detection_days
        )
        history = _history(conn)
        report.seconds = time.monotonic() - t0
        progress("quality: writing the report")
        payload = to_json(report, history)
        report.json_path.write_text(json.dumps(payload, indent=2, default=str))
        report.html_path.write_text(render_html(payload))
        return report
    finally:
        conn.close()


def _finite(value: float | None) -> float | None:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return value
