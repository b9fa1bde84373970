"""`elt export`: warehouse tables (marts, raw) as Parquet objects in S3, for other tools.

Each table streams from one COPY through Arrow into a multipart upload: memory holds a few
CSV blocks and one 8 MiB part, whatever the table's size (docs/benchmarks.md: 1M rows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from loader.aws.arrow_io import arrow_schema, read_batches, table_columns
from loader.aws.landing import write_parquet
from loader.aws.s3 import S3Location, s3_client
from loader.config import Settings, UserError, dbt_relation
from loader.db import connect_raw


@dataclass(frozen=True)
class Exported:
    relation: str  # schema.table
    url: str
    rows: int


def export_tables(
    settings: Settings,
    relations: list[str],
    to: str,
    default_schema: str = "marts",
    progress: Callable[[str], None] = lambda _: None,
) -> list[Exported]:
    """Write each `schema.table` (a bare name: `default_schema`) to
    <to>/<schema>/<table>.parquet, all from one snapshot of the warehouse. dbt's schemas are
    named as dbt_project.yml names them and read where this environment builds them
    (`marts.fct_orders` is dev_marts.fct_orders in dev); the object keeps the plain name."""
    where = S3Location.parse(to)
    s3 = s3_client()
    conn = connect_raw(settings.warehouse)
    done = []
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        for relation in relations:
            schema, _, table = relation.rpartition(".")
            schema = schema or default_schema
            built, _, _ = dbt_relation(settings.env, f"{schema}.{table}").partition(".")
            columns = table_columns(conn, built, table)
            if not columns:
                raise UserError(f"{built}.{table} does not exist in the warehouse: name a "
                                "table or view as schema.table (marts.fct_orders)")
            key = where.key(schema, f"{table}.parquet")
            rows = write_parquet(s3, where.bucket, key,
                                 arrow_schema(columns, {"elt.relation": f"{built}.{table}"}),
                                 read_batches(conn, built, table, columns))
            done.append(Exported(f"{schema}.{table}", f"s3://{where.bucket}/{key}", rows))
            progress(f"{schema}.{table}: {rows:,} rows to s3://{where.bucket}/{key}")
    finally:
        conn.rollback()
        conn.close()
    return done
