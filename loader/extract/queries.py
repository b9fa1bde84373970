"""The SQL of an export: the columns it writes, the rows each action selects, the rows set
aside for a bad key, and the source count that also finds rows behind the window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg2 import sql

from loader.db import qualified
from loader.extract.catalog import Column, good_key
from loader.extract.plan import Action
from loader.extract.results import LoadError
from loader.extract.tables import LoaderConfig, Mode, TableSpec

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


def export_columns(spec: TableSpec, columns: list[Column]) -> list[str]:
    names = [c.name for c in columns] + list(LOAD_HINTS)
    return names + list(CDC_HINTS) if spec.mode == Mode.CDC else names


def _change_window(alias: str = "") -> str:
    """The change-log rows of one table between the previous snapshot's xmin and this one's:
    every change committed since the last load, none still in flight (commit-safe)."""
    return (
        f"{alias}table_name = %(table_name)s "
        f"and {alias}txid >= %(from_txid)s::text::xid8 "
        f"and {alias}txid < pg_snapshot_xmin(pg_current_snapshot())"
    )


def extract_query(
    config: LoaderConfig,
    spec: TableSpec,
    columns: list[Column],
    action: Action,
    state: dict,
    window,
) -> tuple[sql.Composed, dict]:
    """The SELECT that feeds COPY for this table and action, with its parameters."""
    table = qualified(config.source_schema, spec.name)
    stamp = sql.SQL("%(load_id)s as _dlt_load_id, %(loaded_at)s::timestamptz as _loaded_at")
    cdc_snapshot_cols = sql.SQL(", false as _cdc_deleted, null::timestamptz as _cdc_changed_at")
    params: dict = {}
    if spec.mode == Mode.CDC and action == Action.INCREMENT:
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
    extra = cdc_snapshot_cols if spec.mode == Mode.CDC else sql.SQL("")
    query = sql.SQL("select {cols}, {stamp}{extra} from {table} as t").format(
        cols=_select_list(columns), stamp=stamp, extra=extra, table=table
    )
    conditions = _window_conditions(spec, action, state, window, params)
    if not spec.key_enforced:
        conditions.append(good_key(spec.primary_key, table))
    if conditions:
        query += sql.SQL(" where ") + sql.SQL(" and ").join(conditions)
    return query, params


def deleted_keys_query(
    config: LoaderConfig, spec: TableSpec, state: dict
) -> tuple[sql.Composed, dict]:
    """The keys a cdc increment deletes: every key with a delete among the changes of its
    window, a key deleted and inserted again in the window too (dbt checks raw before it
    deletes downstream), for their tombstones in ops.raw_deletes."""
    schema, log_table = config.cdc_table.split(".", 1)
    query = sql.SQL(
        "select distinct r.{key}::bigint from {log} as l "
        "cross join lateral jsonb_populate_record(null::{table}, l.row_data) as r "
        "where l.operation = 'D' and r.{key} is not null and " + _change_window("l.")
    ).format(
        key=sql.Identifier(spec.primary_key[0]),
        log=qualified(schema, log_table),
        table=qualified(config.source_schema, spec.name),
    )
    return query, {"table_name": spec.name, "from_txid": str(state["cdc_txid"])}


def _window_conditions(
    spec: TableSpec, action: Action, state: dict, window, params: dict
) -> list[sql.Composable]:
    """The conditions that select the rows of this action (none: the whole table); their
    parameters go into `params`."""
    cursor = spec.cursor or ("updated_at" if window else None)
    conditions: list[sql.Composable] = []
    if action == Action.INCREMENT and spec.mode == Mode.TIMESTAMP:
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
    elif action == Action.CATCH_UP:  # rows the count scan found behind the window (by ctid)
        conditions.append(sql.SQL("t.ctid = any(%(ctids)s::tid[])"))
        params.update(ctids=list(window))
    elif action == Action.REPLAY:  # dead letters, by key
        key_type, keys = window
        conditions.append(sql.SQL("t.{} = any(%(keys)s::text[]::{}[])").format(
            sql.Identifier(spec.primary_key[0]), sql.SQL(key_type)))
        params.update(keys=keys)
    elif action == Action.REPAIR:
        conditions.append(
            sql.SQL("%(ranges)s::int8multirange @> {}::bigint").format(
                sql.Identifier(spec.primary_key[0])
            )
        )
        params.update(ranges="{" + ",".join(f"[{lo},{hi}]" for lo, hi in window) + "}")
    elif action == Action.BACKFILL:
        if cursor is None:
            raise LoadError(f"{spec.name}: backfill needs a cursor column in tables.yml")
        conditions.append(sql.SQL("{0} >= %(start)s and {0} < %(end)s").format(
            sql.Identifier(cursor)))
        params.update(start=window[0], end=window[1])
    return conditions


def set_aside_query(
    config: LoaderConfig, spec: TableSpec, action: Action, state: dict, window
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


@dataclass
class SourceCount:
    """A source table counted in the load's snapshot, and what the count scan found."""

    rows: int
    # ctids (valid in the load's snapshot) of rows written since the previous load whose
    # cursor lies behind the increment's window: clocks that ran behind by more than the lag
    missed: list[str] = field(default_factory=list)
    skew_s: float | None = None  # how far behind the window the furthest of them lay


def count_statement(
    config: LoaderConfig, spec: TableSpec, action: Action, state: dict
) -> tuple[sql.Composed, dict]:
    """The source count of an increment. In timestamp mode the same scan finds the rows
    PostgreSQL says were written since the previous load's snapshot (their xmin) although
    their cursor is older than the window: the export missed them, whatever their clocks
    said. It searches from `search_xmin` (set by table_resource: the previous load's
    snapshot, or an older one when that load's own search never completed). The scan is the
    count's: the search adds CPU per row scanned, not a second scan
    (benchmarks/skew_check.py)."""
    table = qualified(config.source_schema, spec.name)
    where = good_key(spec.primary_key, table) if not spec.key_enforced else sql.SQL("true")
    searches = action == Action.INCREMENT and spec.mode == Mode.TIMESTAMP
    if not (searches and state.get("snapshot_xmin")):
        return sql.SQL("select count(*), null, null from {} as t where {}").format(
            table, where
        ), {}
    missed = sql.SQL(
        # the previous snapshot's age in a subquery: computed once, not for every row; the
        # upper bound first, which most rows (older) fail, so their age is computed once
        "age(t.xmin) <= (select age(mod(%(prev_xmin)s::bigint, 4294967296)::text::xid)) "
        # >= 0: a tuple frozen more than 2^31 transactions ago keeps its raw xmin, whose age
        # then wraps below zero; it is old, not new
        "and age(t.xmin) >= 0 "
        "and not coalesce(t.{c} >= %(since)s::timestamptz, false)"
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
    prev_xmin = state.get("search_xmin") or state["snapshot_xmin"]
    return statement, {"since": state["since"], "prev_xmin": prev_xmin}


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
