"""One cut of the source: every table of a load is exported from one snapshot.

A transaction held open for the whole load exports its snapshot (`pg_export_snapshot`);
each table's export joins it (`SET TRANSACTION SNAPSHOT`), so raw is the source at one
instant: a customer and the order that one transaction wrote together are never split
across loads, and children never arrive before their parents. `elt run` holds one cut over
all its load waves; the waves stay the order of loading into the warehouse."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg2
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from loader.config import Endpoint, UserError
from loader.db import connect_raw

# open source transactions that have written something: their rows may commit later with
# timestamps older than anything we have seen, so a watermark never passes their start
OLDEST_WRITER_SQL = """
    select min(xact_start)::text from pg_stat_activity
    where datname = current_database() and backend_xid is not null and pid <> pg_backend_pid()
"""


class CutLost(UserError, RuntimeError):
    """The transaction that held the load's snapshot ended (the source restarted)."""


@dataclass
class SourceCut:
    """How the exports of one load read the source: the snapshot they join (None: each
    export takes its own) and where the source counts of increments run while dlt loads."""

    snapshot: str | None = None
    counts: ThreadPoolExecutor | None = None
    # read with the snapshot: the source's clock, and the start of the oldest transaction
    # that had written something and was still open (its rows may commit later with older
    # timestamps); None: each export reads them in its own snapshot
    taken_at: str | None = None
    oldest_writer: str | None = None

    def join(self, cur) -> None:
        """Make the transaction of `cur` (REPEATABLE READ, nothing run yet) see the cut."""
        if self.snapshot is None:
            return
        try:
            cur.execute("set transaction snapshot %s", (self.snapshot,))
        except psycopg2.errors.InvalidParameterValue as exc:
            raise CutLost(
                f"the source snapshot of this load is gone ({str(exc).strip()}): the source "
                "restarted or ended the holding session; run the load again"
            ) from None


class SnapshotHolder:
    """The transaction whose snapshot a load's exports join; open until `close`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.conn = connect_raw(endpoint)
        self.conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with self.conn.cursor() as cur:
            cur.execute("select pg_export_snapshot(), now()::text, (" + OLDEST_WRITER_SQL + ")")
            self.snapshot, self.taken_at, oldest = cur.fetchone()
            self.oldest_writer = None if oldest is None else str(oldest)

    def cut(self, counts: ThreadPoolExecutor | None = None) -> SourceCut:
        return SourceCut(self.snapshot, counts, self.taken_at, self.oldest_writer)

    def close(self) -> None:
        try:
            self.conn.rollback()
        except psycopg2.Error:
            pass  # the session is gone, and the snapshot with it
        finally:
            self.conn.close()

    def __enter__(self) -> SnapshotHolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
