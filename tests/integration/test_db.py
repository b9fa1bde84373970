"""Connections: statements run committed and quote identifiers safely; a run's reused
connection survives the server killing it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from loader.db import Session, connect_raw, execute, qualified
from tests.conftest import create_database, query


@pytest.fixture(scope="module")
def db(settings):
    create_database(settings, "helpers")
    endpoint = settings.warehouse.with_database("helpers")
    execute(
        endpoint,
        'create schema "odd schema"',
        'create table "odd schema"."Mixed Case" (id int primary key, "select" text)',
    )
    return endpoint


def test_execute_commits_each_statement_and_qualified_quotes_names(db):
    conn = connect_raw(db)
    try:
        insert = qualified("odd schema", "Mixed Case").as_string(conn)
    finally:
        conn.close()
    execute(db, f"insert into {insert} values (1, 'a')", f"insert into {insert} values (2, 'b')")
    with pytest.raises(Exception, match="duplicate key"):
        execute(db, f"insert into {insert} values (3, 'c')",
                f"insert into {insert} values (1, 'x')")
    rows = query(db, 'select id, "select" from "odd schema"."Mixed Case" order by id')
    assert rows == [(1, "a"), (2, "b"), (3, "c")], "each statement commits on its own"


def test_a_session_reuses_one_connection_and_reopens_it_when_killed(db):
    with Session(db) as session:
        first = session.query("select pg_backend_pid()")[0][0]
        assert session.query("select pg_backend_pid()")[0][0] == first, "one connection"
        query(db, "select pg_terminate_backend(%s)", (first,))
        again = session.query("select pg_backend_pid()")[0][0]
        assert again != first, "the killed connection was replaced, the statement retried"
        assert session.query("create temporary table t (x int)") == []


def test_a_session_is_shared_by_threads_one_statement_at_a_time(db):
    execute(db, "create table threads (n int)")
    with Session(db) as session:
        with ThreadPoolExecutor(8) as pool:
            for call in [pool.submit(session.query, "insert into threads values (%s)", (n,))
                         for n in range(8)]:
                call.result()
        pids = session.query("select count(distinct pid) from pg_stat_activity "
                             "where datname = 'helpers' and pid <> pg_backend_pid()")
    assert query(db, "select count(*) from threads") == [(8,)]
    assert pids[0][0] <= 1, "no other connection of the session's"
