"""The results store: rows of the `quality` schema, keyed by run, with a configurable retention."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg2.extensions
from psycopg2.extras import execute_values

from loader.config import Endpoint
from loader.db import connect_raw
from loader.quality.results import jsonable

# The tables are in the quality schema's DDL (loader/schemas/quality); quality.dbt_invocations
# and quality.dbt_results belong to the dbt on-run-end hook (macros/quality/store_run_results.sql);
# elementary keeps its own copy of every result.
RETENTION_SQL = """
delete from quality.runs where started_at < now() - make_interval(days => %(days)s);
delete from quality.alert_log where sent_at < now() - make_interval(days => %(days)s);
"""
# the hook's tables, once dbt has created them
HOOK_RETENTION_SQL = """
delete from quality.dbt_results as r using quality.dbt_invocations as i
where r.invocation_id = i.invocation_id
  and i.finished_at < now() - make_interval(days => %(days)s);
delete from quality.dbt_invocations where finished_at < now() - make_interval(days => %(days)s);
"""


def connect(endpoint: Endpoint) -> psycopg2.extensions.connection:
    return connect_raw(endpoint)


def apply_retention(conn: psycopg2.extensions.connection, days: int) -> None:
    """Drop results older than `days` (elementary keeps its own tables: its var days_back
    bounds what its monitors read)."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('quality.dbt_invocations') is not null")
        hook_tables = cur.fetchone()[0]
        cur.execute(RETENTION_SQL + (HOOK_RETENTION_SQL if hook_tables else ""), {"days": days})
    conn.commit()


def fetch_dicts(
    conn: psycopg2.extensions.connection, sql: str, params: Any = None
) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def start_run(conn: psycopg2.extensions.connection, run_id: str, started_at: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "insert into quality.runs (run_id, started_at) values (%s, %s)", (run_id, started_at)
        )
    conn.commit()


def finish_run(
    conn: psycopg2.extensions.connection,
    run_id: str,
    counts: dict[str, int],
    report_path: str,
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """update quality.runs set finished_at = clock_timestamp(), passed = %s, warned = %s,
               failed = %s, errored = %s, report_path = %s where run_id = %s""",
            (
                counts.get("pass", 0),
                counts.get("warn", 0),
                counts.get("fail", 0),
                counts.get("error", 0),
                report_path,
                run_id,
            ),
        )
    conn.commit()


def insert_rows(
    conn: psycopg2.extensions.connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    conflict: str = "",
) -> None:
    """One multi-row INSERT (execute_values) for a batch; `table` is a trusted constant."""
    rows = [tuple(_adapt(v) for v in row) for row in rows]
    if not rows:
        return
    with conn.cursor() as cur:
        execute_values(
            cur,
            f"insert into {table} ({', '.join(columns)}) values %s {conflict}",
            rows,
            page_size=1000,
        )
    conn.commit()


def _adapt(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(jsonable(value))
    return value
