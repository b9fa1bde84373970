"""Run history in the warehouse (ops.pipeline_runs, ops.task_runs, ops.failed_tasks) and the
advisory lock that lets one `elt run` in at a time."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg2

from loader import schemas
from loader.config import Endpoint, UserError
from loader.db import Session, connect_raw

LOCK_KEY = 7_432_001  # pg_advisory_lock key of `elt run`
LOCK_POLL_S = 0.5  # how often a waiting RunLock asks again


class RunLocked(UserError, RuntimeError):
    """Another `elt run` holds the lock."""


# The run's history goes through one reused connection while a RunLock is held (opened with
# the lock, closed with it); a command that only reads, without the lock, opens one per call.
_SESSIONS: dict[Endpoint, Session] = {}


def _execute(endpoint: Endpoint, sql: str, params: tuple | dict | None = None) -> list[tuple]:
    session = _SESSIONS.get(endpoint)
    if session is not None:
        return session.query(sql, params)
    with Session(endpoint) as once:
        return once.query(sql, params)


@dataclass
class RunLock:
    """pg_try_advisory_lock on a connection held for the whole run; a crashed run's session
    ends with it, so no stale lock can remain. Every writer of the warehouse takes it: `elt
    run`, `elt load` & co., and the Dagster assets (loader/dagster), which name themselves in
    `holder` (the session's application_name) so that whoever is refused is told who holds it.
    `wait_s` > 0 waits that long for the lock (Dagster's steps queue); 0 refuses at once.
    Once held, the warehouse's ops and quality schemas are brought up to date (loader/schemas)
    and the run history is written through one connection until release."""

    endpoint: Endpoint
    conn: psycopg2.extensions.connection | None = None
    holder: str = "elt run"
    wait_s: float = 0.0

    def acquire(self) -> None:
        self.conn = connect_raw(self.endpoint, autocommit=True)
        deadline = time.monotonic() + self.wait_s
        with self.conn.cursor() as cur:
            while True:
                cur.execute("select pg_try_advisory_lock(%s)", (LOCK_KEY,))
                held = cur.fetchone()[0]
                if held:
                    cur.execute("select set_config('application_name', %s, false)",
                                (self.holder[:63],))
                if held or time.monotonic() >= deadline:
                    break
                time.sleep(min(LOCK_POLL_S, max(deadline - time.monotonic(), 0.01)))
        if held:
            self._ready()
            return
        self.conn.close()
        self.conn = None
        waited = f" (waited {self.wait_s:g}s)" if self.wait_s else ""
        raise RunLocked(f"{lock_holder(self.endpoint)}{waited}; wait for it to finish or see "
                        "`elt status`")

    def _ready(self) -> None:
        """The schemas up to date and the history's connection open, or the lock let go."""
        try:
            schemas.ensure(self.conn)
        except BaseException:
            self.release()
            raise
        _SESSIONS[self.endpoint] = Session(self.endpoint)

    def release(self) -> None:
        if self.conn is None:
            return
        session = _SESSIONS.pop(self.endpoint, None)
        if session is not None:
            session.close()
        try:
            with self.conn.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
        except psycopg2.Error:
            pass  # the session is gone, and the lock with it
        finally:
            self.conn.close()
            self.conn = None


def lock_holder(endpoint: Endpoint) -> str:
    """Who holds the run lock, in words: a Dagster step names itself in its session's
    application_name; an `elt run` is found in the run history."""
    held = _execute(
        endpoint,
        "select a.application_name, a.backend_start from pg_locks as l "
        "join pg_stat_activity as a on a.pid = l.pid where l.locktype = 'advisory' "
        "and l.granted and l.classid = 0 and l.objid = %s and l.objsubid = 1",
        (LOCK_KEY,),
    )
    if held and held[0][0].startswith("dagster"):
        return (f"the warehouse is locked by {held[0][0]} (since "
                f"{held[0][1]:%Y-%m-%d %H:%M:%S %Z})")
    holder = _execute(
        endpoint,
        "select run_id, started_at, host, pid from ops.pipeline_runs "
        "where status = 'running' order by started_at desc limit 1",
    )
    who = (
        f" (run {holder[0][0]} started {holder[0][1]:%Y-%m-%d %H:%M:%S %Z} by pid "
        f"{holder[0][3]} on {holder[0][2]})"
        if holder
        else ""
    )
    return f"another elt run is in progress{who}"


def mark_crashed(endpoint: Endpoint) -> None:
    """Runs left 'running' whose process died: nobody holds the run lock any more (a run's
    lock ends with its session), so they are not running. Every command that reads the
    history calls this first."""
    _execute(
        endpoint,
        "update ops.pipeline_runs set status = 'crashed', "
        "error = coalesce(error, 'the process ended without recording its end') "
        "where status = 'running' and not exists (select from pg_locks l "
        "join pg_database d on d.oid = l.database and d.datname = current_database() "
        "where l.locktype = 'advisory' and l.granted and l.classid = 0 "
        "and l.objid = %s and l.objsubid = 1)",
        (LOCK_KEY,),
    )


def start_run(endpoint: Endpoint, run_id: str, args: dict) -> None:
    # runs left 'running' died without finishing: we hold the lock, so they are not running
    _execute(
        endpoint,
        "update ops.pipeline_runs set status = 'crashed', "
        "error = coalesce(error, 'the process ended without recording its end') "
        "where status = 'running'",
    )
    _execute(
        endpoint,
        "insert into ops.pipeline_runs (run_id, status, args, host, pid) "
        "values (%s, 'running', %s, %s, %s)",
        (run_id, json.dumps(args), socket.gethostname(), os.getpid()),
    )


def note_build_started(endpoint: Endpoint, run_id: str, tests_since: str | None) -> None:
    """Mark the run's dbt build as started: a run that dies before its end leaves it there,
    and the next run sees a build that did not finish (interrupted_build). `tests_since` is
    the build's test scope (none: every row), which its tests read from here
    (macros/tests/get_where_subquery.sql)."""
    _execute(
        endpoint,
        "update ops.pipeline_runs set summary = coalesce(summary, '{}'::jsonb) "
        "|| jsonb_build_object('dbt_build_started_at', now(), 'tests_since', %s::text) "
        "where run_id = %s",
        (tests_since, run_id),
    )


def interrupted_build(endpoint: Endpoint) -> str | None:
    """The id of the newest run that started a dbt build and died before it ended, if no run
    finished a build after it."""
    rows = _execute(
        endpoint,
        "select run_id from ops.pipeline_runs where status = 'crashed' "
        "and summary ? 'dbt_build_started_at' and started_at > coalesce((select max("
        "started_at) from ops.pipeline_runs where status in ('success', 'failed')), '-infinity') "
        "order by started_at desc limit 1",
    )
    return rows[0][0] if rows else None


def failed_build(endpoint: Endpoint) -> str | None:
    """The id of the newest run since the last successful one whose dbt build failed (a test,
    an error, dbt itself killed): it may have written marts into the build copy that its
    tests never passed, and that copy is the next one published."""
    rows = _execute(
        endpoint,
        "select r.run_id from ops.pipeline_runs as r join ops.task_runs as t using (run_id) "
        "where t.task = 'dbt_build' and t.status = 'failed' and r.started_at > coalesce(("
        "select max(started_at) from ops.pipeline_runs where status = 'success'), '-infinity') "
        "order by r.started_at desc limit 1",
    )
    return rows[0][0] if rows else None


def last_finished_status(endpoint: Endpoint) -> str | None:
    """The status of the newest run that is not running (success, failed or crashed)."""
    rows = _execute(
        endpoint,
        "select status from ops.pipeline_runs where status <> 'running' "
        "order by started_at desc limit 1",
    )
    return rows[0][0] if rows else None


def runs_since_deep_check(endpoint: Endpoint) -> int:
    """Runs since the last one that compared every table by checksums (all runs if none)."""
    rows = _execute(
        endpoint,
        "select count(*) from ops.pipeline_runs where started_at > coalesce((select max("
        "started_at) from ops.pipeline_runs where (summary->>'deep_reconciled')::boolean), "
        "'-infinity')",
    )
    return int(rows[0][0])


def finish_run(
    endpoint: Endpoint, run_id: str, status: str, error: str | None, summary: dict
) -> None:
    _execute(
        endpoint,
        "update ops.pipeline_runs set status = %s, error = %s, finished_at = now(), "
        "duration_s = extract(epoch from now() - started_at), summary = %s where run_id = %s",
        (status, error, json.dumps(summary, default=str), run_id),
    )


@dataclass(frozen=True)
class TaskAttempt:
    """One attempt of one task of a run, as ops.task_runs keeps it."""

    run_id: str
    task: str
    tables: list[str] | None
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime
    rows: int | None = None
    error: str | None = None


def record_task(endpoint: Endpoint, attempt: TaskAttempt) -> None:
    _execute(
        endpoint,
        "insert into ops.task_runs (run_id, task, table_names, attempt, status, started_at, "
        "finished_at, duration_s, rows, error) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            attempt.run_id,
            attempt.task,
            attempt.tables,
            attempt.attempt,
            attempt.status,
            attempt.started_at,
            attempt.finished_at,
            (attempt.finished_at - attempt.started_at).total_seconds(),
            attempt.rows,
            attempt.error,
        ),
    )


def record_failed_task(endpoint: Endpoint, run_id: str, task: str, inputs: dict, error: str):
    _execute(
        endpoint,
        "insert into ops.failed_tasks (run_id, task, inputs, error) values (%s, %s, %s, %s)",
        (run_id, task, json.dumps(inputs, default=str), error),
    )


def unresolved_failures(endpoint: Endpoint) -> list[tuple[int, str, dict]]:
    return [
        (row[0], row[1], row[2])
        for row in _execute(
            endpoint,
            "select failed_task_id, task, inputs from ops.failed_tasks "
            "where resolved_at is null order by failed_task_id",
        )
    ]


def resolve_failures(endpoint: Endpoint, ids: list[int], run_id: str) -> None:
    if ids:
        _execute(
            endpoint,
            "update ops.failed_tasks set resolved_at = now(), resolved_by_run = %s "
            "where failed_task_id = any(%s)",
            (run_id, ids),
        )


def last_successful_summary(endpoint: Endpoint) -> dict | None:
    rows = _execute(
        endpoint,
        "select summary from ops.pipeline_runs where status = 'success' "
        "order by started_at desc limit 1",
    )
    return rows[0][0] if rows else None


def raw_changed_since(endpoint: Endpoint, since: str) -> bool:
    """Whether any load, backfill, catch-up, repair or dead-letter replay wrote rows into raw
    after `since`."""
    rows = _execute(
        endpoint,
        """select
             exists (select from ops.load_reconciliation
                     where checked_at > %(t)s and rows_extracted > 0),
             exists (select from ops.deep_reconciliation
                     where checked_at > %(t)s and repaired),
             exists (select from ops.dead_letters
                     where resolved_at > %(t)s and resolution like 'replayed%%')""",
        {"t": since},
    )
    return any(rows[0])


@contextmanager
def exclusive(
    endpoint: Endpoint, holder: str = "elt run", wait_s: float = 0.0
) -> Iterator[RunLock]:
    """Hold the run lock for a command that writes raw (`elt load`, `backfill`, `reconcile
    --deep`) or a Dagster step: it never overlaps an `elt run`, so dbt never reads a
    half-committed load."""
    lock = RunLock(endpoint, holder=holder, wait_s=wait_s)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
