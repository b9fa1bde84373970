"""Reconciliation: source vs raw counts after every load, and a deep checksum comparison."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg2 import sql
from psycopg2.extras import execute_values

from loader.config import Settings
from loader.db import connect_raw, qualified
from loader.extract import row_counts
from loader.extract.catalog import good_key, key_is_enforced, source_columns
from loader.extract.plan import Action
from loader.extract.tables import LoaderConfig, TableSpec


def raw_tables(settings: Settings, dataset: str) -> set[str]:
    """The tables that exist in the raw dataset, in one catalog query."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (dataset,),
            )
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def counted_loads(settings: Settings, loads: dict[str, str]) -> set[str]:
    """Of `loads` (table -> the load_id of its last load), the tables whose count of that load
    is recorded with a source count (ops.load_reconciliation): that load's search for rows
    behind its window ran, and any rows it found were caught up, before the record was
    written (pipeline._run_load). A load killed or failed after it committed has none."""
    if not loads:
        return set()
    conn = connect_raw(settings.warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select distinct r.table_name from ops.load_reconciliation as r "
                "join unnest(%s::text[], %s::text[]) as l(table_name, load_id) "
                "using (table_name, load_id) where r.source_rows is not null",
                (list(loads), list(loads.values())),
            )
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def reconciled_label(reconciled: bool | None) -> str:
    """How a table's count reconciliation reads in every summary."""
    return {True: "yes", False: "MISMATCH", None: "-"}[reconciled]


def record_counts(settings: Settings, config: LoaderConfig, load_id: str | None, results) -> None:
    """Store source vs raw counts per table (counted after the load) in ops.load_reconciliation.
    The load brought the ops schema up to date before it started (loader/schemas)."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            dead: dict[str, int] = {}
            if load_id:
                cur.execute(
                    "select table_name, count(*) from ops.dead_letters where load_id = %s "
                    "group by table_name",
                    (load_id,),
                )
                dead = dict(cur.fetchall())
            for result in results:
                if result.action == Action.SKIPPED:
                    continue
                result.dead_letters = int(dead.get(result.table, 0))
                cur.execute(
                    """insert into ops.load_reconciliation (load_id, table_name, mode, action,
                       rows_extracted, source_rows, raw_rows, matched, dead_letters)
                       values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (
                        load_id,
                        result.table,
                        result.mode,
                        result.action,
                        # the rows the load wrote into raw: its increment and its catch-up
                        result.rows_extracted + result.caught_up,
                        result.source_rows,
                        result.raw_rows,
                        result.reconciled,
                        result.dead_letters,
                    ),
                )
    finally:
        conn.close()


def record_settled(settings: Settings, result) -> None:
    """A table's counts after the repair that followed its load (settle.py), as a row of
    ops.load_reconciliation: the latest row per table is what `elt status` shows."""
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """insert into ops.load_reconciliation (load_id, table_name, mode, action,
                   rows_extracted, source_rows, raw_rows, matched, dead_letters)
                   values (null, %s, %s, 'repair', %s, %s, %s, %s, %s)""",
                (result.table, result.mode, result.repaired, result.source_rows,
                 result.raw_rows, result.reconciled, result.dead_letters),
            )
    finally:
        conn.close()


def raw_count(settings: Settings, config: LoaderConfig, table: str) -> int:
    """The raw table's row count, as its statement triggers keep it (row_counts.py)."""
    conn = connect_raw(settings.warehouse, autocommit=True)
    try:
        return row_counts.count(conn, config.dataset, table)
    finally:
        conn.close()


def record_deletes(
    settings: Settings,
    table: str,
    keys: Sequence[int | None],
    *,
    reason: str,
    deleted_at: datetime,
    load_id: str | None = None,
) -> None:
    """Tombstones in ops.raw_deletes: one null key when a table is reloaded whole (written
    before the load commits: a load that then fails leaves a harmless tombstone, never a
    delete that dbt misses), and the keys a cdc increment deletes, the same way (read in its
    export's snapshot, resource.table_resource); a repair writes its own in the transaction of
    its delete (repair.repair_ranges). dbt deletes downstream only the tombstoned keys
    (macros/incremental.sql, delete_missing_rows) instead of anti-joining whole tables; a
    key that came back is still in raw and is left alone."""
    if not keys:
        return
    # the caller made the ops schema (from one thread: concurrent DDL races)
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            execute_values(
                cur,
                "insert into ops.raw_deletes (table_name, row_key, load_id, reason, deleted_at) "
                "values %s",
                [(table, key, load_id, reason, deleted_at) for key in keys],
            )
    finally:
        conn.close()


@dataclass(frozen=True)
class BucketDiff:
    table: str
    bucket: int
    key_from: int
    key_to: int
    source_rows: int
    raw_rows: int


def _bucket_sql(
    schema: str,
    table: str,
    key: str,
    columns: Sequence[str],
    only: sql.Composable | None = None,
) -> sql.Composed:
    """Per key bucket: row count and an order-independent sum of row hashes; `only`, the rows
    raw can hold of a source that does not enforce its key (catalog.good_key)."""
    # null and '' must differ; the marker is not a value any column renders as
    row_text = sql.SQL(" || '|' || ").join(
        sql.SQL("coalesce(quote_literal({}::text), 'NULL')").format(sql.Identifier(c))
        for c in columns
    )
    return sql.SQL(
        "select {key} / %(width)s as bucket, count(*), "
        "sum(('x' || substr(md5({row}), 1, 15))::bit(60)::bigint)::text "
        "from {table} as t where {only} group by 1"
    ).format(
        key=sql.Identifier(key),
        row=row_text,
        table=qualified(schema, table),
        only=only or sql.SQL("true"),
    )


def _buckets(endpoint, statement: sql.Composed, width: int) -> dict[int, tuple[int, str]]:
    conn = connect_raw(endpoint)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, {"width": width})
            return {int(b): (int(n), h) for b, n, h in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()


def compare(
    settings: Settings, config: LoaderConfig, spec: TableSpec, width: int = 10_000
) -> list[BucketDiff]:
    """Buckets of `width` keys whose count or checksum differ between source and raw."""
    if len(spec.primary_key) != 1:
        raise ValueError(f"{spec.name}: deep reconciliation needs a single-column integer key")
    key = spec.primary_key[0]
    src = connect_raw(settings.source)
    try:
        columns = [c.name for c in source_columns(src, config.source_schema, spec.name)]
        enforced = key_is_enforced(src, config.source_schema, spec.name, spec.primary_key)
    finally:
        src.close()
    only = None if enforced else good_key(spec.primary_key, qualified(config.source_schema,
                                                                      spec.name))
    source = _buckets(
        settings.source, _bucket_sql(config.source_schema, spec.name, key, columns, only), width
    )
    raw = _buckets(settings.warehouse, _bucket_sql(config.dataset, spec.name, key, columns), width)
    diffs = []
    for bucket in sorted(set(source) | set(raw)):
        s, r = source.get(bucket, (0, "0")), raw.get(bucket, (0, "0"))
        if s != r:
            diffs.append(
                BucketDiff(spec.name, bucket, bucket * width, (bucket + 1) * width - 1, s[0], r[0])
            )
    return diffs


def recount(settings: Settings, dataset: str, table: str) -> None:
    """Set the table's kept row count (row_counts) from count(*) again: a deep reconcile reads
    every row anyway, and this clears whatever went past disabled triggers."""
    conn = connect_raw(settings.warehouse, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s) is not null", (f'"{dataset}"."{table}"',))
            exists = cur.fetchone()[0]
        if exists:
            row_counts.count(conn, dataset, table, again=True)
    finally:
        conn.close()


def record_deep(settings: Settings, diffs: list[BucketDiff], repaired: bool) -> None:
    if not diffs:
        return
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            now = datetime.now(UTC)
            cur.executemany(
                """insert into ops.deep_reconciliation (table_name, bucket, key_from, key_to,
                   source_rows, raw_rows, repaired, checked_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s)""",
                [
                    (
                        d.table,
                        d.bucket,
                        d.key_from,
                        d.key_to,
                        d.source_rows,
                        d.raw_rows,
                        repaired,
                        now,
                    )
                    for d in diffs
                ],
            )
    finally:
        conn.close()
