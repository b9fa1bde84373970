"""`elt report`: quality.json (a status per check, for machines) and elementary's HTML report
(`edr report`, for people), both from what elementary stored plus the loader's
reconciliation; the checks are kept by run in the `quality` schema."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loader.quality.checks as quality_checks
import loader.quality.elementary as elementary
import loader.quality.store as store
from loader import schemas
from loader.config import Settings, UserError, dbt_schema
from loader.quality.results import SEVERITY_ORDER, CheckResult, jsonable, worst

CHECK_COLUMNS = ("run_id", "check_id", "category", "check_name", "table_name", "status",
                 "message", "observed", "threshold", "failing_rows", "sample", "details")


@dataclass
class QualityReport:
    """What the runner needs from a report: the counts, the checks and where the files are."""

    run_id: str
    generated_at: datetime
    checks: list[CheckResult]
    html_path: Path  # elementary's report
    json_path: Path
    seconds: float = 0.0
    html_error: str = ""  # why `edr report` wrote no HTML, when it did not
    html_rendered: bool = True  # false: asked for quality.json only (ELT_HTML_REPORT=false)
    timings: dict[str, float] = field(default_factory=dict)

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


def to_json(report: QualityReport) -> dict[str, Any]:
    return jsonable({
        "run_id": report.run_id,
        "generated_at": report.generated_at,
        "status": worst([c.status for c in report.checks]),
        "summary": report.counts,
        "seconds": round(report.seconds, 3),
        "timings": report.timings,
        "html_report": str(report.html_path),
        "html_error": report.html_error or None,
        "checks": [c.as_dict() for c in report.checks],
    })


def _gather(settings: Settings, run_id: str, started: datetime) -> list[CheckResult]:
    """Every check, stored under `run_id` in quality.check_results."""
    conn = store.connect(settings.warehouse)
    try:
        schemas.ensure(conn, "quality")
        store.start_run(conn, run_id, started)
        found = quality_checks.elementary_checks(
            conn, dbt_schema(settings.env, "elementary"), dbt_schema(settings.env, "test_failures")
        )
        found += quality_checks.reconciliation_checks(conn)
        found.sort(key=lambda c: (SEVERITY_ORDER[c.status], c.category, c.check_id))
        store.insert_rows(conn, "quality.check_results", CHECK_COLUMNS, [
            (run_id, c.check_id, c.category, c.name, c.table, c.status, c.message[:2000],
             c.observed, c.threshold, c.failing_rows, c.sample, c.details)
            for c in found
        ])
        counts = Counter(c.status for c in found)
        store.finish_run(conn, run_id, dict(counts), "")
        store.apply_retention(conn, settings.quality.retention_days)
        return found
    finally:
        conn.close()


def build_report(
    settings: Settings,
    *,
    output_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
    html: bool = True,
) -> QualityReport:
    """Read every check from the warehouse, store them under a new run id, and write
    quality.json and elementary.html to `output_dir` (ELT_REPORTS_DIR, default reports/).
    A failed `edr report` is a check in error, not an exception: the JSON is still written.
    The caller decides what a failure means."""
    t0 = time.monotonic()
    out_dir = Path(output_dir or settings.quality.reports_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    started = datetime.now(UTC)
    progress("quality: elementary's results and the reconciliation")
    checks = _gather(settings, run_id, started)
    report = QualityReport(run_id, started, checks, out_dir / "elementary.html",
                           out_dir / "quality.json")
    report.timings["checks"] = round(time.monotonic() - t0, 3)
    report.html_rendered = html
    if html:
        progress("quality: edr report")
        t1 = time.monotonic()
        try:
            outcome = elementary.write_report(settings, report.html_path)
        except (UserError, OSError, subprocess.TimeoutExpired) as exc:  # no edr, no packages
            outcome = elementary.EdrOutcome(False, str(exc))
        report.timings["edr_report"] = round(time.monotonic() - t1, 3)
        if not outcome.ok:
            report.html_error = outcome.message
            report.checks.append(CheckResult(
                "report:elementary", "report", "elementary's HTML report (edr report)",
                "error", outcome.message[-1000:],
            ))
    report.seconds = time.monotonic() - t0
    report.json_path.write_text(json.dumps(to_json(report), indent=2, default=str))
    return report
