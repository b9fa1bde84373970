"""Connections to the source and the warehouse: pooled engines, transactions, retries, helpers."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, TypeVar

import psycopg2
from psycopg2 import sql

if TYPE_CHECKING:  # SQLAlchemy loads on first use: `elt run` must refuse a locked run fast
    from sqlalchemy.engine import Connection, Engine

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


_ENGINES: dict[Endpoint, Engine] = {}


def engine(endpoint: Endpoint) -> Engine:
    """A pooled SQLAlchemy engine (psycopg2 driver) for one database, made once per endpoint."""
    import sqlalchemy as sa

    if endpoint not in _ENGINES:
        connect_args = {"connect_timeout": 10, "application_name": "marketplace-elt"}
        extra: dict[str, Any] = {}
        if credentials.managed(endpoint):
            # each new pooled connection reads the live secret or token (never the URL)
            extra["creator"] = lambda: credentials.connect(endpoint, **connect_args)
        _ENGINES[endpoint] = sa.create_engine(
            endpoint.sqlalchemy_url if not extra else "postgresql+psycopg2://",
            pool_size=5,
            max_overflow=5,
            pool_pre_ping=True,
            connect_args=connect_args,
            hide_parameters=True,
            **extra,
        )
    return _ENGINES[endpoint]


def dispose_engines() -> None:
    """Close every pooled connection (before the server stops, or in a forked child)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()


@contextmanager
def transaction(endpoint: Endpoint) -> Iterator[Connection]:
    """A connection inside one transaction: committed on success, rolled back on error."""
    with engine(endpoint).begin() as conn:
        yield conn


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


def table_exists(conn: Connection, schema: str, table: str) -> bool:
    import sqlalchemy as sa

    return bool(
        conn.execute(
            sa.text("select to_regclass(:name) is not null"),
            {"name": f'"{schema}"."{table}"'},
        ).scalar()
    )


def row_count(conn: Connection, schema: str, table: str) -> int:
    import sqlalchemy as sa

    raw = conn.connection.dbapi_connection
    query = sql.SQL("select count(*) from {}").format(qualified(schema, table)).as_string(raw)
    return int(conn.execute(sa.text(query)).scalar())


def copy_in(
    raw_conn: psycopg2.extensions.connection,
    schema: str,
    table: str,
    data: IO[str] | IO[bytes],
    columns: Sequence[str] | None = None,
    fmt: str = "csv",
) -> int:
    """Bulk-load a file-like object with COPY FROM STDIN; returns the rows copied."""
    if fmt not in ("csv", "text", "binary"):
        raise ValueError(f"unknown COPY format {fmt!r}: use csv, text or binary")
    cols = (
        sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        if columns
        else sql.SQL("")
    )
    statement = sql.SQL("copy {} {} from stdin with (format {})").format(
        qualified(schema, table), cols, sql.SQL(fmt)
    )
    with raw_conn.cursor() as cur:
        cur.copy_expert(statement.as_string(raw_conn), data)
        return cur.rowcount


def upsert(
    conn: Connection,
    schema: str,
    table: str,
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
) -> int:
    """Insert `rows`, updating the non-key columns of rows whose `key` already exists."""
    import sqlalchemy as sa

    if not rows:
        return 0
    columns = list(rows[0])
    raw = conn.connection.dbapi_connection
    updates = [c for c in columns if c not in key]
    action = (
        sql.SQL("do update set {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in updates
            )
        )
        if updates
        else sql.SQL("do nothing")
    )
    statement = (
        sql.SQL("insert into {} ({}) values ({}) on conflict ({}) {}")
        .format(
            qualified(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.SQL(":" + f"p{i}") for i in range(len(columns))),
            sql.SQL(", ").join(map(sql.Identifier, key)),
            action,
        )
        .as_string(raw)
    )
    params = [{f"p{i}": row[c] for i, c in enumerate(columns)} for row in rows]
    conn.execute(sa.text(statement), params)
    return len(rows)
