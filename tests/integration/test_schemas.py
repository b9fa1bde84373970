"""The ops and quality schemas: created by one call, upgraded in place from the layout before
versioning with their rows kept, and a second call changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from loader import schemas
from loader.db import connect_raw, execute
from tests.conftest import create_database, query

# The warehouse as the loader left it before loader/schemas: tables made here and there by
# `create table if not exists`, without the columns added later, and the schema's comment that
# marked the version of that DDL.
OLD_LAYOUT = """
create schema ops;
comment on schema ops is 'marketplace-elt ops 0123456789abcdef';
create table ops.pipeline_runs (
    run_id text primary key, started_at timestamptz not null default now(),
    finished_at timestamptz, status text not null, duration_s double precision,
    args jsonb not null default '{}', error text, host text, pid integer, summary jsonb);
create table ops.load_reconciliation (
    load_id text, table_name text not null, mode text not null, action text not null,
    rows_extracted bigint not null, source_rows bigint, raw_rows bigint, matched boolean,
    checked_at timestamptz not null default now());
create table ops.dead_letters (
    dead_letter_id bigint generated always as identity primary key, table_name text not null,
    row_key text, error text not null, load_id text not null, row_image jsonb,
    created_at timestamptz not null default now());
insert into ops.pipeline_runs (run_id, status) values ('old-run', 'success');
insert into ops.load_reconciliation (load_id, table_name, mode, action, rows_extracted)
values ('l1', 'orders', 'cdc', 'merge', 5);
insert into ops.dead_letters (table_name, row_key, error, load_id)
values ('orders', '7', 'bad', 'l1');
create schema quality;
create table quality.runs (run_id text primary key, started_at timestamptz not null,
    finished_at timestamptz, passed integer, warned integer, failed integer, errored integer,
    report_path text);
insert into quality.runs (run_id, started_at) values ('q1', now());
"""

OPS_TABLES = {"pipeline_runs", "task_runs", "failed_tasks", "load_reconciliation", "raw_deletes",
              "deep_reconciliation", "dead_letters", "raw_row_counts", "schema_migrations"}


def _tables(endpoint, schema: str) -> set[str]:
    return {r[0] for r in query(endpoint, "select table_name from information_schema.tables "
                                          "where table_schema = %s", (schema,))}


@pytest.fixture
def warehouse(settings, request):
    name = "schemas_" + request.node.name[-20:].lower()
    create_database(settings, name)
    return settings.warehouse.with_database(name)


def _ensure(endpoint, *names: str) -> list[schemas.Migration]:
    conn = connect_raw(endpoint, autocommit=True)
    try:
        applied = schemas.ensure(conn, *names)
        assert conn.autocommit, "the connection's autocommit setting is left as it was"
        return applied
    finally:
        conn.close()


def test_one_call_creates_each_schema_and_a_second_is_a_no_op(warehouse):
    applied = _ensure(warehouse)
    assert {(m.schema, m.version) for m in applied} == {
        (s, m.version) for s in schemas.SCHEMAS for m in schemas.migrations(s)
    }
    assert _tables(warehouse, "ops") == OPS_TABLES
    assert _tables(warehouse, "quality") == {"runs", "check_results", "alert_log",
                                             "schema_migrations"}
    functions = query(warehouse, "select count(*) from pg_proc where pronamespace = "
                                 "'ops'::regnamespace and proname like 'elt_rows_%'")
    assert functions == [(3,)]
    assert _ensure(warehouse) == [], "up to date: nothing applied"
    assert query(warehouse, "select max(version) from ops.schema_migrations") == [
        (schemas.migrations("ops")[-1].version,)
    ]


def test_a_warehouse_of_the_old_layout_is_upgraded_in_place_and_keeps_its_rows(warehouse):
    execute(warehouse, OLD_LAYOUT)
    applied = schemas.ensure_on(warehouse, "ops", "quality")
    assert [m.version for m in applied if m.schema == "ops"] == [
        m.version for m in schemas.migrations("ops")
    ]
    assert _tables(warehouse, "ops") == OPS_TABLES
    assert query(warehouse, "select run_id, status from ops.pipeline_runs") == [
        ("old-run", "success")
    ]
    assert query(warehouse, "select rows_extracted, dead_letters from "
                            "ops.load_reconciliation") == [(5, 0)]
    assert query(warehouse, "select row_key, attempts, resolved_at from ops.dead_letters") == [
        ("7", 1, None)
    ]
    assert query(warehouse, "select run_id from quality.runs") == [("q1",)]
    assert "check_results" in _tables(warehouse, "quality")
    assert schemas.ensure_on(warehouse, "ops", "quality") == [], "a second call is a no-op"


def test_concurrent_callers_apply_each_version_once(warehouse):
    with ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(schemas.ensure_on, warehouse, "ops") for _ in range(4)]
    applied = [m.version for call in calls for m in call.result()]  # raises a failed call's error
    assert sorted(applied) == [m.version for m in schemas.migrations("ops")], "each once"
    assert query(warehouse, "select count(*) from ops.schema_migrations") == [(len(applied),)]


def test_an_unknown_schema_is_refused():
    with pytest.raises(ValueError, match="the loader owns ops, quality"):
        schemas.migrations("raw_marketplace")


def test_the_run_lock_brings_the_schemas_up_and_lets_go_when_it_cannot(warehouse, monkeypatch):
    from loader.orchestrate import history

    def refused(conn, *names):
        raise PermissionError("no create on the database")

    monkeypatch.setattr(schemas, "ensure", refused)
    with pytest.raises(PermissionError):
        history.RunLock(warehouse).acquire()
    monkeypatch.undo()
    lock = history.RunLock(warehouse)
    lock.acquire()  # the failed attempt did not keep the lock
    try:
        assert schemas.applied_version(lock.conn, "ops") == schemas.migrations("ops")[-1].version
        history.start_run(warehouse, "r1", {})
    finally:
        lock.release()
    assert query(warehouse, "select run_id, status from ops.pipeline_runs") == [("r1", "running")]
