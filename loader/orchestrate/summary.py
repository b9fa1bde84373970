"""What `elt run` records and prints at its end: rows per table, reconciliation, dbt tests,
freshness, the published marts, quality and alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loader.config import Settings
from loader.extract.reconcile import reconciled_label
from loader.orchestrate.runner import TaskOutcome, TaskStatus

if TYPE_CHECKING:
    from loader.orchestrate.tasks import RunState


def summarise(state: RunState, outcomes: dict[str, TaskOutcome], seconds: float) -> dict:
    tables: dict[str, dict] = {}
    for load in state.loads:
        for name, r in load.tables.items():
            tables[name] = {
                "extracted": r.rows_extracted,
                "raw_rows": r.raw_rows,
                "source_rows": r.source_rows,
                "reconciled": r.reconciled,
                "dead_letters": r.dead_letters,
                "future_keys": r.future_keys,
                "caught_up": r.caught_up,
                "repaired": r.repaired,
            }
    return {
        "seconds": round(seconds, 1),
        "tasks": {
            n: {"status": o.status, "attempts": o.attempts, "error": o.error,
                "seconds": round(o.seconds, 3)}
            for n, o in outcomes.items()
        },
        "tables": tables,
        "tests": state.tests,
        "dbt_project_hash": state.dbt_project_hash,
        "dbt_skipped": state.dbt_skipped,
        "dbt_built_at": state.dbt_built_at,
        "tests_since": state.tests_since,
        "after_interrupted_build": state.interrupted_run,
        "after_failed_build": state.failed_build_run,
        "deep_reconciled": state.deep_reconcile,
        "freshness_ok": state.freshness_ok,
        "published": {
            "built_by": state.publication.built_by,
            "built_at": state.publication.built_at,
            "published_at": state.publication.published_at,
        } if state.publication is not None else None,
        "quality": state.report.summary() if state.report is not None else None,
        "report": (str(state.report.html_path)
                   if state.report is not None and state.report.html_rendered else None),
        "alerts": dict(state.alerts.channels) if state.alerts is not None else None,
    }


def print_summary(
    run_id: str, status: str, summary: dict, settings: Settings, echo: Callable[[str], None]
) -> None:
    echo(f"elt run {run_id}: {status.upper()} in {summary['seconds']}s")
    if summary["tables"]:
        echo(f"  {'table':<12} {'extracted':>10} {'raw rows':>10}  reconciled")
        for name, t in summary["tables"].items():
            ok = reconciled_label(t["reconciled"])
            echo(f"  {name:<12} {t['extracted']:>10,} {t['raw_rows'] or 0:>10,}  {ok}")
        for name, t in summary["tables"].items():
            if t.get("caught_up") or t.get("repaired"):
                echo(f"  {name}: {t.get('caught_up', 0)} row(s) caught up behind the window, "
                     f"{t.get('repaired', 0)} repaired after the load")
            if t.get("future_keys"):
                echo(f"  {name}: rows dated after the source's clock, key(s) "
                     f"{', '.join(t['future_keys'])}: correct them at the source")
    tests = summary["tests"]
    if summary.get("dbt_skipped"):
        echo("  dbt: nothing new was loaded and the project is unchanged: marts are current")
    elif tests:
        if summary.get("after_interrupted_build"):
            echo(f"  dbt: the build of run {summary['after_interrupted_build']} was killed "
                 "before its end: this build completed it and tested every row")
        elif summary.get("after_failed_build"):
            echo(f"  dbt: the build of run {summary['after_failed_build']} failed: this "
                 "build tested every row of the marts it publishes")
        scope = (
            f" (row tests on what changed since {summary['tests_since'][:19]}Z)"
            if summary.get("tests_since")
            else " (every row)"
        )
        echo("  dbt tests: " + ", ".join(f"{v} {k}" for k, v in sorted(tests.items())) + scope)
    if summary["freshness_ok"] is not None:
        echo(f"  source freshness: {'ok' if summary['freshness_ok'] else 'STALE'}")
    publish = summary["tasks"].get("publish", {}).get("status")
    if summary.get("published") and publish == TaskStatus.SUCCESS:
        echo(f"  marts: reporters read the build of {str(summary['published']['built_at'])[:19]}"
             f" (published {str(summary['published']['published_at'])[:19]})")
    elif "dbt_build" in summary["tasks"] and publish != TaskStatus.SUCCESS:
        echo("  marts: not published: reporters still read the last good build")
    if summary["quality"]:
        echo(f"  quality: {summary['quality']}")
        echo(f"  report: {summary['report']}" if summary["report"] else
             "  report: quality.json only (ELT_HTML_REPORT=false): `elt report` renders the HTML")
    if summary["alerts"]:
        sent = {k: v for k, v in summary["alerts"].items() if v != "not configured"}
        if sent:
            echo("  alerts: " + "; ".join(f"{k}: {v}" for k, v in sent.items()))
    for name, t in summary["tasks"].items():
        if t["status"] != TaskStatus.SUCCESS:
            echo(f"  {name}: {t['status']}" + (f" — {t['error'][:300]}" if t["error"] else ""))
    echo(f"  run log: {settings.logs_dir / 'elt-runs.jsonl'}; history: `elt status`")
