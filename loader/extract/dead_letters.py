"""Rows set aside instead of loaded (ops.dead_letters): rows the warehouse rejected (the
destination hands them over, set_aside), and rows whose key the source leaves null or
repeated (the export)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from psycopg2 import sql
from psycopg2.extras import execute_values

from loader.config import Settings
from loader.db import connect_raw


@contextmanager
def _cursor(settings: Settings) -> Iterator:
    """A cursor in one warehouse transaction (committed on success). ops.dead_letters is
    there: the load, the run and `elt deadletters` bring the ops schema up to date first
    (loader/schemas)."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def record(
    settings: Settings, table: str, load_id: str, rows: Sequence[tuple[str | None, str, dict]]
) -> None:
    """Store (key, reason, row image) of rows set aside by the load `load_id`."""
    with _cursor(settings) as cur:
        execute_values(
            cur,
            "insert into ops.dead_letters (table_name, row_key, error, load_id, row_image) "
            "values %s",
            [(table, key, reason, load_id, json.dumps(image)) for key, reason, image in rows],
        )


def set_aside(cur, table: str, load_id: str, rejected: str) -> None:
    """Store the rows of `rejected` (a relation of row_key, error, row_image: the rows of the
    load `load_id` the warehouse refused for `table`), in the caller's transaction."""
    cur.execute(
        sql.SQL("insert into ops.dead_letters (table_name, row_key, error, load_id, row_image) "
                "select %s, row_key, error, %s, row_image from {}").format(
            sql.SQL(".").join(sql.Identifier(part) for part in rejected.split("."))),
        (table, load_id),
    )


@dataclass
class Letter:
    dead_letter_id: int
    table_name: str
    row_key: str | None
    error: str
    load_id: str
    created_at: datetime
    resolution: str | None
    attempts: int
    row_image: dict | None = None


@dataclass
class ReplayResult:
    replayed: dict[str, int] = field(default_factory=dict)  # table -> rows now in raw
    gone: dict[str, int] = field(default_factory=dict)  # table -> keys no longer in source
    failing: dict[str, int] = field(default_factory=dict)  # table -> still rejected
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why not replayed


def letters(
    settings: Settings, table: str | None = None, *, resolved: bool = False,
    letter_id: int | None = None,
) -> list[Letter]:
    """Dead letters, newest first: pending ones (or all, with `resolved`), of one table or
    all, or the one with `letter_id`."""
    with _cursor(settings) as cur:
        cur.execute(
            "select dead_letter_id, table_name, row_key, error, load_id, created_at, "
            "resolution, attempts, row_image from ops.dead_letters "
            "where (%(table)s::text is null or table_name = %(table)s) "
            "and (%(all)s or resolved_at is null) "
            "and (%(id)s::bigint is null or dead_letter_id = %(id)s) "
            "order by dead_letter_id desc",
            {"table": table, "all": resolved or letter_id is not None, "id": letter_id},
        )
        return [Letter(*row) for row in cur.fetchall()]


def discard(settings: Settings, letter_id: int, reason: str = "discarded by hand") -> bool:
    """Mark one pending dead letter as discarded (kept, with when and why)."""
    with _cursor(settings) as cur:
        cur.execute(
            "update ops.dead_letters set resolved_at = now(), resolution = %s "
            "where dead_letter_id = %s and resolved_at is null",
            (reason, letter_id),
        )
        return cur.rowcount == 1
