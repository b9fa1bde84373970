"""Connection helpers: transactions commit or roll back; COPY, counts and upserts quote safely."""

from __future__ import annotations

import io

import pytest

from loader.db import connect_raw, copy_in, row_count, table_exists, transaction, upsert
from tests.conftest import create_database


@pytest.fixture(scope="module")
def db(settings):
    create_database(settings, "helpers")
    endpoint = settings.warehouse.with_database("helpers")
    with transaction(endpoint) as conn:
        conn.exec_driver_sql('create schema "odd schema"')
        conn.exec_driver_sql(
            'create table "odd schema"."Mixed Case" (id int primary key, "select" text)'
        )
    return endpoint


def test_transaction_rolls_back_on_error(db):
    with pytest.raises(RuntimeError), transaction(db) as conn:
        conn.exec_driver_sql("""insert into "odd schema"."Mixed Case" values (99, 'x')""")
        raise RuntimeError("boom")
    with transaction(db) as conn:
        assert row_count(conn, "odd schema", "Mixed Case") == 0


def test_copy_in_count_and_upsert_quote_identifiers(db):
    raw = connect_raw(db)
    n = copy_in(raw, "odd schema", "Mixed Case", io.StringIO("1,a\n2,b\n"), ["id", "select"])
    raw.commit()
    raw.close()
    assert n == 2
    with transaction(db) as conn:
        assert table_exists(conn, "odd schema", "Mixed Case")
        assert not table_exists(conn, "odd schema", "nope")
        assert upsert(conn, "odd schema", "Mixed Case",
                      [{"id": 2, "select": "B"}, {"id": 3, "select": "c"}], ["id"]) == 2
        assert row_count(conn, "odd schema", "Mixed Case") == 3
        rows = conn.exec_driver_sql(
            'select id, "select" from "odd schema"."Mixed Case" order by id').fetchall()
    assert [tuple(r) for r in rows] == [(1, "a"), (2, "B"), (3, "c")]


def test_copy_in_rejects_unknown_formats(db):
    with pytest.raises(ValueError, match="unknown COPY format"):
        copy_in(None, "s", "t", io.StringIO(""), fmt="xml")
