"""Read a source table's columns from the PostgreSQL catalog and map them to dlt column hints."""

from __future__ import annotations

from dataclasses import dataclass

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
        raise LookupError(
            f"source table {schema}.{table} does not exist or is not readable: "
            "check tables.yml (source_schema, table names) and the source user's grants"
        )
    return [
        Column(name, pg_type, nullable, precision if pg_type == "numeric" else None, scale)
        for name, pg_type, nullable, precision, scale in rows
    ]
