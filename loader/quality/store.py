"""The results store: the `quality` schema, keyed by run, with a configurable retention."""

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

# quality.dbt_invocations and quality.dbt_results belong to the dbt on-run-end hook
# (macros/quality/store_run_results.sql); they are created here too so that a report on a
# warehouse where dbt never ran still finds them.
DDL = """
create schema if not exists quality;
create table if not exists quality.runs (
    run_id       text primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz,
    passed       integer,
    warned       integer,
    failed       integer,
    errored      integer,
    report_path  text
);
create table if not exists quality.check_results (
    run_id       text not null references quality.runs (run_id) on delete cascade,
    check_id     text not null,
    category     text not null,
    check_name   text not null,
    table_name   text,
    status       text not null,
    message      text,
    observed     double precision,
    threshold    double precision,
    failing_rows bigint,
    sample       jsonb,
    details      jsonb,
    primary key (run_id, check_id)
);
create table if not exists quality.reconciliation (
    run_id       text not null references quality.runs (run_id) on delete cascade,
    load_id      text,
    table_name   text not null,
    source_rows  bigint,
    raw_rows     bigint,
    matched      boolean,
    dead_letters bigint,
    checked_at   timestamptz,
    primary key (run_id, table_name)
);
create table if not exists quality.profiles (
    run_id         text not null references quality.runs (run_id) on delete cascade,
    schema_name    text not null,
    table_name     text not null,
    column_name    text not null,
    data_type      text not null,
    row_count      bigint not null,
    null_count     bigint,
    null_pct       double precision,
    distinct_count bigint,
    min_value      text,
    max_value      text,
    avg_value      double precision,
    primary key (run_id, schema_name, table_name, column_name)
);
-- provenance of a profile: a whole-table profile is carried forward from the run that computed
-- it (profiled_run_id, at profiled_at, covering rows loaded through loaded_through, on relation
-- relation_oid after `modifications` rows inserted, updated or deleted since stats_reset)
-- while only the rows loaded since are profiled (recent_*)
alter table quality.profiles
    add column if not exists profiled_at           timestamptz,
    add column if not exists profiled_run_id       text,
    add column if not exists loaded_through        timestamptz,
    add column if not exists relation_oid          bigint,
    add column if not exists modifications         bigint,
    add column if not exists stats_reset           timestamptz,
    add column if not exists basis                 text,
    add column if not exists recent_rows           bigint,
    add column if not exists recent_null_count     bigint,
    add column if not exists recent_distinct_count bigint,
    add column if not exists recent_min_value      text,
    add column if not exists recent_max_value      text,
    add column if not exists recent_avg_value      double precision;
create index if not exists profiles_newest_idx
    on quality.profiles (schema_name, table_name, profiled_at desc);
-- one value per metric and day: every run re-measures the recent days and overwrites them,
-- so the history is the latest measurement of each day
create table if not exists quality.metrics (
    table_name  text not null,
    column_name text not null,
    metric      text not null,
    bucket_date date not null,
    value       double precision,
    run_id      text not null,
    measured_at timestamptz not null default now(),
    primary key (table_name, column_name, metric, bucket_date)
);
create table if not exists quality.alert_log (
    fingerprint text not null,
    channel     text not null,
    run_id      text not null,
    sent_at     timestamptz not null default now()
);
create index if not exists alert_log_fingerprint_idx
    on quality.alert_log (fingerprint, channel, sent_at desc);
create table if not exists quality.dbt_invocations (
    invocation_id text primary key,
    command text,
    target_name text,
    started_at timestamptz,
    finished_at timestamptz not null default clock_timestamp(),
    nodes integer not null,
    errors integer not null,
    warnings integer not null
);
create table if not exists quality.dbt_results (
    invocation_id text not null,
    unique_id text not null,
    resource_type text not null,
    node_name text not null,
    status text,
    severity text,
    execution_seconds double precision,
    failures bigint,
    rows_affected bigint,
    message text,
    relation_name text,
    column_name text,
    started_at timestamptz,
    completed_at timestamptz,
    primary key (invocation_id, unique_id)
);
"""

RETENTION_SQL = """
delete from quality.runs where started_at < now() - make_interval(days => %(days)s);
delete from quality.metrics where bucket_date < current_date - %(days)s - %(window)s;
delete from quality.alert_log where sent_at < now() - make_interval(days => %(days)s);
delete from quality.dbt_results as r using quality.dbt_invocations as i
where r.invocation_id = i.invocation_id
  and i.finished_at < now() - make_interval(days => %(days)s);
delete from quality.dbt_invocations where finished_at < now() - make_interval(days => %(days)s);
"""


def connect(endpoint: Endpoint) -> psycopg2.extensions.connection:
    return connect_raw(endpoint)


def ensure_schema(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute(DDL)
    conn.commit()


def apply_retention(conn: psycopg2.extensions.connection, days: int, window_days: int) -> None:
    """Drop results older than `days`; metric days also keep the anomaly window behind them."""
    with conn.cursor() as cur:
        cur.execute(RETENTION_SQL, {"days": days, "window": window_days})
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
