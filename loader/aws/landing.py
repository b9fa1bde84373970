"""The S3 landing zone: every load also lands what it extracted as Parquet, one object per
table and load under table=<name>/load_id=<id>/, and `elt backfill --from-s3` replays those
objects into raw without touching the source.

The rows are read back from raw, by the load's `_loaded_at` stamp, rather than from the
export file: the export is PostgreSQL's binary COPY format, which only the warehouse parses
in C; raw holds the same rows, typed as the warehouse types them. A cdc load's deletes are
landed beside them (deletes.parquet: the keys it tombstoned in ops.raw_deletes)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from loader.aws.arrow_io import PgColumn, arrow_schema, copy_batches, read_batches, table_columns
from loader.aws.s3 import MultipartWriter, S3Location, list_keys, s3_client
from loader.config import Settings, UserError
from loader.db import connect_raw, qualified
from loader.extract.tables import LoaderConfig

DATA, DELETES = "data.parquet", "deletes.parquet"
REPLACE_ACTIONS = ("initial", "full")  # the object holds the whole table
TOMBSTONE_KEY = [PgColumn("row_key", "bigint")]


@dataclass(frozen=True)
class LandedTable:
    """What one load of one table wrote to S3."""

    table: str
    load_id: str
    action: str  # the load's action: initial, full, increment, backfill...
    loaded_at: datetime


def land(settings: Settings, config: LoaderConfig, landed: Iterable[LandedTable]) -> dict:
    """Write each table's rows of the load (and a cdc load's deleted keys) to S3; returns
    {table: rows landed}. Called after the load committed, under the same run lock."""
    where = S3Location.parse(settings.aws.s3_url)
    s3 = s3_client()
    conn = connect_raw(settings.warehouse)
    counts: dict[str, int] = {}
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        for item in landed:
            folder = (f"table={item.table}", f"load_id={item.load_id}")
            columns = table_columns(conn, config.dataset, item.table)
            stamp = sql.SQL("_loaded_at >= {}").format(sql.Literal(item.loaded_at))
            metadata = {
                "elt.table": item.table,
                "elt.load_id": item.load_id,
                "elt.action": item.action,
                "elt.disposition": "replace" if item.action in REPLACE_ACTIONS else "merge",
                "elt.primary_key": ",".join(config.tables[item.table].primary_key),
            }
            counts[item.table] = write_parquet(
                s3, where.bucket, where.key(*folder, DATA),
                arrow_schema(columns, metadata),
                read_batches(conn, config.dataset, item.table, columns, stamp),
            )
            tombstones = sql.SQL("table_name = {} and load_id = {} and row_key is not null"
                                 ).format(sql.Literal(item.table), sql.Literal(item.load_id))
            batches = list(read_batches(conn, "ops", "raw_deletes", TOMBSTONE_KEY, tombstones))
            if any(b.num_rows for b in batches):
                write_parquet(s3, where.bucket, where.key(*folder, DELETES),
                              arrow_schema(TOMBSTONE_KEY), batches)
    finally:
        conn.rollback()
        conn.close()
    return counts


def write_parquet(s3, bucket: str, key: str, schema, batches) -> int:
    """Stream Arrow batches into one Parquet object by multipart upload; returns the rows."""
    rows = 0
    with MultipartWriter(s3, bucket, key) as sink:
        writer = pq.ParquetWriter(sink, schema, compression="zstd")
        try:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            writer.close()
    return rows


def landed_loads(settings: Settings, table: str) -> list[str]:
    """The load ids landed for `table`, oldest first."""
    where = S3Location.parse(settings.aws.s3_url)
    folder = where.key(f"table={table}") + "/"
    ids = set()
    for key in list_keys(s3_client(), where.bucket, folder):
        part = key[len(folder):].split("/", 1)[0]
        if part.startswith("load_id="):
            ids.add(part.removeprefix("load_id="))
    return sorted(ids, key=float)


def load_time(load_id: str) -> datetime:
    """dlt's load ids are the load's Unix time."""
    return datetime.fromtimestamp(float(load_id), UTC)


@dataclass
class Replay:
    table: str
    loads: list[str]
    rows: int = 0
    deleted: int = 0


def backfill_from_s3(
    settings: Settings,
    config: LoaderConfig,
    table: str,
    window: tuple[datetime | None, datetime | None] = (None, None),
    progress: Callable[[str], None] = lambda _: None,
) -> Replay:
    """Replay the landed loads of `table` (those whose load time is in `window`) into raw,
    oldest first, in one transaction: a whole-table load replaces raw's rows, a merge
    replaces the rows of its keys and deletes the keys it tombstoned. The source is not read
    and no watermark moves."""
    if table not in config.tables:
        raise UserError(f"{table} is not a table of the loader: use one of "
                        f"{', '.join(config.tables)}")
    start, end = window
    loads = [i for i in landed_loads(settings, table)
             if (start is None or load_time(i) >= start) and (end is None or load_time(i) < end)]
    where = S3Location.parse(settings.aws.s3_url)
    if not loads:
        raise UserError(f"no landed load of {table} under {where.url} in that window: were "
                        "they loaded with ELT_S3_URL set? (`aws s3 ls` the table= folder)")
    replay = Replay(table, loads)
    conn = connect_raw(settings.warehouse)
    try:
        with conn, tempfile.TemporaryDirectory(prefix="elt-replay-") as tmp:
            _prepare(conn, config, table)
            for load_id in loads:
                rows, deleted = _replay_one(conn, config, table, where, load_id, Path(tmp))
                replay.rows += rows
                replay.deleted += deleted
                progress(f"{table}: load {load_id} ({load_time(load_id):%Y-%m-%d %H:%M:%S}Z) "
                         f"replayed: {rows:,} row(s), {deleted:,} deleted")
            _record(conn, config, replay)
    finally:
        conn.close()
    return replay


def _record(conn, config: LoaderConfig, replay: Replay) -> None:
    """The replay in ops.load_reconciliation, in its transaction: raw changed (the next `elt
    run` builds dbt, history.raw_changed_since); the source was not read, so its counts are
    unknown."""
    with conn.cursor() as cur:
        cur.execute(
            "insert into ops.load_reconciliation (load_id, table_name, mode, action, "
            "rows_extracted) values (%s, %s, %s, 'backfill from s3', %s)",
            (replay.loads[-1], replay.table, str(config.tables[replay.table].mode),
             replay.rows + replay.deleted),
        )


def _prepare(conn, config: LoaderConfig, table: str) -> None:
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s)", (f'"{config.dataset}"."{table}"',))
        if cur.fetchone()[0] is None:
            raise UserError(f"{config.dataset}.{table} does not exist: `elt load {table}` "
                            "creates it (or replay into a warehouse that was loaded once)")
        cur.execute(sql.SQL("create temp table _replay (like {}) on commit drop").format(
            qualified(config.dataset, table)))
        cur.execute("create temp table _replay_deletes (row_key bigint) on commit drop")


def _replay_one(conn, config: LoaderConfig, table: str, where: S3Location, load_id: str,
                tmp: Path) -> tuple[int, int]:
    s3 = s3_client()
    folder = (f"table={table}", f"load_id={load_id}")
    path = tmp / f"{load_id}.parquet"
    s3.download_file(where.bucket, where.key(*folder, DATA), str(path))
    data = pq.ParquetFile(path)
    meta = {k.decode(): v.decode() for k, v in (data.schema_arrow.metadata or {}).items()}
    raw = qualified(config.dataset, table)
    key = [sql.Identifier(k) for k in config.tables[table].primary_key]
    match = sql.SQL(" and ").join(sql.SQL("r.{0} = t.{0}").format(k) for k in key)
    with conn.cursor() as cur:
        cur.execute("truncate _replay, _replay_deletes")
        rows = copy_batches(conn, "pg_temp", "_replay", data.iter_batches(batch_size=65536))
        deleted = 0
        if meta.get("elt.disposition") == "replace":
            cur.execute(sql.SQL("delete from {}").format(raw))
            _tombstone(cur, table, load_id, "null")
        else:
            cur.execute(sql.SQL("delete from {} r using _replay t where {}").format(raw, match))
            if DELETES in {k.rsplit("/", 1)[-1] for k in
                           list_keys(s3, where.bucket, where.key(*folder) + "/")}:
                gone = tmp / f"{load_id}.deletes.parquet"
                s3.download_file(where.bucket, where.key(*folder, DELETES), str(gone))
                copy_batches(conn, "pg_temp", "_replay_deletes",
                             pq.ParquetFile(gone).iter_batches(batch_size=65536))
                cur.execute(sql.SQL(
                    "delete from {} r using _replay_deletes d where r.{} = d.row_key"
                ).format(raw, key[0]))
                deleted = cur.rowcount
                _tombstone(cur, table, load_id, "row_key")
        cur.execute(sql.SQL("insert into {} select * from _replay").format(raw))
    return rows, deleted


def _tombstone(cur, table: str, load_id: str, key: str) -> None:
    """Tell dbt which keys left raw (ops.raw_deletes; null: the whole table was replaced)."""
    source = "from _replay_deletes" if key == "row_key" else ""
    cur.execute(
        "insert into ops.raw_deletes (table_name, row_key, load_id, reason, deleted_at) "
        f"select %s, {key}::bigint, %s, 'backfill from s3', now() {source}",
        (table, load_id),
    )
