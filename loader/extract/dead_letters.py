"""Rows set aside instead of loaded (ops.dead_letters): rows the warehouse rejected
(binary_copy), and rows whose key the source leaves null or repeated (the export)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg2.extras import execute_values

from loader.config import Settings
from loader.db import connect_raw

DDL = """
create schema if not exists ops;
create table if not exists ops.dead_letters (
    dead_letter_id bigint generated always as identity primary key,
    table_name     text not null,
    row_key        text,
    error          text not null,
    load_id        text not null,
    row_image      jsonb,
    created_at     timestamptz not null default now()
);
"""


def record(
    settings: Settings, table: str, load_id: str, rows: Sequence[tuple[str | None, str, dict]]
) -> None:
    """Store (key, reason, row image) of rows set aside by the load `load_id`."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select to_regclass('ops.dead_letters') is not null")
            if not cur.fetchone()[0]:
                cur.execute(DDL)
            execute_values(
                cur,
                "insert into ops.dead_letters (table_name, row_key, error, load_id, row_image) "
                "values %s",
                [(table, key, reason, load_id, json.dumps(image)) for key, reason, image in rows],
            )
    finally:
        conn.close()
