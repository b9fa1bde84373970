"""The dlt pipeline `marketplace`: fast COPY extraction, merges into raw, watermarks in dlt state.

Each table is exported from the source with `COPY (select ...) TO STDOUT (FORMAT binary)` into a
file inside one REPEATABLE READ snapshot (bulk exports through psql, which joins that snapshot),
and handed to dlt as an imported file: dlt loads it with binary COPY (binary_copy.py; replace on
an initial load, merge on increments) and commits the table's watermark with it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from loader import children, credentials, schemas, warehouse
from loader.config import Settings, UserError
from loader.db import connect_raw, qualified
from loader.db import execute as db_execute
from loader.errors import causes, first_cause
from loader.extract import binary_copy, dead_letters, reconcile, row_counts
from loader.extract.binary_copy import postgres_binary_copy, write_footer
from loader.extract.catalog import Column, good_key, key_is_enforced, source_columns
from loader.extract.cut import OLDEST_WRITER_SQL, SnapshotHolder, SourceCut
from loader.extract.tables import LoaderConfig, TableSpec

log = logging.getLogger(__name__)

PIPELINE_NAME = "marketplace"
LOAD_HINTS = {
    "_dlt_load_id": {"name": "_dlt_load_id", "data_type": "text", "nullable": False},
    "_loaded_at": {
        "name": "_loaded_at",
        "data_type": "timestamp",
        "timezone": True,
        "nullable": False,
    },
}
CDC_HINTS = {
    "_cdc_deleted": {
        "name": "_cdc_deleted",
        "data_type": "bool",
        "nullable": True,
        "hard_delete": True,
    },
    "_cdc_changed_at": {
        "name": "_cdc_changed_at",
        "data_type": "timestamp",
        "timezone": True,
        "nullable": True,
        "dedup_sort": "desc",
    },
}

# How the loader counts a table: one sequential scan, no parallel workers.
# - The loader counts one table per thread already; parallel workers on top of that cost CPU
#   and win no time (measured on 2 cores: 0.3 s of the 2.7 s of CPU a one-day increment uses).
# - A merge that updates rows all over a table (a day's order updates) leaves a third of its
#   pages not all-visible while their statistics still say all-visible: the planner picks an
#   index-only scan that then fetches those heap pages one by one (raw orders at scale 1:
#   611 ms vs 77 ms for the sequential scan, measured right after a one-day merge).
COUNT_SETTINGS = (
    "set max_parallel_workers_per_gather = 0; set enable_indexonlyscan = off; "
    "set enable_indexscan = off; set enable_bitmapscan = off"
)


# how many keys of rows dated in the future a load names in its warning
FUTURE_KEYS_SHOWN = 10

FUTURE_FIELDS = ("future_rows", "future_keys")  # reported, not kept in the state

# actions that export whole tables (or windows of them): their COPY goes through psql
BULK_ACTIONS = ("initial", "full", "backfill")


# The loader indexes one table per thread, beside other tables' COPY and merges: parallel
# index-build workers add CPU (bids at scale 1: 1.26 s of CPU for 0.75 s) where none is free.
INDEX_SETTINGS = "set max_parallel_maintenance_workers = 0"


class LoadError(UserError, RuntimeError):
    """A load could not run; the message says which table and what to do."""


@dataclass
class TableResult:
    table: str
    mode: str
    action: str  # initial, full, increment, backfill
    rows_extracted: int = 0
    source_rows: int | None = None
    raw_rows: int | None = None
    watermark: str | None = None
    seconds: float = 0.0
    drift: list[str] = field(default_factory=list)
    dead_letters: int = 0  # rows the warehouse could not hold, in ops.dead_letters
    repaired: int = 0  # rows extracted again or deleted by the repair after the load
    remaining: list = field(default_factory=list)  # key ranges still differing after it
    repair_error: str | None = None  # why the repair failed, when it did
    caught_up: int = 0  # rows found behind the window by the count scan and loaded
    skew_s: float | None = None  # how far behind the window they lay
    future_rows: int = 0  # rows whose cursor is after the source's clock (a data problem)
    future_keys: list[str] = field(default_factory=list)  # the first of them
    # the source count while it runs (increments count after the export, during the load)
    pending_source_rows: Future | None = field(default=None, repr=False, compare=False)

    @property
    def reconciled(self) -> bool | None:
        if self.source_rows is None or self.raw_rows is None:
            return None
        return self.source_rows == self.raw_rows


@dataclass
class Export:
    """What one table's export produced."""

    rows: int
    source_rows: Future | None  # the source count, taken in the export's snapshot
    position: dict  # where the next increment starts (_capture_position)
    set_aside: list[tuple]  # (key, reason, row image) of rows with a null or repeated key


@dataclass
class LoadResult:
    load_id: str | None
    tables: dict[str, TableResult]
    seconds: float

    @property
    def rows_extracted(self) -> int:
        return sum(t.rows_extracted for t in self.tables.values())

    @property
    def dead_letters(self) -> int:
        return sum(t.dead_letters for t in self.tables.values())


def configure_dlt() -> None:
    """Telemetry off (slow offline, and users expect privacy) unless the user set it."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_TELEMETRY", "false")


def pipelines_dir(settings: Settings) -> Path:
    return settings.dlt_dir / "pipelines"


def make_pipeline(settings: Settings, config: LoaderConfig) -> dlt.Pipeline:
    configure_dlt()
    # a secret read anew and a whole IAM token's lifetime (15 minutes) for every load
    credentials.forget(settings.warehouse)
    return dlt.pipeline(
        PIPELINE_NAME,
        destination=postgres_binary_copy(credentials=credentials.live(settings.warehouse).dsn),
        dataset_name=config.dataset,
        pipelines_dir=str(pipelines_dir(settings)),
    )


def _select_list(columns: list[Column], prefix: str = "") -> sql.Composed:
    """The columns, cast to the warehouse's types and named as in the source."""
    items = []
    for c in columns:
        expr = sql.SQL(prefix) + sql.Identifier(c.name) if prefix else sql.Identifier(c.name)
        if c.export_cast:
            expr = sql.SQL("{}::{} as {}").format(
                expr, sql.SQL(c.export_cast), sql.Identifier(c.name)
            )
        elif prefix:
            expr = sql.SQL("{} as {}").format(expr, sql.Identifier(c.name))
        items.append(expr)
    return sql.SQL(", ").join(items)


def _export_columns(spec: TableSpec, columns: list[Column]) -> list[str]:
    names = [c.name for c in columns] + list(LOAD_HINTS)
    return names + list(CDC_HINTS) if spec.mode == "cdc" else names


def _hints(spec: TableSpec, columns: list[Column], merge: bool) -> dict:
    hints = {c.name: c.hint() for c in columns} | LOAD_HINTS
    if spec.mode == "cdc":
        # the merge-only hints are left out of replace loads (dlt would warn and ignore them)
        hints |= (
            CDC_HINTS
            if merge
            else {
                k: {x: y for x, y in v.items() if x not in ("hard_delete", "dedup_sort")}
                for k, v in CDC_HINTS.items()
            }
        )
    for key in spec.primary_key:
        hints[key] = {**hints[key], "nullable": False}
    return hints


# actions that merge chosen rows into raw whatever the table's mode (a full table too)
BY_ROW_ACTIONS = ("repair", "replay", "catch_up")


def _write_disposition(spec: TableSpec, action: str) -> str | dict:
    if action in ("initial", "full") or (spec.mode == "full" and action not in BY_ROW_ACTIONS):
        return "replace"
    # the change log holds several versions of a key: delete-insert deduplicates them;
    # cursor increments hold one row per key, and upsert measured faster for those
    strategy = "delete-insert" if spec.mode == "cdc" else "upsert"
    return {"disposition": "merge", "strategy": strategy}


def _change_window(alias: str = "") -> str:
    """The change-log rows of one table between the previous snapshot's xmin and this one's:
    every change committed since the last load, none still in flight (commit-safe)."""
    return (
        f"{alias}table_name = %(table_name)s "
        f"and {alias}txid >= %(from_txid)s::text::xid8 "
        f"and {alias}txid < pg_snapshot_xmin(pg_current_snapshot())"
    )


def _extract_query(
    config: LoaderConfig,
    spec: TableSpec,
    columns: list[Column],
    action: str,
    state: dict,
    window,
) -> tuple[sql.Composed, dict]:
    """The SELECT that feeds COPY for this table and action, with its parameters."""
    table = qualified(config.source_schema, spec.name)
    stamp = sql.SQL("%(load_id)s as _dlt_load_id, %(loaded_at)s::timestamptz as _loaded_at")
    cdc_snapshot_cols = sql.SQL(", false as _cdc_deleted, null::timestamptz as _cdc_changed_at")
    params: dict = {}
    if spec.mode == "cdc" and action == "increment":
        schema, log_table = config.cdc_table.split(".", 1)
        # the record is built once per row by a lateral call: `(sub.r).col` over a subquery
        # column would call jsonb_populate_record once per column (measured 5x slower)
        query = sql.SQL(
            "select {cols}, {stamp}, l.operation = 'D' as _cdc_deleted, "
            "l.changed_at as _cdc_changed_at from {log} as l "
            "cross join lateral jsonb_populate_record(null::{table}, l.row_data) as r "
            "where " + _change_window("l.")
        ).format(
            cols=_select_list(columns, "r."),
            stamp=stamp,
            table=table,
            log=qualified(schema, log_table),
        )
        if not spec.key_enforced:  # the change log holds versions of a key: only nulls go aside
            query += sql.SQL(" and row({}) is not null").format(
                sql.SQL(", ").join(sql.SQL("r.") + sql.Identifier(k) for k in spec.primary_key)
            )
        params.update(table_name=spec.name, from_txid=str(state["cdc_txid"]))
        return query, params
    extra = cdc_snapshot_cols if spec.mode == "cdc" else sql.SQL("")
    query = sql.SQL("select {cols}, {stamp}{extra} from {table} as t").format(
        cols=_select_list(columns), stamp=stamp, extra=extra, table=table
    )
    conditions = _window_conditions(spec, action, state, window, params)
    if not spec.key_enforced:
        conditions.append(good_key(spec.primary_key, table))
    if conditions:
        query += sql.SQL(" where ") + sql.SQL(" and ").join(conditions)
    return query, params


def _window_conditions(
    spec: TableSpec, action: str, state: dict, window, params: dict
) -> list[sql.Composable]:
    """The conditions that select the rows of this action (none: the whole table); their
    parameters go into `params`."""
    cursor = spec.cursor or ("updated_at" if window else None)
    conditions: list[sql.Composable] = []
    if action == "increment" and spec.mode == "timestamp":
        # a constant (the watermark minus the lag, worked out by _capture_position): the
        # planner then sees how few rows it selects and reads them through the cursor index
        conditions.append(sql.SQL("{} >= %(since)s::timestamptz").format(sql.Identifier(cursor)))
        params.update(since=state["since"])
        if state.get("snapshot_xmin"):
            # rows written before the previous snapshot's xmin were extracted then: skip them
            # (age() compares 32-bit xids circularly; frozen rows count as oldest)
            conditions.append(
                sql.SQL("age(t.xmin) <= age(mod(%(prev_xmin)s::bigint, 4294967296)::text::xid)")
            )
            params["prev_xmin"] = state["snapshot_xmin"]
    elif action == "catch_up":  # rows the count scan found behind the window (by ctid)
        conditions.append(sql.SQL("t.ctid = any(%(ctids)s::tid[])"))
        params.update(ctids=list(window))
    elif action == "replay":  # dead letters, by key
        key_type, keys = window
        conditions.append(sql.SQL("t.{} = any(%(keys)s::text[]::{}[])").format(
            sql.Identifier(spec.primary_key[0]), sql.SQL(key_type)))
        params.update(keys=keys)
    elif action == "repair":
        conditions.append(
            sql.SQL("%(ranges)s::int8multirange @> {}::bigint").format(
                sql.Identifier(spec.primary_key[0])
            )
        )
        params.update(ranges="{" + ",".join(f"[{lo},{hi}]" for lo, hi in window) + "}")
    elif action == "backfill":
        if cursor is None:
            raise LoadError(f"{spec.name}: backfill needs a cursor column in tables.yml")
        conditions.append(sql.SQL("{0} >= %(start)s and {0} < %(end)s").format(
            sql.Identifier(cursor)))
        params.update(start=window[0], end=window[1])
    return conditions


def _set_aside_query(
    config: LoaderConfig, spec: TableSpec, action: str, state: dict, window
) -> tuple[sql.Composed, dict]:
    """The rows of this action's window whose key is null or repeated (a source that does not
    enforce its key): key, reason and the row's image, for ops.dead_letters."""
    table = qualified(config.source_schema, spec.name)
    params: dict = {}
    keys = sql.SQL(", ").join(sql.SQL("t.") + sql.Identifier(k) for k in spec.primary_key)
    conditions = _window_conditions(spec, action, state, window, params)
    conditions.append(sql.SQL("not ({})").format(good_key(spec.primary_key, table)))
    query = sql.SQL(
        "select concat_ws(',', {keys}), case when not (row({keys}) is not null) "
        "then 'null key: a column of the key ({names}) is null' "
        "else 'duplicate key: ' || (select count(*) from {table} as d "
        "where row({dkeys}) = row({keys})) || ' source rows share it' end, to_jsonb(t) "
        "from {table} as t where "
    ).format(
        keys=keys,
        dkeys=sql.SQL(", ").join(sql.SQL("d.") + sql.Identifier(k) for k in spec.primary_key),
        names=sql.SQL(", ".join(spec.primary_key)),
        table=table,
    ) + sql.SQL(" and ").join(conditions)
    return query, params


def _capture_position(
    cur, config: LoaderConfig, spec: TableSpec, previous: str | None, cut: SourceCut
) -> dict:
    """Where the next increment starts, read in the extraction snapshot.

    snapshot_xmin: every transaction below it had ended when this snapshot was taken, so a
    change written by a later transaction is never skipped (cdc), and a row written below it
    was already seen by this extraction (timestamp re-reads skip it: a rerun changes nothing).
    watermark: the highest cursor value, held back to the start of the oldest open writing
    transaction and to the source's own clock (`now()`: one row dated in the future must not
    carry the watermark past rows written later), never moving backwards.
    future_keys: up to FUTURE_KEYS_SHOWN keys of rows dated after the source's clock (a data
    problem the load reports), and future_rows, how many there are.
    """
    cur.execute("select pg_snapshot_xmin(pg_current_snapshot())::text, now()::text")
    xmin, now = cur.fetchone()
    now = cut.taken_at or now  # the clock when the snapshot was taken
    position = {"snapshot_xmin": xmin, "snapshot_at": now}
    if spec.mode == "cdc":
        position["cdc_txid"] = position["snapshot_xmin"]
    elif spec.mode == "timestamp":
        table = qualified(config.source_schema, spec.name)
        cursor = sql.Identifier(spec.cursor)
        cur.execute(
            sql.SQL("select max({0})::text, max({0}) > %s::timestamptz from {1}").format(
                cursor, table
            ),
            (now,),
        )
        high, future = cur.fetchone()
        if cut.snapshot is None:
            cur.execute(OLDEST_WRITER_SQL)
            oldest = cur.fetchone()[0]
        else:
            oldest = cut.oldest_writer
        cur.execute(
            "select greatest(least(%s::timestamptz, %s::timestamptz, %s::timestamptz), "
            "%s::timestamptz)::text",
            (high, oldest if high is not None else None, now, previous),
        )
        position["watermark"] = cur.fetchone()[0]
        if future:
            cur.execute(
                sql.SQL(
                    "select count(*), (array_agg(concat_ws(',', {keys}) order by {c} desc))"
                    "[1:%s] from {t} where {c} > %s::timestamptz"
                ).format(
                    keys=sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
                    c=cursor,
                    t=table,
                ),
                (FUTURE_KEYS_SHOWN, now),
            )
            position["future_rows"], position["future_keys"] = cur.fetchone()
    return position


@dataclass
class SourceCount:
    """A source table counted in the load's snapshot, and what the count scan found."""

    rows: int
    # ctids (valid in the load's snapshot) of rows written since the previous load whose
    # cursor lies behind the increment's window: clocks that ran behind by more than the lag
    missed: list[str] = field(default_factory=list)
    skew_s: float | None = None  # how far behind the window the furthest of them lay


def _count_statement(
    config: LoaderConfig, spec: TableSpec, action: str, state: dict
) -> tuple[sql.Composed, dict]:
    """The source count of an increment. In timestamp mode the same scan finds the rows
    PostgreSQL says were written since the previous load's snapshot (their xmin) although
    their cursor is older than the window: the export missed them, whatever their clocks
    said. The scan is the count's: the search adds CPU per row scanned, not a second scan
    (benchmarks/skew_check.py)."""
    table = qualified(config.source_schema, spec.name)
    where = good_key(spec.primary_key, table) if not spec.key_enforced else sql.SQL("true")
    if not (action == "increment" and spec.mode == "timestamp" and state.get("snapshot_xmin")):
        return sql.SQL("select count(*), null, null from {} as t where {}").format(
            table, where
        ), {}
    missed = sql.SQL(
        "not coalesce(t.{c} >= %(since)s::timestamptz, false) "
        # between 0: a tuple frozen more than 2^31 transactions ago keeps its raw xmin,
        # whose age then wraps below zero; it is old, not new
        "and age(t.xmin) between 0 and age(mod(%(prev_xmin)s::bigint, 4294967296)::text::xid)"
    ).format(c=sql.Identifier(spec.cursor))
    # one aggregate carries the filter (each further one would evaluate it again for every
    # row: measured twice the cost); how far behind the rows lie is read by their ctids
    statement = sql.SQL(
        "with scan as (select count(*) as n, array_agg(t.ctid) filter (where {m}) as missed "
        "from {t} as t where {w}) "
        "select scan.n, scan.missed::text[], (select extract(epoch from "
        "max(%(since)s::timestamptz - b.{c})) from {t} as b where b.ctid = any(scan.missed)) "
        "from scan"
    ).format(m=missed, c=sql.Identifier(spec.cursor), t=table, w=where)
    return statement, {"since": state["since"], "prev_xmin": state["snapshot_xmin"]}


# how long a skew learned from rows caught up (catch_up) widens a table's window
LEARNED_LAG_DAYS = 7
# the learned lag is the furthest skew seen, with this margin
LEARNED_LAG_MARGIN = 1.25


def effective_lag(spec: TableSpec, state: dict) -> float:
    """Seconds an increment re-reads behind the watermark: the configured lag, or the clock
    skew learned from rows caught up in the last LEARNED_LAG_DAYS, whichever is longer. A
    wider window costs an index range of rows already loaded (skipped by their xmin), not
    a scan of the table."""
    lag = spec.lag.total_seconds()
    learned, at = state.get("learned_lag_s"), state.get("learned_at")
    if learned and at:
        age = datetime.now(UTC) - datetime.fromisoformat(at)
        if age.total_seconds() < LEARNED_LAG_DAYS * 86400:
            lag = max(lag, float(learned))
    return lag


def _count_and_close(conn, statement: sql.Composed, params: dict) -> SourceCount:
    """Count in the export's snapshot (still open on `conn`), then end it."""
    try:
        with conn.cursor() as cur:
            cur.execute(COUNT_SETTINGS)
            cur.execute(statement, params)
            rows, missed, skew = cur.fetchone()
            return SourceCount(int(rows), missed or [], None if skew is None else float(skew))
    finally:
        conn.rollback()
        conn.close()


def _export(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    columns: list[Column],
    action: str,
    state: dict,
    load_id: str,
    loaded_at: datetime,
    window,
    path: Path,
    cut: SourceCut,
) -> Export:
    """COPY the rows to `path` in one snapshot; returns rows, source count and new position,
    and the rows set aside for a null or repeated key (a source that does not enforce it).

    On an increment the source count is a full scan while the export reads only the changed
    rows: it runs on `cut.counts`, in the export's snapshot, while dlt loads (the future holds
    it); an initial or full load counts the rows it copied; without `cut.counts`, no count.
    The export joins the load's snapshot (`cut.snapshot`) when there is one."""
    conn = connect_raw(settings.source)
    handed_over = False
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            cut.join(cur)
            # the position comes first: with repeatable read, the snapshot is taken here
            previous = None
            if action == "increment":
                # a watermark that an older version let pass the source's clock (one row dated
                # in the future) resumes from that load's clock instead
                cur.execute(
                    "select least(%s::timestamptz, %s::timestamptz)::text",
                    (state.get("watermark"),
                     state.get("snapshot_at") or state.get("last_loaded_at")),
                )
                previous = cur.fetchone()[0]
            position = _capture_position(cur, config, spec, previous, cut)
            if action == "increment" and spec.mode == "timestamp":
                cur.execute(
                    "select (%s::timestamptz - %s::interval)::text",
                    (previous, f"{int(effective_lag(spec, state))} seconds"),
                )
                state = {**state, "since": cur.fetchone()[0]}
            query, params = _extract_query(config, spec, columns, action, state, window)
            params.update(load_id=load_id, loaded_at=loaded_at)
            select = cur.mogrify(query.as_string(conn), params).decode()
            psql = warehouse.client_program("psql") if action in BULK_ACTIONS else None
            if psql is not None and "\n" not in select:
                snapshot = cut.snapshot
                if snapshot is None:
                    cur.execute("select pg_export_snapshot()")
                    snapshot = cur.fetchone()[0]
                rows = _copy_out_psql(psql, settings.source, snapshot, select, path)
                with path.open("ab") as handle:
                    write_footer(handle, _export_columns(spec, columns))
            else:
                with path.open("wb") as handle:
                    cur.copy_expert(
                        f"copy ({select}) to stdout with (format binary)", handle, size=1 << 20
                    )
                    rows = cur.rowcount
                    write_footer(handle, _export_columns(spec, columns))
            set_aside: list[tuple] = []
            if not spec.key_enforced and not (spec.mode == "cdc" and action == "increment"):
                cur.execute(*_set_aside_query(config, spec, action, state, window))
                set_aside = cur.fetchall()
        source_rows: Future | None = None
        if action in ("initial", "full"):
            source_rows = Future()
            source_rows.set_result(SourceCount(rows))  # the whole table, in this snapshot
        elif cut.counts is not None and action != "catch_up":
            statement, params = _count_statement(config, spec, action, state)
            source_rows = cut.counts.submit(_count_and_close, conn, statement, params)
            handed_over = True
    finally:
        if not handed_over:
            conn.rollback()
            conn.close()
    return Export(rows, source_rows, position, set_aside)


def _copy_out_psql(psql: Path, endpoint, snapshot: str, select: str, path: Path) -> int:
    """COPY the rows of `select` into `path` with psql, inside the exported `snapshot`;
    returns the row count.

    psycopg2 hands COPY TO data to Python one row at a time (a bytes object and a write call
    per row: about 0.4 us of the GIL per row, 0.9 s of CPU for the 2M bids of scale 1); psql
    writes them from C. Bulk exports go through it; increments are small and stay in the
    process, where a connection costs less than starting a program."""
    target = "'" + str(path.resolve()).replace("'", "''") + "'"
    script = (
        "\\set ON_ERROR_STOP on\n"
        "begin transaction isolation level repeatable read read only;\n"
        f"set transaction snapshot '{snapshot}';\n"
        f"\\copy ({select}) to {target} with (format binary)\n"
        "commit;\n"
    )
    endpoint = credentials.live(endpoint)
    env = {
        **os.environ,
        **endpoint.libpq_env(),  # the URL's sslmode, sslrootcert, options
        "PGPASSWORD": endpoint.password,
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": "marketplace-elt",
    }
    env.pop("PGSERVICE", None)
    args = [str(psql), "-X", "-w", "-h", endpoint.host, "-p", str(endpoint.port)]
    args += ["-U", endpoint.user, "-d", endpoint.database, "-f", "-"]
    done = children.run(args, input=script.encode(), capture_output=True, env=env)
    # psql prints the command tags (BEGIN, SET, COPY n, COMMIT); \copy into a file gives the count
    tags = [line.split() for line in done.stdout.decode(errors="replace").splitlines()]
    counts = [int(tag[1]) for tag in tags if len(tag) == 2 and tag[0] == "COPY"]
    if done.returncode != 0 or len(counts) != 1:
        raise LoadError(
            f"the export through psql failed (exit {done.returncode}): "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return counts[0]


def table_resource(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    columns: list[Column],
    action: str,
    result: TableResult,
    export_dir: Path,
    loaded_at: datetime,
    cut: SourceCut,
    window=None,
    progress: Callable[[str], None] = lambda _: None,
    hooks: binary_copy.LoadHooks | None = None,
):
    """A dlt resource that exports one table with COPY and imports the file into dlt;
    `hooks` are told what dlt's load threads do with the table (binary_copy.LoadHooks)."""
    disposition = _write_disposition(spec, action)

    @dlt.resource(
        name=spec.name,
        primary_key=list(spec.primary_key),
        columns=_hints(spec, columns, merge=disposition != "replace"),
        write_disposition=disposition,
        file_format="csv",
        parallelized=True,
    )
    def rows():
        t0 = time.monotonic()
        progress(f"{spec.name}: extracting ({action})")
        state = dlt.current.resource_state()
        load_id = dlt.current.load_package_state()["load_id"]
        if hooks is not None:
            binary_copy.register_hooks(load_id, hooks)
        if action == "increment" and spec.mode != "full":
            key = "cdc_txid" if spec.mode == "cdc" else "watermark"
            if not state.get(key):
                raise LoadError(
                    f"{spec.name}: the watermark was lost from the pipeline state; "
                    f"run `elt load --full-refresh {spec.name}` to reload the table"
                )
        if action in ("initial", "full"):
            state.clear()
        path = export_dir / f"{spec.name}.{load_id}.csv"
        export = _export(
            settings,
            config,
            spec,
            columns,
            action,
            dict(state),
            load_id,
            loaded_at,
            window,
            path,
            cut,
        )
        n, position = export.rows, export.position
        result.rows_extracted, result.pending_source_rows = n, export.source_rows
        if export.set_aside:
            dead_letters.record(settings, spec.name, load_id, export.set_aside)
            progress(
                f"{spec.name}: {len(export.set_aside)} row(s) with a null or repeated key set "
                f"aside in ops.dead_letters; first: "
                f"{export.set_aside[0][0] or 'null'} ({export.set_aside[0][1]})"
            )
        if position.get("future_rows"):
            result.future_keys = list(position["future_keys"])
            result.future_rows = position["future_rows"]
            progress(
                f"{spec.name}: {result.future_rows} row(s) have {spec.cursor} after the "
                f"source's clock (now()), key(s) {', '.join(result.future_keys)}: the "
                "watermark stops at now(); correct those rows or the writer's clock"
            )
        if action in ("initial", "full"):
            # a tombstone for dbt: a table loaded whole may have lost any key (null); the
            # keys a cdc merge deletes are tombstoned by the merge (binary_copy.MergeSqlJob)
            reconcile.record_deletes(
                settings,
                spec.name,
                [None],
                reason=f"{action} load",
                deleted_at=loaded_at,
                load_id=load_id,
            )
        if action == "catch_up" and result.skew_s:
            # later windows reach this far back (effective_lag), for LEARNED_LAG_DAYS
            learned = result.skew_s * LEARNED_LAG_MARGIN + spec.lag.total_seconds()
            if effective_lag(spec, state) < learned:
                state.update(learned_lag_s=round(learned), learned_at=loaded_at.isoformat())
        if action not in ("backfill", "repair", "catch_up", "replay"):
            key = "cdc_txid" if spec.mode == "cdc" else "watermark"
            state.update(
                {k: v for k, v in position.items() if v is not None and k not in FUTURE_FIELDS}
            )
            state.update(
                mode=spec.mode,
                last_action=action,
                last_load_id=load_id,
                last_loaded_at=loaded_at.isoformat(),
                rows_extracted=n,
            )
            result.watermark = state.get(key)
        progress(f"{spec.name}: extracted {n:,} rows ({action}) in {time.monotonic() - t0:.1f}s")
        if n or action in ("initial", "full"):
            yield dlt.mark.with_file_import(str(path), "csv", n)

    return rows


def table_states(pipeline: dlt.Pipeline) -> dict[str, dict]:
    """Each table's resource state (watermark, last load) as dlt keeps it."""
    out: dict[str, dict] = {}
    for source in pipeline.state.get("sources", {}).values():
        for name, state in source.get("resources", {}).items():
            out[name] = dict(state)
    return out


def _finish_pending(pipeline: dlt.Pipeline, progress: Callable[[str], None]) -> bool:
    """Complete packages a crashed run left behind, before extracting anything new."""
    if not pipeline.has_pending_data:
        return False
    progress("finishing a load that an earlier run left pending")
    # dlt logs each job that cannot run twice with its traceback (about 90 lines): the
    # outcome below is what the user needs, in one line
    dlt_log = logging.getLogger("dlt")
    level = dlt_log.level
    dlt_log.setLevel(logging.CRITICAL)
    try:
        pipeline.normalize()
        pipeline.load()
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to a clean re-extract
        # a job the crash interrupted after its commit cannot run twice (dlt's state row);
        # drop the package: local state returns to the last completed load, and re-extracting
        # from there is safe because every merge is idempotent
        progress(
            f"the pending load could not be finished ({type(exc).__name__}); "
            "re-extracting from the last completed load instead"
        )
        pipeline.abort_packages()
        pipeline.sync_destination()
    finally:
        dlt_log.setLevel(level)
    return True


def _plan_action(spec: TableSpec, state: dict, full_refresh: bool, backfill: bool) -> str:
    if backfill:
        return "backfill"
    if full_refresh or spec.mode == "full":
        return "full"
    key = "cdc_txid" if spec.mode == "cdc" else "watermark"
    return "increment" if state.get(key) else "initial"


def _stored_columns(pipeline: dlt.Pipeline, table: str) -> dict[str, dict]:
    try:
        return dict(pipeline.default_schema.tables.get(table, {}).get("columns", {}))
    except Exception:  # no schema yet: first run
        return {}


def detect_drift(stored: dict[str, dict], columns: list[Column]) -> tuple[list[str], list[str]]:
    """Compare the source columns with raw's: (notes, blocking errors)."""
    notes, errors = [], []
    current = {c.name: c for c in columns}
    for name, column in current.items():
        if name not in stored:
            if stored:
                notes.append(f"new column {name} ({column.pg_type}) is added to raw")
            continue
        hint = column.hint()
        before = stored[name]
        if before.get("data_type") != hint["data_type"] or (
            hint["data_type"] in ("decimal", "bigint")
            and (before.get("precision"), before.get("scale"))
            != (hint.get("precision"), hint.get("scale"))
        ):
            errors.append(
                f"column {name} changed type in the source "
                f"({before.get('data_type')} -> {column.pg_type}); raw keeps its data. "
                f"Review it, then run `elt load --full-refresh TABLE` to rebuild the table"
            )
    for name in stored:
        if not name.startswith("_") and name not in current:
            notes.append(
                f"column {name} was dropped in the source; raw keeps it (null in new rows)"
            )
    return notes, errors


def _warehouse_exec(settings: Settings, statements: list[sql.Composable]) -> None:
    if statements:
        db_execute(settings.warehouse, *statements)


def _index_name(table: str) -> str:
    return f"{table}__merge_key"


def _loaded_at_index_name(table: str) -> str:
    return f"{table}__loaded_at"


def _loaded_at_index(
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
        sql.Identifier(_loaded_at_index_name(table)), qualified(config.dataset, table), partial
    )


def _index_and_count(
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
                    sql.Identifier(_index_name(spec.name)),
                    qualified(config.dataset, spec.name),
                    sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
                )
            )
            cur.execute(_loaded_at_index(config, spec.name, bulk_loaded_at))
            cur.execute(COUNT_SETTINGS)
            if bulk_loaded_at:
                cur.execute(sql.SQL("analyze {}").format(qualified(config.dataset, spec.name)))
        return row_counts.count(conn, config.dataset, spec.name)
    finally:
        conn.close()


class _RawCounts:
    """Index and count each raw table once dlt has committed its rows: dlt's load threads
    call `table_written` as each table commits (binary_copy.LoadHooks), so a table is counted
    while the others still merge; the tables no job wrote are started after the load.

    Before the bulk COPY of an initial or full load, the partial `_loaded_at` index is made on
    the empty table (`before_bulk_copy`): the COPY's rows all fall outside it, and building it
    afterwards would read the whole table once more (0.5 s of CPU for 2M rows)."""

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
                bulk = self.results[table].action in ("initial", "full")
                self._started[table] = self.pool.submit(
                    _index_and_count,
                    self.settings,
                    self.config,
                    self.config.tables[table],
                    self.loaded_at if bulk else None,
                )
            return self._started[table]

    def table_written(self, table: str) -> None:
        self.start(table)

    def before_bulk_copy(self, cursor, table: str) -> None:
        result = self.results.get(table)
        if result is not None and result.action in ("initial", "full"):
            cursor.execute(_loaded_at_index(self.config, table, self.loaded_at))


def run_load(
    settings: Settings,
    config: LoaderConfig,
    *,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    backfill_window: tuple[datetime, datetime] | None = None,
    progress: Callable[[str], None] = lambda _: None,
    holder: SnapshotHolder | None = None,
) -> LoadResult:
    """Extract what changed since each table's watermark and merge it into raw. Every table
    is exported from one source snapshot: `holder`'s (a caller that loads in several steps
    holds one for all of them), else one held for this load."""
    # the source counts of increments run on `counts` while dlt loads (see _export); a failed
    # load leaves the `with` only when they have finished, so their connections close
    with ExitStack() as stack:
        if holder is None:
            holder = stack.enter_context(SnapshotHolder(settings.source))
        counts = stack.enter_context(ThreadPoolExecutor(3, thread_name_prefix="source-count"))
        return _run_load(
            settings,
            config,
            holder.cut(counts),
            tables=tables,
            full_refresh=full_refresh,
            backfill_window=backfill_window,
            progress=progress,
        )


def _source_count(result: TableResult) -> SourceCount | None:
    try:
        return result.pending_source_rows.result()
    except Exception as exc:  # noqa: BLE001 - the load itself has committed: report, go on
        log.warning("%s: the source count failed: %s", result.table, exc)
        return None  # recorded as unknown; `elt reconcile` counts again


def _run_load(
    settings: Settings,
    config: LoaderConfig,
    cut: SourceCut,
    *,
    tables: list[str] | None,
    full_refresh: bool,
    backfill_window: tuple[datetime, datetime] | None,
    progress: Callable[[str], None],
) -> LoadResult:
    t0 = time.monotonic()
    specs = config.select(tables)
    pipeline = make_pipeline(settings, config)
    _finish_pending(pipeline, progress)
    export_dir = settings.dlt_dir / "exports"
    shutil.rmtree(export_dir, ignore_errors=True)  # leftovers of a crash; packages hold links
    export_dir.mkdir(parents=True, exist_ok=True)
    # the warehouse is the truth: a dropped dataset or an older local copy must not decide
    pipeline.sync_destination()
    states = table_states(pipeline)
    loaded_at = datetime.now(UTC)

    src = connect_raw(settings.source)
    try:
        catalog = {s.name: source_columns(src, config.source_schema, s.name) for s in specs}
        for spec in specs:
            spec.check_against(config.source_schema, {c.name for c in catalog[spec.name]})
        specs = [
            replace(
                s,
                key_enforced=key_is_enforced(src, config.source_schema, s.name, s.primary_key),
            )
            for s in specs
        ]
    finally:
        src.close()

    results: dict[str, TableResult] = {}
    resources = []
    drop_indexes = []
    existing = reconcile.raw_tables(settings, config.dataset)
    schemas.ensure_on(settings.warehouse, "ops")  # the extract threads write tombstones there
    raw_counts = _RawCounts(settings, config, results, loaded_at)
    for spec in specs:
        state = states.get(spec.name, {})
        if spec.name not in existing:
            state = {}  # raw was dropped or never loaded: start over
        action = _plan_action(spec, state, full_refresh, bool(backfill_window))
        stored = _stored_columns(pipeline, spec.name)
        notes, errors = detect_drift(stored, catalog[spec.name])
        if action == "increment" and not errors and any(
            c.name not in stored for c in catalog[spec.name]
        ):
            # rows already in raw would hold null in the new column while the source's rows
            # hold its default or backfilled values: the table is reloaded whole, once
            action = "full"
            notes.append("raw's existing rows are reloaded so that the new column holds "
                         "the source's values")
        if stored and not full_refresh:
            # dlt adds a new column to the existing table (a full refresh drops it first):
            # NOT NULL would fail on the rows already there
            catalog[spec.name] = [
                c if c.name in stored else replace(c, nullable=True) for c in catalog[spec.name]
            ]
        result = TableResult(spec.name, spec.mode, action)
        result.drift = notes + errors
        for note in result.drift:
            progress(f"{spec.name}: schema drift: {note}")
        results[spec.name] = result
        if errors and action not in ("full",):
            result.action = "skipped"
            continue
        # a full refresh: dlt drops the table (with the views on it, see
        # BinaryCopyPostgresClient.drop_tables) and recreates it without indexes from the
        # current source columns (refresh below), once the extraction has succeeded
        if action in ("initial", "full") and not full_refresh:
            # bulk COPY into an unindexed table, then one index build, beats per-row upkeep
            drop_indexes.extend(
                sql.SQL("drop index if exists {}").format(qualified(config.dataset, name))
                for name in (_index_name(spec.name), _loaded_at_index_name(spec.name))
            )
        resources.append(
            table_resource(
                settings,
                config,
                spec,
                catalog[spec.name],
                action,
                result,
                export_dir,
                loaded_at,
                cut,
                backfill_window,
                progress,
                hooks=raw_counts,
            )
        )
    _warehouse_exec(settings, drop_indexes)
    load_id = None
    try:
        if resources:
            # a full refresh drops and recreates the tables (and their state) from the
            # current source columns, so it also cures a type change in the source
            try:
                info = pipeline.run(
                    resources, refresh="drop_resources" if full_refresh else None
                )
            except PipelineStepFailed as exc:
                # the loader's own message, if it has one; else dlt's error as it is (raising
                # `exc from exc` would make it its own cause: a cycle for whoever walks causes)
                user = first_cause(exc, UserError)
                if user is None:
                    raise
                raise user from exc
            load_id = info.loads_ids[-1] if info.loads_ids else None
        for spec in specs:
            if results[spec.name].action != "skipped":
                results[spec.name].raw_rows = raw_counts.start(spec.name).result()
    finally:
        binary_copy.forget_hooks(raw_counts)
        raw_counts.pool.shutdown(wait=True)
    missed: dict[str, SourceCount] = {}
    for result in results.values():
        if result.pending_source_rows is not None:
            count = _source_count(result)
            result.source_rows = count.rows if count else None
            if count and count.missed:
                missed[result.table] = count
    if missed:
        _catch_up(settings, config, pipeline, cut, catalog, results, missed, progress)
    shutil.rmtree(export_dir, ignore_errors=True)
    reconcile.record_counts(settings, config, load_id, list(results.values()))
    if settings.aws.s3_url and load_id:
        _land(settings, config, load_id, loaded_at, results, progress)
    skipped = [r for r in results.values() if r.action == "skipped"]
    if skipped:
        raise LoadError(
            "schema drift stopped the load of "
            + "; ".join(f"{r.table}: {' '.join(r.drift)}" for r in skipped)
        )
    return LoadResult(load_id, results, time.monotonic() - t0)


def _land(
    settings: Settings,
    config: LoaderConfig,
    load_id: str,
    loaded_at: datetime,
    results: dict[str, TableResult],
    progress: Callable[[str], None],
) -> None:
    """ELT_S3_URL: the rows this load wrote (its `_loaded_at` stamp, catch-up included) go to
    the S3 landing zone as Parquet (loader/aws/landing.py; boto3 is imported only here)."""
    from loader.aws.landing import LandedTable, land

    landed = [
        LandedTable(r.table, load_id, r.action, loaded_at)
        for r in results.values()
        if r.action in ("initial", "full", "repair")  # a repair may only have deleted
        or (r.action != "skipped" and (r.rows_extracted or r.caught_up))
    ]
    if not landed:
        return
    try:
        rows = land(settings, config, landed)
    except Exception as exc:
        raise LoadError(
            f"load {load_id} is committed to raw, but landing it in {settings.aws.s3_url} "
            f"failed: {exc}. The landing zone lacks this load (a replay from S3 would miss "
            "it): fix the access to S3, then `elt load --full-refresh "
            f"{' '.join(t.table for t in landed)}` lands those tables whole again"
        ) from exc
    if rows:
        progress(f"landed {sum(rows.values()):,} row(s) of {len(rows)} table(s) in "
                 f"{settings.aws.s3_url} (load_id={load_id})")


def _catch_up(
    settings: Settings,
    config: LoaderConfig,
    pipeline: dlt.Pipeline,
    cut: SourceCut,
    catalog: dict[str, list[Column]],
    results: dict[str, TableResult],
    missed: dict[str, SourceCount],
    progress: Callable[[str], None],
) -> None:
    """Load, in this load and from its snapshot, the rows its count scans found behind the
    increments' windows (SourceCount.missed, by ctid), then count raw again. Each table
    learns how far its clocks ran behind, so that later windows include such rows."""
    export_dir = settings.dlt_dir / "exports"
    resources = []
    for table, count in missed.items():
        progress(
            f"{table}: {len(count.missed)} row(s) were written since the last load with "
            f"{config.tables[table].cursor} up to {count.skew_s or 0:.0f}s behind the window "
            "(clocks that ran behind, or long transactions): loading them now"
        )
        caught = TableResult(table, config.tables[table].mode, "catch_up")
        caught.skew_s = count.skew_s
        resources.append(
            table_resource(
                settings, config, config.tables[table], catalog[table], "catch_up", caught,
                export_dir, datetime.now(UTC), cut, count.missed, progress,
            )
        )
        results[table].caught_up = len(count.missed)
    try:
        pipeline.run(resources)
    except PipelineStepFailed as exc:
        raise LoadError(
            f"rows found behind the window of {', '.join(missed)} could not be loaded: "
            f"{first_cause(exc, UserError) or exc}; raw lacks them: run the load again"
        ) from exc
    for table in missed:
        results[table].raw_rows = _index_and_count(settings, config, config.tables[table])


def _reextract(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    action: str,
    window,
    progress: Callable[[str], None],
) -> tuple[str | None, TableResult]:
    """Extract the rows of `window` (key ranges for a repair, keys for a replay) from the
    source again and merge them into raw; returns the load id and what was extracted. The
    caller reconciles: these loads count nothing and move no watermark."""
    pipeline = make_pipeline(settings, config)
    _finish_pending(pipeline, progress)
    export_dir = settings.dlt_dir / "exports"
    export_dir.mkdir(parents=True, exist_ok=True)
    src = connect_raw(settings.source)
    try:
        columns = source_columns(src, config.source_schema, spec.name)
        spec = replace(
            spec, key_enforced=key_is_enforced(src, config.source_schema, spec.name,
                                               spec.primary_key)
        )
    finally:
        src.close()
    if action == "replay":
        key_type = next(c for c in columns if c.name == spec.primary_key[0]).pg_type
        window = (key_type, list(window))
    result = TableResult(spec.name, spec.mode, action)
    try:
        info = pipeline.run(
            table_resource(
                settings, config, spec, columns, action, result, export_dir,
                datetime.now(UTC), SourceCut(), window, progress,
            )
        )
    except PipelineStepFailed as exc:
        # nothing of it committed (one merge): leave no package for the next load to retry
        pipeline.abort_packages()
        root = causes(exc)[-1]
        raise LoadError(
            f"{spec.name}: the {action} failed: {str(root).strip().splitlines()[0]}"
        ) from exc
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
    return (info.loads_ids[-1] if info.loads_ids else None), result


def reload_keys(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    keys: list[str],
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[str | None, int]:
    """Extract the rows of these keys (of a single-column key) from the source again and
    merge them into raw: a replay of dead letters. Returns the load id and rows extracted."""
    if len(spec.primary_key) != 1:
        raise LoadError(f"{spec.name}: a replay needs a single-column key; run "
                        f"`elt load --full-refresh {spec.name}` instead")
    since = datetime.now(UTC)
    load_id, result = _reextract(settings, config, spec, "replay", keys, progress)
    if settings.aws.s3_url and load_id:
        _land(settings, config, load_id, since, {spec.name: result}, progress)
    return load_id, result.rows_extracted


def repair_ranges(
    settings: Settings,
    config: LoaderConfig,
    spec: TableSpec,
    ranges: list[tuple[int, int]],
    progress: Callable[[str], None] = lambda _: None,
) -> int:
    """Re-extract the key ranges from the source and delete raw rows the source no longer has."""
    since = datetime.now(UTC)
    load_id, result = _reextract(settings, config, spec, "repair", ranges, progress)
    # the landing zone gets the repair as a load of its own: its rows and its deletes
    load_id = load_id or f"{datetime.now(UTC).timestamp():.6f}"
    key = spec.primary_key[0]
    multirange = "{" + ",".join(f"[{lo},{hi}]" for lo, hi in ranges) + "}"
    src = connect_raw(settings.source)
    try:
        with src.cursor() as cur:
            cur.execute(
                sql.SQL("select array_agg({k}) from {t} where %s::int8multirange @> {k}").format(
                    k=sql.Identifier(key), t=qualified(config.source_schema, spec.name)
                ),
                (multirange,),
            )
            keys = cur.fetchone()[0] or []
    finally:
        src.close()
    schemas.ensure_on(settings.warehouse, "ops")
    conn = connect_raw(settings.warehouse)
    try:
        with conn, conn.cursor() as cur:
            # the rows the source no longer has, and their tombstones for dbt, in one
            # transaction (reconcile.record_deletes)
            cur.execute(
                sql.SQL(
                    "with gone as (delete from {t} where %s::int8multirange @> {k} "
                    "and not ({k} = any(%s)) returning {k}) "
                    "insert into ops.raw_deletes (table_name, row_key, load_id, reason, "
                    "deleted_at) select %s, {k}, %s, 'reconcile repair', now() from gone"
                ).format(k=sql.Identifier(key), t=qualified(config.dataset, spec.name)),
                (multirange, keys, spec.name, load_id),
            )
            deleted = cur.rowcount
    finally:
        conn.close()
    if settings.aws.s3_url and (result.rows_extracted or deleted):
        _land(settings, config, load_id, since, {spec.name: result}, progress)
    progress(
        f"{spec.name}: repaired {len(ranges)} key range(s): {result.rows_extracted} rows "
        f"re-extracted, {deleted} rows deleted from raw"
    )
    return result.rows_extracted + deleted
