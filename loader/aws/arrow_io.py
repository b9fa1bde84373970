"""Tables in and out of PostgreSQL as Arrow record batches, streamed: COPY ... CSV through a
pipe into pyarrow's streaming CSV reader (C on both sides, no Python per row), and Arrow
batches written back as CSV into COPY FROM."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from loader.db import qualified

BLOCK_SIZE = 4 << 20  # bytes of CSV per Arrow batch: memory stays near a few of these


@dataclass(frozen=True)
class PgColumn:
    name: str
    data_type: str  # information_schema's data_type
    precision: int | None = None
    scale: int | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        simple = {
            "bigint": pa.int64(), "integer": pa.int32(), "smallint": pa.int16(),
            "boolean": pa.bool_(), "double precision": pa.float64(), "real": pa.float32(),
            "date": pa.date32(), "timestamp with time zone": pa.timestamp("us", tz="UTC"),
            "timestamp without time zone": pa.timestamp("us"),
        }
        if self.data_type in simple:
            return simple[self.data_type]
        if self.data_type == "numeric" and self.precision:
            return pa.decimal128(self.precision, self.scale or 0)
        return pa.string()  # text, varchar, json, uuid, unbounded numeric: as PostgreSQL prints

    @property
    def select(self) -> sql.Composable:
        """The expression that prints the column as pyarrow parses it."""
        ident = sql.Identifier(self.name)
        iso = """'YYYY-MM-DD"T"HH24:MI:SS.US'"""
        if self.data_type == "timestamp with time zone":
            utc = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
            return sql.SQL("to_char({} at time zone 'UTC', " + utc + ")").format(ident)
        if self.data_type == "timestamp without time zone":
            return sql.SQL("to_char({}, " + iso + ")").format(ident)
        return ident


def table_columns(conn, schema: str, table: str) -> list[PgColumn]:
    with conn.cursor() as cur:
        cur.execute(
            "select column_name, data_type, numeric_precision, numeric_scale "
            "from information_schema.columns where table_schema = %s and table_name = %s "
            "order by ordinal_position",
            (schema, table),
        )
        return [PgColumn(*row) for row in cur.fetchall()]


def arrow_schema(columns: list[PgColumn], metadata: dict[str, str] | None = None) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type) for c in columns], metadata=metadata)


def read_batches(
    conn, schema: str, table: str, columns: list[PgColumn],
    where: sql.Composable | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of `schema.table` (filtered by `where`, params already bound) as Arrow
    batches, streamed: at most a few BLOCK_SIZE blocks in memory at any time."""
    query = sql.SQL("copy (select {} from {}{}) to stdout with (format csv, force_quote *)").format(
        sql.SQL(", ").join(c.select for c in columns),
        qualified(schema, table),
        sql.SQL(" where ") + where if where is not None else sql.SQL(""),
    ).as_string(conn)
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
            try:
                with conn.cursor() as cur:
                    cur.copy_expert(query, sink, size=1 << 20)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failure.append(exc)

    producer = threading.Thread(target=produce, name=f"copy-out-{table}", daemon=True)
    producer.start()
    schema_ = arrow_schema(columns)
    try:
        with os.fdopen(read_fd, "rb") as source:
            if source.peek(1) == b"":  # an empty table: the CSV reader wants one row
                return
            reader = pacsv.open_csv(
                source,
                # one block at a time: threads would read blocks ahead of the writer (+25 MB
                # at 1M rows) for no gain on the shared cores that also run the COPY
                read_options=pacsv.ReadOptions(
                    column_names=[c.name for c in columns], block_size=BLOCK_SIZE,
                    use_threads=False,
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema_, null_values=[""], strings_can_be_null=True,
                    true_values=["t"], false_values=["f"],  # how PostgreSQL prints booleans
                    quoted_strings_can_be_null=False,
                ),
            )
            yield from reader
    finally:
        producer.join()
    if failure:
        raise failure[0]


def copy_batches(conn, schema: str, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """COPY Arrow batches into `schema.table` (columns by name); returns the rows copied."""
    rows = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
        buffer.seek(0)
        statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
            qualified(schema, table), sql.SQL(", ").join(map(sql.Identifier, batch.schema.names))
        )
        with conn.cursor() as cur:
            cur.copy_expert(statement.as_string(conn), buffer)
        rows += batch.num_rows
    return rows
