"""Column profiles (min, max, average, nulls, distinct): one set-based query per table, and
only the rows loaded since when a stored whole-table profile can be carried forward."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from loader.quality.monitors import ProfilingSettings

NUMERIC_TYPES = {
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "decimal",
}
# types without a useful ordering or whose distinct count would be meaningless or costly
NO_MINMAX = {"boolean", "json", "jsonb", "bytea", "xml", "tsvector", "uuid"}
NO_DISTINCT = {"json", "xml", "tsvector"}


@dataclass(frozen=True)
class ColumnProfile:
    """One column's numbers. The whole-table numbers (row_count .. avg_value) are as of
    `profiled_at`, in report run `profiled_run_id`, and cover rows loaded up to
    `loaded_through`; `basis` says whether this run computed them or carried them forward.
    The recent_* numbers cover only the rows loaded (inserted or updated) after
    `loaded_through`: None when none were measured."""

    schema_name: str
    table_name: str
    column_name: str
    data_type: str
    row_count: int
    null_count: int
    null_pct: float
    distinct_count: int | None
    min_value: str | None
    max_value: str | None
    avg_value: float | None
    profiled_at: datetime | None = None
    profiled_run_id: str | None = None
    loaded_through: datetime | None = None
    basis: str = "computed"
    recent_rows: int | None = None
    recent_null_count: int | None = None
    recent_distinct_count: int | None = None
    recent_min_value: str | None = None
    recent_max_value: str | None = None
    recent_avg_value: float | None = None

    def as_row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in PROFILE_COLUMNS)


PROFILE_COLUMNS = (
    "schema_name",
    "table_name",
    "column_name",
    "data_type",
    "row_count",
    "null_count",
    "null_pct",
    "distinct_count",
    "min_value",
    "max_value",
    "avg_value",
    "profiled_at",
    "profiled_run_id",
    "loaded_through",
    "basis",
    "recent_rows",
    "recent_null_count",
    "recent_distinct_count",
    "recent_min_value",
    "recent_max_value",
    "recent_avg_value",
)
LOADED_AT = "_loaded_at"
# dbt's incremental models stamp every row they (re)write with _validated_at, also when no
# new load reached it (a re-validation): there it marks what changed, not _loaded_at
VALIDATED_AT = "_validated_at"
TIMESTAMPTZ = "timestamp with time zone"


def stamp_column(columns: list[tuple[str, str]]) -> str | None:
    """The column that marks the rows written since a moment: _validated_at, else _loaded_at."""
    for name in (VALIDATED_AT, LOADED_AT):
        if (name, TIMESTAMPTZ) in columns:
            return name
    return None


@dataclass(frozen=True)
class TableProfile:
    """A table's column profiles and why they were computed or carried forward."""

    table: str
    columns: list[ColumnProfile]
    basis: str  # computed | reused
    reason: str

    @property
    def row_count(self) -> int:
        return self.columns[0].row_count if self.columns else 0

    @property
    def recent_rows(self) -> int | None:
        return self.columns[0].recent_rows if self.columns else None


def table_columns(
    conn: psycopg2.extensions.connection, schema: str, table: str
) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(
            """select column_name, data_type from information_schema.columns
               where table_schema = %s and table_name = %s order by ordinal_position""",
            (schema, table),
        )
        return [(n, t) for n, t in cur.fetchall() if not n.startswith("_dlt_")]


def profile_query(
    schema: str, table: str, columns: list[tuple[str, str]], *, loaded_after: bool = False
) -> sql.Composed:
    """One scan of the table computes every column's statistics; with `loaded_after`, of the
    rows whose stamp (stamp_column) is later than the parameter %(after)s only."""
    stamp = stamp_column(columns)
    exprs: list[sql.Composable] = [
        sql.SQL("count(*)"),
        sql.SQL("max({})").format(sql.Identifier(stamp)) if stamp else sql.SQL("null::timestamptz"),
    ]
    for name, dtype in columns:
        col = sql.Identifier(name)
        exprs.append(sql.SQL("count({})").format(col))
        exprs.append(
            sql.SQL("null") if dtype in NO_DISTINCT else sql.SQL("count(distinct {})").format(col)
        )
        if dtype in NO_MINMAX:
            exprs += [sql.SQL("null"), sql.SQL("null")]
        else:
            exprs += [
                sql.SQL("min({})::text").format(col),
                sql.SQL("max({})::text").format(col),
            ]
        exprs.append(
            sql.SQL("avg({})::float8").format(col) if dtype in NUMERIC_TYPES else sql.SQL("null")
        )
    where = (
        sql.SQL(" where {} > %(after)s").format(sql.Identifier(stamp))
        if loaded_after and stamp
        else sql.SQL("")
    )
    return sql.SQL("select {} from {}.{}{}").format(
        sql.SQL(", ").join(exprs), sql.Identifier(schema), sql.Identifier(table), where
    )


def _run_profile(
    conn: psycopg2.extensions.connection,
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    after: datetime | None = None,
) -> tuple[
    int, datetime | None, list[tuple[int, int | None, str | None, str | None, float | None]]
]:
    """(rows, newest _loaded_at, [(nulls, distinct, min, max, avg) per column])."""
    with conn.cursor() as cur:
        cur.execute(
            profile_query(schema, table, columns, loaded_after=after is not None),
            {"after": after},
        )
        row = cur.fetchone()
    total, newest = int(row[0]), row[1]
    stats = []
    for i in range(len(columns)):
        non_null, distinct, lo, hi, avg = row[2 + 5 * i : 7 + 5 * i]
        stats.append(
            (
                total - int(non_null),
                int(distinct) if distinct is not None else None,
                lo,
                hi,
                float(avg) if avg is not None else None,
            )
        )
    return total, newest, stats


def profile_table(
    conn: psycopg2.extensions.connection,
    qualified_table: str,
    run_id: str = "",
    profiled_at: datetime | None = None,
) -> list[ColumnProfile]:
    """An exact profile of every row of the table, in one scan."""
    schema, table = qualified_table.split(".", 1)
    columns = table_columns(conn, schema, table)
    if not columns:
        return []
    return _computed(conn, schema, table, columns, run_id, profiled_at)


def _computed(conn, schema, table, columns, run_id, profiled_at) -> list[ColumnProfile]:
    total, newest, stats = _run_profile(conn, schema, table, columns)
    return [
        ColumnProfile(
            schema,
            table,
            name,
            dtype,
            total,
            nulls,
            round(100.0 * nulls / total, 4) if total else 0.0,
            distinct,
            lo,
            hi,
            avg,
            profiled_at=profiled_at,
            profiled_run_id=run_id or None,
            loaded_through=newest,
        )
        for (name, dtype), (nulls, distinct, lo, hi, avg) in zip(columns, stats, strict=True)
    ]


@dataclass(frozen=True)
class TableIdentity:
    """What tells a table's rows may have changed without reading them: its relation (dbt
    builds a table model as a new relation) and PostgreSQL's count of rows it has inserted,
    updated and deleted (reset with the statistics, so the reset time is kept too)."""

    oid: int | None
    modifications: int | None
    stats_reset: datetime | None
    counting: bool = True  # track_counts on: the count can be trusted


def table_identity(conn: psycopg2.extensions.connection, schema: str, table: str) -> TableIdentity:
    with conn.cursor() as cur:
        cur.execute(
            """select c.oid::int8, s.n_tup_ins + s.n_tup_upd + s.n_tup_del, d.stats_reset,
                      current_setting('track_counts')::bool
               from pg_class as c
               left join pg_stat_all_tables as s on s.relid = c.oid
               left join pg_stat_database as d on d.datname = current_database()
               where c.oid = to_regclass(%s)""",
            (f'"{schema}"."{table}"',),
        )
        row = cur.fetchone()
    return TableIdentity(*row) if row else TableIdentity(None, None, None, False)


def stored_profile(
    conn: psycopg2.extensions.connection, schema: str, table: str
) -> tuple[TableIdentity | None, list[ColumnProfile]]:
    """The newest whole-table profile stored for the table (one row per column, in no
    particular order) and the table's identity when it was computed; empty when none is."""
    names = ", ".join(PROFILE_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(
            f"""with newest as (
                    select profiled_run_id from quality.profiles
                    where schema_name = %(s)s and table_name = %(t)s
                      and profiled_at is not null
                    order by profiled_at desc limit 1
                )
                select distinct on (p.column_name)
                       p.relation_oid, p.modifications, p.stats_reset, {names}
                from quality.profiles as p join newest using (profiled_run_id)
                where p.schema_name = %(s)s and p.table_name = %(t)s
                order by p.column_name, p.run_id""",
            {"s": schema, "t": table},
        )
        rows = cur.fetchall()
    if not rows:
        return None, []
    return TableIdentity(*rows[0][:3]), [
        dataclasses.replace(
            ColumnProfile(*row[3:]),
            basis="reused",
            recent_rows=None,
            recent_null_count=None,
            recent_distinct_count=None,
            recent_min_value=None,
            recent_max_value=None,
            recent_avg_value=None,
        )
        for row in rows
    ]


def newest_loaded_at(
    conn: psycopg2.extensions.connection, schema: str, table: str
) -> datetime | None:
    """The newest stamp (stamp_column) of the table."""
    stamp = stamp_column(table_columns(conn, schema, table)) or LOADED_AT
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("select max({}) from {}.{}").format(
                sql.Identifier(stamp), sql.Identifier(schema), sql.Identifier(table)
            )
        )
        return cur.fetchone()[0]


def _due(stored: ColumnProfile, now: datetime, settings: ProfilingSettings) -> str | None:
    age = now - stored.profiled_at if stored.profiled_at is not None else None
    if settings.refresh_days and age is not None and age > timedelta(days=settings.refresh_days):
        return f"the stored profile is older than {settings.refresh_days:g} days"
    return None


def profile_incrementally(
    conn: psycopg2.extensions.connection,
    qualified_table: str,
    run_id: str,
    now: datetime,
    settings: ProfilingSettings,
    known_newest: Callable[[str], datetime | None] | None = None,
) -> tuple[TableProfile, TableIdentity]:
    """The table's profile for this run, and the table's identity to store with it.

    A whole-table profile is computed (one exact scan) on the first run, when the table has
    no _loaded_at, its columns changed, it was rebuilt (new oid), it was emptied, the stored
    one is due, or the table changed and its schema is not one whose writer stamps every
    inserted or updated row with _loaded_at (`settings.stamped`). Otherwise the stored
    one is carried forward, as of when it was computed: alone when PostgreSQL counted no
    insert, update or delete since, else with the rows loaded since profiled on their own.
    `known_newest` gives the newest _loaded_at when this report has already read it."""
    schema, table = qualified_table.split(".", 1)
    columns = table_columns(conn, schema, table)
    identity = table_identity(conn, schema, table)

    def computed(reason: str) -> tuple[TableProfile, TableIdentity]:
        cols = _computed(conn, schema, table, columns, run_id, now)
        return TableProfile(qualified_table, cols, "computed", reason), identity

    if not columns:
        return TableProfile(qualified_table, [], "computed", "no columns"), identity
    if stamp_column(columns) is None:
        return computed(f"no {LOADED_AT} column to tell what changed: profiled whole every run")
    stored_identity, stored = stored_profile(conn, schema, table)
    if not stored or stored_identity is None:
        return computed("no stored profile")
    by_name = {p.column_name: p for p in stored}
    if set(by_name) != {n for n, _ in columns} or any(
        by_name[n].data_type != t for n, t in columns
    ):
        return computed("its columns changed since the stored profile")
    if stored_identity.oid != identity.oid:
        return computed("the table was rebuilt (a new relation) since the stored profile")
    first = stored[0]
    due = _due(first, now, settings)
    if due:
        return computed(due)
    newest = (known_newest or (lambda _: newest_loaded_at(conn, schema, table)))(qualified_table)
    if newest is None:
        return computed("the table is empty now")
    ordered = [by_name[n] for n, _ in columns]
    untouched = (
        identity.counting
        and identity.modifications is not None
        and (identity.modifications, identity.stats_reset)
        == (stored_identity.modifications, stored_identity.stats_reset)
    )
    loaded_since = first.loaded_through is None or newest > first.loaded_through
    if untouched and not loaded_since:
        return TableProfile(
            qualified_table, ordered, "reused", "no row inserted, updated or deleted since"
        ), stored_identity
    if not settings.is_stamped(qualified_table):
        return computed(
            "the table changed since the stored profile and its _loaded_at does not mark "
            "every changed row"
        )
    after = first.loaded_through
    recent, _, stats = _run_profile(conn, schema, table, columns, after)
    if first.row_count and 100.0 * recent / first.row_count > settings.refresh_changed_pct:
        return computed(
            f"{recent:,} rows loaded since the stored profile, more than "
            f"{settings.refresh_changed_pct:g}% of its {first.row_count:,}"
        )
    cols = [
        dataclasses.replace(
            p,
            recent_rows=recent,
            recent_null_count=nulls,
            recent_distinct_count=distinct,
            recent_min_value=lo,
            recent_max_value=hi,
            recent_avg_value=avg,
        )
        for p, (nulls, distinct, lo, hi, avg) in zip(ordered, stats, strict=True)
    ]
    return TableProfile(
        qualified_table,
        cols,
        "reused",
        f"{recent:,} rows loaded since it was computed, profiled on their own"
        if recent
        else "rows were deleted or rewritten unchanged since it was computed (it still "
        "counts them as they were); none loaded since",
    ), stored_identity
