"""The checks of quality.json: every dbt test and elementary monitor as elementary stored its
newest result, the models' builds, and the loader's source = raw reconciliation."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg2.extensions

from loader.quality.results import SEVERITY_ORDER, CheckResult
from loader.quality.store import fetch_dicts

SAMPLE_ROWS = 5

# dbt test name -> report category
_CATEGORIES = (
    (re.compile(r"(rows_reconcile|equal_clean_plus_quarantined|load_reconciliation)"),
     "reconciliation"),
    (re.compile(r"(duplicates|twice|unique_combination_of_columns)"), "duplicates"),
    (re.compile(r"^relationships"), "referential integrity"),
    (re.compile(r"^(not_null|unique|accepted_values)$"), "schema"),
)
_TEST_TYPES = {"anomaly_detection": "anomaly", "schema_change": "schema changes"}
_STATUSES = {"pass": "pass", "success": "pass", "warn": "warn", "fail": "fail",
             "error": "error", "runtime error": "error", "skipped": "skip"}


def category(test_type: str | None, short_name: str | None, name: str) -> str:
    if test_type in _TEST_TYPES:
        return _TEST_TYPES[test_type]
    for pattern, label in _CATEGORIES:
        if pattern.search(short_name or "") or pattern.search(name):
            return label
    return "business rules"


def _status(status: str | None) -> str:
    return _STATUSES.get((status or "").lower(), "error")


def _exists(conn: psycopg2.extensions.connection, relation: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", (relation,))
        return bool(cur.fetchone()[0])


def latest_results(conn: psycopg2.extensions.connection, schema: str) -> list[dict[str, Any]]:
    """The newest result of every test the project has now (elementary's dbt_tests): the
    rows of its newest invocation, one per metric for a column monitor (test_sub_type),
    folded into one with the worst status."""
    rows = fetch_dicts(
        conn,
        f"""with newest as (
                select distinct on (test_unique_id) test_unique_id, invocation_id
                from "{schema}".elementary_test_results
                where test_unique_id in (select unique_id from "{schema}".dbt_tests)
                order by test_unique_id, detected_at desc
            )
            select r.id, r.test_unique_id, r.test_type, r.test_short_name, r.test_alias,
                   r.table_name, r.column_name, r.status, r.severity, r.failures,
                   r.test_results_description, r.detected_at, r.invocation_id
            from "{schema}".elementary_test_results as r
            join newest using (test_unique_id, invocation_id)
            order by r.test_unique_id, r.detected_at""",
    )
    folded: dict[str, dict[str, Any]] = {}
    for r in rows:
        first = folded.setdefault(r["test_unique_id"], {**r, "ids": [], "notes": []})
        first["ids"].append(r["id"])
        if _status(r["status"]) != "pass" and r["test_results_description"]:
            first["notes"].append(r["test_results_description"].strip())
        if SEVERITY_ORDER[_status(r["status"])] < SEVERITY_ORDER[_status(first["status"])]:
            first["status"] = r["status"]
        if r["failures"] is not None and len(first["ids"]) > 1:
            first["failures"] = (first["failures"] or 0) + r["failures"]
    return list(folded.values())


def _sample(conn, relation: str) -> list[dict[str, Any]]:
    """Up to SAMPLE_ROWS rows a failing test kept (store_failures), else none."""
    if not _exists(conn, relation):
        return []
    rows = fetch_dicts(conn, f"select * from {relation} limit {SAMPLE_ROWS}")
    return [json.loads(json.dumps(r, default=str)) for r in rows]


def elementary_checks(
    conn: psycopg2.extensions.connection, schema: str, failures_schema: str
) -> list[CheckResult]:
    """One check per dbt test and elementary monitor (newest result), plus the builds; a
    failing test that keeps its rows (store_failures, in `failures_schema`) shows a few."""
    if not _exists(conn, f'"{schema}".elementary_test_results'):
        return [CheckResult(
            "dbt:results", "schema", "dbt test results", "error",
            f"{schema}.elementary_test_results does not exist: run `dbt build` (elementary's "
            "package stores every test result there)",
        )]
    results = latest_results(conn, schema)
    checks = []
    for r in results:
        failures = r["failures"]
        parts = r["test_unique_id"].split(".")  # test.<package>.<name>.<hash>
        name = parts[2] if len(parts) > 3 else r["test_alias"] or r["test_unique_id"]
        checks.append(CheckResult(
            check_id=f"dbt:{r['test_unique_id']}",
            category=category(r["test_type"], r["test_short_name"], name),
            name=name,
            status=_status(r["status"]),
            message=(" ".join(r["notes"]) or r["test_results_description"] or "")[:500]
            or (f"{failures} failing row(s)" if failures else r["status"]),
            table=r["table_name"],
            observed=float(failures) if failures is not None else None,
            failing_rows=failures,
            sample=_sample(conn, f'"{failures_schema}"."{r["test_alias"]}"')
            if _status(r["status"]) != "pass" and r["test_alias"] else [],
            details={
                "test_type": r["test_type"],
                "test": r["test_short_name"],
                "column": r["column_name"],
                "severity": r["severity"],
                "ran_at": r["detected_at"],
                "invocation_id": r["invocation_id"],
            },
        ))
    return checks + [_builds_check(conn, schema)]


def _builds_check(conn: psycopg2.extensions.connection, schema: str) -> CheckResult:
    """Whether the newest build of every model, snapshot and seed succeeded."""
    runs = fetch_dicts(
        conn,
        f"""select distinct on (unique_id) name, status from "{schema}".dbt_run_results
            where resource_type in ('model', 'snapshot', 'seed')
              and unique_id not like 'model.elementary.%'
            order by unique_id, generated_at desc""",
    ) if _exists(conn, f'"{schema}".dbt_run_results') else []
    broken = [r["name"] for r in runs if _status(r["status"]) in ("error", "fail")]
    return CheckResult(
        "dbt:models",
        "schema",
        "dbt models, snapshots and seeds build (contracts enforced)",
        "fail" if broken else "pass",
        f"failed: {', '.join(broken)}" if broken else f"{len(runs)} built",
        observed=float(len(broken)),
    )


def reconciliation_checks(conn: psycopg2.extensions.connection) -> list[CheckResult]:
    """Source vs raw counts of the loader's newest load per table (ops.load_reconciliation):
    the cross-database check elementary cannot make, read even when dbt did not run."""
    if not _exists(conn, "ops.load_reconciliation"):
        return [CheckResult(
            "reconciliation:loader", "reconciliation", "source vs raw counts", "error",
            "ops.load_reconciliation does not exist: run `elt load` first",
        )]
    rows = fetch_dicts(
        conn,
        """select distinct on (table_name) load_id, table_name, source_rows, raw_rows,
                  matched, dead_letters, checked_at
           from ops.load_reconciliation order by table_name, checked_at desc""",
    )
    return [_reconciled(r) for r in rows]


def _reconciled(r: dict[str, Any]) -> CheckResult:
    if r["matched"] is True and not r["dead_letters"]:
        status, message = "pass", f"source {r['source_rows']:,} = raw {r['raw_rows']:,}"
    elif r["matched"] is True:
        status = "warn"
        message = (f"counts match but {r['dead_letters']} row(s) are in ops.dead_letters "
                   f"(load {r['load_id']})")
    elif r["matched"] is False:
        status = "fail"
        message = (f"source {r['source_rows']} != raw {r['raw_rows']}: "
                   "run `elt reconcile --deep` to find and repair the ranges")
    else:
        status, message = "warn", "not counted on the last load"
    return CheckResult(
        check_id=f"reconciliation:{r['table_name']}:source_vs_raw",
        category="reconciliation",
        name=f"{r['table_name']}: source rows = raw rows",
        status=status,
        message=message,
        table=f"raw_marketplace.{r['table_name']}",
        observed=float(r["raw_rows"]) if r["raw_rows"] is not None else None,
        threshold=float(r["source_rows"]) if r["source_rows"] is not None else None,
        details={"load_id": r["load_id"], "checked_at": r["checked_at"]},
    )
