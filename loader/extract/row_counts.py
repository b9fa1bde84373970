"""Exact raw row counts kept by statement triggers: an increment does not scan raw tables.

Every raw table carries three statement-level triggers that change its row in
`ops.raw_row_counts` in the same transaction as the rows: INSERT adds the size of its NEW
TABLE, DELETE subtracts the size of its OLD TABLE, TRUNCATE sets zero (MERGE fires the first
two for its insert and delete actions). The count is exact and transactional whoever writes
the table: dlt's merges, `elt reconcile --deep`, a DELETE by hand.

A table whose triggers or row are missing or disabled (a table dlt has just created or
recreated, a database from before this module, triggers disabled by hand) is counted with
count(*) under a SHARE lock, which holds writers off until the triggers are in place, and
set up again. A bulk COPY into the table it emptied drops the triggers first (its transition
table would hold every row) and sets them up after, with the COPY's count, in its own
transaction (binary_copy.LoadHooks).

Why: counting a scale-1 warehouse's raw tables after every load read 6.6M rows (about
0.5 s of CPU, a third of a one-day increment) to learn what the merge already knew.
"""

from __future__ import annotations

from psycopg2 import sql

from loader.db import qualified

# the table and the trigger functions are in the ops schema's DDL (loader/schemas/ops)
TRIGGERS = {
    "elt_rows_inserted": "after insert on {t} referencing new table as new_rows",
    "elt_rows_deleted": "after delete on {t} referencing old table as old_rows",
    "elt_rows_truncated": "after truncate on {t}",
}


def _name(dataset: str, table: str) -> str:
    return f"{dataset}.{table}"


def kept(cur, dataset: str, table: str) -> int | None:
    """The table's row count as its triggers keep it, or None when they do not (all three
    triggers present and enabled, and its row in ops.raw_row_counts)."""
    cur.execute(
        "select c.row_count from ops.raw_row_counts c where c.table_name = %s and ("
        "select count(*) from pg_trigger where tgrelid = to_regclass(%s) "
        "and tgname = any(%s) and tgenabled <> 'D') = %s",
        (
            _name(dataset, table),
            f'"{dataset}"."{table}"',
            list(TRIGGERS),
            len(TRIGGERS),
        ),
    )
    row = cur.fetchone()
    return None if row is None else int(row[0])


def drop_triggers(cur, dataset: str, table: str) -> None:
    for name in TRIGGERS:
        cur.execute(
            sql.SQL("drop trigger if exists {} on {}").format(
                sql.Identifier(name), qualified(dataset, table)
            )
        )


def set_up(cur, dataset: str, table: str, rows: int | None = None) -> int:
    """Put the triggers on the table and its row in ops.raw_row_counts, in the caller's
    transaction: `rows` when the caller knows the table's count in it (a COPY into the
    table it emptied), else count(*) under a SHARE lock."""
    target = qualified(dataset, table)
    if rows is None:
        cur.execute(sql.SQL("lock table {} in share mode").format(target))
        cur.execute(sql.SQL("select count(*) from {}").format(target))
        rows = int(cur.fetchone()[0])
    drop_triggers(cur, dataset, table)
    for name, when in TRIGGERS.items():
        cur.execute(
            sql.SQL(
                "create trigger {name} " + when + " for each statement execute function {fn}()"
            ).format(name=sql.Identifier(name), fn=sql.Identifier("ops", name), t=target)
        )
    cur.execute(
        "insert into ops.raw_row_counts (table_name, row_count) values (%s, %s) "
        "on conflict (table_name) do update set row_count = excluded.row_count, "
        "counted_at = now()",
        (_name(dataset, table), rows),
    )
    return rows


def count(conn, dataset: str, table: str, *, again: bool = False) -> int:
    """The table's exact row count: kept by its triggers, or counted once (always, with
    `again`) and kept from then on. `conn` is in autocommit; the set-up runs in one
    transaction of its own."""
    if not again:
        with conn.cursor() as cur:
            rows = kept(cur, dataset, table)
            if rows is not None:
                return rows
    conn.autocommit = False
    try:
        with conn, conn.cursor() as cur:
            return set_up(cur, dataset, table)
    finally:
        conn.autocommit = True
