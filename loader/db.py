"""Connections to the source and the warehouse: plain psycopg2 connections, retried while the
server is unreachable, and one reused connection for a run's short statements (Session)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
from psycopg2 import sql

from loader import credentials
from loader.config import Endpoint, UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATEs worth retrying: connection exceptions (class 08), serialization failure,
# deadlock, and an administrator shutdown of our backend.
TRANSIENT_SQLSTATES = ("40001", "40P01", "57P01")
TRANSIENT_MESSAGES = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection not open",
    "connection already closed",
    "the database system is starting up",
    "the database system is shutting down",
    "ssl syscall error",
)


class DatabaseUnavailable(UserError, RuntimeError):
    """A transient failure persisted through every retry."""


class ConnectFailed(UserError, RuntimeError):
    """The server answered but refused the connection: a wrong host, database, user or
    password. Retrying cannot help; the message says what to check."""


def _root_error(exc: BaseException) -> BaseException:
    return getattr(exc, "orig", None) or exc


def is_transient(exc: BaseException) -> bool:
    """True for failures that a retry can cure: connection loss, serialization, deadlock."""
    err = _root_error(exc)
    code = getattr(err, "pgcode", None)
    if code:
        return code.startswith("08") or code in TRANSIENT_SQLSTATES
    if isinstance(err, psycopg2.OperationalError | psycopg2.InterfaceError) or (
        type(exc).__name__ == "DisconnectionError"
    ):
        message = str(err).lower()
        return any(m in message for m in TRANSIENT_MESSAGES)
    return False


def backoff_delays(
    attempts: int, base: float = 0.5, cap: float = 10.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base*2**n))."""
    rng = rng or random.Random()
    for n in range(attempts - 1):
        yield rng.uniform(0, min(cap, base * 2**n))


def with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = 5,
    base: float = 0.5,
    cap: float = 10.0,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call `fn`, retrying transient database failures; other errors pass through at once."""
    sleep = sleep or time.sleep
    delays = backoff_delays(attempts, base, cap)
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise DatabaseUnavailable(
                    f"{what} failed after {attempts} attempts: {str(_root_error(exc)).strip()}. "
                    "Is the server running and reachable? (`elt warehouse status`)"
                ) from exc
            log.warning(
                "transient failure, retrying",
                extra={"what": what, "attempt": attempt, "delay_s": round(delay, 2)},
            )
            sleep(delay)
            attempt += 1


def connect_raw(endpoint: Endpoint, *, autocommit: bool = False) -> psycopg2.extensions.connection:
    """A plain psycopg2 connection, for COPY; retried while the server is unreachable."""

    def _connect() -> psycopg2.extensions.connection:
        conn = credentials.connect(
            endpoint, connect_timeout=10, application_name="marketplace-elt"
        )
        conn.autocommit = autocommit
        return conn

    try:
        return with_retry(_connect, what=f"connecting to {endpoint.display}")
    except psycopg2.OperationalError as exc:  # not transient: a wrong host, name or password
        raise ConnectFailed(
            f"cannot connect to {endpoint.display}: {_first_line(exc)}. Check the host, "
            "database and user in ELT_SOURCE_URL / ELT_WAREHOUSE_URL and the password in "
            "ELT_SOURCE_PASSWORD / ELT_WAREHOUSE_PASSWORD, or the secret of ELT_*_SECRET_ID "
            "(`elt warehouse url` shows them)"
        ) from None


def execute(endpoint: Endpoint, *statements: str | sql.Composable) -> None:
    """Run `statements` one after the other, each committed on its own (autocommit)."""
    conn = connect_raw(endpoint, autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


def qualified(schema: str, table: str) -> sql.Composed:
    """A safely quoted schema.table identifier."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


class Session:
    """One plain connection reused for many short statements (the run history), each in its
    own transaction and retried: a connection the server killed is closed and opened again,
    so the history is written even when the run's other connections were killed. Safe to
    share between the run's threads: one statement at a time."""

    def __init__(self, endpoint: Endpoint, what: str = "writing the run history") -> None:
        self.endpoint = endpoint
        self.what = what
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.Lock()

    def query(self, statement: str, params: Any = None) -> list[tuple]:
        """Run one statement, committed; its rows (none for a statement without any)."""

        def attempt() -> list[tuple]:
            with self._lock:
                if self._conn is None or self._conn.closed:
                    self._conn = connect_raw(self.endpoint)
                try:
                    with self._conn, self._conn.cursor() as cur:
                        cur.execute(statement, params)
                        return cur.fetchall() if cur.description else []
                except Exception as exc:
                    if is_transient(exc):  # a connection that broke is not used again
                        self._close()
                    raise

        return with_retry(attempt, what=self.what)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
