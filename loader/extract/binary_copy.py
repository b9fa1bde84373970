"""A dlt postgres destination that loads binary COPY files: no CSV parsing on either side.

The loader exports each table with `COPY (select ...) TO STDOUT (FORMAT binary)` behind one
header line naming the columns, and imports the file into dlt as "csv" (dlt's import accepts
only its own format names). This destination recognises the header and loads the file with
`COPY ... FROM STDIN (FORMAT binary)`; every other file goes to dlt's own jobs. dlt still owns
the packages, the schema, the staging tables, the merge and the state.
"""

from __future__ import annotations

from typing import IO

from dlt.common.destination.client import HasFollowupJobs, LoadJob, RunnableLoadJob
from dlt.common.storages.load_package import ParsedLoadJobFileName
from dlt.destinations.impl.postgres.factory import postgres
from dlt.destinations.impl.postgres.postgres import PostgresClient

MAGIC = b"#elt-pgcopy-binary "


def write_header(handle: IO[bytes], columns: list[str]) -> None:
    handle.write(MAGIC + ",".join(columns).encode() + b"\n")


def is_binary_copy_file(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


class BinaryCopyJob(RunnableLoadJob, HasFollowupJobs):
    """Load one binary COPY file into its (staging or final) table."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._job_client: PostgresClient = None

    def run(self) -> None:
        sql_client = self._job_client.sql_client
        with open(self._file_path, "rb") as handle:
            names = handle.readline()[len(MAGIC) :].decode().strip().split(",")
            columns = ", ".join(sql_client.escape_column_name(n, quote=True) for n in names)
            table = sql_client.make_qualified_table_name(self.load_table_name)
            statement = f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT binary)"
            with sql_client.begin_transaction(), sql_client.native_connection.cursor() as cur:
                cur.copy_expert(statement, handle, size=1 << 20)


class BinaryCopyPostgresClient(PostgresClient):
    def create_load_job(
        self, table, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        parsed = ParsedLoadJobFileName.parse(file_path)
        if parsed.file_format == "csv" and is_binary_copy_file(file_path):
            return BinaryCopyJob(file_path)
        return super().create_load_job(table, file_path, load_id, restore)


class postgres_binary_copy(postgres):  # noqa: N801 - dlt names destination factories in lower case
    """dlt's postgres destination, plus binary COPY files."""

    @property
    def client_class(self) -> type[PostgresClient]:
        return BinaryCopyPostgresClient
