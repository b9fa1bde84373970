"""The DDL of the warehouse schemas the loader owns (ops, quality): versioned SQL files, each
applied once, in order, by one call.

`loader/schemas/<schema>/NNNN_<what>.sql` is version NNNN of that schema. `ensure(conn,
"ops")` applies the versions the warehouse lacks, in one transaction, and records each in
`<schema>.schema_migrations`; a warehouse that is up to date costs three catalog reads. A
table or function the versions create that is gone (dropped by hand) is made again: every
version is written to run again over what it made (`if not exists`, `or replace`).
Concurrent callers (the load's threads, a Dagster step beside `elt status`) queue on a
transaction-level advisory lock, so DDL never runs twice at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions
from psycopg2 import sql

from loader.config import Endpoint
from loader.db import connect_raw

HERE = Path(__file__).parent
SCHEMAS = ("ops", "quality")
VERSION_TABLE = "schema_migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TABLE = re.compile(r"create table if not exists (\w+\.\w+)", re.I)
_FUNCTION = re.compile(r"create or replace function (\w+\.\w+)\(", re.I)
# pg_advisory_xact_lock(LOCK_CLASS, hashtext(schema)): apart from the run lock (history.py)
LOCK_CLASS = 7_432_002


@dataclass(frozen=True)
class Migration:
    """One version of one schema's DDL."""

    schema: str
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()


def migrations(schema: str) -> list[Migration]:
    """The versions of `schema`'s DDL, oldest first."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}: the loader owns {', '.join(SCHEMAS)}")
    found = []
    for path in sorted((HERE / schema).glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: a migration is named NNNN_<what>.sql")
        found.append(Migration(schema, int(match[1]), match[2], path))
    return found


def applied_version(conn: psycopg2.extensions.connection, schema: str) -> int:
    """The newest version of `schema` the warehouse has (0: none, or a layout from before
    versioning)."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is not null", (f"{schema}.{VERSION_TABLE}",))
        if not cur.fetchone()[0]:
            return 0
        cur.execute(
            sql.SQL("select coalesce(max(version), 0) from {}").format(
                sql.Identifier(schema, VERSION_TABLE)
            )
        )
        return int(cur.fetchone()[0])


def missing_objects(conn: psycopg2.extensions.connection, schema: str) -> list[str]:
    """The tables and functions the versions of `schema` create that the warehouse lacks."""
    text = "\n".join(m.sql for m in migrations(schema))
    tables, functions = _TABLE.findall(text), _FUNCTION.findall(text)
    with conn.cursor() as cur:
        cur.execute(
            "select array(select t from unnest(%s::text[]) t where to_regclass(t) is null)"
            " || array(select f from unnest(%s::text[]) f where to_regproc(f) is null)",
            (tables, functions),
        )
        return list(cur.fetchone()[0])


def ensure(conn: psycopg2.extensions.connection, *schemas: str) -> list[Migration]:
    """Create or upgrade each of `schemas` (default: all the loader owns) to its newest
    version; returns the migrations applied, none when the warehouse is up to date. Commits
    what the connection had open; leaves its autocommit setting as it was."""
    applied: list[Migration] = []
    for schema in schemas or SCHEMAS:
        wanted = migrations(schema)
        if (applied_version(conn, schema) >= wanted[-1].version
                and not missing_objects(conn, schema)):
            continue
        autocommit = conn.autocommit
        conn.commit()
        conn.autocommit = False
        try:
            with conn, conn.cursor() as cur:
                applied += _upgrade(cur, schema, wanted)
        finally:
            conn.autocommit = autocommit
    return applied


def ensure_on(endpoint: Endpoint, *schemas: str) -> list[Migration]:
    """`ensure` on a connection of its own."""
    conn = connect_raw(endpoint)
    try:
        return ensure(conn, *schemas)
    finally:
        conn.close()


def _upgrade(cur, schema: str, wanted: list[Migration]) -> list[Migration]:
    """Apply the missing versions in the caller's transaction, under the schema's lock."""
    cur.execute("select pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
    table = sql.Identifier(schema, VERSION_TABLE)
    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    cur.execute(
        sql.SQL(
            "create table if not exists {} (version integer primary key, name text not null, "
            "applied_at timestamptz not null default now())"
        ).format(table)
    )
    cur.execute(sql.SQL("select version from {}").format(table))
    have = {row[0] for row in cur.fetchall()}  # another session may have upgraded meanwhile
    done = []
    for migration in wanted:
        if migration.version in have:
            # applied, but something it made may be gone: it runs again over what is there
            cur.execute(migration.sql)
            continue
        cur.execute(migration.sql)
        cur.execute(
            sql.SQL("insert into {} (version, name) values (%s, %s)").format(table),
            (migration.version, migration.name),
        )
        done.append(migration)
    return done
