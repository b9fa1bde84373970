"""Column profiles (min, max, average, nulls, distinct) of a table in one set-based query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

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

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.schema_name,
            self.table_name,
            self.column_name,
            self.data_type,
            self.row_count,
            self.null_count,
            self.null_pct,
            self.distinct_count,
            self.min_value,
            self.max_value,
            self.avg_value,
        )


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
)


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


def profile_query(schema: str, table: str, columns: list[tuple[str, str]]) -> sql.Composed:
    """One scan of the table computes every column's statistics."""
    exprs: list[sql.Composable] = [sql.SQL("count(*)")]
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
    return sql.SQL("select {} from {}.{}").format(
        sql.SQL(", ").join(exprs), sql.Identifier(schema), sql.Identifier(table)
    )


def profile_table(
    conn: psycopg2.extensions.connection, qualified_table: str
) -> list[ColumnProfile]:
    schema, table = qualified_table.split(".", 1)
    columns = table_columns(conn, schema, table)
    if not columns:
        return []
    with conn.cursor() as cur:
        cur.execute(profile_query(schema, table, columns))
        row = cur.fetchone()
    total = int(row[0])
    out = []
    for i, (name, dtype) in enumerate(columns):
        non_null, distinct, lo, hi, avg = row[1 + 5 * i : 6 + 5 * i]
        nulls = total - int(non_null)
        out.append(
            ColumnProfile(
                schema,
                table,
                name,
                dtype,
                total,
                nulls,
                round(100.0 * nulls / total, 4) if total else 0.0,
                int(distinct) if distinct is not None else None,
                lo,
                hi,
                float(avg) if avg is not None else None,
            )
        )
    return out
