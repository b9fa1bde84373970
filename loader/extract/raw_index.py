"""The indexes of raw tables (merge key, `_loaded_at`) and their row counts once dlt has
committed their rows."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from psycopg2 import sql

from loader.config import Settings
from loader.db import connect_raw, qualified
from loader.extract import dead_letters, row_counts
from loader.extract.queries import COUNT_SETTINGS
from loader.extract.results import TableResult
from loader.extract.tables import LoaderConfig, TableSpec

# The loader indexes one table per thread, beside other tables' COPY and merges: parallel
# index-build workers add CPU (bids at scale 1: 1.26 s of CPU for 0.75 s) where none is free.
INDEX_SETTINGS = "set max_parallel_maintenance_workers = 0"


def merge_key_index_name(table: str) -> str:
    return f"{table}__merge_key"


def loaded_at_index_name(table: str) -> str:
    return f"{table}__loaded_at"


def loaded_at_index(
    config: LoaderConfig, table: str, bulk_loaded_at: datetime | None
) -> sql.Composed:
    """The `_loaded_at` index; after a bulk load stamped `bulk_loaded_at`, without its rows."""
    partial = (
        sql.SQL(" where _loaded_at > {}::timestamptz").format(
            sql.Literal(bulk_loaded_at.isoformat())
        )
        if bulk_loaded_at
        else sql.SQL("")
    )
    return sql.SQL("create index if not exists {} on {} (_loaded_at){}").format(
        sql.Identifier(loaded_at_index_name(table)), qualified(config.dataset, table), partial
    )


def index_and_count(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    bulk_loaded_at: datetime | None = None,
) -> int | None:
    """Build the unique merge-key index and the `_loaded_at` index when missing (increments
    downstream find the rows a load wrote by the latter), and return the raw table's row
    count, as its statement triggers keep it (row_counts.py).

    After a bulk load (stamped `bulk_loaded_at`), the `_loaded_at` index leaves out the bulk
    rows (partial, `_loaded_at > stamp`): nobody looks for them by it, and an index of millions
    of equal stamps would cost seconds to build; every later load's rows are in it, and a
    `_loaded_at > cutoff` at or after the stamp uses it. Then ANALYZE (about 5% of the
    initial load): without statistics, dbt's first build and the next merges plan their
    joins blind until autovacuum comes by."""
    conn = connect_raw(settings.warehouse, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s)", (f'"{config.dataset}"."{spec.name}"',))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(INDEX_SETTINGS)
            cur.execute(
                sql.SQL("create unique index if not exists {} on {} ({})").format(
                    sql.Identifier(merge_key_index_name(spec.name)),
                    qualified(config.dataset, spec.name),
                    sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
                )
            )
            cur.execute(loaded_at_index(config, spec.name, bulk_loaded_at))
            cur.execute(COUNT_SETTINGS)
            if bulk_loaded_at:
                cur.execute(sql.SQL("analyze {}").format(qualified(config.dataset, spec.name)))
        return row_counts.count(conn, config.dataset, spec.name)
    finally:
        conn.close()


class RawCounts:
    """The loader's bookkeeping of one load, told by the destination (binary_copy.LoadHooks).

    Index and count each raw table once dlt has committed its rows: dlt's load threads call
    `table_written` as each table commits, so a table is counted while the others still
    merge; the tables no job wrote are started after the load.

    Before the bulk COPY of an initial or full load, the partial `_loaded_at` index is made on
    the empty table and its count triggers dropped (`before_bulk_copy`): the COPY's rows all
    fall outside the index, building it afterwards would read the whole table once more (0.5 s
    of CPU for 2M rows), and the triggers would build a transition table of every row only to
    count it; the COPY's own row count is the table's kept count (`after_bulk_copy`). Rows the
    warehouse refused go to ops.dead_letters (`rows_rejected`). All three in the load's
    transaction."""

    def __init__(
        self,
        settings: Settings,
        config: LoaderConfig,
        results: dict[str, TableResult],
        loaded_at: datetime,
    ) -> None:
        self.settings, self.config, self.results, self.loaded_at = (
            settings,
            config,
            results,
            loaded_at,
        )
        # a thread per table: the index builds and counts use both cores
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="raw-count")
        self._started: dict[str, Future] = {}
        self._lock = threading.Lock()

    def start(self, table: str) -> Future:
        with self._lock:
            if table not in self._started:
                bulk = self.results[table].action.whole_table
                self._started[table] = self.pool.submit(
                    index_and_count,
                    self.settings,
                    self.config,
                    self.config.tables[table],
                    self.loaded_at if bulk else None,
                )
            return self._started[table]

    def table_written(self, table: str) -> None:
        self.start(table)

    def before_bulk_copy(self, cursor, table: str) -> None:
        row_counts.drop_triggers(cursor, self.config.dataset, table)
        result = self.results.get(table)
        if result is not None and result.action.whole_table:
            cursor.execute(loaded_at_index(self.config, table, self.loaded_at))

    def after_bulk_copy(self, cursor, table: str, rows: int) -> None:
        row_counts.set_up(cursor, self.config.dataset, table, rows)

    def rows_rejected(self, cursor, table: str, load_id: str, rejected: str) -> None:
        dead_letters.set_aside(cursor, table, load_id, rejected)
