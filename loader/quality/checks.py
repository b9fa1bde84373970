"""Checks read from the warehouse: dbt test results, reconciliation, completeness, freshness."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from loader.config import Settings
from loader.db import connect_raw
from loader.quality.monitors import QualityConfig
from loader.quality.results import CheckResult
from loader.quality.store import fetch_dicts

SAMPLE_ROWS = 5

# dbt test name -> report category (items 1-2 of the quality issue)
_CATEGORIES = (
    (re.compile(r"^(rows_reconcile|raw_\w+_equal_clean_plus_quarantined)"), "reconciliation"),
    (re.compile(r"(duplicates|twice|^unique_combination_of_columns)"), "duplicates"),
    (re.compile(r"^relationships_"), "referential integrity"),
    (re.compile(r"^(source_)?(not_null|unique|accepted_values)_"), "schema"),
)


def dbt_test_category(name: str) -> str:
    for pattern, category in _CATEGORIES:
        if pattern.search(name):
            return category
    return "business rules"


def _dbt_status(status: str | None) -> str:
    return {
        "pass": "pass",
        "success": "pass",
        "warn": "warn",
        "fail": "fail",
        "error": "error",
        "skipped": "skip",
    }.get((status or "").lower(), "error")


def latest_test_results(
    conn: psycopg2.extensions.connection, target: str
) -> list[dict[str, Any]]:
    """The newest result of every dbt test and node stored by dbt target (environment)
    `target` (a `dbt build --select x` updates only x's rows); each row says which
    invocation produced it and when. Environments sharing a warehouse share the table."""
    return fetch_dicts(
        conn,
        """select distinct on (r.unique_id) r.*, i.command, i.finished_at
           from quality.dbt_results as r
           join quality.dbt_invocations as i on i.invocation_id = r.invocation_id
           where i.command in ('build', 'test', 'run', 'seed', 'snapshot')
             and i.target_name = %s
           order by r.unique_id, i.finished_at desc""",
        (target,),
    )


def failing_sample(
    conn: psycopg2.extensions.connection, relation: str | None, limit: int = SAMPLE_ROWS
) -> list[dict[str, Any]]:
    """Rows dbt stored for a failing test (store_failures); empty when it stored none."""
    if not relation:
        return []
    parts = [p.strip('"') for p in relation.split(".")]
    ident = sql.SQL(".").join(map(sql.Identifier, parts[-2:]))
    try:
        with conn.cursor() as cur:
            cur.execute("savepoint sample")
            cur.execute(sql.SQL("select * from {} limit %s").format(ident), (limit,))
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            cur.execute("release savepoint sample")
            return rows
    except psycopg2.Error:
        with conn.cursor() as cur:
            cur.execute("rollback to savepoint sample")
        return []


def dbt_checks(conn: psycopg2.extensions.connection, target: str) -> list[CheckResult]:
    """One check per dbt data test (its newest result in environment `target`), plus one for
    models and snapshots."""
    results = latest_test_results(conn, target)
    if not any(r["resource_type"] == "test" for r in results):
        return [
            CheckResult(
                "dbt:results",
                "schema",
                "dbt test results",
                "error",
                "no dbt build or test has stored results in quality.dbt_results yet: "
                "run `dbt build` (the on-run-end hook store_run_results writes them)",
            )
        ]
    checks = []
    for r in results:
        if r["resource_type"] != "test":
            continue
        status = _dbt_status(r["status"])
        failures = r["failures"]
        sample = failing_sample(conn, r["relation_name"]) if status in ("warn", "fail") else []
        message = (
            f"{failures} failing row(s)" if status in ("warn", "fail") else (r["message"] or "")
        )
        if status in ("warn", "fail") and not r["relation_name"]:
            message += " (not stored: run `dbt test --select <test> --store-failures` to see them)"
        checks.append(
            CheckResult(
                check_id=f"dbt:{r['unique_id']}",
                category=dbt_test_category(r["node_name"]),
                name=r["node_name"],
                status=status,
                message=message if status != "error" else (r["message"] or "error"),
                table=r["column_name"],
                observed=float(failures) if failures is not None else None,
                failing_rows=failures,
                sample=sample,
                details={
                    "severity": r["severity"],
                    "seconds": r["execution_seconds"],
                    "invocation_id": r["invocation_id"],
                    "ran_at": r["finished_at"],
                    "column": r["column_name"],
                    "failures_relation": r["relation_name"],
                },
            )
        )
    models = [r for r in results if r["resource_type"] in ("model", "snapshot", "seed")]
    broken = [r["node_name"] for r in models if _dbt_status(r["status"]) in ("error", "fail")]
    checks.append(
        CheckResult(
            "dbt:models",
            "schema",
            "dbt models, snapshots and seeds build (contracts enforced)",
            "fail" if broken else "pass",
            f"failed: {', '.join(broken)}" if broken else f"{len(models)} built",
            observed=float(len(broken)),
        )
    )
    return checks


def reconciliation_checks(
    conn: psycopg2.extensions.connection, run_id: str
) -> tuple[list[CheckResult], list[dict[str, Any]]]:
    """Source vs raw counts of the loader's newest load per table (ops.load_reconciliation)."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('ops.load_reconciliation') is not null")
        if not cur.fetchone()[0]:
            return [
                CheckResult(
                    "reconciliation:loader",
                    "reconciliation",
                    "source vs raw counts",
                    "error",
                    "ops.load_reconciliation does not exist: run `elt load` first",
                )
            ], []
    rows = fetch_dicts(
        conn,
        """select distinct on (table_name) load_id, table_name, source_rows, raw_rows,
                  matched, dead_letters, checked_at
           from ops.load_reconciliation order by table_name, checked_at desc""",
    )
    checks = []
    for r in rows:
        if r["matched"] is True and not r["dead_letters"]:
            status, message = "pass", f"source {r['source_rows']:,} = raw {r['raw_rows']:,}"
        elif r["matched"] is True:
            status = "warn"
            message = (
                f"counts match but {r['dead_letters']} row(s) are in ops.dead_letters "
                f"(load {r['load_id']})"
            )
        elif r["matched"] is False:
            status = "fail"
            message = (
                f"source {r['source_rows']} != raw {r['raw_rows']}: "
                "run `elt reconcile --deep` to find and repair the ranges"
            )
        else:
            status, message = "warn", "not counted on the last load"
        checks.append(
            CheckResult(
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
        )
    stored = [{**r, "run_id": run_id} for r in rows]
    return checks, stored


def _split(table: str) -> sql.Composed:
    schema, name = table.split(".", 1)
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _exists(conn: psycopg2.extensions.connection, table: str) -> bool:
    schema, name = table.split(".", 1)
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", (f'"{schema}"."{name}"',))
        return bool(cur.fetchone()[0])


class TableScans:
    """Whole-table facts the completeness and freshness checks need, one scan per table: the
    row count, nulls of the named columns and the newest value of others, all in one query
    (each table is read once instead of once per check)."""

    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.conn = conn
        self.nulls: dict[str, set[str]] = {}
        self.newest: dict[str, set[str]] = {}
        self._facts: dict[str, dict[str, Any]] = {}

    def want(self, table: str, *, nulls: tuple[str, ...] = (), newest: tuple[str, ...] = ()):
        self.nulls.setdefault(table, set()).update(nulls)
        self.newest.setdefault(table, set()).update(newest)

    def newest_value(self, table: str, column: str) -> Any:
        """The newest value of a column this report reads anyway; KeyError when it does not."""
        if column not in self.newest.get(table, set()):
            raise KeyError((table, column))
        return self.facts(table)[("newest", column)]

    def facts(self, table: str) -> dict[str, Any]:
        """{"rows": n, ("nulls", col): n, ("newest", col): value}; a column the table lacks
        is left out (the caller reports it)."""
        if table not in self._facts:
            self._facts[table] = self._scan(table)
        return self._facts[table]

    def _scan(self, table: str) -> dict[str, Any]:
        schema, name = table.split(".", 1)
        with self.conn.cursor() as cur:
            cur.execute(
                """select column_name from information_schema.columns
                   where table_schema = %s and table_name = %s""",
                (schema, name),
            )
            present = {r[0] for r in cur.fetchall()}
        keys: list[Any] = ["rows"]
        exprs: list[sql.Composable] = [sql.SQL("count(*)")]
        for col in sorted(self.nulls.get(table, set()) & present):
            keys.append(("nulls", col))
            exprs.append(sql.SQL("count(*) filter (where {} is null)").format(sql.Identifier(col)))
        for col in sorted(self.newest.get(table, set()) & present):
            keys.append(("newest", col))
            exprs.append(sql.SQL("max({})").format(sql.Identifier(col)))
        with self.conn.cursor() as cur:
            cur.execute(
                sql.SQL("select {} from {}").format(sql.SQL(", ").join(exprs), _split(table))
            )
            return dict(zip(keys, cur.fetchone(), strict=True))


def plan_scans(
    conn: psycopg2.extensions.connection, settings: Settings, config: QualityConfig
) -> TableScans:
    """The scans of the completeness and freshness checks, declared before either runs so
    that each raw table is read once for both."""
    from loader.extract.tables import load_config

    scans = TableScans(conn)
    for table, thresholds in config.completeness.items():
        scans.want(table, nulls=tuple(thresholds))
    loader_config = load_config(settings.tables_config)
    for table, spec in loader_config.tables.items():
        lag_column = getattr(spec, "cursor", None) or config.freshness.lag_column
        scans.want(
            f"{loader_config.dataset}.{table}",
            newest=(config.freshness.loaded_at_column, lag_column),
        )
    for m in config.monitors:  # the anomaly data clock: the newest business timestamp
        if m.table in scans.newest:
            scans.want(m.table, newest=(m.timestamp,))
    return scans


def completeness_checks(
    conn: psycopg2.extensions.connection, config: QualityConfig, scans: TableScans | None = None
) -> list[CheckResult]:
    """% nulls of each critical column against its threshold, over every row of the table:
    one query per table (shared with the freshness checks through `scans`)."""
    scans = scans or TableScans(conn)
    checks = []
    for table, thresholds in config.completeness.items():
        if not _exists(conn, table):
            checks.append(
                CheckResult(
                    f"completeness:{table}",
                    "completeness",
                    f"{table}: critical columns",
                    "error",
                    f"{table} does not exist",
                    table=table,
                )
            )
            continue
        cols = list(thresholds)
        scans.want(table, nulls=tuple(cols))
        facts = scans.facts(table)
        total = facts["rows"]
        for col in cols:
            if ("nulls", col) not in facts:
                checks.append(
                    CheckResult(
                        f"completeness:{table}.{col}",
                        "completeness",
                        f"{table}.{col}: nulls at most {thresholds[col]:g}%",
                        "error",
                        f"{table} has no column {col}",
                        table=table,
                    )
                )
                continue
            n = facts[("nulls", col)]
            pct = 100.0 * n / total if total else 0.0
            limit = thresholds[col]
            ok = pct <= limit
            checks.append(
                CheckResult(
                    check_id=f"completeness:{table}.{col}",
                    category="completeness",
                    name=f"{table}.{col}: nulls at most {limit:g}%",
                    status="pass" if ok else config.completeness_severity,
                    message=f"{n:,} of {total:,} rows null ({pct:.2f}%)",
                    table=table,
                    observed=round(pct, 4),
                    threshold=limit,
                    failing_rows=n,
                )
            )
    return checks


def freshness_checks(
    conn: psycopg2.extensions.connection,
    settings: Settings,
    config: QualityConfig,
    scans: TableScans | None = None,
) -> list[CheckResult]:
    """Hours since each raw table was last loaded, and the source-to-warehouse lag."""
    from loader.extract.tables import load_config

    fresh = config.freshness
    loader_config = load_config(settings.tables_config)
    scans = scans or TableScans(conn)
    checks = []
    now = datetime.now(UTC)
    source = None
    try:
        source = connect_raw(settings.source)
    except Exception as exc:  # the source may be unreachable from where reports are built
        source_error = str(exc).splitlines()[0]
    try:
        for table, spec in loader_config.tables.items():
            raw = f"{loader_config.dataset}.{table}"
            if not _exists(conn, raw):
                checks.append(
                    CheckResult(
                        f"freshness:{raw}",
                        "freshness",
                        f"{raw}: loaded recently",
                        "error",
                        f"{raw} does not exist: run `elt load`",
                        table=raw,
                    )
                )
                continue
            lag_column = getattr(spec, "cursor", None) or fresh.lag_column
            scans.want(raw, newest=(fresh.loaded_at_column, lag_column))
            loaded = scans.facts(raw).get(("newest", fresh.loaded_at_column))
            hours = (now - loaded).total_seconds() / 3600 if loaded else None
            if hours is None:
                status, msg = "warn", "the table is empty"
            else:
                status = (
                    "fail"
                    if hours > fresh.error_after_hours
                    else "warn"
                    if hours > fresh.warn_after_hours
                    else "pass"
                )
                msg = (
                    f"last loaded {hours:.1f} h ago (warn after {fresh.warn_after_hours:g} h, "
                    f"error after {fresh.error_after_hours:g} h)"
                )
            checks.append(
                CheckResult(
                    f"freshness:{raw}",
                    "freshness",
                    f"{raw}: loaded recently",
                    status,
                    msg,
                    table=raw,
                    observed=round(hours, 3) if hours is not None else None,
                    threshold=fresh.warn_after_hours,
                    details={"last_loaded_at": loaded},
                )
            )
            checks.append(
                _lag_check(
                    conn, source, loader_config.source_schema, table, raw, spec, fresh, scans
                )
                if source is not None
                else CheckResult(
                    f"freshness:{raw}:lag",
                    "freshness",
                    f"{raw}: lag behind the source",
                    "error",
                    f"source unreachable: {source_error}",
                    table=raw,
                )
            )
    finally:
        if source is not None:
            source.close()
    return checks


def _lag_check(conn, source, source_schema, table, raw, spec, fresh, scans) -> CheckResult:
    column = getattr(spec, "cursor", None) or fresh.lag_column
    check_id, name = f"freshness:{raw}:lag", f"{raw}: lag behind the source"
    newest = []
    for c, relation in ((source, f"{source_schema}.{table}"), (conn, raw)):
        known = scans.facts(raw) if c is conn else {}
        if ("newest", column) in known:  # read by the table's one scan
            newest.append(known[("newest", column)])
            continue
        try:
            with c.cursor() as cur:
                cur.execute("savepoint lag")
                cur.execute(
                    sql.SQL("select max({}) from {}").format(
                        sql.Identifier(column), _split(relation)
                    )
                )
                newest.append(cur.fetchone()[0])
                cur.execute("release savepoint lag")
        except psycopg2.Error as exc:
            with c.cursor() as cur:
                cur.execute("rollback to savepoint lag")
            return CheckResult(
                check_id,
                "freshness",
                name,
                "error",
                f"cannot read {column} of {relation}: {exc.pgerror or exc}".strip(),
                table=raw,
            )
    src, wh = newest
    if src is None:
        return CheckResult(
            check_id, "freshness", name, "pass", "the source table is empty", table=raw
        )
    lag = max(0.0, (src - wh).total_seconds() / 60) if wh else float("inf")
    status = (
        "fail"
        if lag > fresh.lag_error_minutes
        else "warn"
        if lag > fresh.lag_warn_minutes
        else "pass"
    )
    return CheckResult(
        check_id,
        "freshness",
        name,
        status,
        f"newest source change {src:%Y-%m-%d %H:%M} UTC, newest in raw "
        f"{wh:%Y-%m-%d %H:%M} UTC: {lag:.0f} min behind"
        if wh
        else "nothing in raw yet",
        table=raw,
        observed=round(lag, 2) if lag != float("inf") else None,
        threshold=fresh.lag_warn_minutes,
        details={"column": column, "newest_source": src, "newest_raw": wh},
    )
