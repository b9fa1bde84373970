"""A dlt postgres destination that loads binary COPY files: no CSV parsing on either side.

The loader exports each table with `COPY (select ...) TO STDOUT (FORMAT binary)` into a file
named `<table>.<load_id>.pgcopy`, and imports into dlt's load package a manifest of it: a CSV
file `<table>.<load_id>.csv` naming the export file, its rows, its size and its columns (why a
manifest: see IMPORT_FORMAT). This destination recognises a manifest by its header line and
loads the file it names with `COPY ... FROM STDIN (FORMAT binary)`; every other file goes to
dlt's own jobs. dlt still owns the packages, the schema, the staging tables, the merge and the
state. The export files are in the loader's export directory, which a load empties once no
package is pending; a job whose file is gone or changed fails, and the next load drops its
package and extracts again (pipeline.finish_pending).

It only loads: what the loader keeps about a load (raw row counts, rows set aside) the loader
writes itself, told by the LoadHooks it sets on the destination, inside the load's
transaction where it must be atomic with the rows.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import psycopg2
from dlt.common.destination.client import HasFollowupJobs, LoadJob, RunnableLoadJob
from dlt.common.destination.exceptions import DestinationTerminalException
from dlt.common.storages.file_storage import FileStorage
from dlt.common.storages.load_package import ParsedLoadJobFileName
from dlt.destinations.impl.postgres.factory import postgres
from dlt.destinations.impl.postgres.postgres import PostgresClient
from dlt.destinations.job_client_impl import SqlLoadJob

log = logging.getLogger(__name__)

FILE_EXTENSION = "pgcopy"  # an export's rows: a plain PostgreSQL binary COPY stream
# The format of the file each export hands to dlt: a manifest, a real CSV file (one header line,
# one row) that names the export file, its row count, its size and its columns; the project's
# destination loads the file it names. The rows cannot go into dlt's package under their own
# name: dlt 1.31 imports only the formats it ships (`dlt.mark.with_file_import` takes a
# TLoaderFileFormat, a closed Literal; normalize maps a file's extension to an item format and
# raises ValueError for any other), and dlt's own "reference" format, which would say the same
# thing, has no writer, so it cannot be imported (create_import_spec raises
# FileFormatForItemFormatNotFound). A real CSV export of the rows would load 1.49x slower than
# binary (docs/benchmarks.md, section 1).
IMPORT_FORMAT = "csv"
MANIFEST_HEADER = ("elt_binary_copy_file", "rows", "bytes", "columns")
PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # how every binary COPY stream begins
# COPY FREEZE needs a TRUNCATE in the same transaction (an exclusive lock and a new file);
# below this size (an increment into dlt's staging table) that costs more than it saves
FREEZE_MIN_BYTES = 32 << 20
# A merge of a few staged rows reads the final table by its unique merge-key index. With
# PostgreSQL's default costs (random_page_cost 4) the planner prefers a hash join over a
# full scan of the final table: a one-day merge of 7,716 orders into 1M took 265 ms that
# way and 85 ms by index probes (measured at scale 1). Probes win up to a few percent of the
# table (break-even measured near 4% on a cached table); above MAX_PROBE_SHARE the planner
# decides alone.
MAX_PROBE_SHARE = 0.02
INDEX_PROBES = "set enable_hashjoin = off; set enable_mergejoin = off"
INDEX_PROBES_RESET = "reset enable_hashjoin; reset enable_mergejoin"


class LoadHooks(Protocol):
    """What the loader is told from dlt's load threads, for the load whose destination it set
    them on (postgres_binary_copy.load_hooks). The calls with a cursor run in the load's
    transaction: what they write commits or rolls back with the rows."""

    def table_written(self, table: str) -> None:
        """The table's rows are committed in its final table (the COPY of a replace load, the
        merge SQL of a merge load)."""

    def before_bulk_copy(self, cursor, table: str) -> None:
        """A bulk COPY into the final table `table`, emptied in this transaction, is about to
        run on `cursor`."""

    def after_bulk_copy(self, cursor, table: str, rows: int) -> None:
        """That COPY wrote `rows` rows: the table's whole content at commit."""

    def rows_rejected(self, cursor, table: str, load_id: str, rejected: str) -> None:
        """Rows of the file for `table` that the warehouse refused are in the temporary table
        `rejected` (row_key text, error text, row_image jsonb); the others are in."""


def _table_written(hooks: LoadHooks | None, table: str) -> None:
    if hooks is not None:
        try:
            hooks.table_written(table)
        except Exception:  # noqa: BLE001 - the load has committed; the caller counts later
            log.exception("%s: the after-write hook failed", table)


@dataclass(frozen=True)
class Manifest:
    """What a manifest says about one export file."""

    path: str  # the binary COPY file, absolute
    rows: int
    size: int  # its size in bytes: a shorter or longer file is not the one exported
    columns: list[str]  # a JSON array in the CSV cell: a column name may hold a comma

    def open(self) -> IO[bytes]:
        """The export file, after checking it is the one the manifest describes."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            raise DestinationTerminalException(
                f"the export file {self.path} of this load package is gone (its directory was "
                "removed while the load was pending); the next load drops the package and "
                "extracts again from the last completed load"
            ) from None
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(len(PGCOPY_SIGNATURE))
        if size != self.size or head != PGCOPY_SIGNATURE:
            handle.close()
            raise DestinationTerminalException(
                f"the export file {self.path} is not the one this load package was made with "
                f"({size:,} bytes where the manifest says {self.size:,}"
                f"{'' if head == PGCOPY_SIGNATURE else ', no binary COPY signature'}); the "
                "next load drops the package and extracts again from the last completed load"
            )
        handle.seek(0)
        return handle


def write_manifest(path: Path, export: Path, rows: int, columns: list[str]) -> Path:
    """Write the manifest of the export file `export` (rows, columns) at `path`."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_HEADER)
        writer.writerow(
            [str(export.resolve()), rows, export.stat().st_size, json.dumps(columns)]
        )
    return path


def read_manifest(path: str) -> Manifest | None:
    """The manifest in `path`, or None when the file is not one (any other file of dlt's)."""
    with open(path, "rb") as handle:
        head = handle.read(len(",".join(MANIFEST_HEADER)) + 2)
    if not head.startswith(",".join(MANIFEST_HEADER).encode()):
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        header, row = list(csv.reader(handle))
    return Manifest(row[0], int(row[1]), int(row[2]), json.loads(row[3]))


class BinaryCopyJob(RunnableLoadJob, HasFollowupJobs):
    """Load the binary COPY file a manifest names into its (staging or final) table."""

    def __init__(self, file_path: str, manifest: Manifest) -> None:
        super().__init__(file_path)
        self._job_client: PostgresClient = None
        self.manifest = manifest

    def run(self) -> None:
        sql_client = self._job_client.sql_client
        table = sql_client.make_qualified_table_name(self.load_table_name)
        try:
            self._copy_file(table)
        except (psycopg2.DataError, psycopg2.IntegrityError):
            # a row the target cannot hold (class 22: bad encoding, out of range; class 23: a
            # constraint the warehouse adds, such as a CHECK): load the rows that fit and hand
            # the others, with their error, to the loader (rows_rejected), which sets them
            # aside; with nobody to take them, the load fails rather than drop them
            if self._job_client.load_hooks is None:
                raise
            self._copy_with_rejects(table)
        if self._load_table.get("write_disposition") != "merge":
            # merges: the SQL job tells
            _table_written(self._job_client.load_hooks, self.load_table_name)

    def _check_rows(self, copied: int) -> None:
        """COPY read as many rows as the manifest says the export wrote, or the job fails
        (inside the job's transaction: nothing of it commits)."""
        if copied != self.manifest.rows:
            raise DestinationTerminalException(
                f"{self.manifest.path} held {copied:,} rows where its manifest says "
                f"{self.manifest.rows:,}: this table's load is rolled back"
            )

    def _copy_file(self, into: str) -> None:
        """COPY the file in. The table it goes into holds this file's rows and no others: a
        replace load's final table and a merge's staging table are both emptied by dlt once
        per package, and a package has one file per table. So the job first empties the table
        in its own transaction: a job run again (killed after its commit, before dlt recorded
        it) replaces its first attempt's rows instead of adding them a second time.

        A large file is loaded after a TRUNCATE, which lets COPY write the rows frozen and
        all-visible: nothing rewrites every page later to set hint bits or the visibility
        map. Small files DELETE instead (an empty table: nothing to do; TRUNCATE's exclusive
        lock and new file cost more than they save).

        Into a final table it truncated, the rows COPY wrote are the table's row count at
        commit (TRUNCATE locks it until then): they are handed to the loader (after_bulk_copy)
        in the same transaction."""
        sql_client = self._job_client.sql_client
        names = self.manifest.columns
        with self.manifest.open() as stream:
            columns = ", ".join(sql_client.escape_column_name(n, quote=True) for n in names)
            with sql_client.begin_transaction(), sql_client.native_connection.cursor() as cur:
                freeze = self.manifest.size >= FREEZE_MIN_BYTES
                final = self._load_table.get("write_disposition") != "merge"
                cur.execute(f"truncate {into}" if freeze else f"delete from {into}")
                hooks = self._job_client.load_hooks if freeze and final else None
                if hooks is not None:
                    hooks.before_bulk_copy(cur, self.load_table_name)
                options = "FORMAT binary, FREEZE" if freeze else "FORMAT binary"
                statement = f"COPY {into} ({columns}) FROM STDIN WITH ({options})"
                cur.copy_expert(statement, stream, size=1 << 20)
                self._check_rows(cur.rowcount)
                if hooks is not None:
                    hooks.after_bulk_copy(cur, self.load_table_name, cur.rowcount)

    def _copy_with_rejects(self, table: str) -> None:
        """Row by row, in the database, for the one file that failed: good rows in, the others
        into a temporary table handed to the loader, in one transaction."""
        sql_client = self._job_client.sql_client
        conn = sql_client.native_connection
        conn.rollback()
        names = self.manifest.columns
        key = next(
            (c["name"] for c in self._load_table["columns"].values() if c.get("primary_key")),
            names[0],
        )
        schema = table.split(".")[0].strip('"')
        with conn.cursor() as cur:
            cur.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s",
                (schema, self.load_table_name),
            )
            types = dict(cur.fetchall())
        quoted = [sql_client.escape_column_name(n, quote=True) for n in names]
        landing, converted = [], []
        for name, q in zip(names, quoted, strict=True):
            pg_type = types.get(name, "text")
            if pg_type in ("character varying", "text"):
                # any bytes land; the encoding is checked row by row below
                landing.append(f"{q} bytea")
                converted.append(f"convert_from(r.{q}, 'UTF8')")
            else:
                landing.append(f"{q} {'numeric' if pg_type == 'numeric' else pg_type}")
                converted.append(f"r.{q}")
        key_q = sql_client.escape_column_name(key, quote=True)
        block = f"""
        do $$
        declare r record;
        begin
            for r in select * from _elt_landing loop
                begin
                    insert into {table} ({", ".join(quoted)}) values ({", ".join(converted)});
                exception when others then
                    insert into _elt_rejected values (r.{key_q}::text, sqlerrm, to_jsonb(r));
                end;
            end loop;
        end $$;
        """
        # one transaction: the failed COPY's rollback left the connection in autocommit
        with (sql_client.begin_transaction(), conn.cursor() as cur,
              self.manifest.open() as stream):
            cur.execute(f"delete from {table}")  # this file's rows only: see _copy_file
            cur.execute("drop table if exists pg_temp._elt_landing")
            cur.execute(f"create temp table _elt_landing ({', '.join(landing)})")
            cur.copy_expert(
                f"COPY _elt_landing ({', '.join(quoted)}) FROM STDIN WITH (FORMAT binary)",
                stream,
                size=1 << 20,
            )
            self._check_rows(cur.rowcount)
            cur.execute("drop table if exists pg_temp._elt_rejected")
            cur.execute("create temp table _elt_rejected "
                        "(row_key text, error text, row_image jsonb)")
            cur.execute(block)
            self._job_client.load_hooks.rows_rejected(
                cur, self.load_table_name, self._load_id, "pg_temp._elt_rejected")
            cur.execute("drop table pg_temp._elt_landing, pg_temp._elt_rejected")


class MergeSqlJob(SqlLoadJob):
    """dlt's merge SQL (staging into the final table), by index probes when few rows are
    staged (MAX_PROBE_SHARE); once it has committed, the table's rows are final."""

    def run(self) -> None:
        if self._load_table.get("write_disposition") != "merge":
            super().run()
            return
        sql_client = self._sql_client = self._job_client.sql_client
        with sql_client.with_staging_dataset():
            staging = sql_client.make_qualified_table_name(self.load_table_name)
        final = sql_client.make_qualified_table_name(self.load_table_name)
        probes = self._few_staged(staging, final)
        with FileStorage.open_zipsafe_ro(self._file_path, "r", encoding="utf-8") as handle:
            merge = handle.read()
        with sql_client.native_connection.cursor() as cur:
            if probes:
                cur.execute(INDEX_PROBES)
            try:
                with self.maybe_transaction(merge):
                    sql_client.execute_many(self._split_fragments(merge))
            finally:
                if probes:
                    cur.execute(INDEX_PROBES_RESET)
        _table_written(self._job_client.load_hooks, self.load_table_name)

    def _few_staged(self, staging: str, final: str) -> bool:
        """Whether the staged rows are at most MAX_PROBE_SHARE of the final table's."""
        with self._sql_client.native_connection.cursor() as cur:
            cur.execute(
                f"select (select count(*) from {staging}), "
                f"(select reltuples from pg_class where oid = to_regclass(%s))",
                (final,),
            )
            staged, rows = cur.fetchone()
        return rows is not None and rows > 0 and staged <= rows * MAX_PROBE_SHARE


class BinaryCopyPostgresClient(PostgresClient):
    load_hooks: LoadHooks | None = None  # the factory's (postgres_binary_copy.client)

    def drop_tables(self, *tables: str, delete_schema: bool = True) -> None:
        """dlt's drop (a full refresh), with CASCADE: the views dbt builds on raw tables go
        with them and come back with the next `dbt build`. dlt drops them when it loads, so
        a full refresh whose extraction fails leaves raw as it was."""
        with self.maybe_ddl_transaction():
            self.sql_client.execute_many(
                [
                    f"DROP TABLE IF EXISTS {self.sql_client.make_qualified_table_name(t)} CASCADE"
                    for t in tables
                ]
            )
            if delete_schema:
                self._delete_schema_in_storage(self.schema)

    def create_load_job(
        self, table, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        parsed = ParsedLoadJobFileName.parse(file_path)
        manifest = read_manifest(file_path) if parsed.file_format == IMPORT_FORMAT else None
        if manifest is not None:
            return BinaryCopyJob(file_path, manifest)
        if SqlLoadJob.is_sql_job(file_path):
            return MergeSqlJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class postgres_binary_copy(postgres):  # noqa: N801 - dlt names destination factories in lower case
    """dlt's postgres destination, plus binary COPY files. A loader that wants to hear what
    the load's jobs do sets `load_hooks` on the factory of its pipeline (one factory serves one
    load, see make_pipeline); its clients, and through them the jobs, carry them."""

    load_hooks: LoadHooks | None = None

    def client(self, schema, initial_config=None) -> BinaryCopyPostgresClient:
        client = super().client(schema, initial_config)
        client.load_hooks = self.load_hooks
        return client

    @property
    def client_class(self) -> type[PostgresClient]:
        return BinaryCopyPostgresClient

    def capabilities(self, config=None, naming=None):
        """dlt asks a destination for its capabilities about fifty times a load, and without a
        config each answer resolves a configuration from every provider (a third of a one-day
        increment's Python time). One factory serves one load: the answer without a config
        is kept per naming convention, and each caller gets its own copy."""
        if config is not None:
            return super().capabilities(config, naming)
        key = (
            type(naming),
            getattr(naming, "max_length", None),
            getattr(naming, "is_case_sensitive", None),
        )
        kept = self.__dict__.setdefault("_elt_capabilities", {})
        if key not in kept:
            kept[key] = super().capabilities(None, naming)
        return copy.copy(kept[key])
