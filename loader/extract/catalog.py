"""Read a source table's columns from the PostgreSQL catalog and map them to dlt column hints."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extensions import connection

from loader.config import UserError

# PostgreSQL type -> dlt data type; numeric keeps its precision and scale
_TYPES = {
    "smallint": "bigint",
    "integer": "bigint",
    "bigint": "bigint",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "uuid": "text",
    "boolean": "bool",
    "date": "date",
    "double precision": "double",
    "real": "double",
    "jsonb": "json",
    "json": "json",
    "bytea": "binary",
    "time without time zone": "time",
}


# source types whose warehouse type (as dlt creates it) differs in binary representation
_CASTS = {
    "real": "double precision",
    "character varying": "text",
    "character": "text",
    "uuid": "text",
    "json": "jsonb",
}


class UnsupportedColumn(UserError, ValueError):
    """A source column has a type the loader cannot carry faithfully."""


class SourceTableMissing(UserError, LookupError):
    """A table of tables.yml is not in the source (or the source user cannot read it)."""


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool
    precision: int | None
    scale: int | None

    @property
    def export_cast(self) -> str | None:
        """The cast that gives the exact type dlt creates in the warehouse (binary COPY needs
        identical types on both sides), or None when the source type already is that type."""
        return _CASTS.get(self.pg_type)

    def hint(self) -> dict:
        """The dlt column hint that reproduces this column in the warehouse."""
        hint: dict = {"name": self.name, "nullable": self.nullable}
        if self.pg_type == "numeric":
            hint["data_type"] = "decimal"
            if self.precision is not None:
                hint["precision"], hint["scale"] = self.precision, self.scale or 0
        elif self.pg_type == "timestamp with time zone":
            hint.update(data_type="timestamp", timezone=True)
        elif self.pg_type == "timestamp without time zone":
            hint.update(data_type="timestamp", timezone=False)
        elif self.pg_type in ("smallint", "integer"):
            # a precision makes dlt create the same integer width as the source
            hint.update(data_type="bigint", precision=16 if self.pg_type == "smallint" else 32)
        elif self.pg_type in _TYPES:
            hint["data_type"] = _TYPES[self.pg_type]
        else:
            raise UnsupportedColumn(
                f"column {self.name} has type {self.pg_type}, which the loader does not map; "
                "cast it in a view and list the view in tables.yml"
            )
        return hint


def source_columns(conn: connection, schema: str, table: str) -> list[Column]:
    """The columns of schema.table in ordinal order; an error when the table is missing."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select column_name, data_type, is_nullable = 'YES', numeric_precision, numeric_scale
            from information_schema.columns
            where table_schema = %s and table_name = %s
            order by ordinal_position
            """,
            (schema, table),
        )
        rows = cur.fetchall()
    if not rows:
        raise SourceTableMissing(
            f"source table {schema}.{table} does not exist or is not readable: "
            "check tables.yml (source_schema, table names) and the source user's grants"
        )
    return [
        Column(name, pg_type, nullable, precision if pg_type == "numeric" else None, scale)
        for name, pg_type, nullable, precision, scale in rows
    ]


def key_is_enforced(conn: connection, schema: str, table: str, key: tuple[str, ...]) -> bool:
    """Whether the source itself guarantees `key` unique and not null: a primary key, or a
    unique constraint or index on exactly these columns, all NOT NULL. Where it does not, the
    loader sets rows with a null or repeated key aside (dead letters) instead of loading them."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select exists (
                select from pg_index i
                where i.indrelid = to_regclass(format('%%I.%%I', %(schema)s, %(table)s))
                  and i.indisunique and i.indpred is null and i.indexprs is null
                  and (select array_agg(a.attname::text order by a.attname)
                       from pg_attribute a
                       where a.attrelid = i.indrelid and a.attnum = any(i.indkey))
                      = (select array_agg(k order by k) from unnest(%(key)s::text[]) k)
                  and (i.indisprimary or not exists (
                      select from pg_attribute a
                      where a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                        and not a.attnotnull)))
            """,
            {"schema": schema, "table": table, "key": list(key)},
        )
        return bool(cur.fetchone()[0])


def good_key(key: tuple[str, ...], table: sql.Composable) -> sql.Composed:
    """The rows of `table` (aliased `t`) whose key is complete and held by no other row: what
    raw can hold of a source that does not enforce its key."""
    keys = [sql.Identifier(k) for k in key]
    own = sql.SQL(", ").join(sql.SQL("t.") + k for k in keys)
    other = sql.SQL(", ").join(sql.SQL("d.") + k for k in keys)
    return sql.SQL(
        "row({own}) is not null and not exists "
        "(select from {table} as d where row({other}) = row({own}) and d.ctid <> t.ctid)"
    ).format(own=own, other=other, table=table)
